"""What `tune` judges: the running sysctls, the configured ones and a diagnosis' evidence."""

from __future__ import annotations

import os
from dataclasses import dataclass

from tcpdoctor.analysis.tune import Audit
from tcpdoctor.diagnose import diagnose
from tcpdoctor.i18n import Cat, Msg
from tcpdoctor.sources import kstate
from tcpdoctor.sources.target import Target


@dataclass
class Gathered:
    audit: Audit
    host: str
    kernel: str
    taken_at: str
    where: str
    ehash: int

    def header(self, prefix: str = "tcpdoctor tune") -> str:
        return Cat(prefix, f" · {self.host} (", self.where, f") · Linux {self.kernel} · "
                                                             f"{self.taken_at}")


def audit_sysctls(target: Target, audit_files: tuple[str, ...], interval: float) -> Gathered:
    """What `tune` judges: the running values (this namespace's, the host's global ones),
    the configured ones (sysctl.d files or --audit-file) and the evidence of a diagnosis."""
    from tcpdoctor.analysis import tune as audit_mod
    from tcpdoctor.analysis.sysctl_kb import BY_KEY, KNOBS, ehash_entries
    from tcpdoctor.model.kernel_state import sysctl_path
    from tcpdoctor.sources import netns as netns_mod
    from tcpdoctor.sources import sysctl_files

    d = diagnose(target, None, interval)
    keys = (*tuple(k.key for k in KNOBS), "net.ipv4.tcp_ehash_entries")
    current = netns_mod.run_in(target.netns, lambda: kstate.read_sysctls(keys=keys))
    if target.netns:
        host = kstate.read_sysctls(keys=tuple(k.key for k in KNOBS if not k.per_netns))
        current.update({k: v for k, v in host.items() if v is not None})
    files = list(audit_files) or sysctl_files.system_files()
    configured, _, notes = sysctl_files.read(files, strict=bool(audit_files))
    unknown = [k for k in configured if k not in BY_KEY]
    exists = netns_mod.run_in(target.netns, lambda: {
        k: os.path.exists(sysctl_path(k)) for k in unknown})
    ehash = ehash_entries(current.get("net.ipv4.tcp_ehash_entries"))
    snap = d.sample.snap
    result = audit_mod.audit(current, configured, d.report.findings, snap.kernel, ehash, exists)
    result.notes = [*notes, Msg("audited: {files}",
                                files=", ".join(files) or Msg("(no sysctl files)"))]
    return Gathered(result, snap.host, snap.kernel, snap.taken_at, target.where, ehash)
