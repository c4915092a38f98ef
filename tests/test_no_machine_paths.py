"""Docs, the README, benchmark scripts and their committed outputs name no machine path.

A command in the docs is written relative to the repository (`python benchmarks/x.py`),
never as `/work/venv/bin/python ...` or `--json /tmp/out.json`: those paths exist on one
machine only.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
# An absolute path: one of these roots, not inside a longer path or a URL
# (`https://example.org/home/` is fine, `~/x` and `$HOME/x` are fine).
MACHINE_PATH = re.compile(r"(?<![\w.~/$-])/(?:work|tmp|home|root|Users)/")


def _text_files() -> list[Path]:
    files = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
    files += sorted((ROOT / "benchmarks").rglob("*.py"))
    files += sorted(p for p in (ROOT / "benchmarks").rglob("out/*") if p.is_file())
    return files


def _text(path: Path) -> str | None:
    data = path.read_bytes()
    if b"\0" in data:
        return None  # binary (a figure)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def test_the_pattern_finds_machine_paths_and_spares_urls():
    found = [
        "/work/venv/bin/python x.py",
        "--json /tmp/full.json",
        "`/home/me/x`",
        '"/Users/me/x"',
        "(/root/x)",
    ]
    spared = ["https://example.org/home/x", "~/tmp/x", "$HOME/work/x", "docs/tmp/x", "a/work/b"]
    assert all(MACHINE_PATH.search(s) for s in found)
    assert not any(MACHINE_PATH.search(s) for s in spared)


@pytest.mark.parametrize("path", _text_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_machine_path(path):
    text = _text(path)
    if text is None:
        return
    hits = [
        f"{path.relative_to(ROOT)}:{n}: {line.strip()}"
        for n, line in enumerate(text.splitlines(), 1)
        if MACHINE_PATH.search(line)
    ]
    assert not hits, "machine paths (write commands relative to the repository):\n" + "\n".join(
        hits
    )
