"""Compiled.init / apply / optimizer: a spec meets a real Equinox model."""

import functools

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import paramspec as ps
from paramspec import models
from paramspec._equinox import unwrap
from paramspec._equinox._multiply import block_labels
from paramspec._equinox._roles import leaf_paths

MLP = functools.partial(models.mlp, use_bias=True)


@pytest.fixture(scope="module")
def mup_mlp():
    c = ps.compile("mup", width=256, base_width=32)
    return c, c.init(MLP, jax.random.key(0))


def test_every_parameter_gets_one_block(mup_mlp):
    c, model = mup_mlp
    labels = block_labels(model)
    assert set(labels) == set(leaf_paths(model))
    assert labels["embed.weight"] == "embedding" and labels["readout.weight"] == "readout"
    assert labels["hidden[0].weight"] == "hidden" and labels["embed.bias"] == "vectors"
    assert labels["readout.bias"] == "constants"


def test_init_std_and_multipliers_follow_the_spec(mup_mlp):
    c, model = mup_mlp
    plain = unwrap(model)
    w = np.asarray(plain.hidden[0].weight)
    assert w.std() == pytest.approx(c.value("hidden", "init", fan_in=256), rel=0.05)
    assert np.asarray(plain.readout.weight).std() == pytest.approx(
        c.value("readout", "init", fan_in=256), rel=0.1)
    # the model computes with W = multiplier * w: compare with a hand-scaled plain model
    scaled = eqx.tree_at(lambda m: (m.embed.weight, m.readout.weight), plain,
                         (c.multiplier("embedding") * plain.embed.weight,
                          c.multiplier("readout") * plain.readout.weight))
    x = jax.random.normal(jax.random.key(1), (4, 16))
    np.testing.assert_allclose(jax.vmap(model)(x), jax.vmap(scaled)(x), rtol=1e-5, atol=1e-6)
    assert c.multiplier("embedding") == pytest.approx(8 ** 0.5)


def test_optimizer_step_matches_hand_written_adam_per_leaf(mup_mlp):
    c, model = mup_mlp
    lr, eps = 1e-3, 1e-8
    opt = c.optimizer(model, learning_rate=lr, eps=eps)
    params = eqx.filter(model, eqx.is_inexact_array)
    x = jax.random.normal(jax.random.key(2), (8, 16))

    def loss(m):
        return jnp.mean(jax.vmap(m)(x) ** 2)

    grads = eqx.filter_grad(loss)(model)
    updates, _ = opt.update(grads, opt.init(params), params)
    for block, get in (("hidden", lambda t: unwrap(t).hidden[0].weight),
                       ("readout", lambda t: unwrap(t).readout.weight),
                       ("embedding", lambda t: unwrap(t).embed.weight)):
        ref = optax.adam(lr * c.value(block, "lr"), eps=eps * c.value(block, "eps"))
        g = get(grads)
        expected, _ = ref.update(g, ref.init(g), get(params))
        np.testing.assert_allclose(get(updates), expected, rtol=1e-5, atol=1e-12)


def test_optimizer_needs_a_parameterized_model():
    c = ps.compile("mup", width=64)
    plain = models.mlp(64, jax.random.key(0))
    with pytest.raises(ps.SpecError, match="were not parameterized by a compiled spec"):
        c.optimizer(plain, learning_rate=1e-3)


def test_apply_with_explicit_roles_on_a_built_model():
    c = ps.compile("sp", width=64)
    net = eqx.nn.MLP(8, 4, 64, depth=2, use_bias=False, use_final_bias=False,
                     key=jax.random.key(0))
    roles = {"layers[0].*": "input", "layers[1].*": "hidden", "layers[2].*": "output"}
    model = c.apply(net, jax.random.key(1), roles=roles)
    labels = block_labels(model)
    assert labels == {"layers[0].weight": "embedding", "layers[1].weight": "hidden",
                      "layers[2].weight": "readout"}
    assert np.asarray(unwrap(model).layers[1].weight).std() == pytest.approx(64 ** -0.5, rel=0.1)
    with pytest.raises(ps.SpecError, match="covered by no block"):
        c.apply(net, jax.random.key(1))


def test_uncovered_parameters_are_an_error_listing_paths():
    spec = ps.parse("spec bare\nembedding {\n}\nhidden {\n init fan_in^(-1/2)\n lr auto\n}\n"
                    "readout {\n init fan_in^(-1/2)\n lr auto\n}\n")
    c = ps.compile(spec, width=32)  # stable (lr auto), so compile does not warn
    with pytest.raises(ps.SpecError, match="covered by no block") as e:
        c.init(MLP, jax.random.key(0))
    assert "embed.bias" in str(e.value) and "readout.bias" in str(e.value)


def test_checkpoint_round_trip_keeps_the_parameterization(tmp_path, mup_mlp):
    c, model = mup_mlp
    path = tmp_path / "model.eqx"
    eqx.tree_serialise_leaves(path, model)
    skeleton = c.init(MLP, jax.random.key(123))
    restored = eqx.tree_deserialise_leaves(path, skeleton)
    x = jnp.ones((2, 16))
    np.testing.assert_array_equal(jax.vmap(model)(x), jax.vmap(restored)(x))
    assert block_labels(restored) == block_labels(model)
    c.optimizer(restored, learning_rate=1e-3)  # still knows every parameter's block


@pytest.mark.parametrize("optimizer", ["sgd", "adam_atan2", "adam"])
def test_absorbed_form_trains_like_the_multiplier_form(optimizer):
    c = ps.compile("mup", width=64, base_width=16, optimizer=optimizer)
    x = jax.random.normal(jax.random.key(3), (8, 16))
    y = jax.random.normal(jax.random.key(4), (8, 8))

    def train(form):
        model = c.init(models.mlp, jax.random.key(0), form=form)
        opt = c.optimizer(model, learning_rate=1e-2)
        state = opt.init(eqx.filter(model, eqx.is_inexact_array))

        @eqx.filter_jit
        def step(model, state):
            grads = eqx.filter_grad(lambda m: jnp.mean((jax.vmap(m)(x) - y) ** 2))(model)
            updates, state = opt.update(grads, state, eqx.filter(model, eqx.is_inexact_array))
            return eqx.apply_updates(model, updates), state

        for _ in range(10):
            model, state = step(model, state)
        return jax.vmap(model)(x)

    multiplier, absorbed = train("multiplier"), train("absorbed")
    np.testing.assert_allclose(multiplier, absorbed, rtol=2e-4, atol=2e-5)
    assert not np.allclose(multiplier, jax.vmap(c.init(models.mlp, jax.random.key(0)))(x))


def test_unknown_form_is_an_error():
    with pytest.raises(ps.SpecError, match="unknown form"):
        ps.compile("mup", width=32).init(models.mlp, jax.random.key(0), form="folded")
