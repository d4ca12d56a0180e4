"""sysctl configuration files: sysctl.d(5) syntax and precedence.

Files named alike in several directories: the first directory wins (/etc over /run over
/usr/local/lib over /usr/lib over /lib). All files are applied in lexical order of their
names; /etc/sysctl.conf comes last (procps `sysctl --system`). A later assignment wins.
"""

from __future__ import annotations

import os

from tcpdoctor.errors import ParseError, TcpDoctorError
from tcpdoctor.i18n import Msg
from tcpdoctor.model.kernel_state import SYSCTL_CONF, SYSCTL_DIRS, Setting


def parse(text: str, path: str) -> list[Setting]:
    out = []
    for no, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        key, sep, value = line.partition("=")
        key = key.strip()
        if not sep or not key or " " in key:
            raise ParseError(path, no, Msg("KEY = VALUE"), raw)
        ignore = key.startswith("-")
        out.append(Setting(key.lstrip("-").replace("/", "."), " ".join(value.split()), path, no,
                           ignore))
    return out


def system_files(root: str = "") -> list[str]:
    chosen: dict[str, str] = {}
    for directory in SYSCTL_DIRS:
        try:
            names = sorted(os.listdir(root + directory))
        except OSError:
            continue
        for name in names:
            if name.endswith(".conf") and name not in chosen:
                chosen[name] = f"{root}{directory}/{name}"
    files = [chosen[name] for name in sorted(chosen)]
    conf = root + SYSCTL_CONF
    seen = {os.path.realpath(f) for f in files}
    if os.path.exists(conf) and os.path.realpath(conf) not in seen:
        files.append(conf)
    return files


def read(paths: list[str], strict: bool) -> tuple[dict[str, Setting], list[Setting], list[str]]:
    """(last setting per key, every setting in order, notes). strict: unreadable = error."""
    last: dict[str, Setting] = {}
    every: list[Setting] = []
    notes: list[str] = []
    for path in paths:
        try:
            with open(path, encoding="utf-8", errors="replace") as fh:
                text = fh.read()
        except OSError as exc:
            if strict:
                raise TcpDoctorError(f"{path}: {exc.strerror}") from None
            notes.append(Msg("{path} unreadable ({error}): not audited", path=path,
                             error=exc.strerror))
            continue
        try:
            settings = parse(text, path)
        except ParseError as exc:
            if strict:
                raise
            notes.append(Msg("{exc}: file skipped", exc=exc))
            continue
        for s in settings:
            every.append(s)
            last[s.key] = s
    return last, every, notes
