"""Rule thresholds: the registered defaults, then a config's [thresholds.RULE_ID] tables,
then ID.key=value overrides. Pure: the caller reads the config file."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tcpdoctor.analysis import rules as _rules  # noqa: F401  (registers the rules)
from tcpdoctor.analysis.registry import REGISTRY
from tcpdoctor.errors import TcpDoctorError
from tcpdoctor.i18n import Msg

Thresholds = dict[str, dict[str, float]]


def defaults() -> Thresholds:
    return {rid: dict(r.defaults) for rid, r in REGISTRY.items()}


def resolve(config: Mapping[str, Any] | None = None, overrides: tuple[str, ...] = (),
            config_name: str = "config") -> Thresholds:
    """Defaults, then config["thresholds"] (a parsed TOML document), then ID.key=value."""
    th = defaults()
    tables = (config or {}).get("thresholds", {})
    if not isinstance(tables, Mapping):
        raise TcpDoctorError(Msg("{config}: [thresholds] must be a table of rule tables",
                                 config=config_name))
    for rid, values in tables.items():
        if not isinstance(values, Mapping):
            raise TcpDoctorError(Msg("{config}: [thresholds.{rid}] must be a table",
                                     config=config_name, rid=rid))
        for key, value in values.items():
            _set(th, rid, key, value, config_name)
    for item in overrides:
        name, sep, value = item.partition("=")
        rid, dot, key = name.partition(".")
        if not sep or not dot:
            raise TcpDoctorError(Msg("--threshold: expected RULE_ID.key=value, got {item!r}",
                                     item=item))
        _set(th, rid, key, value, "--threshold")
    return th


def _set(th: Thresholds, rid: str, key: str, value: Any, where: str) -> None:
    if rid not in th:
        raise TcpDoctorError(Msg("{where}: unknown rule {rid!r}", where=where, rid=rid))
    if key not in th[rid]:
        known = ", ".join(th[rid]) or "none"
        raise TcpDoctorError(Msg("{where}: rule {rid} has no threshold {key!r} (known: {known})",
                                 where=where, rid=rid, key=key, known=known))
    try:
        th[rid][key] = float(value)
    except (TypeError, ValueError):
        raise TcpDoctorError(Msg("{where}: {rid}.{key} must be a number, got {value!r}",
                                 where=where, rid=rid, key=key, value=value)) from None
