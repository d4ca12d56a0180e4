"""`tcpdoctor lab`: build a scenario, print how to inspect it, hold it, tear it down."""

from __future__ import annotations

import signal
import sys
import time
from typing import Any

from tcpdoctor.i18n import _, _f, tr
from tcpdoctor.lab import scenarios
from tcpdoctor.lab.net import LabNet, require_root
from tcpdoctor.render.output import emit_ndjson, write


def list_scenarios() -> None:
    for s in scenarios.SCENARIOS.values():
        expect = f"{s.finding} ({s.severity})" if s.finding else _("no warning")
        write(f"{s.name:17} " + _f("{description}; expect {expect}; n={n}",
                                               description=tr(s.description), expect=expect,
                                               n=s.default_n) + "\n")


def _on_sigterm(*_: Any) -> None:
    raise SystemExit(0)  # unwinds through the finally below, which tears the lab down


def run(name: str, count: int | None, hold: float, as_json: bool) -> None:
    scenario = scenarios.get(name)
    require_root()
    n = count or scenario.default_n
    signal.signal(signal.SIGTERM, _on_sigterm)
    signal.signal(signal.SIGHUP, _on_sigterm)
    lab = LabNet(prefix=f"tdlab-{name}"[:20])
    try:
        lab.open()
        built = scenarios.build(lab, scenario, n)
        _announce(lab, scenario, n, built, hold, as_json)
        deadline = time.monotonic() + hold
        next_refresh = time.monotonic() + scenario.refresh_every
        while (left := deadline - time.monotonic()) > 0:
            time.sleep(min(left, max(0.0, next_refresh - time.monotonic()), 1.0))
            if scenario.refresh and time.monotonic() >= next_refresh:
                scenario.refresh(lab, n)
                next_refresh = time.monotonic() + scenario.refresh_every
    except KeyboardInterrupt:
        pass
    finally:
        lab.close()
        sys.stderr.write(_f("lab {name}: torn down", name=lab.name) + "\n")


def _announce(lab: LabNet, scenario: scenarios.Scenario, n: int, built: int, hold: float,
              as_json: bool) -> None:
    cmd = " ".join(["tcpdoctor", "check", "--netns", lab.name, *scenario.check_args])
    info = {"scenario": scenario.name, "netns": lab.name, "peer_netns": lab.peer, "n": n,
            "built": built, "hold_seconds": hold, "expect": scenario.finding,
            "severity": scenario.severity, "check": cmd,
            "workers": [{"name": w.name, "pid": w.pid, "netns": w.netns}
                        for w in lab.workers]}
    if as_json:
        emit_ndjson(info)
    else:
        expect = (_f("expect {finding} ({severity})", finding=scenario.finding,
                     severity=scenario.severity) if scenario.finding
                  else _("expect no warning"))
        write(f"lab {scenario.name}: {tr(scenario.description)}\n"
                         + _f("namespace: {name}  (peer: {peer})", name=lab.name, peer=lab.peer)
                         + "\n" + _f("built {built} sockets (n={n}); {expect}", built=built,
                                      n=n, expect=expect)
                         + "\n" + _f("holding for {s:.0f} s; inspect it with:", s=hold)
                         + f"\n  {cmd}\n")
