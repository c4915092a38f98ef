"""Depth scaling (theory.md §10; docs/theory.md "Depth"): language, theory, built-ins, CLI.

The first test encodes theory.md §10's table on its own (not from paramspec's code) and
checks that `completep` (and `depth-mup`, and completep at another alpha) reproduce every
cell as exact rationals.
"""

import dataclasses
import json
from fractions import Fraction

import jax
import jax.numpy as jnp
import pytest
from typer.testing import CliRunner

import paramspec as ps
from paramspec._cli import app
from paramspec.models import Block, mlp, transformer

F = Fraction
WIDTH_RULE = "muP's width rule"

# theory.md §10: the AdamW rules of CompleteP's reference implementation (EleutherAI
# nanoGPT-mup, `completep` branch), on top of muP in width. A factor m_N^(-x) * m^(-y);
# each cell is (x, y) with y = (constant, coefficient of alpha):
#   lr  m_N^(-1) * m^(alpha - 1)  ->  (1, (1, -1))      eps  m_N^(-1) * m^(-alpha) -> (1, (0, 1))
# `ref_a` is the width exponent of each group's forward multiplier in that implementation
# (embedding and hidden unscaled; logits divided by m_N: a = 1), which the table's cells
# are written for. paramspec's `mup` is Everett's Table-1 form (embedding a = -1/2, readout
# a = 1/2); the two are the same training by theory.md §3's Adam symmetry, under which a+c
# and e-a are invariant: those are compared, and equal the literal cell where a = ref_a.
TABLE = {
    # block:      (ref_a, lr cell,             eps cell,      init changed by depth)
    "embedding":  (F(0), (WIDTH_RULE, (0, 0)), (F(1), (0, 0)), False),
    "final_norm": (F(0), (WIDTH_RULE, (0, 0)), (F(1), (0, 0)), False),
    "readout":    (F(1), (WIDTH_RULE, (0, 0)), (F(1), (0, 0)), False),
    "hidden":     (F(0), (F(1), (1, -1)),      (F(1), (0, 1)), False),
    "vectors":    (F(0), (F(0), (1, -1)),      (F(1), (0, 1)), False),
}


def _mup_block(name):
    return "vectors" if name == "final_norm" else name


@pytest.mark.parametrize(("spec", "alpha", "given"), [
    ("completep", F(1), None), ("depth-mup", F(1, 2), None), ("completep", F(3, 4), "3/4")])
def test_completep_reproduces_the_depth_table_exactly(spec, alpha, given):
    c = ps.compile(spec, width=1024, base_width=64, depth=32, base_depth=4, optimizer="adam",
                   depth_alpha=given)
    mup = ps.compile("mup", width=1024, base_width=64, optimizer="adam")
    assert c.depth_alpha == alpha
    assert c.depth_theory.branch == alpha  # x + m^(-alpha) F(x)
    assert c.branch_multiplier() == pytest.approx(8.0 ** float(-alpha))
    n, m = 16.0, 8.0
    for name, (ref_a, (lr_w, lr_d), (eps_w, eps_d), init_depth) in TABLE.items():
        t, d = c.theory.layers[name], c.depth_theory.layers[name]
        w = mup.theory.layers[_mup_block(name)]
        # depth factors: exactly the table's, affine in alpha
        assert d.c == lr_d[0] + lr_d[1] * alpha, name
        assert d.e == eps_d[0] + eps_d[1] * alpha, name
        assert d.a == 0 and (d.b != 0) == init_depth, name  # multipliers/inits: no depth
        # width: muP's, and the table's cells up to the Adam symmetry
        assert (t.a, t.b) == (w.a, w.b), name
        if lr_w is WIDTH_RULE:
            assert t.c == w.c, name
        else:
            assert t.a + t.c == ref_a + lr_w, name
            if t.a == ref_a:
                assert t.c == lr_w, name
        assert t.e - t.a == eps_w - ref_a, name
        if t.a == ref_a:
            assert t.e == eps_w, name
        # the numbers fold both in
        lr = c.value(name, "lr")
        assert lr == pytest.approx(n ** float(-t.c) * m ** float(-(lr_d[0] + lr_d[1] * alpha)))
        json_d = c.table()["layers"][name]["depth_exponents"]
        assert json_d["c"] == str(d.c) and json_d["e"] == str(d.e)


BASE = {"final_norm": "vectors", "residual_proj": "hidden"}


@pytest.mark.parametrize("spec", ["completep", "depth-mup", "sp-depth"])
@pytest.mark.parametrize("optimizer", ["adam", "sgd", "adam_atan2", "adafactor"])
def test_new_builtins_are_sp_at_the_base_width_and_depth(spec, optimizer):
    c = ps.compile(spec, width=96, base_width=96, depth=6, base_depth=6, optimizer=optimizer)
    sp = ps.compile("sp", width=96, base_width=96, optimizer=optimizer)
    assert c.branch_multiplier() == 1.0
    for block in c.blocks:
        for q in ("multiplier", "init", "lr", "eps", "wd"):
            assert c.value(block.name, q) == pytest.approx(
                sp.value(BASE.get(block.name, block.name), q)), (block.name, q)


def test_depth_exponents_follow_the_adam_and_sgd_symmetries():
    """Shifting a repeated block's multiplier by m^(-theta) must shift c by -theta (Adam) or
    -2 theta (SGD) and e by +theta, as in width (theory.md §3): the derivation's check."""
    shifted = ps.parse('spec s\nextends completep\nhidden {\n    multiplier m^(-1/2)\n}\n')
    for opt, dc in (("adam", F(-1, 2)), ("sgd", F(-1)), ("adam_atan2", F(-1, 2))):
        base = ps.compile("completep", width=64, depth=8, optimizer=opt).depth_theory
        moved = ps.compile(shifted, width=64, depth=8, optimizer=opt).depth_theory
        assert moved.layers["hidden"].a == F(1, 2)
        assert moved.layers["hidden"].c - base.layers["hidden"].c == dc, opt
        if opt == "adam":
            assert moved.layers["hidden"].e - base.layers["hidden"].e == F(1, 2)


def test_depth_mup_sgd_keeps_the_learning_rate_constant_in_depth():
    # Tensor Programs VI (arXiv 2310.02244): with 1/sqrt(L) branches, SGD's rate is
    # depth-independent and Adam's goes like L^(-1/2).
    sgd = ps.compile("depth-mup", width=64, depth=16, optimizer="sgd").depth_theory
    adam = ps.compile("depth-mup", width=64, depth=16, optimizer="adam").depth_theory
    assert sgd.layers["hidden"].c == 0 and adam.layers["hidden"].c == F(1, 2)


def test_sp_depth_scales_only_the_residual_projections_init():
    c = ps.compile("sp-depth", width=64, base_width=64, depth=12, base_depth=3)
    assert c.depth_theory.layers["residual_proj"].b == F(1, 2)
    assert c.value("residual_proj", "init") == pytest.approx(64 ** -0.5 * 4 ** -0.5)
    assert c.value("hidden", "init") == pytest.approx(64 ** -0.5)
    assert c.branch_multiplier() == 1.0
    assert all(d.c == 0 for d in c.depth_theory.layers.values())


# ---------------------------------------------------------------- language


DEPTH_SPEC = '''spec d "depth"
extends mup
base_depth 4
depth_alpha 1/2

hidden {
    depth       repeated
    init        fan_in^(-1/2) * m^(-1/2)
    lr          2 * n^(-1) * m^(-1 + alpha)
}

residual "branches" {
    branch      m^(-alpha)
}
'''


def test_depth_syntax_round_trips_and_compiles():
    spec = ps.parse(DEPTH_SPEC)
    assert ps.render(spec) == DEPTH_SPEC
    c = ps.compile(spec, width=128, base_width=64, depth=16)
    assert (c.base_depth, c.m, c.depth_alpha) == (4, 4.0, F(1, 2))
    assert c.value("hidden", "lr") == pytest.approx(2 * 2 ** -1 * 4 ** -0.5)
    assert c.value("hidden", "init") == pytest.approx(128 ** -0.5 * 4 ** -0.5)
    assert c.branch_multiplier() == pytest.approx(0.5)


@pytest.mark.parametrize(("text", "message", "column"), [
    ("depth_alpha 2", "depth_alpha 2 is outside [1/2, 1]", 13),
    ("depth_alpha 0", "outside [1/2, 1]", 13),
    ("base_depth 0", "base_depth must be a positive whole number", 12),
    ("attention {\n logits head_dim^(-1/2) * m\n}", "the depth multiplier `m` cannot appear", 27),
    ("residual {\n branch n^(-1/2)\n}", "`n` cannot appear in the residual branch", 9),
    ("residual {\n branch auto\n}", "`auto` is not allowed for `branch`", 9),
    ("hidden {\n lr n^(-alpha)\n}", "`alpha` cannot appear in an exponent of `n`", 8),
    ("hidden {\n lr m^(-align)\n}", "`align` cannot appear in an exponent of `m`", 8),
    ("hidden {\n lr alpha\n}", "`alpha` is the depth exponent", 5),
    ("hidden {\n depth deep\n}", "unknown depth place `deep`", 8),
    ("hidden {\n branch m^(-1)\n}", "`branch` belongs in the `residual` block", 2),
    ("branch m^(-1)", "`branch` is not a setting", 1),
    ("residual {\n lr auto\n}", "unknown quantity `lr` in block `residual`", 2),
])
def test_depth_errors_are_located_with_a_fix(text, message, column):
    with pytest.raises(ps.SpecError) as info:
        ps.parse(f"spec x\n{text}\n")
    err = info.value
    assert message in err.message
    assert err.hint and err.span is not None and err.span.column == column, str(err)


# ---------------------------------------------------------------- API, CLI, backends


def test_compile_depth_arguments_are_checked():
    with pytest.raises(ps.SpecError, match="depth must be a positive integer"):
        ps.compile("completep", width=64, depth=0)
    with pytest.raises(ps.SpecError, match="depth_alpha 0 is outside"):
        ps.compile("completep", width=64, depth=4, depth_alpha=0)


def test_cli_compile_depth_json():
    runner = CliRunner()
    out = runner.invoke(app, ["compile", "completep", "--width", "128", "--base-width", "32",
                              "--depth", "8", "--base-depth", "2", "--format", "json"])
    assert out.exit_code == 0, out.output
    data = json.loads(out.output)
    assert (data["depth"], data["base_depth"], data["depth_alpha"]) == (8, 2, "1")
    assert data["residual"] == {"branch": "1", "value": 0.25}
    hidden = data["layers"]["hidden"]
    assert hidden["depth_exponents"] == {"a": "0", "b": "0", "c": "0", "e": "1", "wd": "0"}
    assert hidden["values"]["eps_scale"] == pytest.approx(4 ** -1 * 4 ** -1)
    plain = json.loads(runner.invoke(app, ["compile", "mup", "--format", "json"]).output)
    assert "depth" not in plain and "depth_exponents" not in plain["layers"]["hidden"]
    bad = runner.invoke(app, ["compile", "completep", "--depth", "0"])
    assert bad.exit_code == 2


def _mlp(width, key):
    return mlp(width, key, in_size=4, out_size=2, depth=2, use_bias=True)


def _gpt(depth):
    return lambda width, key: transformer(width, key, depth=depth, vocab=16, seq_len=4,
                                          head_dim=8)


def test_init_applies_the_branch_multiplier_and_the_optimizer_gets_the_depth_factors():
    key = jax.random.key(0)
    c = ps.compile("depth-mup", width=16, base_width=8, depth=4, base_depth=1)  # n = 2, m = 4
    model = c.init(_gpt(4), key)
    blocks = [b for b in jax.tree_util.tree_leaves(model, is_leaf=lambda x: isinstance(x, Block))
              if isinstance(b, Block)]
    assert len(blocks) == 4 and {b.branch_multiplier for b in blocks} == {0.5}  # m^(-1/2)
    rows = {r["path"]: r for r in c.describe(model)}
    up, norm, readout = (rows["blocks[0].up.weight"], rows["blocks[0].mlp_norm.weight"],
                         rows["readout.weight"])
    assert up["lr_scale"] == pytest.approx(2.0 ** -1 * 4.0 ** -0.5)   # n^-1 m^(alpha-1)
    assert up["eps_scale"] == pytest.approx(2.0 ** -1 * 4.0 ** -0.5)  # n^-1 m^-alpha
    assert norm["lr_scale"] == pytest.approx(4.0 ** -0.5)
    assert readout["lr_scale"] == pytest.approx(2.0 ** -0.5)           # no depth factor
    # the branch outputs are scaled by exactly the multiplier
    tokens = jnp.arange(4) % 16
    plain = jax.tree_util.tree_map(
        lambda x: dataclasses.replace(x, branch_multiplier=1.0) if isinstance(x, Block) else x,
        model, is_leaf=lambda x: isinstance(x, Block))
    scaled, unscaled = model.features(tokens), plain.features(tokens)
    assert jnp.allclose(scaled["blocks[0].attn"], 0.5 * unscaled["blocks[0].attn"])
    assert not jnp.allclose(scaled["logits"], unscaled["logits"])
    c.optimizer(model, learning_rate=1e-3)


def test_backends_refuse_depth_factors_they_cannot_apply():
    key = jax.random.key(0)
    deeper = ps.compile("completep", width=16, base_width=16, depth=8, base_depth=2)
    with pytest.raises(ps.SpecError, match="no residual-branch module"):
        deeper.init(_mlp, key)  # an MLP has no residual branches to scale
    with pytest.raises(ps.SpecError, match="not yet applied to models by this route"):
        deeper.init(_gpt(1), key, form="absorbed")
    with pytest.raises(ps.SpecError, match="init_from='model'"):
        deeper.init(_gpt(1), key, init_from="model")
    at_base = ps.compile("completep", width=16, base_width=16, depth=2, base_depth=2)
    at_base.optimizer(at_base.init(_mlp, key), learning_rate=1e-3)  # every factor 1: as sp
    # a depth-blind spec has nothing to apply: it builds at any depth
    ps.compile("mup", width=16, base_width=16, depth=8, base_depth=2).init(_mlp, key)
