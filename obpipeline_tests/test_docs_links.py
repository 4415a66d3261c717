"""The repository's documents stand alone: every relative link in README.md and docs/*.md
resolves (file and heading), and every document the code or the docs name exists here."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = sorted([ROOT / "README.md", *(ROOT / "docs").glob("*.md")])
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")
# a document named in prose or a docstring: DESIGN.md, docs/FIDELITY.md, ../x/README.md
NAMED = re.compile(r"(?<![\w.])((?:\.\./|[\w-]+/)*[A-Z][\w-]*\.md)\b")
# places outside the repository that documents once pointed to
OUTSIDE = re.compile(r"shared/docs|shared/research|shared/seeds|(?<![\w/])research/[\w-]+\.md")
SOURCES = [
    *DOCS,
    *sorted((ROOT / "obpipeline").rglob("*.py")),
    *sorted((ROOT / "scripts").rglob("*.py")),
    *sorted((ROOT / "bench").rglob("*.py")),
    *sorted((ROOT / "sql").rglob("*.sql")),
]


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces → hyphens."""
    text = re.sub(r"[`*_]", "", heading.strip().lower())
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    return {slug(m) for m in re.findall(r"^#+\s+(.*)$", path.read_text(), flags=re.M)}


def broken_links(path: Path) -> list[str]:
    out = []
    for target in LINK.findall(path.read_text()):
        if re.match(r"[a-z]+:", target):  # http:, https:, mailto:
            continue
        file, _, anchor = target.partition("#")
        dest = (path.parent / file).resolve() if file else path
        if not dest.exists():
            out.append(f"{path.name}: {target} (no such file)")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            out.append(f"{path.name}: {target} (no such heading)")
    return out


def unresolved_names(path: Path) -> list[str]:
    text = path.read_text()
    out = [f"{path.relative_to(ROOT)}: {m.group(0)}" for m in OUTSIDE.finditer(text)]
    for name in NAMED.findall(text):
        places = (path.parent / name, ROOT / name, ROOT / "docs" / name)
        if not any(p.exists() for p in places):
            out.append(f"{path.relative_to(ROOT)}: {name}")
    return out


@pytest.mark.parametrize("path", DOCS, ids=lambda p: p.name)
def test_every_relative_link_resolves(path: Path) -> None:
    assert broken_links(path) == []


def test_every_named_document_is_in_the_repository() -> None:
    bad = [b for path in SOURCES for b in unresolved_names(path)]
    assert bad == [], "\n".join(bad)


def test_architecture_is_linked_from_the_readme() -> None:
    assert "(docs/ARCHITECTURE.md)" in (ROOT / "README.md").read_text()


def test_the_checks_catch_what_they_are_for(tmp_path: Path) -> None:
    (tmp_path / "A.md").write_text("# One heading\n")
    doc = tmp_path / "B.md"
    doc.write_text(
        "[ok](A.md) [ok](A.md#one-heading) [web](https://x.org/y.md) [gone](C.md) "
        "[bad anchor](A.md#two)\nSee DESIGN9.md and ../shared/docs/X.md.\n"
    )
    assert broken_links(doc) == ["B.md: C.md (no such file)", "B.md: A.md#two (no such heading)"]
    assert slug("Gate A0 — integrity (`integrity.py`), blocking") == (
        "gate-a0--integrity-integritypy-blocking"
    )
    global ROOT
    saved, ROOT = ROOT, tmp_path
    try:
        found = unresolved_names(doc)
    finally:
        ROOT = saved
    assert any("shared/docs" in f for f in found) and any("DESIGN9.md" in f for f in found)
