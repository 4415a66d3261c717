"""Layers point one way (docs/ARCHITECTURE.md): checked on every import statement, lazy or not.

base      errors, instruments, schemas, lake, storage, procstat, verdict
book      the replay (state machine, engine, streaming reader/writer, checkpoints)
sources   readers of one format each → Capture / ingest datasets; the day and its start book
features  book_snapshots → features
fidelity  judges lake frames: never parses input, never imports a source
export    writes other formats from a replay (Tardis files)
drills    faults injected into sources, judged by fidelity (the mutation test)
defs, cli the wiring: what runs when, and the command line; nothing imports them
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "obpipeline"
BASE = {"errors", "instruments", "schemas", "lake", "storage", "procstat", "verdict"}

# What each layer may import (besides itself); a name is a top-level module or package of
# obpipeline, or a dotted module for a narrower grant.
ALLOWED: dict[str, set[str]] = {
    # schemas takes DEFAULT_DEPTH from the book package's constants (book/__init__ is import-light)
    "base": {"book"},
    "book": set(),
    # the state a day starts from, not the replay: a reader never rebuilds a book. venue_day is
    # a type too: the checksum venues' reader fills it (raw_book_events + each message's CRC)
    # for book/checksum.py to validate, so the book never imports the reader
    "sources": {"book.stream", "book.checkpoint", "book.venue_day"},
    "features": set(),
    "fidelity": {"book", "features"},
    "export": {"book", "sources"},
    "drills": {"book", "sources", "fidelity"},
    "defs": {"*"},
    "cli": {"*"},
    "definitions": {"*"},
}


def layer_of(module: str) -> str:
    """``obpipeline.sources.day`` → ``sources``; base modules → ``base``."""
    parts = module.split(".")
    top = parts[1] if len(parts) > 1 else ""
    return "base" if top in BASE else top


def imports_of(source: str, module: str, is_package: bool = False) -> set[str]:
    """Every obpipeline module named by an import in ``source`` (function bodies included)."""
    found: set[str] = set()
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "obpipeline"}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            if base.split(".")[0] != "obpipeline":
                continue
            for alias in node.names:
                candidate = f"{base}.{alias.name}"
                found.add(candidate if _is_module(candidate) else base)
    return found


def _is_module(dotted: str) -> bool:
    path = PACKAGE.parent / Path(*dotted.split("."))
    return path.with_suffix(".py").exists() or (path / "__init__.py").exists()


def violations(module: str, imported: set[str]) -> list[str]:
    """Imports of ``module`` that its layer may not make."""
    own = layer_of(module)
    grants = ALLOWED[own]
    bad = []
    for target in sorted(imported):
        other = layer_of(target)
        if other in (own, "base") or "*" in grants:
            continue
        rest = target.split(".", 1)[1]
        if other in grants or any(rest == g or rest.startswith(g + ".") for g in grants):
            continue
        bad.append(f"{module} imports {target} ({own} → {other})")
    return bad


def _modules() -> list[tuple[str, Path]]:
    out = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE.parent).with_suffix("")
        name = ".".join(rel.parts)
        out.append((name.removesuffix(".__init__"), path))
    return out


def test_every_module_has_a_layer():
    unknown = {layer_of(m) for m, _ in _modules() if m != "obpipeline"} - set(ALLOWED)
    assert not unknown, f"modules outside every layer: {unknown}; add them to ALLOWED"


def test_layers_point_one_way():
    bad = []
    for module, path in _modules():
        if module == "obpipeline":
            continue
        found = imports_of(path.read_text(), module, path.name == "__init__.py")
        bad += violations(module, found)
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize(
    ("module", "source", "expect"),
    [
        ("obpipeline.book.engine", "from obpipeline.fidelity import exact", "book → fidelity"),
        ("obpipeline.sources.tardis", "from obpipeline import book", "sources → book"),
        (
            "obpipeline.sources.x",
            "def f():\n    from obpipeline.book.engine import replay\n",
            "sources → book",
        ),
        ("obpipeline.fidelity.x", "import obpipeline.sources.binance", "fidelity → sources"),
        ("obpipeline.features", "from obpipeline.defs import assets", "features → defs"),
        ("obpipeline.export.tardis", "from ..fidelity import gates", "export → fidelity"),
    ],
)
def test_the_check_catches_each_kind_of_violation(module, source, expect):
    found = imports_of(source, module)
    assert any(expect in v for v in violations(module, found)), (found, expect)


def test_granted_imports_pass():
    source = "from obpipeline.book.stream import Book\nfrom obpipeline import schemas, lake\n"
    assert violations("obpipeline.sources.day", imports_of(source, "obpipeline.sources.day")) == []
