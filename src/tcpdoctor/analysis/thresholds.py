"""Rule thresholds: the registered defaults, then a config's [thresholds.RULE_ID] tables,
then ID.key=value overrides. Pure: the caller reads the config file."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tcpdoctor.analysis import rules as _rules  # noqa: F401  (registers the rules)
from tcpdoctor.analysis.registry import REGISTRY
from tcpdoctor.errors import TcpDoctorError

Thresholds = dict[str, dict[str, float]]


def defaults() -> Thresholds:
    return {rid: dict(r.defaults) for rid, r in REGISTRY.items()}


def resolve(config: Mapping[str, Any] | None = None, overrides: tuple[str, ...] = (),
            config_name: str = "config") -> Thresholds:
    """Defaults, then config["thresholds"] (a parsed TOML document), then ID.key=value."""
    th = defaults()
    tables = (config or {}).get("thresholds", {})
    if not isinstance(tables, Mapping):
        raise TcpDoctorError(f"{config_name}: [thresholds] must be a table of rule tables")
    for rid, values in tables.items():
        if not isinstance(values, Mapping):
            raise TcpDoctorError(f"{config_name}: [thresholds.{rid}] must be a table")
        for key, value in values.items():
            _set(th, rid, key, value, config_name)
    for item in overrides:
        name, sep, value = item.partition("=")
        rid, dot, key = name.partition(".")
        if not sep or not dot:
            raise TcpDoctorError(f"--threshold: expected RULE_ID.key=value, got {item!r}")
        _set(th, rid, key, value, "--threshold")
    return th


def _set(th: Thresholds, rid: str, key: str, value: Any, where: str) -> None:
    if rid not in th:
        raise TcpDoctorError(f"{where}: unknown rule {rid!r}")
    if key not in th[rid]:
        known = ", ".join(th[rid]) or "none"
        raise TcpDoctorError(f"{where}: rule {rid} has no threshold {key!r} (known: {known})")
    try:
        th[rid][key] = float(value)
    except (TypeError, ValueError):
        raise TcpDoctorError(f"{where}: {rid}.{key} must be a number, got {value!r}") from None
