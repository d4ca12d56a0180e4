"""UNSAFE_SYSCTL: harmful or obsolete kernel settings in force.

What counts as harmful is defined once, in the sysctl knowledge table (sysctl_kb.harmful);
`tune` judges configured lines with the same table.
"""

from __future__ import annotations

from tcpdoctor.analysis.context import Context, sysctl_rec
from tcpdoctor.analysis.registry import Found, rule
from tcpdoctor.analysis.severity import Severity
from tcpdoctor.analysis.sysctl_kb import HARM_LIMITS, KNOBS, ehash_entries, harmful, safe_value
from tcpdoctor.i18n import Msg


@rule("UNSAFE_SYSCTL", "Dangerous or obsolete sysctl settings", needs=("sysctls",),
      **HARM_LIMITS)
def unsafe_sysctl(ctx: Context, th: dict[str, float]) -> Found | None:
    """Harmful running values: tcp_tw_recycle on, tiny tcp_max_tw_buckets, syncookies off,
    abort_on_overflow on, a port range into the privileged ports... (the sysctl table)."""
    assert ctx.kernel is not None
    sysctls = ctx.kernel.sysctls
    # Judged against this machine's default (ehash/2, small on small VMs), not a constant.
    ehash = ehash_entries(sysctls.get("net.ipv4.tcp_ehash_entries"))
    recs = []
    worst = Severity.INFO
    for knob in KNOBS:
        current = sysctls.get(knob.key)
        harm = harmful(knob, current, ehash, th)
        if harm is None:
            continue
        worst = max(worst, Severity(harm[0]))
        recs.append(sysctl_rec(knob.key, _plain(current), _plain(safe_value(knob.key, ehash)),
                               harm[1]))
    if not recs:
        return None
    keys = ", ".join(f"{r['key'].split('.')[-1]}={r['current']}" for r in recs)
    return Found(
        worst,
        Msg("Harmful kernel settings in force: {keys}.", keys=keys),
        {"settings": {r["key"]: r["current"] for r in recs}},
        [Msg("Restore the recommended values below (`tcpdoctor tune` writes a drop-in you can "
             "apply and roll back) and remove the lines that set them from /etc/sysctl.*.")],
        [], recs,
    )


def _plain(value: str | None) -> int | str | None:
    """A single integer as a number in the JSON (as the other rules' figures are)."""
    digits = (value or "").lstrip("-")
    if value is not None and digits.isascii() and digits.isdigit() and len(digits) <= 19:
        return int(value)
    return value
