"""Epsilon underflow (theory.md section 6), demonstrated on synthetic width-scaled gradients.

Raw gradients of a hidden layer shrink with width like `n^(-g)` (g = 1 for muP/NTK
hidden layers, theory.md section 6 table). Adam's step is `m / (sqrt(v) + eps)`: with
a constant eps, once `sqrt(v)` falls below eps the step becomes `m / eps ∝ n^(-g)` and
the update exponent silently changes from 0 to -g. Per-leaf `eps = eps0 (n/n0)^(-g)` and
Adam-atan2 keep it at 0.

Magnitudes (chosen so the effect is real at these small widths): gradient entries of
rms ~1.1e-7 at the base width n0 = 64 (the signal is 0.5 plus unit noise, times
s0 = 1e-7), falling to ~1.7e-9 at n = 4096; Adam's default eps = 1e-8. At n0,
`eps / sqrt(v) ~ 0.1` (a 10% effect, the regime one tunes in); at 4096 it is ~6 and eps
dominates. Gradients this small are what large language models see per entry (Everett
et al. 2024 report eps mattering at scale); here the widths are small, so the
gradients start small. Each width is one leaf of shape (n, 16): the per-entry update
does not depend on the fan-out, and this keeps the test cheap.
"""

from __future__ import annotations

import functools
from fractions import Fraction

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from paramspec._optax._chain import build_optimizer

WIDTHS = [64, 256, 1024, 4096]
N0 = 64
G = Fraction(1)  # gradient exponent: gradients ∝ n^(-g)
S0 = 1e-7  # gradient scale at the base width
EPS0 = 1e-8  # Adam's default epsilon, the constant one
STEPS = 10
COLS = 16


def _width_factor(n: int, exponent: Fraction) -> float:
    return float((n / N0) ** -float(exponent))


@functools.cache
def _gradients() -> dict[str, np.ndarray]:
    """Stacked gradients, one leaf (steps, n, COLS) per width; the same signal and noise
    (the first n rows) at every width, so the widths differ only by their scale."""
    rng = np.random.default_rng(0)
    signal = 0.5 * np.sign(rng.normal(size=(max(WIDTHS), COLS)))
    noise = rng.normal(size=(STEPS, max(WIDTHS), COLS))
    return {
        f"w{n}": (S0 * _width_factor(n, G) * (signal[:n] + noise[:, :n])).astype(np.float32)
        for n in WIDTHS
    }


def _update_rms(kind: str, eps: dict[str, float]) -> np.ndarray:
    """Mean over the steps of rms(update), per width, through the compiled chain."""
    names = [f"w{n}" for n in WIDTHS]
    opt = build_optimizer(
        kind,
        learning_rate=1.0,
        lr_scale=dict.fromkeys(names, 1.0),
        eps=eps,
        weight_decay=dict.fromkeys(names, 0.0),
    )
    params = {f"w{n}": jnp.zeros((n, COLS)) for n in WIDTHS}

    @jax.jit
    def run(grads):
        def step(state, g):
            updates, state = opt.update(g, state, params)
            return state, jnp.stack([jnp.sqrt(jnp.mean(updates[k] ** 2)) for k in names])

        return jax.lax.scan(step, opt.init(params), grads)[1]

    return np.asarray(run(_gradients())).mean(axis=0)


def _slope(rms: np.ndarray, widths=WIDTHS) -> float:
    return float(np.polyfit(np.log(widths), np.log(rms), 1)[0])


@pytest.fixture(scope="module")
def rms():
    constant = {f"w{n}": EPS0 for n in WIDTHS}
    per_leaf = {f"w{n}": EPS0 * _width_factor(n, G) for n in WIDTHS}
    return {
        "constant eps": _update_rms("adam", constant),
        "per-leaf eps": _update_rms("adam", per_leaf),
        "atan2": _update_rms("adam_atan2", constant),  # eps is ignored by atan2
    }


def test_constant_eps_silently_changes_the_update_exponent(rms):
    r = rms["constant eps"]
    assert np.all(np.isfinite(r))
    slope = _slope(r)
    assert slope < -0.3, slope  # over 64..4096: clearly not 0
    # At the largest widths the step is m/eps: the local exponent approaches -g.
    tail = _slope(r[-2:], WIDTHS[-2:])
    assert tail < -0.6 * float(G), tail
    # A visible effect, not a rounding one: at 4096 the step is ~6x too small.
    assert r[-1] < 0.25 * rms["per-leaf eps"][-1]


def test_per_leaf_eps_keeps_the_exponent(rms):
    r = rms["per-leaf eps"]
    assert abs(_slope(r)) < 0.01, _slope(r)
    np.testing.assert_allclose(r, r[0], rtol=0.01)  # the same step at every width
    # Identical to the constant eps at the base width, where the two eps agree.
    np.testing.assert_allclose(r[0], rms["constant eps"][0], rtol=1e-6)


def test_atan2_keeps_the_exponent(rms):
    r = rms["atan2"]
    assert abs(_slope(r)) < 0.01, _slope(r)
    np.testing.assert_allclose(r, r[0], rtol=0.01)
