"""Apply a sysctl drop-in with a backup of every previous value, and roll it back exactly.

Order of operations (each file written atomically): backup first, then the drop-in, then
the live values; any failure restores what was already changed.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from typing import Any

from tcpdoctor.analysis.sysctl_kb import BY_KEY, harmful
from tcpdoctor.errors import TcpDoctorError
from tcpdoctor.i18n import Msg
from tcpdoctor.model.kernel_state import sysctl_path
from tcpdoctor.sources import netns as netns_mod
from tcpdoctor.util.atomic import atomic_write, remove_stale_temps

DEFAULT_DROPIN = "/etc/sysctl.d/99-tcpdoctor.conf"  # sorts after 99-sysctl.conf


def validate(values: dict[str, str], netns: str | None, ehash: int) -> None:
    """Refuse keys outside the table, values out of range, and harmful values."""
    for key, value in values.items():
        knob = BY_KEY.get(key)
        if knob is None:
            raise TcpDoctorError(Msg("refusing {key}: not a key tcpdoctor knows (see --explain)",
                                     key=key))
        parsed = knob.parse(value)
        if key == "net.ipv4.ip_local_reserved_ports" and not _port_list(value):
            raise TcpDoctorError(Msg("refusing {key} = {value}: expected ports and ranges such "
                                     "as 8080,9000-9100", key=key, value=value))
        if parsed is None:
            raise TcpDoctorError(Msg("refusing {key} = {value}: outside the valid range "
                                     "{valid} ({count} value(s))", key=key, value=value,
                                     valid=knob.valid, count=knob.count))
        harm = harmful(knob, value, ehash)
        if harm:
            raise TcpDoctorError(Msg("refusing {key} = {value}: {why}", key=key, value=value,
                                     why=harm[1]))
        if knob.removed_in:
            major, minor = knob.removed_in
            raise TcpDoctorError(Msg("refusing {key}: removed in Linux {major}.{minor}", key=key,
                                     major=major, minor=minor))
        if netns and not knob.per_netns:
            raise TcpDoctorError(Msg("refusing {key} with --netns: it is global, set it in the "
                                     "initial namespace", key=key))


def _port_list(text: str) -> bool:
    """ip_local_reserved_ports syntax: empty, or comma-separated PORT or LOW-HIGH."""
    for item in filter(None, text.replace(" ", "").split(",")):
        ends = item.split("-")
        if len(ends) > 2 or not all(e.isascii() and e.isdigit() and len(e) <= 5 for e in ends):
            return False
        if any(int(e) > 65535 for e in ends) or int(ends[0]) > int(ends[-1]):
            return False
    return True


def _read_values(keys: list[str]) -> dict[str, str]:
    out = {}
    for key in keys:
        try:
            with open(sysctl_path(key)) as fh:
                out[key] = " ".join(fh.read().split())
        except OSError as exc:
            raise TcpDoctorError(Msg("cannot read {key}: {error}", key=key,
                                     error=exc.strerror)) from None
    return out


def _write_values(values: dict[str, str]) -> list[str]:
    done: list[str] = []
    for key, value in values.items():
        try:
            with open(sysctl_path(key), "w") as fh:
                fh.write(value)
        except OSError as exc:
            raise _PartialWrite(done, Msg("cannot set {key} = {value}: {error}", key=key,
                                          value=value, error=exc.strerror)) from None
        done.append(key)
    return done


class _PartialWrite(TcpDoctorError):
    def __init__(self, done: list[str], message: str) -> None:
        super().__init__(message)
        self.done = done


def backup_path(state_dir: str, dropin: str | None, netns: str | None) -> str:
    ident = f"{os.path.realpath(dropin) if dropin else '-'}|{netns or ''}"
    return os.path.join(state_dir, f"tune-backup-{hashlib.sha1(ident.encode()).hexdigest()[:12]}"
                        ".json")


def _read_file(path: str) -> str | None:
    try:
        with open(path) as fh:
            return fh.read()
    except FileNotFoundError:
        return None


def apply(values: dict[str, str], dropin: str | None, text: str, netns: str | None,
          state_dir: str, ehash: int) -> dict[str, Any]:
    if os.geteuid() != 0:
        raise TcpDoctorError(Msg("--apply needs root"))
    validate(values, netns, ehash)
    try:
        os.makedirs(state_dir, exist_ok=True)
    except OSError as exc:
        raise TcpDoctorError(Msg("--state-dir {state_dir}: {error}", state_dir=state_dir,
                                 error=exc.strerror)) from None
    bpath = backup_path(state_dir, dropin, netns)
    remove_stale_temps(bpath)  # left by a writer killed mid-write
    earlier = _read_file(bpath)
    try:
        return _apply(values, dropin, text, netns, bpath, earlier)
    except BaseException:
        # A failed apply leaves the backups as they were before it.
        with contextlib.suppress(OSError, TcpDoctorError):
            if earlier is None:
                os.unlink(bpath)
            else:
                atomic_write(bpath, earlier, 0o600)
        raise


def _apply(values: dict[str, str], dropin: str | None, text: str, netns: str | None,
           bpath: str, earlier: str | None) -> dict[str, Any]:
    previous = netns_mod.run_in(netns, lambda: _read_values(list(values)))
    backup = json.loads(earlier or "null") or {
        "schema": 1, "netns": netns, "dropin": dropin,
        "dropin_previous": _read_file(dropin) if dropin else None, "values": {}}
    for key, value in previous.items():
        backup["values"].setdefault(key, value)  # keep the pre-tcpdoctor value on re-apply
    atomic_write(bpath, json.dumps(backup, indent=2) + "\n", 0o600)
    if dropin:
        remove_stale_temps(dropin)
        atomic_write(dropin, text)
    try:
        netns_mod.run_in(netns, lambda: _write_values(values))
    except _PartialWrite as exc:
        restore = {k: backup["values"][k] for k in exc.done}
        netns_mod.run_in(netns, lambda: _write_values(restore))
        _restore_dropin(backup)
        raise TcpDoctorError(Msg("{exc}; the values already set were restored", exc=exc)) from None
    return {"backup": bpath, "dropin": dropin, "previous": previous, "applied": values}


def _restore_dropin(backup: dict[str, Any]) -> None:
    dropin = backup.get("dropin")
    if not dropin:
        return
    if backup.get("dropin_previous") is None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(dropin)
    else:
        atomic_write(dropin, backup["dropin_previous"])


def rollback(dropin: str | None, netns: str | None, state_dir: str) -> dict[str, Any]:
    if os.geteuid() != 0:
        raise TcpDoctorError(Msg("--rollback needs root"))
    bpath = backup_path(state_dir, dropin, netns)
    text = _read_file(bpath)
    if text is None:
        raise TcpDoctorError(Msg("nothing to roll back: no backup {bpath} for drop-in "
                                 "{dropin} in {where}", bpath=bpath,
                                 dropin=dropin or Msg("(none)"),
                                 where=f"netns {netns}" if netns else Msg("host")))
    try:
        backup = json.loads(text)
        values = dict(backup["values"])
    except (ValueError, KeyError, TypeError):
        raise TcpDoctorError(Msg("{bpath}: not a tcpdoctor backup (expected JSON with 'values')",
                                 bpath=bpath)) from None
    netns_mod.run_in(netns, lambda: _write_values(values))
    _restore_dropin(backup)
    os.unlink(bpath)
    return {"backup": bpath, "dropin": dropin, "restored": values}
