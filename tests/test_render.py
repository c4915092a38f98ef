"""Rendering back to canonical text: parse(render(spec)) == spec, and fmt is idempotent."""

from pathlib import Path

import pytest
from hypothesis import given

import paramspec as ps
from paramspec._render import render_number

from .strategies import specs

pytestmark = pytest.mark.property

SPECS = sorted((Path(__file__).parents[1] / "specs").glob("*.pspec"))


@given(specs())
def test_parse_render_round_trip(spec):
    text = ps.render(spec)
    assert ps.parse(text) == spec, text


@pytest.mark.parametrize("path", SPECS, ids=lambda p: p.stem)
def test_builtin_specs_round_trip_and_fmt_is_idempotent(path):
    spec = ps.parse(path.read_text())
    text = ps.render(spec)
    assert ps.parse(text) == spec
    assert ps.render(ps.parse(text)) == text


@pytest.mark.parametrize(("value", "text"), [
    ("1", "1"), ("1/2", "0.5"), ("1/3", "1/3"), ("1e-8", "1e-08"), ("2.5", "2.5"),
    ("1000000", "1000000"),
])
def test_numbers_render_exactly(value, text):
    from fractions import Fraction

    assert render_number(Fraction(value)) == text
    assert Fraction(text) == Fraction(value)
