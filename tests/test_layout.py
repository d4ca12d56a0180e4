"""The layer rule, checked on the code itself: sources -> model -> analysis -> interfaces.

model imports nothing of the other layers; analysis imports no sources and nothing of the
interfaces; sources, model and analysis never print; interfaces reach the sources only
through their faces (live, offline, netns). Every import counts, lazy ones included.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "src" / "tcpdoctor"
BASE = {"tcpdoctor", "tcpdoctor.__version__", "tcpdoctor.errors", "tcpdoctor.status",
        "tcpdoctor.i18n"}
INTERFACES = ("render", "cli", "exporter", "history", "lab")
# What each layer may import from tcpdoctor (prefixes), besides BASE.
ALLOWED = {
    "model": ("tcpdoctor.model",),
    "sources": ("tcpdoctor.model", "tcpdoctor.sources"),
    "analysis": ("tcpdoctor.model", "tcpdoctor.analysis"),
    "render": ("tcpdoctor.model", "tcpdoctor.analysis", "tcpdoctor.render",
               "tcpdoctor.history.sampler", "tcpdoctor.history.store"),
}
SOURCE_FACES = ("tcpdoctor.sources.live", "tcpdoctor.sources.offline",
                "tcpdoctor.sources.tracefs",
                "tcpdoctor.sources.target",
                "tcpdoctor.sources.netns", "tcpdoctor.sources.namespaces",
                "tcpdoctor.sources.sweep")
SILENT = ("model", "sources", "analysis")
MAX_LINES = 400


def modules() -> list[Path]:
    return sorted(PKG.rglob("*.py"))


def layer(path: Path) -> str:
    rel = path.relative_to(PKG)
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


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


def _allowed(module: str, prefixes: tuple[str, ...]) -> bool:
    return module in BASE or any(module == p or module.startswith(p + ".")
                                 for p in (*prefixes, "tcpdoctor.i18n"))


@pytest.mark.parametrize("name", sorted(ALLOWED))
def test_layer_imports(name: str) -> None:
    bad = [f"{p.relative_to(PKG)}:{line} imports {mod}" for p in modules() if layer(p) == name
           for line, mod in imports(p) if not _allowed(mod, ALLOWED[name])]
    assert not bad, "\n".join(bad)


def test_interfaces_use_the_source_faces() -> None:
    bad = [f"{p.relative_to(PKG)}:{line} imports {mod}" for p in modules()
           if layer(p) in INTERFACES for line, mod in imports(p)
           if mod.startswith("tcpdoctor.sources") and not _allowed(mod, SOURCE_FACES)
           and mod != "tcpdoctor.sources"]
    assert not bad, "\n".join(bad)


def test_lower_layers_never_print() -> None:
    bad = []
    for p in modules():
        if layer(p) not in SILENT:
            continue
        for node in ast.walk(ast.parse(p.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "print":
                bad.append(f"{p.relative_to(PKG)}:{node.lineno} print()")
            if (isinstance(node, ast.Attribute) and node.attr in ("stdout", "stderr")
                    and getattr(node.value, "id", None) == "sys"):
                bad.append(f"{p.relative_to(PKG)}:{node.lineno} sys.{node.attr}")
    assert not bad, "\n".join(bad)


def test_modules_stay_small() -> None:
    big = [f"{p.relative_to(PKG)}: {n} lines" for p in modules()
           if (n := len(p.read_text().splitlines())) > MAX_LINES]
    assert not big, "\n".join(big)


def test_the_checker_sees_a_violation(tmp_path: Path) -> None:
    """The walk finds lazy imports inside functions too."""
    f = tmp_path / "x.py"
    f.write_text("def f():\n    from tcpdoctor.sources.live import take_snapshot\n")
    assert imports(f) == [(2, "tcpdoctor.sources.live")]
    assert not _allowed("tcpdoctor.sources.live", ALLOWED["analysis"])


def test_no_path_outside_the_repository() -> None:
    """Docs and messages never point at files a user's clone does not have."""
    root = PKG.parents[1]
    files = [*PKG.rglob("*.py"), root / "README.md", *(root / "docs").rglob("*.md"),
             *(root / "tests").rglob("*.md")]
    bad = [str(f.relative_to(root)) for f in files if "../shared" in f.read_text()]
    assert not bad, bad
