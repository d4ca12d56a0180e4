"""`tcpdoctor exporter`: serve /metrics, or write node_exporter textfiles."""

from __future__ import annotations

import dataclasses
import os
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tcpdoctor.analysis.thresholds import Thresholds
from tcpdoctor.errors import TcpDoctorError
from tcpdoctor.i18n import Msg, _f, tr
from tcpdoctor.sources import netns as netns_mod
from tcpdoctor.sources.target import Target
from tcpdoctor.util.atomic import atomic_write, remove_stale_temps
from tcpdoctor.util.cadence import ticks
from tcpdoctor.util.malloc import limit_malloc_arenas

INSTALL_HINT = Msg("the exporter needs prometheus_client: pip install 'tcpdoctor[exporter]'")


@dataclass
class ExporterOptions:
    listen: str
    top_n: int
    max_seconds: float
    textfile_dir: str | None
    interval: float
    once: bool
    web_config_file: str | None
    verbose: bool
    trace: bool = False  # one trace all along (one namespace): connect failures
    alertmanager: Any = None  # an alertmanager.Client: findings posted every round
    otlp: str | None = None  # an OTLP/HTTP endpoint: the metrics pushed every --interval


def targets_for(base: Target, netns_list: list[str]) -> list[Target]:
    """One target per --netns (checked to exist now), or the host's."""
    names: list[str | None] = [netns_mod.resolve(n) and n for n in netns_list] or [None]
    return [dataclasses.replace(base, netns=n) for n in names]


def _log_error(netns: str, exc: BaseException) -> None:
    sys.stderr.write(_f("tcpdoctor exporter: netns {netns}: sampling failed: {exc}",
                        netns=netns, exc=tr(exc.args[0]) if len(exc.args) == 1 else exc)
                     + "\n")
    sys.stderr.flush()


def _poster(opts: ExporterOptions) -> Callable[[list[Any]], None] | None:
    """Each round's findings to Alertmanager (endsAt three rounds ahead); a failed post is
    a one-line note, never the end of the exporter."""
    if opts.alertmanager is None:
        return None
    from tcpdoctor.exporter.alertmanager import Poster

    poster = Poster(opts.alertmanager, ttl=max(3 * opts.interval, 60.0))

    def post(findings: list[Any]) -> None:
        try:
            poster.round(findings)
        except TcpDoctorError as exc:
            sys.stderr.write(_f("tcpdoctor exporter: {error}", error=tr(exc.args[0])) + "\n")
            sys.stderr.flush()
    return post


def _rounds(registry: Any, interval: float) -> None:
    from prometheus_client import generate_latest

    for _ in ticks(max(interval, 1.0), None):
        generate_latest(registry)


def run_exporter(targets: list[Target], thresholds: Thresholds | None,
                 opts: ExporterOptions, every_netns: bool = False) -> None:
    """Serve (or write) the metrics of the targets, or with every_netns of every namespace
    of the host (targets[0] is then the host's)."""
    try:
        from tcpdoctor.exporter import collector, http  # noqa: F401  (the extra, checked now)
    except ImportError:
        raise TcpDoctorError(INSTALL_HINT) from None
    limit_malloc_arenas(long_running=True)
    readers: dict[str, Callable[[], Any]] = (
        {"all": collector.readings(targets[0], thresholds, every_netns=True,
                                   on_round=_poster(opts))} if every_netns
        else {(t.netns or "host"): collector.readings(t, thresholds, trace=opts.trace,
                                                      on_round=_poster(opts))
              for t in targets})
    registry = collector.build_registry(readers, opts.top_n, opts.max_seconds, _log_error)
    stop_otlp = None
    if opts.otlp:
        from tcpdoctor.exporter import otlp

        stop_otlp = otlp.start(registry, opts.otlp, max(opts.interval, 1.0))
    try:
        _serve(registry, readers, opts)
    finally:
        if stop_otlp is not None:
            stop_otlp()


def _serve(registry: Any, readers: dict[str, Any], opts: ExporterOptions) -> None:
    """Write the textfile every --interval, or serve /metrics until stopped."""
    from prometheus_client import generate_latest

    from tcpdoctor.exporter import http

    if opts.alertmanager is not None and not opts.textfile_dir:
        # Alerts follow the rounds, not the scrapes: a round every --interval seconds.
        threading.Thread(target=_rounds, args=(registry, opts.interval), daemon=True,
                         name="tcpdoctor-alerts").start()
    if opts.textfile_dir:
        if not os.path.isdir(opts.textfile_dir):
            raise TcpDoctorError(Msg("--textfile: {directory} is not a directory",
                                     directory=opts.textfile_dir))
        path = os.path.join(opts.textfile_dir, "tcpdoctor.prom")
        for _ in ticks(opts.interval, 1 if opts.once else None):
            remove_stale_temps(path)
            atomic_write(path, generate_latest(registry).decode())
        return
    web = http.load_web_config(opts.web_config_file)

    def ready(addr: tuple[str, int]) -> None:
        scheme = "https" if web.tls else "http"
        host = f"[{addr[0]}]" if ":" in addr[0] else addr[0]
        sys.stderr.write(_f("tcpdoctor exporter: serving {url} for {targets}",
                            url=f"{scheme}://{host}:{addr[1]}/metrics",
                            targets=", ".join(readers)) + "\n")
        sys.stderr.flush()

    http.serve(registry, opts.listen, web, opts.verbose, ready)
