"""docs/acceptance.md explains every acceptance id the repository cites, and only those.

The ids come from Segment digests kept outside the repository, so a test that cites one is
only self-explaining while the doc keeps up.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "acceptance.md"
SCANNED = ("tests", "src", "bench", "docs")
SUFFIXES = {".py", ".md", ".sh", ".lua", ".mjs", ".js", ".yaml", ".yml", ".toml"}

# "AC-024", "A-FQL-9"; "AC-090 … 096" cites the ids between too.
ID = re.compile(r"\b(AC-\d{3}|A-[A-Z]+-\d+)\b")
RANGE = re.compile(r"\bAC-(\d{3})\s*(?:…|\.\.\.|–)\s*(?:AC-)?(\d{3})\b")
# Test names: test_ac021_…, test_ac_073_…, test_ac007_to_ac010_….
NAME = re.compile(r"(?<![A-Za-z0-9])ac_?(\d{3})(?:_to_ac_?(\d{3}))?(?![0-9])", re.IGNORECASE)
# An entry: "- **AC-001** — …".
ENTRY = re.compile(r"^- \*\*(AC-\d{3}|A-[A-Z]+-\d+)\*\*", re.MULTILINE)
PATH = re.compile(r"`((?:tests|src|bench|docs|scripts)/[^`\s]+)`")


def cited_ids(text: str) -> set[str]:
    found = set(ID.findall(text))
    spans = [*RANGE.findall(text), *NAME.findall(text)]
    for low, high in spans:
        found.update(f"AC-{n:03d}" for n in range(int(low), int(high or low) + 1))
    return found


def cited_anywhere() -> dict[str, set[str]]:
    where: dict[str, set[str]] = {}
    files = [
        p
        for top in SCANNED
        for p in (ROOT / top).rglob("*")
        if p.suffix in SUFFIXES and p.is_file() and "node_modules" not in p.parts
    ]
    for path in [*files, ROOT / "README.md"]:
        if path in (DOC, Path(__file__).resolve()) or not path.exists():
            continue
        for ident in cited_ids(path.read_text(encoding="utf-8")):
            where.setdefault(ident, set()).add(str(path.relative_to(ROOT)))
    return where


def test_the_patterns_read_every_form_of_citation() -> None:
    text = (
        '"""Checks (AC-090 … 092, A-FQL-9)."""\ndef test_ac021_x(): ...\n'
        "def test_ac_073_y(): ...\ndef test_ac007_to_ac009_z(): ...\n# trace A1, abc1234\n"
    )
    assert cited_ids(text) == {
        "AC-090",
        "AC-091",
        "AC-092",
        "A-FQL-9",
        "AC-021",
        "AC-073",
        "AC-007",
        "AC-008",
        "AC-009",
    }


def test_every_cited_id_is_explained() -> None:
    listed = set(ENTRY.findall(DOC.read_text(encoding="utf-8")))
    missing = {
        ident: sorted(files) for ident, files in cited_anywhere().items() if ident not in listed
    }
    assert not missing, f"cited but not in docs/acceptance.md: {missing}"


def test_every_explained_id_is_still_cited() -> None:
    entries = ENTRY.findall(DOC.read_text(encoding="utf-8"))
    assert len(entries) == len(set(entries)), "an id is listed twice"
    stale = set(entries) - set(cited_anywhere())
    assert not stale, f"listed in docs/acceptance.md but cited nowhere: {sorted(stale)}"


def test_the_files_named_exist() -> None:
    named = set(PATH.findall(DOC.read_text(encoding="utf-8")))
    assert named, "the doc names no test files"
    gone = sorted(p for p in named if not (ROOT / p).exists())
    assert not gone, f"docs/acceptance.md names files that are gone: {gone}"
