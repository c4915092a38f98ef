"""The absorbed form trains exactly like the multiplier form (and fails loudly where not).

The training loop is written here with jax.numpy + optax, independently of the
project's compiled optimizer: a 3-matrix linear network (embedding, hidden, readout)
trained 10 steps in float64, once as `W = m * w` with the spec's numbers and once as
`w' = m * w` with `absorb`'s numbers. The effective weights must agree to rounding.
"""

from __future__ import annotations

import math
from fractions import Fraction as F

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import paramspec as ps
from paramspec._analysis._absorb import absorb, absorb_layer

try:  # the project's transform; written concurrently, so fall back to a reference
    from paramspec._optax._atan2 import scale_by_adam_atan2 as _atan2
except ImportError:  # pragma: no cover - only while paramspec._optax is missing
    _atan2 = None

LAYERS = ("embedding", "hidden", "readout")
D_IN, D_OUT, WIDTH, BASE = 3, 2, 12, 4  # n = 3: multipliers far from 1, not powers of 2
LR, EPS, WD, STEPS = 0.05, 1e-3, 0.1, 10


def _reference_atan2(b1=0.9, b2=0.999, a=1.27, b=1.0) -> optax.GradientTransformation:
    """Adam-atan2 (theory.md §6) from the paper's formula, for when the project's is missing."""

    def init(params):
        zeros = jax.tree.map(jnp.zeros_like, params)
        return (jnp.zeros([], jnp.int32), zeros, zeros)

    def update(grads, state, params=None):
        count, mu, nu = state
        count = count + 1
        mu = jax.tree.map(lambda m, g: b1 * m + (1 - b1) * g, mu, grads)
        nu = jax.tree.map(lambda v, g: b2 * v + (1 - b2) * g * g, nu, grads)
        c1, c2 = 1 - b1**count, 1 - b2**count
        out = jax.tree.map(lambda m, v: a * jnp.arctan2(m / c1, b * jnp.sqrt(v / c2)), mu, nu)
        return out, (count, mu, nu)

    return optax.GradientTransformation(init, update)


def _core(optimizer: str, eps: float) -> optax.GradientTransformation:
    if optimizer == "sgd":
        return optax.trace(decay=0.9)
    if optimizer == "adam":
        return optax.scale_by_adam(eps=eps)
    if optimizer == "adam_atan2":
        return (_atan2 or _reference_atan2)()
    # Adafactor as optax.adafactor builds it; these shapes are too small to factor.
    return optax.chain(
        optax.scale_by_factored_rms(epsilon=eps * eps),
        optax.clip_by_block_rms(1.0),
        optax.scale_by_param_block_rms(),
    )


def _optimizer(optimizer: str, lr: dict, eps: dict, wd: dict) -> optax.GradientTransformation:
    """Per-leaf: w -= LR * lr_l * (u_l + WD * wd_l * w), the compiled optimizer's convention."""
    parts = {
        name: optax.chain(
            _core(optimizer, EPS * eps[name]),
            optax.add_decayed_weights(WD * wd[name]),
            optax.scale(-LR * lr[name]),
        )
        for name in LAYERS
    }
    return optax.partition(parts, {name: name for name in LAYERS})


def _train(optimizer, init, mult, lr, eps, wd):
    """10 steps of full-batch MSE; returns the effective weights mult * w."""
    key = jax.random.PRNGKey(1)
    x = jax.random.normal(key, (8, D_IN), dtype=jnp.float64)
    y = jax.random.normal(jax.random.fold_in(key, 1), (8, D_OUT), dtype=jnp.float64)

    def loss(params):
        h = x @ (mult["embedding"] * params["embedding"]).T
        h = jnp.tanh(h @ (mult["hidden"] * params["hidden"]).T)
        out = h @ (mult["readout"] * params["readout"]).T
        return jnp.mean((out - y) ** 2)

    opt = _optimizer(optimizer, lr, eps, wd)
    params, state = dict(init), opt.init(init)
    grad = jax.jit(jax.grad(loss))
    for _ in range(STEPS):
        updates, state = opt.update(grad(params), state, params)
        params = optax.apply_updates(params, updates)
    return {name: np.asarray(mult[name] * params[name]) for name in LAYERS}


SHAPES = {"embedding": (WIDTH, D_IN), "hidden": (WIDTH, WIDTH), "readout": (D_OUT, WIDTH)}


def _both_forms(spec: str, optimizer: str, *, shift_eps: bool = True, absorbed_lr=None):
    c = ps.compile(spec, width=WIDTH, base_width=BASE, optimizer=optimizer)
    fans = {name: {"fan_in": s[1], "fan_out": s[0]} for name, s in SHAPES.items()}
    key = jax.random.PRNGKey(0)
    w, mult, lr, eps, wd = {}, {}, {}, {}, {}
    for i, name in enumerate(LAYERS):
        std = c.value(name, "init", **fans[name])
        w[name] = std * jax.random.normal(
            jax.random.fold_in(key, i), SHAPES[name], dtype=jnp.float64
        )
        for store, q in ((mult, "multiplier"), (lr, "lr"), (eps, "eps"), (wd, "wd")):
            store[name] = c.value(name, q, **fans[name])
    multiplier_form = _train(optimizer, w, mult, lr, eps, wd)
    folded = {n: absorb_layer(c, n, shift_eps=shift_eps, **fans[n]) for n in LAYERS}
    w2 = {n: folded[n].init_scale * w[n] for n in LAYERS}
    ones = dict.fromkeys(LAYERS, 1.0)
    lr2 = (
        absorbed_lr(c, folded, mult, lr) if absorbed_lr else {n: folded[n].lr_scale for n in LAYERS}
    )
    absorbed_form = _train(
        optimizer,
        w2,
        ones,
        lr2,
        {n: folded[n].eps_scale for n in LAYERS},
        {n: folded[n].wd_scale for n in LAYERS},
    )
    start = {n: np.asarray(w2[n]) for n in LAYERS}
    return start, mult, multiplier_form, absorbed_form


def _max_rel(a: dict, b: dict) -> float:
    return max(float(np.max(np.abs(a[n] - b[n])) / np.max(np.abs(a[n]))) for n in LAYERS)


@pytest.mark.parametrize("optimizer", ["sgd", "adam_atan2", "adam", "adafactor"])
@pytest.mark.parametrize("spec", ["mup", "mfp"])
def test_absorbed_form_trains_like_the_multiplier_form(spec, optimizer):
    with jax.enable_x64(True):
        _, mult, multiplier_form, absorbed_form = _both_forms(spec, optimizer)
    assert any(abs(m - 1) > 0.4 for m in mult.values())  # the test folds real multipliers
    # paramspec's atan2 kernel computes in float32 (see _optax/_atan2.py); the rest is float64.
    tol = 1e-6 if optimizer == "adam_atan2" else 1e-10
    assert _max_rel(multiplier_form, absorbed_form) < tol


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_the_trajectory_moved(optimizer):
    """Guard: 10 steps change every weight, so the agreement above is not trivial."""
    with jax.enable_x64(True):
        start, _, trained, _ = _both_forms("mup", optimizer)
    for name in LAYERS:
        change = np.max(np.abs(trained[name] - start[name])) / np.max(np.abs(start[name]))
        assert change > 1e-3, name


def test_adam_needs_the_shifted_epsilon():
    """Kept epsilon: the forms part (so the eps matters here), and absorb refuses it."""
    with jax.enable_x64(True):
        _, _, multiplier_form, absorbed_form = _both_forms("mup", "sgd", shift_eps=False)
        assert _max_rel(multiplier_form, absorbed_form) < 1e-10  # sgd has no epsilon
        c = ps.compile("mup", width=WIDTH, base_width=BASE, optimizer="adam")
        fans = {n: {"fan_in": s[1], "fan_out": s[0]} for n, s in SHAPES.items()}
        # Train the absorbed form by hand with eps kept: it must differ.
        key = jax.random.PRNGKey(0)
        w = {
            n: c.value(n, "init", **fans[n])
            * jax.random.normal(jax.random.fold_in(key, i), SHAPES[n], dtype=jnp.float64)
            for i, n in enumerate(LAYERS)
        }
        mult = {n: c.value(n, "multiplier", **fans[n]) for n in LAYERS}
        lr = {n: c.value(n, "lr", **fans[n]) for n in LAYERS}
        eps = {n: c.value(n, "eps", **fans[n]) for n in LAYERS}
        wd = {n: c.value(n, "wd", **fans[n]) for n in LAYERS}
        reference = _train("adam", w, mult, lr, eps, wd)
        folded = {n: absorb_layer(c, n, **fans[n]) for n in LAYERS}
        kept = _train(
            "adam",
            {n: mult[n] * w[n] for n in LAYERS},
            dict.fromkeys(LAYERS, 1.0),
            {n: folded[n].lr_scale for n in LAYERS},
            eps,
            {n: folded[n].wd_scale for n in LAYERS},
        )
    assert _max_rel(reference, kept) > 1e-4
    with pytest.raises(ps.SpecError, match="cannot be absorbed with its epsilon kept"):
        absorb(c, shift_eps=False)


def test_atan2_with_the_slip_of_theory_md_would_be_wrong():
    """theory.md §3 says atan2 keeps c (lr' = lr); the right rule is lr' = |m| lr."""

    def slipped(c, folded, mult, lr):
        return dict(lr)

    with jax.enable_x64(True):
        _, _, multiplier_form, absorbed_form = _both_forms("mup", "adam_atan2", absorbed_lr=slipped)
    assert _max_rel(multiplier_form, absorbed_form) > 1e-3


def test_values_follow_the_folding_rules():
    n = 1024 / 256
    c = ps.compile("mup", width=1024, base_width=256, optimizer="adam")
    emb = absorb(c)["embedding"]
    m, s = n**0.5, n**-0.5  # mup embedding: multiplier n^(1/2), init n^(-1/2)
    assert emb.multiplier == 1.0
    assert math.isclose(emb.init_scale, m)
    assert math.isclose(emb.init_std, m * s)
    assert math.isclose(emb.lr_scale, n**-0.5 * m)  # lr auto: c = 1/2; adam: l |m|
    assert math.isclose(emb.eps_scale, n**-0.5 / m)  # eps auto: e = g = 1/2; eps / |m|
    assert math.isclose(emb.lr_scale * emb.wd_scale, n**-0.5 * 1.0)  # lr * wd kept
    sgd = absorb(ps.compile("mup", width=1024, base_width=256, optimizer="sgd"))
    assert math.isclose(sgd["readout"].lr_scale, 1.0 * (n**-0.5) ** 2)  # c = 0; l m^2
    ada = absorb(ps.compile("mup", width=1024, base_width=256, optimizer="adafactor"))
    assert math.isclose(ada["embedding"].lr_scale, 1.0)  # c = 0; adafactor: l


@pytest.mark.parametrize(
    "optimizer,k", [("sgd", 2), ("adam", 1), ("adam_atan2", 1), ("adafactor", 0)]
)
def test_absorbed_exponents(optimizer, k):
    c = ps.compile("mfp", width=64, optimizer=optimizer)
    for name, layer in absorb(c).items():
        t = c.theory.layers[name]
        assert layer.exponents["a"] == 0
        assert layer.theta == -t.a
        assert layer.exponents["b"] == t.a + t.b
        assert layer.exponents["c"] == t.c + k * t.a
        if optimizer in ("adam", "adafactor"):
            assert layer.exponents["e"] == t.e - t.a
        assert layer.exponents["c"] + layer.exponents["wd"] == t.c + t.wd


def test_multiplier_zero_is_an_error():
    # The language rejects `multiplier 0`; a Spec built in Python can still carry one.
    spec = ps.load("mup")
    hidden = spec.block("hidden").model_copy(update={"multiplier": ps.Expr(constant=0)})
    blocks = tuple(hidden if b.name == "hidden" else b for b in spec.blocks)
    c = ps.compile(spec.model_copy(update={"blocks": blocks}), width=8, optimizer="sgd")
    with pytest.raises(ps.SpecError, match="has multiplier 0"):
        absorb(c)


def test_adafactor_floor_is_an_error():
    # mfp's readout: init 1, multiplier 1/fan_in = 1/1024 < 1e-3 after folding.
    with pytest.raises(ps.SpecError, match="parameter-scale floor 0.001"):
        absorb(ps.compile("mfp", width=1024, optimizer="adafactor"))
    spec = ps.parse("spec z\nextends mup\nreadout {\n  init 0\n}\n")
    with pytest.raises(ps.SpecError, match="it starts at zero"):
        absorb(ps.compile(spec, width=64, optimizer="adafactor"))
    assert absorb(ps.compile(spec, width=64, optimizer="adam"))["readout"].init_std == 0.0


def test_unknown_block():
    c = ps.compile("mup", width=64)
    with pytest.raises(ps.SpecError, match="has no block `nope`"):
        absorb_layer(c, "nope")


def test_exponent_fractions_are_exact():
    layer = absorb(ps.compile("mup", width=64))["readout"]
    assert layer.exponents["b"] == F(1) and isinstance(layer.exponents["b"], F)
    assert layer.to_dict()["exponents"]["b"] == "1"
