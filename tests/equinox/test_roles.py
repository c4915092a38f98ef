"""Role inference: every leaf gets the role a person would give it."""

import functools

import equinox as eqx
import jax
import jax.numpy as jnp
import optax
import pytest

from paramspec._equinox import (
    Layout,
    LeafInfo,
    RoleInferenceError,
    describe_leaves,
    infer_leaves,
    leaf_paths,
    map_parameters,
    multiply,
)
from paramspec.models import mlp, transformer


def _roles(infos):
    return {info.path: info.role for info in infos}


def test_transformer_roles_are_the_ones_a_person_gives():
    make = functools.partial(transformer, depth=2, head_dim=8)
    block = {
        "attn_norm.weight": "vector",
        "attn.query_proj.weight": "hidden",
        "attn.key_proj.weight": "hidden",
        "attn.value_proj.weight": "hidden",
        "attn.output_proj.weight": "hidden",
        "mlp_norm.weight": "vector",
        "up.weight": "hidden",
        "down.weight": "hidden",
    }
    expected = {
        "token_embed.weight": "input",
        "pos_embed.weight": "input",
        **{f"blocks[{i}].{k}": v for i in range(2) for k, v in block.items()},
        "final_norm.weight": "vector",
        "readout.weight": "output",
    }
    infos = infer_leaves(make, 32, 64)
    assert _roles(infos) == expected
    # Shapes and fans are those at `width`, with the FFN ratio and the head count.
    by_path = {info.path: info for info in infos}
    up = by_path["blocks[0].up.weight"]
    assert (up.shape, up.fan_in, up.fan_out) == ((128, 32), 32, 128)
    down = by_path["blocks[1].down.weight"]
    assert (down.fan_in, down.fan_out) == (128, 32)
    emb = by_path["token_embed.weight"]
    assert (emb.module_type, emb.field, emb.fan_in, emb.fan_out) == ("Embedding", "weight", 1, 32)
    gain = by_path["final_norm.weight"]
    assert (gain.module_type, gain.fan_in, gain.fan_out) == ("LayerNorm", 1, 32)


def test_roles_do_not_depend_on_which_other_width():
    make = functools.partial(transformer, depth=1, head_dim=8)
    assert infer_leaves(make, 32, 16) == infer_leaves(make, 32, 96)


def test_mlp_roles_with_biases():
    make = functools.partial(mlp, depth=2, use_bias=True)
    assert _roles(infer_leaves(make, 8, 16)) == {
        "embed.weight": "input",
        "embed.bias": "vector",
        "hidden[0].weight": "hidden",
        "hidden[0].bias": "vector",
        "hidden[1].weight": "hidden",
        "hidden[1].bias": "vector",
        "readout.weight": "output",
        "readout.bias": "constant",
    }


def test_equinox_mlp_with_scanned_hidden_layers():
    def make(width, key):
        return eqx.nn.MLP(3, 2, width, depth=4, scan=True, key=key)

    infos = infer_leaves(make, 8, 16)
    assert _roles(infos) == {
        "layers[0].weight": "input",
        "layers[0].bias": "vector",
        "layers[1].weight": "hidden",  # (3, 8, 8): 3 stacked copies
        "layers[1].bias": "vector",
        "layers[2].weight": "output",
        "layers[2].bias": "constant",
    }
    stacked = infos[2]
    assert (stacked.shape, stacked.fan_in, stacked.fan_out) == ((3, 8, 8), 8, 8)


def test_conv_net_roles():
    class ConvNet(eqx.Module):
        stem: eqx.nn.Conv2d
        body: eqx.nn.Conv2d
        norm: eqx.nn.GroupNorm
        head: eqx.nn.Linear

    def make(width, key):
        k1, k2, k3 = jax.random.split(key, 3)
        return ConvNet(
            eqx.nn.Conv2d(3, width, 3, key=k1),
            eqx.nn.Conv2d(width, width, 3, groups=4, key=k2),
            eqx.nn.GroupNorm(4, width),
            eqx.nn.Linear(width, 10, key=k3),
        )

    assert _roles(infer_leaves(make, 8, 16)) == {
        "stem.weight": "input",
        "stem.bias": "vector",
        "body.weight": "hidden",
        "body.bias": "vector",
        "norm.weight": "vector",
        "norm.bias": "vector",
        "head.weight": "output",
        "head.bias": "constant",
    }


class _Custom(eqx.Module):
    w: jax.Array
    gain: jax.Array
    scale: jax.Array
    steps: jax.Array

    def __init__(self, width, vocab=10):
        self.w = jnp.zeros((vocab, width))
        self.gain = jnp.ones(width)
        self.scale = jnp.array(1.0)
        self.steps = jnp.zeros(width, dtype=jnp.int32)  # not a parameter


def test_unknown_matrix_in_a_custom_module_is_a_clear_error():
    with pytest.raises(RoleInferenceError, match=r"cannot tell the fan-in") as info:
        infer_leaves(lambda width, key: _Custom(width), 8, 16)
    text = str(info.value)
    assert "w  (_Custom.w, shape (10, 8), ndim 2)" in text
    assert 'layouts={"_Custom.w": Layout(fan_in=(0,), fan_out=(1,))}' in text
    assert "eqx.nn" in text


@pytest.mark.parametrize("key", ["_Custom.w", "w"])
def test_layouts_resolve_custom_matrices_by_type_or_path(key):
    layouts = {key: Layout(fan_in=(0,), fan_out=(1,))}  # (vocab, width), used as x @ w
    infos = infer_leaves(lambda width, key: _Custom(width), 8, 16, layouts=layouts)
    assert _roles(infos) == {"w": "input", "gain": "vector", "scale": "constant"}
    assert (infos[0].fan_in, infos[0].fan_out) == (10, 8)
    assert infos[0].module_type == "_Custom" and infos[0].field == "w"


def test_only_inexact_arrays_are_parameters_and_state_is_not():
    class WithState(eqx.Module):
        bn: eqx.nn.BatchNorm
        dropout: eqx.nn.Dropout
        table: jax.Array
        activation: object = jax.nn.relu

    def make(width, key):
        return WithState(
            eqx.nn.BatchNorm(width, "batch", mode="ema"), eqx.nn.Dropout(0.1), jnp.arange(width)
        )

    assert _roles(infer_leaves(make, 8, 16)) == {"bn.weight": "vector", "bn.bias": "vector"}


def test_leaves_outside_modules_and_dict_paths():
    def make(width, key):
        return {"w": jnp.zeros(width), "layers": [eqx.nn.Linear(width, width, key=key)]}

    infos = infer_leaves(make, 4, 8)
    assert _roles(infos) == {
        "['layers'][0].weight": "hidden",
        "['layers'][0].bias": "vector",
        "['w']": "vector",
    }
    assert infos[-1].module_type is None and infos[-1].field is None


def test_same_width_twice_is_an_error():
    with pytest.raises(RoleInferenceError, match="two different widths, got 8 twice"):
        infer_leaves(mlp, 8, 8)


def test_structure_that_changes_with_width_is_an_error():
    def make(width, key):
        return mlp(width, key, depth=width // 8)

    with pytest.raises(
        RoleInferenceError,
        match=r"parameter 2 is readout\.weight at width 8 but hidden\[1\]\.weight",
    ):
        infer_leaves(make, 8, 16)


def test_a_stacked_axis_that_grows_is_an_error():
    def make(width, key):
        keys = jax.random.split(key, width)
        return jax.vmap(lambda k: eqx.nn.Linear(3, 3, key=k))(keys)

    with pytest.raises(RoleInferenceError, match=r"neither\s+their fan-in nor their fan-out"):
        infer_leaves(make, 4, 8)


def test_describe_leaves_has_no_roles_and_sees_through_multipliers():
    model = eqx.filter_eval_shape(functools.partial(mlp, use_bias=True), 8, jax.random.key(0))
    infos = describe_leaves(model)
    assert all(isinstance(info, LeafInfo) and info.role is None for info in infos)
    assert [info.path for info in infos] == leaf_paths(model)
    wrapped = multiply(model, lambda info: 2.0)
    assert leaf_paths(wrapped) == leaf_paths(model)
    assert describe_leaves(wrapped) == infos


class _Many(eqx.Module):
    layers: tuple[eqx.nn.Linear, ...]


def _many(n_layers, width, key):
    # One small Linear repeated: cheap to trace, yet `n_layers` distinct paths and
    # 2 * n_layers leaves for role inference to walk.
    return _Many((eqx.nn.Linear(2, width, key=key),) * n_layers)


def test_ten_thousand_leaves():
    # Correctness at 10k leaves; the linear *time* is a benchmark, not a timed test
    # (benchmarks/label_scaling.py reports the 10k/1k ratio, ~10).
    infos = infer_leaves(functools.partial(_many, 5000), 4, 8)
    assert len(infos) == 10_000
    assert {info.role for info in infos} == {"input", "vector"}
    assert infos[-1].path == "layers[4999].bias"


def test_map_parameters_lines_up_with_the_model_for_optax_and_filters():
    make = functools.partial(mlp, use_bias=True)
    infos = infer_leaves(make, 8, 16)
    model = multiply(make(8, jax.random.key(0)), lambda info: 2.0, leaves=infos)
    labels = map_parameters(lambda info: info.role, model, leaves=infos)
    assert jax.tree.structure(labels) == jax.tree.structure(eqx.filter(model, eqx.is_inexact_array))
    assert sorted(jax.tree.leaves(labels)) == sorted(info.role for info in infos)
    rates = {"input": 1.0, "hidden": 0.5, "output": 0.25, "vector": 2.0, "constant": 0.0}
    # The label tree is a Module, hence callable: hand it to optax through a function.
    opt = optax.partition({r: optax.sgd(lr) for r, lr in rates.items()}, lambda _: labels)
    params = eqx.filter(model, eqx.is_inexact_array)
    ones = jax.tree.map(jnp.ones_like, params)
    updates, _ = opt.update(ones, opt.init(params), params)
    assert jnp.all(updates.hidden[0].module.weight == -0.5)
    assert jnp.all(updates.readout.module.bias == 0.0)

    # As a filter spec it selects the parameters and not the BatchNorm running stats.
    bn = eqx.nn.BatchNorm(4, "batch", mode="ema")
    spec = map_parameters(lambda info: True, bn, other=False)
    kept = jax.tree.leaves(eqx.filter(bn, spec))
    assert len(kept) == 2 and len(jax.tree.leaves(eqx.filter(bn, eqx.is_inexact_array))) > 2
