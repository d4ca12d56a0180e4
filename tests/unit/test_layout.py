"""The layer rule, checked on the code itself (docs/architecture.md states the same table).

Every package of src/tcpdoctor has a row: the packages it may import besides itself. A
package imports only packages on lower floors; nothing is excepted. Every import counts,
lazy ones and those under TYPE_CHECKING included.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[2] / "src" / "tcpdoctor"
# The floors, lowest first; the root modules (__init__, errors, status) are the base.
ROOT = ("tcpdoctor", "errors", "status")
BASE = (*ROOT, "i18n", "util")
ALLOWED: dict[str, tuple[str, ...]] = {
    "tcpdoctor": (),
    "status": (),
    "i18n": (),
    "errors": ("i18n",),
    "util": ("tcpdoctor", "errors", "i18n"),
    "model": BASE,
    "sources": (*BASE, "model"),
    "analysis": (*BASE, "model"),
    "diagnose": (*BASE, "model", "sources", "analysis"),
    "history": (*BASE, "model", "sources", "analysis", "diagnose"),
    "relief": (*BASE, "model", "sources", "analysis", "diagnose"),
    "render": (*BASE, "model", "analysis"),
    "lab": (*BASE, "model", "sources", "render"),
    "exporter": (*BASE, "model", "sources", "analysis", "diagnose", "render"),
    "cli": (*BASE, "model", "sources", "analysis", "diagnose", "history", "render", "lab",
            "exporter", "relief"),
    "__main__": ("cli",),
}
# Above sources, only these modules of it are used (its faces); the readers stay inside.
SOURCE_FACES = ("live", "offline", "tracefs", "target", "netns", "namespaces", "every_netns",
                "kstate", "sysctl_files", "scope", "ending", "conntrack")
# Only the output layer writes to stdout; below the interfaces nothing writes at all.
STDOUT_OWNER = "render"
SILENT = ("model", "sources", "analysis", "diagnose", "relief", "util", "i18n", "errors",
          "status")
MAX_LINES = 400


def modules() -> list[Path]:
    return sorted(PKG.rglob("*.py"))


def package(path: Path) -> str:
    rel = path.relative_to(PKG)
    if len(rel.parts) > 1:
        return rel.parts[0]
    return "tcpdoctor" if rel.stem == "__init__" else rel.stem


def target(module: str) -> str:
    """tcpdoctor.X.Y -> X (the package imported); tcpdoctor itself -> tcpdoctor."""
    parts = module.split(".")
    if len(parts) == 1 or parts[1] == "__version__":
        return "tcpdoctor"
    return parts[1]


def imports(path: Path) -> list[tuple[int, str]]:
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out += [(node.lineno, node.module)]
            out += [(node.lineno, f"{node.module}.{a.name}") for a in node.names
                    if node.module == "tcpdoctor"]
        elif isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
    return [(n, m) for n, m in out if m == "tcpdoctor" or m.startswith("tcpdoctor.")]


def violations(path: Path, mine: str | None = None) -> list[str]:
    mine = mine or package(path)
    allowed = (mine, *ALLOWED[mine])
    return [f"{path.name}:{line} imports {mod}" for line, mod in imports(path)
            if target(mod) not in allowed]


def test_every_package_has_a_row() -> None:
    assert {package(p) for p in modules()} == set(ALLOWED)


@pytest.mark.parametrize("name", sorted(ALLOWED))
def test_layer_imports(name: str) -> None:
    bad = [v for p in modules() if package(p) == name for v in violations(p)]
    assert not bad, "\n".join(bad)


def test_no_package_imports_a_floor_above_it() -> None:
    """The table itself has no cycle: what a package may import may not import it."""
    for name, allowed in ALLOWED.items():
        for other in allowed:
            assert name not in ALLOWED[other] or other == name, (name, other)


def test_above_sources_only_their_faces_are_used() -> None:
    bad = []
    for p in modules():
        if package(p) == "sources":
            continue
        for line, mod in imports(p):
            parts = mod.split(".")
            if parts[1:2] == ["sources"] and len(parts) > 2 and parts[2] not in SOURCE_FACES:
                bad.append(f"{p.relative_to(PKG)}:{line} imports {mod}")
    assert not bad, "\n".join(bad)


def writes(path: Path) -> list[str]:
    """print() calls and sys.stdout / sys.stderr uses in a module."""
    name = path.relative_to(PKG) if path.is_relative_to(PKG) else path.name
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "print":
            out.append(f"{name}:{node.lineno} print()")
        if (isinstance(node, ast.Attribute) and node.attr in ("stdout", "stderr")
                and getattr(node.value, "id", None) == "sys"):
            out.append(f"{name}:{node.lineno} sys.{node.attr}")
    return out


def test_lower_layers_never_write() -> None:
    bad = [w for p in modules() if package(p) in SILENT for w in writes(p)]
    assert not bad, "\n".join(bad)


def test_only_the_output_layer_writes_to_stdout() -> None:
    bad = [w for p in modules() if package(p) != STDOUT_OWNER for w in writes(p)
           if "print()" in w or "sys.stdout" in w]
    assert not bad, "\n".join(bad)


def test_modules_stay_small() -> None:
    big = [f"{p.relative_to(PKG)}: {n} lines" for p in modules()
           if (n := len(p.read_text().splitlines())) > MAX_LINES]
    assert not big, "\n".join(big)


def test_the_checker_sees_a_violation(tmp_path: Path) -> None:
    """A lazy upward import inside a function is found and refused for the analysis layer
    (allowed for diagnose, above sources); a print() is found."""
    f = tmp_path / "x.py"
    f.write_text("def f():\n    from tcpdoctor.sources.live import take_snapshot\n"
                 "    print('x')\n")
    assert imports(f) == [(2, "tcpdoctor.sources.live")]
    assert violations(f, "analysis") == ["x.py:2 imports tcpdoctor.sources.live"]
    assert violations(f, "diagnose") == []
    assert writes(f) == ["x.py:3 print()"]
    assert package(PKG / "errors.py") == "errors" and package(PKG / "__init__.py") == "tcpdoctor"


def test_no_path_outside_the_repository() -> None:
    """Docs and messages never point at files a user's clone does not have."""
    root = PKG.parents[1]
    files = [*PKG.rglob("*.py"), root / "README.md", *(root / "docs").rglob("*.md"),
             *(root / "tests").rglob("*.md")]
    bad = [str(f.relative_to(root)) for f in files if "../shared" in f.read_text()]
    assert not bad, bad


def test_command_modules_load_without_numpy() -> None:
    """The build writes the man page from the commands' help (setup.py) before numpy is
    installed, and start-up pays only for what a command uses: no command module imports
    numpy when it loads."""
    import subprocess
    import sys

    from tcpdoctor.cli import COMMANDS

    code = ("import sys, importlib\n"
            f"for m in {sorted(set(COMMANDS.values()))!r}:\n"
            "    importlib.import_module('tcpdoctor.cli.' + m)\n"
            "print('numpy' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "False"
