"""Forecasts without root: Little's law with the TIME_WAIT timers on synthetic readings,
the leak's linear run-out, the finding that quotes (and is raised by) its forecast, and
nothing at all from a single reading."""

from __future__ import annotations

from typing import Any

import numpy as np

from tcpdoctor.analysis.check import run_rules
from tcpdoctor.analysis.context import Context
from tcpdoctor.analysis.forecast import _project, forecasts, sentence
from tcpdoctor.model.kernel_state import KernelState
from tcpdoctor.model.snapshot import Snapshot
from tests import synth

RANGE = "40000 40999"


def _tw(n: int, first_cookie: int, expires: Any, port0: int = 40000) -> dict[str, Any]:
    return {"n": n, "state": "TIME_WAIT", "sport": lambda i: port0 + i, "dport": 80,
            "raddr": "198.18.0.2", "inode": 0, "expires": expires, "cookie": first_cookie}


def _snap(*specs: dict[str, Any]) -> Snapshot:
    snap = synth.snapshot(*[{k: v for k, v in s.items() if k != "cookie"} for s in specs])
    snap.columns["cookie"] = np.concatenate(
        [np.arange(s["cookie"], s["cookie"] + s["n"], dtype=np.uint64) for s in specs])
    return snap


def _kernel(taken: float, **sysctls: str) -> KernelState:
    return KernelState(taken, sysctls={"net.ipv4.ip_local_port_range": RANGE,
                                       "net.ipv4.tcp_max_tw_buckets": "131072", **sysctls})


def _ramp(before: int, rate: float, gap: float) -> Context:
    """A client closing `rate` connections a second to one backend, read twice."""
    made = int(rate * gap)
    ages = lambda i: 60_000 - int((before - i) / rate * 1000)  # noqa: E731  (newest last)
    earlier = _snap(_tw(before, 1, ages))
    later = _snap(_tw(before, 1, lambda i: ages(i) - int(gap * 1000)),
                  _tw(made, 1 + before, lambda i: 60_000 - int((made - i) / rate * 1000),
                      40000 + before))
    kernel = _kernel(10.0)
    kernel.previous = _kernel(10.0 - gap)
    return Context(earlier, kernel, {}, gap, later=later, later_seconds=gap)


def test_a_ramp_runs_out_when_the_range_is_full() -> None:
    ctx = _ramp(before=250, rate=25.0, gap=2.0)  # 300 of 1,000 used after the second reading
    ports = next(f for f in forecasts(ctx) if f.resource == "ports")
    assert (ports.scope, ports.used, ports.limit) == ("198.18.0.2:80", 300, 1000)
    assert ports.per_second == 25.0 and ports.levels_at is None
    assert abs(ports.seconds_left - 28.0) <= 0.5  # (1,000 - 300) / 25
    assert "runs out in about 28 s" in sentence(ports)


def test_a_slower_ramp_levels_off_at_rate_times_sixty() -> None:
    ctx = _ramp(before=100, rate=10.0, gap=2.0)
    ports = next(f for f in forecasts(ctx) if f.resource == "ports")
    assert ports.seconds_left is None and ports.levels_at == 600
    assert "no exhaustion at this rate" in sentence(ports)


def test_expiring_time_wait_delays_the_run_out() -> None:
    # 900 TIME_WAIT, 800 of them expiring in 1 s: the 1,000 are reached only when the new
    # ones (25/s) have refilled the room, at (1,000 - 100) / 25 = 36 s; with none expiring,
    # after 4 s.
    expires = np.array([1000.0] * 800 + [50_000.0] * 100)
    left, level = _project(900, 0.0, expires, 25.0, 1000)
    assert left is not None and abs(left - 36.0) <= 0.25 and level is None
    left, level = _project(900, 0.0, np.full(900, 50_000.0), 25.0, 1000)
    assert left is not None and abs(left - 4.0) <= 0.25


def test_the_finding_quotes_its_forecast_and_is_raised_by_it() -> None:
    ctx = _ramp(before=250, rate=25.0, gap=2.0)
    report = run_rules(ctx)
    found = next(f for f in report.findings if f.id == "EPHEMERAL_PORT_EXHAUSTION")
    assert found.severity == "critical"  # 25% of the range, but 28 s left
    assert found.evidence["forecast"]["seconds_left"] == report.forecasts[0]["seconds_left"]
    assert "Forecast:" in found.summary


def test_nothing_is_forecast_from_a_single_reading() -> None:
    ctx = _ramp(before=250, rate=25.0, gap=2.0)
    single = Context(ctx.snap, ctx.kernel, None, 0.0)
    assert forecasts(single) == [] and run_rules(single).forecasts is None
    assert run_rules(single).as_json()["forecasts"] is None


def test_history_forecasts_from_the_stored_trend() -> None:
    from tcpdoctor.analysis.forecast import trend

    times = np.arange(0.0, 61.0, 5.0)
    figures = [{"sockstat.TCP.tw": 1000 + 10 * t, "limit.tw_buckets": 2000.0,
                "sockstat.TCP.orphan": 7.0, "limit.orphans": 4096.0} for t in times]
    found = {f.resource: f for f in trend(times, figures, "host")}
    tw = found["tw_buckets"]
    assert (tw.used, tw.limit, round(tw.per_second, 3)) == (1600, 2000, 10.0)
    assert abs(tw.seconds_left - 40.0) < 1e-6
    assert found["orphans"].seconds_left is None  # flat: nothing runs out
    assert trend(times[:2], figures[:2], "host") == []  # two samples are not a trend


def _live(n: int, first_cookie: int, raddr: str, dport: int, port0: int) -> dict[str, Any]:
    return {"n": n, "state": "ESTABLISHED", "sport": lambda i: port0 + i, "dport": dport,
            "raddr": raddr, "inode": lambda i: first_cookie + i, "cookie": first_cookie}


def test_live_growth_is_counted_per_destination_across_the_readings() -> None:
    # Earlier: 100 to A, 50 to B (IPv6), 30 to C; later: 200 to A, the same 50 to B, none to
    # C. Only A grows (50/s over 2 s): B's 50 earlier ones must be matched to B, not lost.
    a, b, c = ("198.18.0.2", 5432), ("2001:db8::7", 443), ("198.18.0.3", 80)
    earlier = _snap(_live(100, 1, *a, 40000), _live(50, 1000, *b, 40300),
                    _live(30, 2000, *c, 40400))
    later = _snap(_live(200, 1, *a, 40000), _live(50, 1000, *b, 40300))
    kernel = _kernel(10.0)
    kernel.previous = _kernel(8.0)
    ctx = Context(earlier, kernel, {}, 2.0, later=later, later_seconds=2.0)
    ports = {f.scope: f for f in forecasts(ctx) if f.resource == "ports"}
    assert list(ports) == ["198.18.0.2:5432"]
    assert ports["198.18.0.2:5432"].per_second == 50.0
    assert ports["198.18.0.2:5432"].used == 200
