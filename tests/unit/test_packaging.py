"""Every dependency range has two tested ends: the floors CI pins (.ci/floors.txt) are
exactly the lower bounds pyproject.toml declares, and every range has an upper bound."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SPEC = re.compile(r"^([A-Za-z0-9_.-]+)>=([\d.]+),<([\d.]+)$")


def norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def full(version: str) -> tuple[int, ...]:
    parts = tuple(int(p) for p in version.split("."))
    return parts + (0,) * (3 - len(parts))


def declared() -> dict[str, str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    specs = list(project["dependencies"])
    for extra, deps in project["optional-dependencies"].items():
        if extra != "lint":  # the linters judge the code; one release line, see pyproject
            specs += deps
    out = {}
    for spec in specs:
        m = SPEC.match(spec)
        assert m, f"{spec}: a range needs a floor and an upper bound (NAME>=X,<Y)"
        out[norm(m.group(1))] = m.group(2)
    return out


def pinned() -> dict[str, str]:
    out = {}
    for line in (ROOT / ".ci" / "floors.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, version = line.partition("==")
            out[norm(name)] = version.strip()
    return out


def test_the_floors_ci_pins_are_the_declared_floors() -> None:
    want, got = declared(), pinned()
    assert set(want) == set(got)
    assert {k: full(v) for k, v in want.items()} == {k: full(v) for k, v in got.items()}
