"""docs/analysis.md and the analysis docstrings run, and the shown outputs are real."""

from __future__ import annotations

import doctest
import importlib
from pathlib import Path

import pytest

from paramspec._analysis import (
    check,
    equivalent,
    explain,
    render_check,
    render_equiv,
    to_text,
)

DOC = Path(__file__).resolve().parents[2] / "docs" / "analysis.md"
MODULES = ("_absorb", "_alignment", "_check", "_equiv", "_explain")


def test_doc_examples_run():
    result = doctest.testfile(str(DOC), module_relative=False, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 5 and result.failed == 0


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name):
    module = importlib.import_module(f"paramspec._analysis.{name}")
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0


def _from(text: str, start: str) -> str:
    return text[text.index(start):]


@pytest.mark.parametrize(
    "make",
    [
        lambda: to_text(render_check(check("sp-global"))),
        lambda: to_text(render_equiv(equivalent("sp", "ntk", optimizer="adam"))),
        lambda: to_text(render_equiv(equivalent("sp", "mup", optimizer="adam"))),
        lambda: explain("mup", "hidden", width=1024),
        lambda: to_text(render_check(check("completep", depth=16, base_depth=4))),
        lambda: _from(to_text(render_check(check("mup", depth=16))), "mup in depth"),
        lambda: _from(explain("completep", "hidden", depth=16, base_depth=4), "7. Depth"),
    ],
    ids=["check sp-global", "equiv sp ntk", "equiv sp mup", "explain mup hidden",
         "check completep depth", "check mup depth", "explain completep depth"],
)
def test_shown_output_is_current(make):
    text = make().rstrip("\n")
    assert text in DOC.read_text(encoding="utf-8"), (
        "docs/analysis.md shows an outdated output; paste the current one:\n" + text
    )
