"""Tied weights: declared with tied=, found at c.init when undeclared, never silently wrong."""

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import pytest

import paramspec as ps
from tests import training
from tests.equinox._small_models import VOCAB, TiedAsTable, TiedGPT

KEY = jax.random.key(0)
TIED = {"wte.weight": "readout"}


@pytest.mark.parametrize("spec", ["mup", "sp", "sp-perlayer"])
def test_an_undeclared_tie_fails_at_init_naming_both_uses_and_the_fix(spec):
    c = ps.compile(spec, width=32, base_width=16)
    with pytest.raises(ps.SpecError) as info:
        c.init(TiedGPT, KEY)
    text = str(info.value)
    assert "wte.weight (Embedding.weight, block `embedding`)" in text  # the embedding use
    assert "TiedGPT.__call__ reads it directly at _small_models.py:" in text  # the readout
    assert "return x @ self.wte.weight.T" in text
    assert 'tied={"wte.weight": "readout"}' in text  # the one-line fix


def test_a_declared_tie_reads_the_readout_scale_and_the_position_table_its_own():
    c = ps.compile("mup", width=64, base_width=16)
    model = c.init(TiedGPT, KEY, tied=TIED)
    w = ps.unwrap(model).wte.weight
    fans = {"fan_in": 64, "fan_out": VOCAB}  # the readout use: the embedding transposed
    m_o, s_o = c.multiplier("readout", **fans), c.init_std("readout", **fans)
    s_e = {r["path"]: r for r in c.describe(model)}["wte.weight"]["init_std"]
    t = m_o * s_o / s_e
    assert jnp.array_equal(model.wte.weight, t * w)  # the direct read: the readout use
    assert t * s_e == pytest.approx(m_o * s_o)  # at init, exactly the readout's scale
    assert float(jnp.std(w)) == pytest.approx(s_e, rel=0.1)  # w follows the embedding
    m_e = c.multiplier("embedding")
    assert jnp.allclose(jax.vmap(model.wte)(jnp.arange(3)), m_e * w[:3])  # called: m_e * w
    pos = model.wpe.weight  # a table read directly is not a tie: its own m * w
    assert jnp.array_equal(pos, m_e * ps.unwrap(model).wpe.weight)
    row = {r["path"]: r for r in c.describe(model)}["wte.weight"]
    assert row["block"] == "embedding" and row["tied"] == {"block": "readout", "multiplier": t}


# The exponent of (tied readout update) / (the readout's own rule), documented in models.md.
TIED_UPDATE_EXPONENT = {"mup": 0, "mfp": 0, "sp": 0.5, "sp-perlayer": 0.5, "sp-embed-lr": 0.5,
                        "ntk": 0.5, "sp-global": -0.5}


def test_the_tied_update_matches_the_readout_exactly_under_mup_and_not_under_sp():
    # With Adam the readout use moves by t * lr_e; the readout's own rule is m_o * lr_o.
    def ratio(spec, width):
        c = ps.compile(spec, width=width, base_width=16)
        e_fans, o_fans = {"fan_in": VOCAB, "fan_out": width}, {"fan_in": width, "fan_out": VOCAB}
        t = (c.multiplier("readout", **o_fans) * c.init_std("readout", **o_fans)
             / c.init_std("embedding", **e_fans))
        return t * c.value("embedding", "lr") / (c.multiplier("readout", **o_fans)
                                                 * c.value("readout", "lr"))

    assert ratio("mup", 64) == pytest.approx(ratio("mup", 1024))  # same exponent a + c
    assert ratio("sp", 1024) / ratio("sp", 64) == pytest.approx(4.0)  # off by n^(1/2)
    assert set(TIED_UPDATE_EXPONENT) <= set(ps.builtin_names())
    for spec, exponent in TIED_UPDATE_EXPONENT.items():
        slope = math.log(ratio(spec, 4096) / ratio(spec, 64)) / math.log(64)
        assert slope == pytest.approx(exponent, abs=1e-9), spec


def test_a_declared_tie_indexed_as_a_table_and_eqx_shared_fail_at_init():
    c = ps.compile("mup", width=32, base_width=16)
    with pytest.raises(ps.SpecError, match=r"indexes it as a table at _small_models.py:\d+"):
        c.init(TiedAsTable, KEY, tied=TIED)
    with pytest.raises(ps.SpecError, match="has no parameter nope.weight"):
        c.init(TiedGPT, KEY, tied={"nope.weight": "readout"})

    class SharedLM(eqx.Module):
        shared: eqx.nn.Shared

        def __init__(self, width, key):
            embed = eqx.nn.Embedding(VOCAB, width, key=key)
            head = eqx.nn.Linear(width, VOCAB, use_bias=False, key=key)
            self.shared = eqx.nn.Shared((embed, head), lambda p: p[1].weight,
                                        lambda p: p[0].weight)

    with pytest.raises(ps.SpecError, match="shared is an eqx.nn.Shared"):
        c.init(SharedLM, KEY)


class _Twice(eqx.Module):
    """One hidden layer called twice (weight sharing across depth)."""

    embed: eqx.nn.Linear
    shared: eqx.nn.Linear
    head: eqx.nn.Linear

    def __init__(self, width, key):
        k = jax.random.split(key, 3)
        self.embed = eqx.nn.Linear(4, width, key=k[0])
        self.shared = eqx.nn.Linear(width, width, key=k[1])
        self.head = eqx.nn.Linear(width, 2, key=k[2])

    def __call__(self, x):
        h = jnp.tanh(self.embed(x))
        return self.head(jnp.tanh(self.shared(jnp.tanh(self.shared(h)))))


def test_a_module_called_twice_needs_no_declaration():
    c = ps.compile("mup", width=16, base_width=8)
    model = c.init(_Twice, KEY)
    eff = ps.scaled(model)  # every call computes with the parameter's own m * w
    x = jnp.ones(4)
    h = jnp.tanh(eff.embed(x))
    assert jnp.allclose(model(x), eff.head(jnp.tanh(eff.shared(jnp.tanh(eff.shared(h))))))
    assert {r["path"]: r["block"] for r in c.describe(model)}["shared.weight"] == "hidden"


# mup in the default run; sp and sp-perlayer (each ~3 s of compiling) with -m slow.
@pytest.mark.parametrize("spec", ["mup", pytest.param("sp", marks=pytest.mark.slow),
                                  pytest.param("sp-perlayer", marks=pytest.mark.slow)])
def test_the_third_party_gpt_with_its_tied_head_trains_under_every_builtin(spec):
    from tests.usermodels import gpt

    c = ps.compile(spec, width=32, base_width=32)
    with pytest.raises(ps.SpecError, match=r'tied=\{"wte.weight": "readout"\}'):
        c.init(gpt.make_model, KEY)  # as written: the undeclared tie is found at init
    model = c.init(gpt.make_model, KEY, tied=TIED)
    losses = training.losses(gpt, model, c.optimizer(model, learning_rate=1e-2), 20)
    assert all(math.isfinite(v) for v in losses) and losses[-1] < 0.5 * losses[0]
    # At the base width every built-in is sp: 4.96 against ln 64 = 4.16 (the plain
    # GPT-2-init model: 4.17); the readout use also sees the token's own std-1 embedding.
    assert abs(losses[0] - math.log(gpt.NUM_CLASSES)) < 1.5
