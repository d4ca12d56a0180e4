"""Generate docs/rules.md from the rule registry, so the documented thresholds are the real ones."""

from __future__ import annotations

from tcpdoctor.analysis.registry import NEEDS_REASONS, REGISTRY
from tcpdoctor.analysis.thresholds import defaults as default_thresholds


def rules_markdown() -> str:
    lines = [
        "# Rules and thresholds",
        "",
        "Generated from the rule registry (`python -m tcpdoctor.render.ruledocs > docs/rules.md`).",
        "Override any threshold with `--threshold RULE_ID.key=value` or a TOML file passed",
        "with `--config FILE`:",
        "",
        "```toml",
        "[thresholds.CLOSE_WAIT_LEAK]",
        "warning = 50",
        "critical = 500",
        "```",
        "",
        "Counts are sockets in the inspected namespace; `*_share` values are fractions (0-1);",
        "`*_delta` evidence is the counter increase during `--interval`.",
        "",
    ]
    th = default_thresholds()
    for rid, r in REGISTRY.items():
        lines.append(f"## {rid}")
        lines.append("")
        lines.append(f"{r.title}. {r.doc}")
        lines.append("")
        if th[rid]:
            values = ", ".join(f"`{k}` = {v:g}" for k, v in th[rid].items())
            lines.append(f"Thresholds: {values}.")
        else:
            lines.append("Thresholds: none (fires on a full accept queue or rising overflows).")
        if r.needs:
            needs = "; ".join(f"{n} ({NEEDS_REASONS[n].split(' (')[0]} otherwise)"
                              for n in sorted(r.needs))
            lines.append(f"Needs: {needs}.")
        lines.append("")
    return "\n".join(lines)




def _yq(text: str) -> str:
    """Escape for a single-quoted YAML scalar."""
    return text.replace("'", "''")


def _camel(rule_id: str) -> str:
    return "Tcpdoctor" + "".join(w.capitalize() for w in rule_id.lower().split("_"))


# (alert, expr, for, severity, summary, description): alerts on the ratios and counters.
LIMIT_ALERTS: tuple[tuple[str, str, str, str, str, str], ...] = (
    ("TcpdoctorTimeWaitBucketsNearFull", 'tcpdoctor_usage_ratio{limit="tw_buckets"} > 0.8', "5m",
     "warning", "TIME_WAIT at {{ $value | humanizePercentage }} of tcp_max_tw_buckets on "
     "{{ $labels.instance }}", "Past the cap the kernel skips TIME_WAIT silently. Fix the "
     "cause (keep-alive, pooling); never lower the cap."),
    ("TcpdoctorTimeWaitOverflow", 'increase(tcpdoctor_kernel_counter_total{counter="TcpExt.'
     'TCPTimeWaitOverflow"}[5m]) > 0', "0m", "critical",
     "TIME_WAIT sockets destroyed early on {{ $labels.instance }}",
     "TCPTimeWaitOverflow is rising: tcp_max_tw_buckets is full."),
    ("TcpdoctorCloseWaitGrowing", 'deriv(tcpdoctor_sockets{state="CLOSE_WAIT"}[10m]) > 0 and '
     'tcpdoctor_sockets{state="CLOSE_WAIT"} > 50', "10m", "warning",
     "CLOSE_WAIT has been growing for 10 minutes on {{ $labels.instance }} ({{ $value }}/s)",
     "An application does not close connections its peers closed: tcpdoctor top --by "
     "process --state close-wait."),
    ("TcpdoctorAcceptQueueOverflows", 'rate(tcpdoctor_kernel_counter_total{counter="TcpExt.'
     'ListenOverflows"}[5m]) > 0', "5m", "warning",
     "Accept queue overflows on {{ $labels.instance }} ({{ $value | humanize }}/s)",
     "A listener accepts too slowly; connections are dropped. tcpdoctor check names it."),
    ("TcpdoctorSynCookies", 'rate(tcpdoctor_kernel_counter_total{counter="TcpExt.'
     'SyncookiesSent"}[5m]) > 0', "5m", "warning", "SYN cookies sent on {{ $labels.instance }}",
     "The SYN queue overflows: a flood, or a backlog too small for legitimate load."),
    ("TcpdoctorConntrackNearFull", 'tcpdoctor_usage_ratio{limit="conntrack"} > 0.8', "5m",
     "warning", "conntrack at {{ $value | humanizePercentage }} on {{ $labels.instance }}",
     "Near nf_conntrack_max new flows are dropped."),
    ("TcpdoctorConntrackDrops", 'increase(tcpdoctor_kernel_counter_total{counter=~"conntrack.'
     '(drop|early_drop|insert_failed)"}[5m]) > 0', "0m", "critical",
     "conntrack dropping packets on {{ $labels.instance }}",
     "nf_conntrack: table full, dropping packet."),
    ("TcpdoctorOrphansNearLimit", 'tcpdoctor_usage_ratio{limit="orphans"} > 0.25', "5m",
     "warning", "Orphan sockets at {{ $value | humanizePercentage }} of tcp_max_orphans on "
     "{{ $labels.instance }}", "Past a quarter of the limit under retransmission the kernel "
     "resets orphans."),
    ("TcpdoctorTcpMemoryHigh", 'tcpdoctor_usage_ratio{limit="tcp_mem"} > 0.8', "5m",
     "critical", "TCP memory at {{ $value | humanizePercentage }} of tcp_mem high on "
     "{{ $labels.instance }}", "At tcp_mem high the kernel aborts orphans and drops data."),
    ("TcpdoctorExhaustionSoon", "tcpdoctor_exhaustion_seconds < 600", "2m", "warning",
     "{{ $labels.resource }} ({{ $labels.scope }}) runs out in {{ $value | humanizeDuration }} "
     "on {{ $labels.instance }}", "At the rate measured between scrapes this resource reaches "
     "its kernel limit within 10 minutes: tcpdoctor check --interval 5 shows the forecast."),
    ("TcpdoctorExporterDown", "tcpdoctor_up == 0", "5m", "warning",
     "tcpdoctor cannot sample {{ $labels.netns }} on {{ $labels.instance }}",
     "The namespace is gone or tcpdoctor lacks permission."),
    ("TcpdoctorScrapeStale", "tcpdoctor_scrape_stale == 1", "10m", "warning",
     "tcpdoctor serves stale samples on {{ $labels.instance }}",
     "Snapshots take longer than --max-scrape-seconds."),
)


def alert_rules_yaml() -> str:
    """contrib/prometheus/tcpdoctor-rules.yml: one alert per finding id, then the limits."""
    out = ["# Alert rules for tcpdoctor's exporter. Generated: python -m tcpdoctor.render.ruledocs "
           "alerts",
           "# One alert per finding id (severity taken from the finding), then alerts on the",
           "# kernel ratios and counters behind them. Tests: tcpdoctor-rules.test.yml.",
           "groups:", "  - name: tcpdoctor-findings", "    rules:"]
    for rid, r in REGISTRY.items():
        out += [f"      - alert: {_camel(rid)}",
                f"        expr: max by (instance, netns, severity) (tcpdoctor_finding{{id=\"{rid}"
                "\", severity=~\"warning|critical\"}) == 1",
                "        for: 5m", "        labels:",
                "          severity: '{{ $labels.severity }}'",
                f"          finding: {rid}", "        annotations:",
                f"          summary: '{_yq(r.title)} on {{{{ $labels.instance }}}} (netns "
                "{{ $labels.netns }})'",
                f"          description: 'tcpdoctor reports {rid}. Run `tcpdoctor check` on the "
                "host (with --netns if not host) for the evidence, owners and fixes.'"]
    out += ["  - name: tcpdoctor-limits", "    rules:"]
    for name, expr, for_, sev, summary, desc in LIMIT_ALERTS:
        out += [f"      - alert: {name}", f"        expr: {expr}", f"        for: {for_}",
                "        labels:", f"          severity: {sev}", "        annotations:",
                f"          summary: '{_yq(summary)}'", f"          description: '{_yq(desc)}'"]
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    import sys

    print(alert_rules_yaml() if sys.argv[1:] == ["alerts"] else rules_markdown(), end="")
