"""Property 5: accounting. `c.init` gives every array leaf of a random model exactly one
block of a built-in spec, of the role the model's docstring promises."""

from __future__ import annotations

import functools

import equinox as eqx
import jax
import pytest
from hypothesis import given, note, settings
from hypothesis import strategies as st

import paramspec as ps
from paramspec import models
from paramspec._equinox._multiply import block_labels
from paramspec._equinox._roles import leaf_paths

from ..strategies import examples

pytestmark = pytest.mark.property

BUILTINS = ("mup", "sp", "ntk", "mfp", "sp-perlayer", "sp-global", "sp-embed-lr")
EXPECTED_ROLE = {  # last part of the path -> role (paramspec.models docstring)
    "embed.weight": "input",
    "token_embed.weight": "input",
    "pos_embed.weight": "input",
    "readout.weight": "output",
    "readout.bias": "constant",
    "norm.weight": "vector",
    "bias": "vector",
    "weight": "hidden",
}


def expected_role(path: str) -> str:
    for suffix, role in EXPECTED_ROLE.items():
        if path == suffix or path.endswith("." + suffix) or path.endswith("_" + suffix):
            return role
    raise AssertionError(f"no expected role for {path}")


def assert_accounted(name, model):
    spec = ps.load(name)
    note(ps.render(spec))
    labels = block_labels(model)
    paths = leaf_paths(model)
    arrays = jax.tree_util.tree_leaves(eqx.filter(model, eqx.is_array))
    assert len(paths) == len(set(paths)) == len(arrays), (paths, len(arrays))
    assert sorted(labels) == sorted(paths), f"unlabelled {set(paths) - set(labels)}"
    roles = {b.name: b.role for b in spec.blocks}
    for path in paths:
        assert labels[path] in roles, f"{path} -> unknown block {labels[path]}"
        assert roles[labels[path]] == expected_role(path), f"{path} -> {labels[path]}"


@settings(max_examples=examples(8))
@given(
    name=st.sampled_from(BUILTINS),
    width=st.sampled_from([4, 8]),
    depth=st.integers(0, 3),
    use_bias=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_every_mlp_leaf_gets_exactly_one_block(name, width, depth, use_bias, seed):
    make = functools.partial(models.mlp, depth=depth, use_bias=use_bias)
    model = ps.compile(name, width=width).init(make, jax.random.key(seed))
    assert_accounted(name, model)


@settings(max_examples=examples(2))
@given(name=st.sampled_from(BUILTINS), heads=st.sampled_from([1, 2]), depth=st.integers(0, 2))
def test_every_transformer_leaf_gets_exactly_one_block(name, heads, depth):
    make = functools.partial(models.transformer, depth=depth, head_dim=8, vocab=16, seq_len=8)
    model = ps.compile(name, width=8 * heads).init(make, jax.random.key(0))
    assert_accounted(name, model)
