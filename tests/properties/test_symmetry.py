"""Property 2: the symmetry of theory.md §3. Shifting each layer by its own theta,
(a, b, c, e) -> (a + theta, b - theta, c - k theta, e + theta) with k = 2 for SGD, 1
for Adam, Adam-atan2 and Muon (whose orthogonalised update, like Adam's, does not see
the gradient's scale) and 0 for Adafactor (its update is relative to the stored
weight's RMS, which scales by n^theta; Adam's epsilon, Adafactor's and Muon's, follow
the gradient, which scales by n^(-theta)), leaves the effective weights W = n^(-a) w and
every output after 3 steps equal, in float64."""

from __future__ import annotations

import functools
from fractions import Fraction as F

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, note, settings
from hypothesis import strategies as st

import paramspec as ps
from paramspec import models
from paramspec._ir import Block, Exponent, Expr, Power, Spec

from ..strategies import examples

# Random specs (fixed learning rates among them) may be unstable for their optimizer:
# that is expected here, not a reason to warn.
pytestmark = [pytest.mark.property,
              pytest.mark.filterwarnings("ignore::paramspec.UnstableSpecWarning")]

HALF_GRID = st.sampled_from([F(k, 2) for k in range(-2, 3)])
SHIFT_C = {"sgd": 2, "adam": 1, "adam_atan2": 1, "adafactor": 0, "muon": 1}
ROLES = (("embedding", "input", F(0)), ("hidden", "hidden", F(1, 2)), ("readout", "output", F(1)))


def n_power(exponent: F) -> Expr:
    """n^(-exponent), the n^(-x) convention."""
    return Expr(powers=(Power(symbol="n", exponent=Exponent(const=-exponent)),))


def make_spec(name, exps):
    return Spec(
        name=name,
        blocks=tuple(
            Block(
                name=block,
                role=role,
                multiplier=n_power(a),
                init=n_power(b),
                lr=n_power(c),
                eps=n_power(e),
            )
            for (block, role, _), (a, b, c, e) in zip(ROLES, exps, strict=True)
        ),
    )


@st.composite
def shifted_pairs(draw, optimizer):
    exps, shifted = [], []
    for _, _, ab in ROLES:
        a, c, e, theta = draw(HALF_GRID), draw(HALF_GRID), draw(HALF_GRID), draw(HALF_GRID)
        exps.append((a, ab - a, c + 1, e))
        shifted.append((a + theta, ab - a - theta, c + 1 - SHIFT_C[optimizer] * theta, e + theta))
    return make_spec("original", exps), make_spec("shifted", shifted)


def train(spec, optimizer, steps, width=32):
    c = ps.compile(spec, width=width, base_width=8, optimizer=optimizer)
    model = c.init(functools.partial(models.mlp, depth=1), jax.random.key(0))
    # eps 1e-3 is not negligible next to the gradients, so Adam's e-rule is tested too
    opt = c.optimizer(model, learning_rate=1e-2, eps=1e-3)
    params = eqx.filter(model, eqx.is_inexact_array)
    state = opt.init(params)
    x = jax.random.normal(jax.random.key(1), (8, 16), dtype=jnp.float64)
    y = jax.random.normal(jax.random.key(2), (8, 8), dtype=jnp.float64)

    def loss(m):
        return jnp.mean((jax.vmap(m)(x) - y) ** 2)

    outputs = [jax.vmap(model)(x)]
    for _ in range(steps):
        grads = eqx.filter_grad(loss)(model)
        updates, state = opt.update(grads, state, eqx.filter(model, eqx.is_inexact_array))
        model = eqx.apply_updates(model, updates)
        outputs.append(jax.vmap(model)(x))
    return np.stack([np.asarray(o) for o in outputs])


@pytest.mark.parametrize("optimizer", sorted(SHIFT_C))
@settings(max_examples=examples(2))
@given(data=st.data())
def test_a_theta_shift_trains_identically(optimizer, data):
    spec, shifted = data.draw(shifted_pairs(optimizer))
    note(f"optimizer {optimizer}\n{ps.render(spec)}\n{ps.render(shifted)}")
    with jax.enable_x64(True):
        a = train(spec, optimizer, steps=3)
        b = train(shifted, optimizer, steps=3)
    assert a.dtype == np.float64
    np.testing.assert_allclose(
        b, a, rtol=1e-9, atol=1e-12, err_msg=f"{optimizer}\n{ps.render(spec)}\n{ps.render(shifted)}"
    )
    assert not np.allclose(a[0], a[-1]), "the model did not train"
