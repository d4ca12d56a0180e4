"""`exporter`: Prometheus metrics over HTTP, or textfiles for node_exporter."""

from __future__ import annotations

from typing import Any

import click

from tcpdoctor.cli.options import (
    SocketOptions,
    alertmanager_client,
    alertmanager_options,
    socket_options,
    threshold_options,
)
from tcpdoctor.i18n import Msg


@click.command()
@click.option("--listen", default="127.0.0.1:9816", show_default=True, metavar="HOST:PORT",
              help="Address to serve /metrics on (loopback by default; [::1]:9816 for IPv6).")
@click.option("--all-netns", is_flag=True,
              help="Export every network namespace of the host (= --netns all): the --top "
                   "namespaces with the most sockets by name, the rest as netns=\"other\".")
@click.option("-n", "--top", "top_n", default=10, show_default=True,
              type=click.IntRange(1, 1000),
              help="Per-port and per-remote series: the N largest, the rest as 'other'.")
@click.option("--max-scrape-seconds", default=10.0, show_default=True,
              type=click.FloatRange(min=0.1),
              help="Slower samples are answered with the previous one, flagged stale.")
@click.option("--processes", is_flag=True,
              help="Look up owners each scrape (enables FD_LIMIT; costs a /proc scan).")
@click.option("--textfile", "textfile_dir", type=click.Path(file_okay=False),
              help="Write DIR/tcpdoctor.prom for node_exporter's textfile collector instead "
                   "of serving HTTP.")
@click.option("--interval", default=15.0, show_default=True, type=click.FloatRange(min=0),
              help="With --textfile: seconds between writes.")
@click.option("--once", is_flag=True, help="With --textfile: write once and exit.")
@click.option("--web-config-file", type=click.Path(dir_okay=False),
              help="TLS and basic auth, in the Prometheus exporter-toolkit format.")
@click.option("-v", "--verbose", is_flag=True, help="Log every request to stderr.")
@alertmanager_options("Also post the active findings to this Alertmanager (v2 API) every "
                      "--interval seconds; a finding that disappears resolves.")
@click.option("--otlp", "otlp_url", metavar="URL",
              help="Also push the metrics over OTLP/HTTP to URL (an OpenTelemetry Collector; "
                   "/v1/metrics is added to a bare host:port) every --interval seconds. Needs "
                   "the otel extra.")
@click.option("--trace", is_flag=True,
              help="Also read the kernel's TCP tracepoints all along (root, one namespace): "
                   "tcpdoctor_connect_failures_total counts the connects refused a local port, "
                   "and the trace-based findings run.")
@socket_options("exporter", many_netns=True,
                not_used={"--json": "it serves the Prometheus text format (use "
                          "`tcpdoctor check --json` for JSON)."},
                no_processes_help="Owners are not looked up unless --processes is given "
                "(this flag is the default, accepted for symmetry).")
@threshold_options
def exporter(sock: SocketOptions, thresholds: Any, listen: str, all_netns: bool, top_n: int,
             max_scrape_seconds: float, processes: bool, textfile_dir: str | None,
             interval: float, once: bool, web_config_file: str | None,
             verbose: bool, alertmanager_url: str | None, alertmanager_config: str | None,
             otlp_url: str | None, trace: bool) -> None:
    """Prometheus metrics: states, top ports and remotes, findings, kernel limits.

    \b
    Each scrape runs the same diagnosis as `check` (same thresholds with --config and
    --threshold; counter rates since the previous scrape), so tcpdoctor_finding names the
    findings `check` would print.

    \b
    Examples:
      tcpdoctor exporter                          serve http://127.0.0.1:9816/metrics
      tcpdoctor exporter --listen '[::1]:9816'
      tcpdoctor exporter --listen 0.0.0.0:9816 --web-config-file web.yml
      tcpdoctor exporter --netns all              every pod's namespace (Kubernetes node)
      tcpdoctor exporter --all-netns --config thresholds.toml
      tcpdoctor exporter --textfile /var/lib/node_exporter/textfile --once
      tcpdoctor exporter --alertmanager http://alertmanager:9093
      tcpdoctor exporter --otlp http://otel-collector:4318 --interval 30
    """
    from tcpdoctor.errors import TcpDoctorError
    from tcpdoctor.exporter.run import ExporterOptions, run_exporter, targets_for

    every = all_netns or "all" in sock.netns
    if every and len(sock.netns) > int("all" in sock.netns):
        raise TcpDoctorError(Msg("--all-netns (--netns all) already covers every namespace: "
                                 "drop the other --netns options"))
    if trace:
        from tcpdoctor.cli.options import can_trace

        if every or len(sock.netns) > 1:
            raise TcpDoctorError(Msg("--trace follows one namespace: name at most one --netns"))
        can_trace(sock)
    client = alertmanager_client(alertmanager_url, alertmanager_config)
    owners = processes and not sock.no_processes
    base = sock.target(owners=owners, every_netns=every)
    # pod:/container: selectors resolve to their namespace's path, one by one.
    names = [] if every else [str(sock.target(netns=n).netns) for n in sock.netns]
    targets = [base] if every else targets_for(base, names)
    run_exporter(targets, thresholds,
                 ExporterOptions(listen, top_n, max_scrape_seconds, textfile_dir, interval,
                                 once, web_config_file, verbose, trace, client, otlp_url),
                 every)


COMMANDS = (exporter,)
