"""The attention logit scale: language, theory, and `eqx.nn.MultiheadAttention`."""

import functools
import math
import re
from fractions import Fraction
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import pytest

import paramspec as ps
from paramspec import models
from paramspec._attention import logit_exponent, logit_theory, module_factor, needs_growth
from paramspec._coord import coord_check, linear_loss
from paramspec._equinox._attention import (
    attention_factors,
    attention_growth,
    attention_modules,
    query_factors,
)
from paramspec._render import render
from tests.attention_model import batch as encoder_batch
from tests.attention_model import encoder

F = Fraction
# muP with the standard scale: what every spec did before the `attention` block.
MUP_SQRT_D = "spec mup-sqrt-d\nextends mup\nattention { logits head_dim^(-1/2) }\n"
ZERO_QUERIES = """spec mup-zero-q
extends mup
queries "Zero-initialised queries." {
    role        hidden
    match       path="*query_proj.weight"
    init        0
    lr          auto
    eps         auto
}
"""


# ----------------------------------------------------------------------------- language


def test_attention_block_round_trips_and_is_inherited():
    spec = ps.parse('spec s\nhidden { init fan_in^(-1/2) }\n'
                    'attention "doc" {\n  logits 2 * head_n^(-1/2) * head_dim^(-1/2)\n}\n')
    assert spec.attention.doc == "doc"
    assert [(p.symbol, p.exponent.const) for p in spec.attention.logits.powers] == [
        ("head_dim", F(-1, 2)), ("head_n", F(-1, 2))]
    assert ps.parse(render(spec)) == spec
    assert "attention" not in [b.name for b in spec.blocks]  # it covers no parameter
    # `extends` keeps the parent's scale unless the child sets its own
    assert ps.load("sp-perlayer").attention == ps.load("sp").attention
    assert ps.compile(ps.parse(MUP_SQRT_D), width=64).spec.attention.logits.powers[0] \
        .exponent.const == F(-1, 2)


@pytest.mark.parametrize(("text", "message", "caret"), [
    ("attention { logits n^(-1/2) }", "`n` cannot appear in the attention logit scale",
     (2, 20)),
    ("hidden { init head_dim^(-1/2) }", "`head_dim` is a symbol of the attention block only",
     (2, 15)),
    ("attention { logits head_dim^0.5 }", "exponents are exact rationals", (2, 29)),
    ("attention { init 0 }", "unknown quantity `init` in block `attention`", (2, 13)),
    ("attention { logits 1\nlogits 2 }", "`logits` is set twice", (3, 1)),
    ("attention {}\nattention {}", "block `attention` is defined twice", (3, 1)),
    ("attention head_dim", "`attention` is not a setting", (2, 1)),
    ("hidden { logits 1 }", "`logits` belongs in the `attention` block", (2, 10)),
    ("attention { logits auto }", "`auto` is not allowed for `logits`", (2, 20)),
    ("attention { logits 0 * head_dim }", "the constant of `logits` must be positive", (2, 20)),
    ("attention { logits head_nn }", "did you mean `head_n`", (2, 20)),
])
def test_attention_errors_are_located(text, message, caret):
    with pytest.raises(ps.SpecError, match=message) as info:
        ps.parse("spec s\n" + text + "\n", file="a.pspec")
    span = info.value.span
    assert (span.file, span.line, span.column) == ("a.pspec", *caret)


# ----------------------------------------------------------------------------- theory


def _logit_theory(spec, growth, optimizer="adam", alignment="full", **blocks):
    c = ps.compile(spec, width=64, optimizer=optimizer, alignment=alignment)
    return logit_theory(c.spec, c.theory, growth, **blocks)


@pytest.mark.parametrize(("spec", "growth", "t", "init", "r"), [
    ("mup", "head_size", F(1), F(1, 2), F(0)),      # 1/d: change flat, logits vanish at init
    ("mup", "heads", F(0), F(0), F(0)),             # d fixed: nothing to correct
    (MUP_SQRT_D, "head_size", F(1, 2), F(0), F(-1, 2)),  # change grows like sqrt(n)
    ("sp", "heads", F(0), F(0), F(0)),
    ("mfp", "head_size", F(1), F(1, 2), F(0)),      # muP's symmetric twin: same logits
])
def test_logit_exponents(spec, growth, t, init, r):
    spec = ps.parse(spec) if "\n" in spec else spec
    logits = _logit_theory(spec, growth)
    assert (logits.t, logits.init, logits.r) == (t, init, r)
    assert logits.stable == (r >= 0)


def test_logit_exponents_for_alignment_sgd_and_zero_queries():
    # no alignment: Δq.k sums d independent terms, so 1/d makes the change vanish
    assert _logit_theory("mup", "head_size", alignment="none").r == F(1, 2)
    assert _logit_theory(ps.parse(MUP_SQRT_D), "head_size", alignment="none").r == 0
    # SGD: the scale also multiplies the query/key gradients, by n^-(t - 1/2)
    sgd = _logit_theory("mup", "head_size", optimizer="sgd")
    assert sgd.r == F(1, 2) and "SGD" in sgd.steps[1]
    zero = _logit_theory(ps.parse(ZERO_QUERIES), "head_size", query_block="queries")
    assert zero.init is None and zero.r == 0 and zero.stable


def test_module_factor_is_exactly_one_where_the_scale_is_the_modules_own():
    mup = ps.load("mup").attention
    assert module_factor(None, head_dim=48, head_n=3.0) == 1.0
    assert module_factor(ps.load("sp").attention, head_dim=48, head_n=3.0) == 1.0
    assert module_factor(mup, head_dim=48, head_n=1.0) == 1.0  # the base-width principle
    assert module_factor(mup, head_dim=48, head_n=4.0) == 0.5
    assert logit_exponent(mup, "head_size") == 1 and logit_exponent(mup, "heads") == 0


# ----------------------------------------------------------------------------- backend


@pytest.mark.parametrize("name", ps.builtin_names())
def test_every_builtin_gives_the_standard_scale_at_the_base_width(name):
    model = encoder(32, jax.random.key(0))  # 2 heads of 16
    for growth in ("head_size", "heads"):
        at_base = ps.compile(name, width=32, base_width=32)
        assert query_factors(at_base, model, growth) == {}  # exactly the module's 1/sqrt(d)
        assert ps.attention_scale(at_base, head_dim=16, growth=growth) == 0.25
    wider = ps.compile(name, width=32, base_width=8)  # n = 4
    factors = query_factors(wider, model, "head_size")
    one_over_d = needs_growth(wider.spec.attention)
    # muP and everything built on it (mup-muon, completep, depth-mup) use 1/d
    assert one_over_d == (name in ("mup", "mfp", "mup-muon", "completep", "depth-mup"))
    assert factors == ({"attn.query_proj.weight": 0.5} if one_over_d else {})
    assert query_factors(wider, model, "heads") == {}

KEY = jax.random.key(0)
TOKENS = jnp.arange(8) % 16


def _reference_logits(model, h, s):
    """softmax(s * q.k) v by hand from the stored weights (no factor folded anywhere)."""
    a = ps.unwrap(model.attn)
    q = jax.vmap(a.query_proj)(h).reshape(h.shape[0], a.num_heads, a.qk_size)
    k = jax.vmap(a.key_proj)(h).reshape(h.shape[0], a.num_heads, a.qk_size)
    v = jax.vmap(a.value_proj)(h).reshape(h.shape[0], a.num_heads, a.vo_size)
    w = jax.nn.softmax(s * jnp.einsum("shd,Shd->hsS", q, k), axis=-1)
    return jax.vmap(a.output_proj)(jnp.einsum("hsS,Shd->shd", w, v).reshape(h.shape[0], -1))


@pytest.mark.parametrize("bias", [False, True])
def test_mup_gives_one_over_d_when_the_head_size_grows(bias):
    make = functools.partial(encoder, bias=bias)
    assert attention_growth(make, 32, 64, KEY) == {"attn": "head_size"}
    c = ps.compile("mup", width=32, base_width=8)  # n = 4, d = 16, d_base = 4
    model = c.init(make, KEY)
    d = 16
    s = math.sqrt(4) / d  # d^(-1/2) * (d/d_base)^(-1/2)
    f = dict(model.attn.query_proj.multipliers)
    assert f == ({"weight": 0.5, "bias": 0.5} if bias else {"weight": 0.5})
    rows = {row["path"]: row for row in c.describe(model)}
    assert rows["attn.query_proj.weight"]["multiplier"] == 0.5  # what the model computes with
    assert rows["attn.key_proj.weight"]["multiplier"] == 1.0
    assert attention_factors(c, model) == {"attn.query_proj": 0.5}  # coord_check divides
    h = jax.random.normal(KEY, (8, 32))
    out, ref = eqx.filter_jit(lambda m: (m.attn(h, h, h), _reference_logits(m, h, s)))(model)
    assert jnp.allclose(out, ref, atol=1e-5)
    if bias:
        return
    # the same gradients as a model that multiplies the logits by s (an exact fold)
    plain = ps.unwrap(model)
    # jitted: one compilation instead of one per primitive (CPU time in CI)
    g_folded = eqx.filter_jit(eqx.filter_grad(lambda m: jnp.sum(m.attn(h, h, h) ** 2)))(model)
    g_manual = eqx.filter_jit(eqx.filter_grad(
        lambda m: jnp.sum(_reference_logits(m, h, s) ** 2)))(plain)
    for a, b in zip(jax.tree.leaves(ps.unwrap(g_folded)), jax.tree.leaves(g_manual), strict=True):
        assert jnp.allclose(a, b, rtol=1e-4, atol=1e-6)


def test_the_head_count_growing_or_the_base_width_keeps_the_modules_scale():
    fixed_d = functools.partial(encoder, head_dim=8)
    assert attention_growth(fixed_d, 32, 64, KEY) == {"attn": "heads"}
    model = ps.compile("mup", width=32, base_width=8).init(fixed_d, KEY)
    assert "weight" not in dict(model.attn.query_proj.multipliers)
    at_base = ps.compile("mup", width=32, base_width=32).init(encoder, KEY)
    assert "weight" not in dict(at_base.attn.query_proj.multipliers)


def test_reference_transformer_with_a_fixed_head_count():
    make = functools.partial(models.transformer, num_heads=2, depth=1, vocab=16, seq_len=8,
                             ffn_ratio=2)
    c = ps.compile("mup", width=32, base_width=8)  # n = 4: head size 16, 1/sqrt(d) * 1/2
    model = c.init(make, KEY)
    attn = model.blocks[0].attn
    assert (attn.num_heads, attn.qk_size) == (2, 16)
    assert dict(attn.query_proj.multipliers)["weight"] == 0.5
    default = c.init(functools.partial(models.transformer, depth=1, vocab=16, seq_len=8,
                                       ffn_ratio=2, head_dim=8), KEY)
    assert "weight" not in dict(default.blocks[0].attn.query_proj.multipliers)
    with pytest.raises(models.ModelConfigError, match="multiple of num_heads=3"):
        models.transformer(64, KEY, num_heads=3)


def test_apply_needs_to_be_told_what_grows():
    c = ps.compile("mup", width=32, base_width=8)
    built = encoder(32, KEY)
    roles = {"embed.weight": "input", "pos.weight": "input", "readout.weight": "output",
             "module=LayerNorm": "vector", "attn.*": "hidden", "up.weight": "hidden",
             "down.weight": "hidden"}
    with pytest.raises(ps.SpecError, match="head count or the head size"):
        c.apply(built, KEY, roles=roles)
    model = c.apply(built, KEY, roles=roles, attention="head_size")
    assert dict(model.attn.query_proj.multipliers)["weight"] == 0.5
    heads = c.apply(built, KEY, roles=roles, attention={"attn": "heads"})
    assert "weight" not in dict(heads.attn.query_proj.multipliers)
    with pytest.raises(ps.SpecError, match="unknown attention growth"):
        c.apply(built, KEY, roles=roles, attention="width")


def test_both_head_count_and_size_growing_is_an_error():
    def make(width, key):
        return eqx.nn.MultiheadAttention(width // 16, width, qk_size=width // 4, key=key)

    with pytest.raises(ps.SpecError, match="both its head count"):
        attention_growth(make, 32, 64, KEY)
    assert [p for p, _ in attention_modules(make(32, KEY))] == [""]


def test_zero_initialised_queries_train():
    c = ps.compile(ps.parse(ZERO_QUERIES), width=32, base_width=16)
    model = c.init(encoder, KEY)
    attn = model.attn
    assert jnp.all(ps.unwrap(attn.query_proj).weight == 0)
    assert dict(attn.query_proj.labels)["weight"] == "queries"
    assert dict(attn.query_proj.multipliers)["weight"] == math.sqrt(1 / 2)
    tokens, y = encoder_batch()
    logits = eqx.filter_jit(lambda m: jax.vmap(m.features)(tokens)["attn_logits"])
    assert jnp.all(logits(model) == 0)  # zero queries: every logit is 0, attention averages
    opt = c.optimizer(model, learning_rate=1e-2)

    @eqx.filter_jit
    def step(model):
        params = eqx.filter(model, eqx.is_inexact_array)
        grads = eqx.filter_grad(linear_loss)(model, (tokens, y))
        updates, _ = opt.update(grads, opt.init(params), params)
        return eqx.apply_updates(model, updates)

    model = step(model)
    assert jnp.any(ps.unwrap(model.attn.query_proj).weight != 0)
    assert float(jnp.abs(logits(model)).max()) > 0


def test_a_checkpoint_round_trip_keeps_the_factor(tmp_path):
    c = ps.compile("mup", width=32, base_width=16)
    model = c.init(encoder, KEY)
    eqx.tree_serialise_leaves(tmp_path / "m.eqx", model)
    restored = eqx.tree_deserialise_leaves(tmp_path / "m.eqx", c.init(encoder, jax.random.key(1)))
    h = jnp.ones((8, 32))
    call = eqx.filter_jit(lambda m: m.attn(h, h, h))
    assert jnp.array_equal(call(restored), call(model))
    for a, b in zip(jax.tree.leaves(restored), jax.tree.leaves(model), strict=True):
        assert jnp.array_equal(a, b)


def test_the_attention_guide_runs():
    text = (Path(__file__).parents[1] / "docs" / "attention.md").read_text()
    code = "\n".join(re.findall(r"```python\n(.*?)```", text, re.S))
    assert "mup-zero-q" in code
    exec(compile(code, "docs/attention.md", "exec"), {})  # noqa: S102 - our own docs


# ----------------------------------------------------------------------------- measurement


@pytest.mark.slow
def test_coordinate_check_attention_logits_flat_with_a_fixed_head_count():
    """docs/attention.md's table: mup with 1/d passes, 1/sqrt(d) grows (~ +0.4 logits)."""
    widths = (64, 128, 256, 512)
    run = functools.partial(coord_check, make_model=encoder, inputs=encoder_batch(),
                            loss=linear_loss, widths=widths, base_width=64)
    mup = run("mup")
    old = run(ps.parse(MUP_SQRT_D))
    for r in (mup, old):
        print(r.spec, {x.name: round(x.slope, 3) for x in r.layers})
    assert mup.layer("attn_logits").passed and mup.layer("attn").passed
    assert old.layer("attn_logits").slope > 0.3 and not old.layer("attn").passed
