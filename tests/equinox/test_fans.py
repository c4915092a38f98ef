"""The fan table: fan-in, fan-out and their axes for every standard Equinox layer."""

import equinox as eqx
import jax
import pytest

from paramspec._equinox._fans import Layout, fans, leaf_layout

KEY = jax.random.key(0)


def _abstract(cls, *args, **kwargs):
    # Shapes only (no random draws to compile): the table reads shapes and static fields.
    return eqx.filter_eval_shape(cls, *args, **kwargs)


def _fans_of(module, field):
    shape = getattr(module, field).shape
    layout = leaf_layout(module, field, len(shape))
    assert layout is not None
    return fans(shape, layout), layout


def test_linear_weight_is_out_by_in_and_bias_is_a_vector():
    lin = _abstract(eqx.nn.Linear, 3, 5, key=KEY)
    (fan_in, fan_out), layout = _fans_of(lin, "weight")
    assert (fan_in, fan_out) == (3, 5)
    assert layout.fan_in_axes(2) == (1,) and layout.fan_out_axes(2) == (0,)
    (fan_in, fan_out), layout = _fans_of(lin, "bias")
    assert (fan_in, fan_out) == (1, 5)
    assert layout.fan_in == ()


def test_stacked_linear_leading_axes_are_in_neither_fan():
    keys = jax.random.split(KEY, 4)
    stacked = _abstract(jax.vmap(lambda k: eqx.nn.Linear(3, 5, key=k)), keys)
    assert stacked.weight.shape == (4, 5, 3)
    (fan_in, fan_out), layout = _fans_of(stacked, "weight")
    assert (fan_in, fan_out) == (3, 5)
    assert layout.fan_in_axes(3) == (2,) and layout.fan_out_axes(3) == (1,)
    assert _fans_of(stacked, "bias")[0] == (1, 5)


def test_embedding_fan_in_is_one_lookup():
    # A lookup reads one row: one term per output, whatever the vocabulary.
    emb = _abstract(eqx.nn.Embedding, 100, 8, key=KEY)
    (fan_in, fan_out), layout = _fans_of(emb, "weight")
    assert (fan_in, fan_out) == (1, 8)
    # The vocabulary axis is still the input axis (so role inference says `input`).
    assert layout.lookup and layout.fan_in_axes(2) == (0,)
    assert fans((100, 8), Layout(fan_in=(0,), fan_out=(1,))) == (100, 8)


@pytest.mark.parametrize(
    ("cls", "args", "kwargs", "expected"),
    [
        (eqx.nn.Conv1d, (4, 6, 3), {}, (4 * 3, 6 * 3)),
        (eqx.nn.Conv2d, (4, 6, (3, 5)), {}, (4 * 15, 6 * 15)),
        (eqx.nn.Conv2d, (4, 6, 3), {"groups": 2}, (2 * 9, 6 * 9)),
        (eqx.nn.Conv3d, (2, 3, 2), {}, (2 * 8, 3 * 8)),
        (eqx.nn.ConvTranspose2d, (4, 6, 3), {}, (4 * 9, 6 * 9)),
    ],
)
def test_conv_fan_in_is_channels_per_group_times_kernel(cls, args, kwargs, expected):
    module = _abstract(cls, *args, key=KEY, **kwargs)
    assert _fans_of(module, "weight")[0] == expected
    # The bias (out, 1, ..., 1) is a vector of the output channels.
    assert _fans_of(module, "bias")[0] == (1, module.out_channels)


def test_equinox_default_init_uses_the_same_conv_fan_in():
    # Equinox draws conv weights from U(-1/sqrt(fan_in), 1/sqrt(fan_in)): the largest
    # entry of a big draw sits just under that bound.
    conv = eqx.nn.Conv2d(8, 64, 3, groups=2, use_bias=False, key=KEY)
    (fan_in, _), _ = _fans_of(conv, "weight")
    bound = float(abs(conv.weight).max())
    assert 0.98 / fan_in**0.5 < bound <= 1 / fan_in**0.5


@pytest.mark.parametrize(
    "module",
    [
        eqx.nn.LayerNorm(8),
        eqx.nn.LayerNorm((4, 8)),
        eqx.nn.RMSNorm(8),
        eqx.nn.GroupNorm(2, 8),
    ],
)
def test_norm_gains_and_biases_are_vectors(module):
    for field in ("weight", "bias"):
        (fan_in, fan_out), layout = _fans_of(module, field)
        assert fan_in == 1 and layout.fan_in == ()
        assert fan_out == getattr(module, field).size


def test_rnn_cells_are_linear_like():
    cell = _abstract(eqx.nn.GRUCell, 3, 5, key=KEY)
    assert _fans_of(cell, "weight_ih")[0] == (3, 15)
    assert _fans_of(cell, "weight_hh")[0] == (5, 15)
    assert _fans_of(cell, "bias_n")[0] == (1, 5)


def test_subclasses_inherit_the_layout():
    class MyLinear(eqx.nn.Linear):
        pass

    assert _fans_of(_abstract(MyLinear, 3, 5, key=KEY), "weight")[0] == (3, 5)


def test_unknown_modules_vectors_are_read_and_matrices_are_not():
    class Custom(eqx.Module):
        pass

    assert leaf_layout(Custom(), "gain", 1) == Layout(fan_in=(), fan_out=(0,), ndim=1)
    assert leaf_layout(Custom(), "scale", 0) == Layout(fan_in=(), fan_out=(), ndim=0)
    assert leaf_layout(Custom(), "w", 2) is None
    assert leaf_layout(None, "w", 3) is None
    # A known module type with an unknown field is also unknown.
    assert leaf_layout(_abstract(eqx.nn.Linear, 2, 2, key=KEY), "extra", 2) is None


def test_layout_checks_its_axes():
    with pytest.raises(ValueError, match="outside the 2 axes"):
        Layout(fan_in=(2,), fan_out=(0,), ndim=2).fan_in_axes(2)
    with pytest.raises(ValueError, match="describes 2 axes but the parameter has only 1"):
        Layout(fan_in=(1,), fan_out=(0,), ndim=2).fan_in_axes(1)
