"""Parsing: valid specs become the right IR; every bad input is a located SpecError.

Error messages are pinned by golden files: tests/golden/errors/NAME.pspec holds the
input and NAME.txt the exact message. Regenerate after a deliberate wording change with
`PARAMSPEC_UPDATE_GOLDEN=1 pytest tests/test_parse.py`, and review the diff.
"""

import os
from fractions import Fraction as F
from pathlib import Path

import pytest

import paramspec as ps
from paramspec._ir import Exponent

GOLDEN = Path(__file__).parent / "golden" / "errors"
CASES = sorted(p.stem for p in GOLDEN.glob("*.pspec"))


def _message(name: str) -> str:
    data = (GOLDEN / f"{name}.pspec").read_bytes()
    with pytest.raises(ps.SpecError) as info:
        spec = ps.parse(data, file=f"{name}.pspec")
        ps.compile(spec, width=64)
    return str(info.value) + "\n"


@pytest.mark.parametrize("name", CASES)
def test_error_messages_match_golden(name):
    message = _message(name)
    golden = GOLDEN / f"{name}.txt"
    if os.environ.get("PARAMSPEC_UPDATE_GOLDEN"):
        golden.write_text(message, encoding="utf-8")
    assert golden.exists(), f"no golden file for {name}; run with PARAMSPEC_UPDATE_GOLDEN=1"
    assert message == golden.read_text(encoding="utf-8")


@pytest.mark.parametrize("name", CASES)
def test_errors_say_where_and_how_to_fix(name):
    message = _message(name)
    assert message.startswith("error: ")
    assert "= help: " in message, "every error says how to fix it"
    if name not in ("empty", "comments_only", "non_utf8", "binary", "extends_missing"):
        assert f"--> {name}.pspec:" in message, "errors in a file carry file:line:col"
        assert "^" in message, "and a caret under the source"


def test_every_parser_error_has_a_hint_in_code():
    """Guard: the parser never raises a SpecError without saying how to fix it."""
    import ast

    source = (Path(ps.__file__).parent / "_parse.py").read_text()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "error":
            has_hint = len(node.args) >= 3 or any(k.arg == "hint" for k in node.keywords)
            assert has_hint, f"self.error(...) without a hint at _parse.py:{node.lineno}"


MUP_TEXT = (Path(__file__).parents[1] / "specs" / "mup.pspec").read_text()


def test_parse_builtin_mup_ir():
    spec = ps.parse(MUP_TEXT)
    assert spec.name == "mup" and spec.optimizer == "adam" and spec.alignment == 1
    emb = spec.block("embedding")
    assert emb.role == "input"
    assert emb.multiplier.exponent_of("n") == Exponent(const=F(1, 2))
    assert emb.init.exponent_of("n") == Exponent(const=F(-1, 2))
    assert emb.lr.kind == "auto" and emb.eps.kind == "auto" and emb.wd is None
    assert spec.block("hidden").init.exponent_of("fan_in") == Exponent(const=F(-1, 2))


def test_affine_exponents_constants_and_selectors():
    spec = ps.parse(
        'spec x "a doc"\n'
        "alignment 3/4\nbase_width 256\n"
        "hidden {\n"
        "    lr 0.5 * n^(1 - align) * n^(-1/2*align)   # merged into one power\n"
        "    eps 1e-8 * fan_in^(align/2)\n"
        "}\n"
        'norms """\n    Norm gains.\n""" {\n'
        '    role vector\n    match module=LayerNorm, field=weight\n    match path="blocks.*.g"\n'
        "    init keep\n    allow unstable_init\n}\n"
    )
    hidden = spec.block("hidden")
    assert hidden.lr.constant == F(1, 2)
    assert hidden.lr.exponent_of("n") == Exponent(const=F(1), align=F(-3, 2))
    assert hidden.eps.constant == F(1, 10**8)
    assert hidden.eps.exponent_of("fan_in") == Exponent(align=F(1, 2))
    norms = spec.block("norms")
    assert norms.doc == "Norm gains." and norms.role == "vector"
    assert [(m.module, m.field, m.path) for m in norms.match] == [
        ("LayerNorm", "weight", None), (None, None, "blocks.*.g")]
    assert norms.init.kind == "keep" and norms.allow == ("unstable_init",)
    assert spec.alignment == F(3, 4) and spec.base_width == 256 and spec.doc == "a doc"


def test_single_line_blocks_and_missing_final_newline():
    spec = ps.parse("spec x\nhidden { init fan_in^(-1/2) }\nreadout { lr auto }")
    assert [b.name for b in spec.blocks] == ["hidden", "readout"]


def test_spans_do_not_change_equality():
    a = ps.parse("spec x\nhidden {\n  lr auto\n}\n")
    b = ps.parse("spec x\n\n\nhidden {      lr     auto }", file="other.pspec")
    assert a == b and hash(a) == hash(b)


def test_parse_rejects_non_text():
    with pytest.raises(ps.SpecError, match="expected spec text"):
        ps.parse(12)  # type: ignore[arg-type]


def test_grammar_builds_in_lark_strict_mode():
    """No two terminals of the grammar can collide (Lark's strict mode, via interegular)."""
    from paramspec._parse import build_parser

    parser = build_parser(strict=True)
    assert parser.options.strict
