"""Generate docs/rules.md from the rule registry, so the documented thresholds are the real ones."""

from __future__ import annotations

from tcpdoctor.analysis.check import default_thresholds
from tcpdoctor.analysis.findings import NEEDS_REASONS, REGISTRY


def rules_markdown() -> str:
    lines = [
        "# Rules and thresholds",
        "",
        "Generated from the rule registry (`python -m tcpdoctor.analysis.docs > docs/rules.md`).",
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


if __name__ == "__main__":
    print(rules_markdown(), end="")
