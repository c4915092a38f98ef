"""Multipliers: the model computes with W = m * w while storing and training w."""

import functools

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from paramspec._equinox import (
    Multiplied,
    MultiplierError,
    ScaledFieldAccessError,
    block_labels,
    describe_leaves,
    infer_leaves,
    leaf_paths,
    multiply,
    scaled,
    unwrap,
)
from paramspec.models import mlp, transformer

KEY = jax.random.key(0)
TOKENS = jnp.arange(16) * 7 % 64


def _rule(path):
    # One multiplier per kind of parameter, read off a path string. Works on paramspec's
    # paths ("blocks[0].up.weight") and on jax.tree_util.keystr (".blocks[0].up.weight").
    if "embed" in path:
        return 2.0
    if "readout" in path:
        return 0.5 if path.endswith("weight") else 3.0
    if "norm" in path:
        return 1.5
    if path.endswith("bias"):
        return -0.25
    return 0.75


def _by_hand(model):
    # The plain model with every leaf multiplied by hand, independent of paramspec's
    # paths: jax's own key paths.
    return jax.tree_util.tree_map_with_path(
        lambda p, x: _rule(jax.tree_util.keystr(p)) * x if eqx.is_inexact_array(x) else x,
        model,
    )


def _multiplied(model):
    return multiply(model, lambda info: _rule(info.path))


def test_linear_computes_m_w_x_plus_m_b_b():
    lin = eqx.nn.Linear(16, 8, key=KEY)
    x = jnp.arange(16.0)
    out = Multiplied(lin, {"weight": 0.5, "bias": -2.0})(x)
    assert jnp.allclose(out, 0.5 * lin.weight @ x - 2.0 * lin.bias)
    # The stored leaves are untouched.
    stored = unwrap(Multiplied(lin, {"weight": 0.5}))
    assert stored.weight is lin.weight and stored.bias is lin.bias


@pytest.mark.parametrize(
    "make",
    [
        functools.partial(mlp, use_bias=True),
        lambda w, k: eqx.nn.MLP(16, 8, w, depth=3, key=k),
        lambda w, k: eqx.nn.MLP(16, 8, w, depth=3, scan=True, key=k),
    ],
    ids=["paramspec-mlp", "eqx-mlp", "eqx-mlp-scan"],
)
def test_mlps_equal_a_model_multiplied_by_hand(make):
    model = make(32, KEY)
    x = jnp.linspace(-1, 1, 16)
    wrapped = _multiplied(model)
    assert jnp.allclose(wrapped(x), _by_hand(model)(x), rtol=1e-5, atol=1e-6)
    assert not jnp.allclose(wrapped(x), model(x))


def _loss(model, *, has_aux=False):
    logits = model(TOKENS[:-1])
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, TOKENS[1:]).mean()
    return (loss, logits) if has_aux else loss


def test_transformer_outputs_and_gradients_match_by_hand():
    model = transformer(32, KEY, depth=1, head_dim=8)
    wrapped = _multiplied(model)
    hand = _by_hand(model)
    value_and_grad = eqx.filter_jit(
        eqx.filter_value_and_grad(functools.partial(_loss, has_aux=True), has_aux=True)
    )
    (_, out), grad = value_and_grad(wrapped)
    (_, out_hand), grad_big_w = value_and_grad(hand)
    assert jnp.allclose(out, out_hand, rtol=1e-5, atol=1e-5)

    # d loss / d w = m * d loss / d W, with W = m * w the hand-multiplied leaves.
    grad_w = unwrap(grad)
    expected = _by_hand(grad_big_w)
    for path, a, b in zip(
        leaf_paths(model), jax.tree.leaves(grad_w), jax.tree.leaves(expected), strict=True
    ):
        assert jnp.allclose(a, b, rtol=1e-4, atol=1e-6), path


def test_structure_leaves_and_paths_are_those_of_the_plain_model():
    model = transformer(32, KEY, depth=1, head_dim=8)
    wrapped = _multiplied(model)
    assert len(jax.tree.leaves(wrapped)) == len(jax.tree.leaves(model))
    for a, b in zip(jax.tree.leaves(wrapped), jax.tree.leaves(model), strict=True):
        assert a is b
    assert leaf_paths(wrapped) == leaf_paths(model)
    assert eqx.tree_equal(unwrap(wrapped), model)
    # Multipliers are static Python floats, not leaves.
    assert wrapped.readout.multipliers == (("weight", 0.5),)
    assert isinstance(wrapped.readout.multipliers[0][1], float)


def test_survives_filter_jit_and_retraces_only_on_new_multipliers():
    model = mlp(16, KEY)
    wrapped = multiply(model, lambda info: 2.0)
    traces = []

    @eqx.filter_jit
    def run(m, x):
        traces.append(None)
        return m(x)

    x = jnp.ones(16)
    assert jnp.allclose(run(wrapped, x), wrapped(x))
    moved = jax.tree.map(lambda a: a + 1.0, wrapped)  # new stored values
    assert jnp.allclose(run(moved, x), moved(x))
    assert len(traces) == 1
    run(multiply(model, lambda info: 3.0), x)
    assert len(traces) == 2


def test_serialise_round_trip(tmp_path):
    model = _multiplied(mlp(16, KEY, use_bias=True))
    path = tmp_path / "model.eqx"
    eqx.tree_serialise_leaves(path, model)
    like = _multiplied(mlp(16, jax.random.key(9), use_bias=True))
    loaded = eqx.tree_deserialise_leaves(path, like)
    assert eqx.tree_equal(loaded, model)
    x = jnp.ones(16)
    assert jnp.array_equal(loaded(x), model(x))
    # A checkpoint of the plain model loads into the multiplied one: same leaves.
    eqx.tree_serialise_leaves(path, unwrap(model))
    assert eqx.tree_equal(eqx.tree_deserialise_leaves(path, like), model)


def test_train_step_with_optax_and_sharding():
    model = _multiplied(mlp(16, KEY))
    opt = optax.adam(1e-2)
    state = opt.init(eqx.filter(model, eqx.is_inexact_array))
    mesh = jax.sharding.Mesh(np.array(jax.devices()[:1]), ("data",))
    replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
    x = jnp.linspace(-1, 1, 16)

    @eqx.filter_jit
    def step(model, state):
        model = eqx.filter_shard(model, replicated)
        loss, grads = eqx.filter_value_and_grad(lambda m: jnp.sum(m(x) ** 2))(model)
        updates, state = opt.update(grads, state, model)
        return eqx.apply_updates(model, updates), state, loss

    first = None
    for _ in range(5):
        model, state, loss = step(model, state)
        first = loss if first is None else first
    assert isinstance(model.embed, Multiplied)
    assert model.embed.multipliers == (("weight", 2.0),)
    assert loss < first


def test_multiplier_one_is_not_wrapped_and_multipliers_compose():
    model = mlp(16, KEY, use_bias=True)
    assert eqx.tree_equal(multiply(model, lambda info: 1.0), model)
    assert eqx.tree_equal(multiply(model, lambda info: None), model)
    once = multiply(model, lambda info: 2.0 if info.path == "embed.weight" else None)
    assert not isinstance(once.hidden[0], Multiplied)
    twice = multiply(once, lambda info: 3.0 if info.path.startswith("embed") else None)
    assert twice.embed.multipliers == (("bias", 3.0), ("weight", 6.0))
    back = multiply(twice, lambda info: {"embed.weight": 1 / 6, "embed.bias": 1 / 3}.get(info.path))
    assert not isinstance(back.embed, Multiplied)


def test_scaled_gives_the_plain_model_of_effective_weights():
    model = transformer(32, KEY, depth=1, head_dim=8)
    wrapped = _multiplied(model)
    effective = scaled(wrapped)
    assert jax.tree.structure(effective) == jax.tree.structure(model)
    assert eqx.tree_equal(effective, _by_hand(model))


def test_attributes_are_forwarded_but_scaled_arrays_are_not():
    model = multiply(transformer(32, KEY, depth=1, head_dim=8), lambda info: 0.5)
    assert model.readout.out_features == 64
    assert model.blocks[0].attn.query_proj.in_features == 32
    with pytest.raises(ScaledFieldAccessError, match=r"`Linear.weight` is multiplied by 0.5"):
        model.readout.weight  # noqa: B018
    with pytest.raises(ScaledFieldAccessError, match=r"paramspec.unwrap\(module\).weight"):
        model.token_embed.weight  # noqa: B018
    assert unwrap(model.readout).weight.shape == (64, 32)
    assert not hasattr(model.readout, "no_such_attribute")


def test_equinox_tree_utilities_see_through_the_wrapper():
    model = multiply(transformer(32, KEY, depth=1, head_dim=8), lambda info: 0.5)
    inference = eqx.nn.inference_mode(model)  # finds the Dropout inside attention
    assert inference.blocks[0].attn.dropout.inference is True
    assert inference.blocks[0].attn.query_proj.multipliers == (("weight", 0.5),)
    zeroed = eqx.tree_at(lambda m: m.readout.module.weight, model, replace_fn=jnp.zeros_like)
    assert not jnp.any(unwrap(zeroed).readout.weight)


class _Scale(eqx.Module):
    """A custom module with a plain array, called by its parent, and a method."""

    gain: jax.Array
    inner: eqx.nn.Linear

    def __call__(self, x):
        return self.gain * self.inner(x)

    def project(self, x):
        return self.gain * x


class _Parent(eqx.Module):
    scale: _Scale

    def __call__(self, x):
        return self.scale(x)


def test_custom_modules_whose_parents_call_them():
    def make(width, key):
        return _Parent(_Scale(jnp.full(width, 2.0), eqx.nn.Linear(16, width, key=key)))

    model = make(16, KEY)
    infos = infer_leaves(make, 16, 32)
    assert {i.path: i.role for i in infos} == {
        "scale.gain": "vector",
        "scale.inner.weight": "input",
        "scale.inner.bias": "vector",
    }
    mults = {"vector": 3.0, "input": 0.5}
    wrapped = multiply(model, lambda info: mults[info.role], leaves=infos)
    x = jnp.arange(16.0)
    inner = model.scale.inner
    expected = 3.0 * 2.0 * (0.5 * inner.weight @ x + 3.0 * inner.bias)
    assert jnp.allclose(wrapped(x), expected)
    # Methods run on the scaled module.
    assert jnp.allclose(wrapped.scale.project(jnp.ones(16)), jnp.full(16, 6.0))


class _TiedLM(eqx.Module):
    """Tied embedding/readout: the documented route for a weight used twice."""

    embed: eqx.nn.Embedding
    readout_multiplier: float = eqx.field(static=True)

    def __call__(self, tokens):
        x = jax.vmap(self.embed)(tokens)  # the embedding's own multiplier applies
        x = jnp.tanh(x)
        w = unwrap(self.embed).weight  # the stored array, scaled by hand below
        return x @ (self.readout_multiplier * w).T


def test_tied_weights_use_the_stored_array_with_their_own_multiplier():
    m_in, m_out = 4.0, 0.125
    plain = _TiedLM(eqx.nn.Embedding(64, 32, key=KEY), readout_multiplier=m_out)
    model = multiply(plain, lambda info: m_in)
    assert model.embed.multipliers == (("weight", m_in),)

    def loss_by_hand(e_in, e_out):
        logits = jnp.tanh(e_in[TOKENS[:-1]]) @ e_out.T
        return optax.softmax_cross_entropy_with_integer_labels(logits, TOKENS[1:]).mean()

    w = plain.embed.weight
    value_and_grad = eqx.filter_jit(eqx.filter_value_and_grad(_loss))
    loss, grad = value_and_grad(model)
    hand = jax.jit(jax.value_and_grad(loss_by_hand, argnums=(0, 1)))
    loss_hand, (g_in, g_out) = hand(m_in * w, m_out * w)
    assert jnp.allclose(loss, loss_hand, rtol=1e-6)
    assert jnp.allclose(unwrap(grad).embed.weight, m_in * g_in + m_out * g_out, atol=1e-6)


def test_multiplied_errors():
    lin = eqx.filter_eval_shape(eqx.nn.Linear, 2, 2, key=KEY)
    with pytest.raises(MultiplierError, match=r"Linear has no parameter\(s\) kernel"):
        Multiplied(lin, {"kernel": 2.0})
    with pytest.raises(MultiplierError, match="must be finite, got inf"):
        Multiplied(lin, {"weight": float("inf")})
    with pytest.raises(MultiplierError, match="must be a Python number, got ArrayImpl"):
        Multiplied(lin, {"weight": jnp.array(2.0)})
    with pytest.raises(MultiplierError, match="cannot wrap a `Multiplied` module"):
        Multiplied(Multiplied(lin, {"weight": 2.0}), {"bias": 2.0})
    with pytest.raises(MultiplierError, match=r"belong to no module"):
        multiply({"w": jnp.ones(3)}, lambda info: 2.0)
    other = describe_leaves(eqx.filter_eval_shape(functools.partial(mlp, depth=3), 8, KEY))
    model = eqx.filter_eval_shape(functools.partial(mlp, depth=2), 8, KEY)
    with pytest.raises(MultiplierError, match=r"1 path\(s\) that are not parameters.*hidden\[2\]"):
        multiply(model, lambda info: 2.0, leaves=other)


_LAYERS = {
    "Linear": (lambda k: eqx.nn.Linear(4, 3, key=k), (jnp.ones(4),)),
    "Conv1d": (lambda k: eqx.nn.Conv1d(2, 3, 3, key=k), (jnp.ones((2, 5)),)),
    "Conv2d": (lambda k: eqx.nn.Conv2d(2, 3, 3, groups=1, key=k), (jnp.ones((2, 4, 4)),)),
    "ConvTranspose1d": (lambda k: eqx.nn.ConvTranspose1d(2, 3, 3, key=k), (jnp.ones((2, 5)),)),
    "Embedding": (lambda k: eqx.nn.Embedding(5, 3, key=k), (jnp.array(2),)),
    "LayerNorm": (lambda k: eqx.nn.LayerNorm(4), (jnp.arange(4.0),)),
    "RMSNorm": (lambda k: eqx.nn.RMSNorm(4), (jnp.arange(4.0),)),
    "GroupNorm": (lambda k: eqx.nn.GroupNorm(2, 4), (jnp.arange(8.0).reshape(4, 2),)),
    "GRUCell": (lambda k: eqx.nn.GRUCell(4, 3, key=k), (jnp.ones(4), jnp.ones(3))),
    "LSTMCell": (lambda k: eqx.nn.LSTMCell(4, 3, key=k), (jnp.ones(4), (jnp.ones(3),) * 2)),
    "PReLU": (lambda k: eqx.nn.PReLU(0.25), (jnp.linspace(-1, 1, 4),)),
}


def test_every_standard_layer_computes_with_scaled_parameters():
    @eqx.filter_jit  # one compilation for all layers: build, wrap and call each
    def run(key):
        results = {}
        for name, (make, args) in _LAYERS.items():
            layer = make(key)
            fields = [i.field for i in describe_leaves(layer)]
            mults = {field: 1.5 + i for i, field in enumerate(fields)}
            by_hand = eqx.tree_at(
                lambda m, fields=fields: [getattr(m, f) for f in fields],
                layer,
                [mults[f] * getattr(layer, f) for f in fields],
            )
            wrapped = multiply(layer, lambda info, mults=mults: mults[info.field])
            assert isinstance(wrapped, Multiplied)
            results[name] = (wrapped(*args), by_hand(*args), layer(*args))
        return results

    for name, (out, expected, plain) in run(KEY).items():
        for a, b, c in zip(*map(jax.tree.leaves, (out, expected, plain)), strict=True):
            assert jnp.allclose(a, b, rtol=1e-5, atol=1e-6), name
            assert not jnp.allclose(a, c), name  # the multipliers did change the output


def test_labels_are_recorded_static_and_read_back_by_path():
    make = functools.partial(mlp, use_bias=True)
    infos = infer_leaves(make, 16, 32)
    plain = make(16, KEY)
    model = multiply(plain, lambda info: None, leaves=infos, label_for=lambda info: info.role)
    # Multiplier 1 everywhere, but labelled modules are wrapped to carry the labels.
    assert isinstance(model.hidden[0], Multiplied) and model.hidden[0].multipliers == ()
    assert block_labels(model) == {info.path: info.role for info in infos}
    x = jnp.linspace(-1, 1, 16)
    assert jnp.array_equal(model(x), plain(x))
    assert jax.tree.leaves(model) == jax.tree.leaves(plain)

    # Labels survive jit (static), and a later multiply keeps or replaces them.
    moved = eqx.filter_jit(lambda m: jax.tree.map(lambda a: a + 1.0, m))(model)
    assert block_labels(moved) == block_labels(model)
    scaled_too = multiply(model, lambda info: 2.0 if info.path == "embed.weight" else None)
    assert scaled_too.embed.multipliers == (("weight", 2.0),)
    assert block_labels(scaled_too) == block_labels(model)
    relabelled = multiply(
        model, lambda info: None, label_for=lambda info: "x" if "readout" in info.path else None
    )
    assert block_labels(relabelled)["readout.bias"] == "x"
    assert block_labels(relabelled)["embed.weight"] == "input"
    assert block_labels(unwrap(model)) == {}
