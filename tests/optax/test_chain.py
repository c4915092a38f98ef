"""`build_optimizer` against hand-written Optax chains, and per-leaf Adam epsilon."""

from __future__ import annotations

import functools
import math
import os
import subprocess
import sys
import textwrap

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from paramspec._optax._adam_eps import scale_by_adam_per_leaf_eps
from paramspec._optax._atan2 import adam_atan2
from paramspec._optax._chain import (
    PER_LEAF_ARGS,
    OptimizerConfigError,
    OptimizerTypeError,
    build_optimizer,
)

KINDS = ("adam", "adam_atan2", "sgd", "adafactor")
LR = 3e-2

# One leaf per role, each with its own numbers. "hidden" has tiny gradients (1e-8) and
# an eps of the same size, so a wrong per-leaf eps changes its updates visibly.
SHAPES = {"embed": (6, 16), "hidden": (16, 16), "readout": (16, 3), "bias": (16,)}
GRAD_SIZE = {"embed": 1.0, "hidden": 1e-8, "readout": 1e-2, "bias": 0.3}
LR_SCALE = {"embed": 1.0, "hidden": 0.25, "readout": 0.5, "bias": 2.0}
EPS = {"embed": 1e-8, "hidden": 3e-9, "readout": 1e-6, "bias": 1e-8}
WD = {"embed": 0.1, "hidden": 0.0, "readout": 0.05, "bias": 0.0}
ADAFACTOR = {"min_dim_size_to_factor": 4}  # factor the small matrices too


def _params(dtype=jnp.float32):
    rng = np.random.default_rng(0)
    return {k: jnp.asarray((rng.normal(size=s) * 0.5).astype(dtype)) for k, s in SHAPES.items()}


def _grad_seq(steps: int, seed: int = 1) -> dict[str, np.ndarray]:
    """Stacked gradients, leaf -> (steps, *shape), as numpy (slicing them is free)."""
    rng = np.random.default_rng(seed)
    return {
        k: (GRAD_SIZE[k] * (rng.normal(size=(steps, *s)) + 0.5)).astype(np.float32)
        for k, s in SHAPES.items()
    }


def _step(grads, t=0):
    return {k: g[t] for k, g in grads.items()}


def _trajectory(opt, params, grads):
    """Params after each of the stacked steps (leaf -> (steps, *shape)), and the state.

    One jitted `lax.scan` of `update` + `optax.apply_updates`: one compilation.
    """

    @jax.jit
    def run(params, grads):
        def step(carry, g):
            params, state = carry
            updates, state = opt.update(g, state, params)
            params = optax.apply_updates(params, updates)
            return (params, state), params

        (_, state), path = jax.lax.scan(step, (params, opt.init(params)), grads)
        return path, state

    return run(params, grads)


def _reference(kind: str, learning_rate=LR):
    """The same optimizer written by hand: one Optax optimizer per leaf via `partition`."""

    def leaf(k):
        e, wd, lr = EPS[k], WD[k], learning_rate * LR_SCALE[k]
        if kind == "adam":
            return optax.adamw(lr, eps=e, weight_decay=wd)
        if kind == "adam_atan2":
            return adam_atan2(lr, weight_decay=wd)
        if kind == "sgd":
            return optax.chain(
                optax.trace(0.9), optax.add_decayed_weights(wd), optax.scale_by_learning_rate(lr)
            )
        # optax.adafactor scales by lr before its decay, which it does not multiply by lr.
        return optax.adafactor(lr, eps=e * e, weight_decay_rate=lr * wd, **ADAFACTOR)

    return optax.partition({k: leaf(k) for k in SHAPES}, {k: k for k in SHAPES})


def _compiled(kind: str, **kwargs):
    kwargs.setdefault("learning_rate", LR)
    if kind == "adafactor":
        kwargs.setdefault("adafactor_kwargs", ADAFACTOR)
    return build_optimizer(kind, lr_scale=LR_SCALE, eps=EPS, weight_decay=WD, **kwargs)


def _assert_trees_close(got, want, rtol=1e-5, atol=1e-6):
    assert jax.tree.structure(got) == jax.tree.structure(want)
    for (path, a), b in zip(
        jax.tree_util.tree_flatten_with_path(got)[0], jax.tree.leaves(want), strict=True
    ):
        np.testing.assert_allclose(
            np.asarray(a), np.asarray(b), rtol=rtol, atol=atol, err_msg=jax.tree_util.keystr(path)
        )


# --- the compiled chain equals the hand-written one -------------------------------------


@functools.cache
def _compiled_path(kind: str):
    """The compiled chain's 40-step trajectory, shared by the tests that need it."""
    return _trajectory(_compiled(kind), _params(), _grad_seq(40))


@pytest.mark.parametrize("kind", KINDS)
def test_equals_hand_written_partition_over_many_jitted_steps(kind):
    params, grads = _params(), _grad_seq(40)
    got, state = _compiled_path(kind)
    want, _ = _trajectory(_reference(kind), params, grads)
    _assert_trees_close(got, want)  # all 40 steps
    # The parameters moved (else equality would prove nothing), each by its own rule.
    for k in SHAPES:
        assert not np.allclose(np.asarray(got[k][-1]), np.asarray(params[k]), rtol=0, atol=0)
    # The named chain's stages, by name, in a plain dict rather than named_chain's
    # OrderedDict: JAX flattens a dict in C++, an OrderedDict through Python callbacks on
    # every jitted call (docs/performance.md). (After a jitted step JAX returns the dict
    # with its keys sorted.)
    assert type(state) is dict
    assert sorted(state) == sorted(["core", "lr_scale", "weight_decay", "learning_rate"])
    assert list(_compiled(kind).init(params)) == [
        "core", "lr_scale", "weight_decay", "learning_rate"
    ]


def _hand_written_adamw(learning_rate):
    """The compiled adam chain written by hand: one optax chain per leaf, then the lr."""
    return optax.chain(
        optax.partition(
            {
                k: optax.chain(
                    optax.scale_by_adam(eps=EPS[k]),
                    optax.scale(LR_SCALE[k]),
                    optax.add_decayed_weights(LR_SCALE[k] * WD[k]),
                )
                for k in SHAPES
            },
            {k: k for k in SHAPES},
        ),
        optax.scale_by_learning_rate(learning_rate),
    )


def test_learning_rate_schedule_matches_hand_written_chain():
    schedule = optax.warmup_cosine_decay_schedule(0.0, LR, 5, 30)
    reference = _hand_written_adamw(schedule)
    params, grads = _params(), _grad_seq(30)
    got, _ = _trajectory(_compiled("adam", learning_rate=schedule), params, grads)
    want, _ = _trajectory(reference, params, grads)
    _assert_trees_close(got, want)


# --- Equinox models: callable per-leaf trees, None leaves, filter_jit, apply_updates -----


def _mlp(in_size, out_size, width, depth, seed=0):
    """An `eqx.nn.MLP` with random weights, without its (slow on CPU) eager initialiser."""
    shapes = eqx.filter_eval_shape(
        eqx.nn.MLP, in_size, out_size, width, depth, key=jax.random.key(0)
    )
    rng = np.random.default_rng(seed)

    def fill(s):
        if not isinstance(s, jax.ShapeDtypeStruct):
            return s
        return jnp.asarray((rng.normal(size=s.shape) / np.sqrt(s.shape[-1])).astype(s.dtype))

    return jax.tree.map(fill, shapes)


def _mlp_numbers(params):
    def by_path(fn):
        return jax.tree_util.tree_map_with_path(
            lambda path, x: None if x is None else fn(path), params, is_leaf=lambda x: x is None
        )

    def layer(path):
        return next(p.idx for p in path if isinstance(p, jax.tree_util.SequenceKey))

    def is_weight(path):
        return "weight" in jax.tree_util.keystr(path)

    lr = by_path(lambda p: 1.0 / (1 + layer(p)))
    eps = by_path(lambda p: 1e-8 * 10.0 ** -layer(p))
    wd = by_path(lambda p: 0.01 * (layer(p) + 1) if is_weight(p) else 0.0)
    return lr, eps, wd


# adam: per-leaf trees that are Modules; adafactor: the optax.partition route (labels
# from a Module). adam_atan2 and sgd share these paths (atan2 is run on an MLP in
# test_atan2.py).
@pytest.mark.parametrize("kind", ["adam", "adafactor"])
def test_equinox_mlp_with_module_per_leaf_trees(kind):
    model = _mlp(5, 3, 8, 1)
    params = eqx.filter(model, eqx.is_array)
    lr, eps, wd = _mlp_numbers(params)
    assert isinstance(lr, eqx.nn.MLP) and callable(lr)  # the case partition/masked would call
    extra = {"adafactor_kwargs": {"min_dim_size_to_factor": 2}} if kind == "adafactor" else {}
    opt = build_optimizer(kind, learning_rate=1e-2, lr_scale=lr, eps=eps, weight_decay=wd, **extra)

    # The same by hand: optax.partition with a label Module (wrapped: it is callable).
    leaves = jax.tree.leaves(params)
    labels = jax.tree.unflatten(jax.tree.structure(params), [str(i) for i in range(len(leaves))])
    numbers = [jax.tree.leaves(t) for t in (lr, eps, wd)]

    def leaf(i):
        s, e, d = (n[i] for n in numbers)
        if kind == "adam":
            return optax.adamw(1e-2 * s, eps=e, weight_decay=d)
        return optax.adafactor(
            1e-2 * s, eps=e * e, weight_decay_rate=1e-2 * s * d, min_dim_size_to_factor=2
        )

    reference = optax.partition({str(i): leaf(i) for i in range(len(leaves))}, lambda _: labels)
    x = np.random.default_rng(1).normal(size=(16, 5)).astype(np.float32)

    def train(opt, model):
        state = eqx.filter_jit(opt.init)(eqx.filter(model, eqx.is_array))

        @eqx.filter_jit
        def step(model, state):
            loss, grads = eqx.filter_value_and_grad(
                lambda m: jnp.mean((jax.vmap(m)(x) - 1.0) ** 2)
            )(model)
            updates, state = opt.update(grads, state, eqx.filter(model, eqx.is_array))
            return eqx.apply_updates(model, updates), state, loss

        losses = []
        for _ in range(15):
            model, state, loss = step(model, state)
            losses.append(float(loss))
        return model, losses

    got, losses = train(opt, model)
    want, _ = train(reference, model)
    _assert_trees_close(eqx.filter(got, eqx.is_array), eqx.filter(want, eqx.is_array))
    assert losses[-1] < losses[0]


# --- injection, bf16, sharding -------------------------------------------------------------


def test_inject_hyperparams_with_dict_trees():
    params, grads = _params(), _grad_seq(40)
    injected = optax.inject_hyperparams(build_optimizer)(
        kind="adam", learning_rate=LR, lr_scale=LR_SCALE, eps=EPS, weight_decay=WD
    )
    got, state = _trajectory(injected, params, grads)
    want, _ = _compiled_path("adam")
    # Injected b1, b2 are float32 arrays rather than Python floats: equal to rounding.
    _assert_trees_close(got, want, atol=1e-5)
    assert set(state.hyperparams) >= {"learning_rate", "b1", "b2"}

    # Changing the injected learning rate between steps changes the step size.
    state.hyperparams["learning_rate"] = jnp.asarray(LR / 10)
    update = jax.jit(injected.update)
    last = _step(got, -1)
    small, _ = update(_step(grads), state, last)
    state.hyperparams["learning_rate"] = jnp.asarray(LR)
    large, _ = update(_step(grads), state, last)
    _assert_trees_close(jax.tree.map(lambda u: 10 * u, small), large, rtol=1e-5, atol=1e-9)


def test_inject_hyperparams_with_equinox_trees_needs_static_args():
    params = eqx.filter(_mlp(5, 3, 8, 2), eqx.is_array)
    lr, eps, wd = _mlp_numbers(params)
    opt = optax.inject_hyperparams(build_optimizer, static_args=PER_LEAF_ARGS)(
        kind="adam_atan2", learning_rate=1e-2, lr_scale=lr, eps=eps, weight_decay=wd
    )
    state = eqx.filter_jit(opt.init)(params)
    grads = jax.tree.map(lambda p: np.ones(p.shape, np.float32), params)
    updates, state = eqx.filter_jit(opt.update)(grads, state, params)
    assert float(state.hyperparams["learning_rate"]) == pytest.approx(1e-2)
    first = updates.layers[0].bias  # lr_scale 1, no decay: -1e-2 * 1.27 * pi / 4
    np.testing.assert_allclose(first, -1e-2 * 1.27 * math.pi / 4, rtol=1e-5)


def test_inject_hyperparams_scalar_per_leaf_value_has_a_clear_error():
    # A bare float is numeric, so inject_hyperparams turns it into an array.
    opt = optax.inject_hyperparams(build_optimizer)(
        kind="adam", learning_rate=LR, lr_scale=1.0, eps=EPS, weight_decay=WD
    )
    with pytest.raises(OptimizerTypeError, match=r"(?s)static Python floats.*static_args"):
        opt.init(_params())


def test_bf16_params():
    params = _params(jnp.bfloat16)
    grads = {k: g.astype(jnp.bfloat16) for k, g in _grad_seq(3).items()}
    path, state = _trajectory(_compiled("adam"), params, grads)  # atan2: test_atan2.py
    for k in SHAPES:
        assert path[k].dtype == jnp.bfloat16
        assert np.all(np.isfinite(np.asarray(path[k]).astype(np.float32)))
        assert not np.array_equal(np.asarray(path[k][-1]), np.asarray(params[k]))
    assert {x.dtype for x in jax.tree.leaves(state["core"].nu)} == {jnp.dtype(jnp.bfloat16)}


_SHARDED = textwrap.dedent(
    """
    import jax, jax.numpy as jnp, numpy as np, optax
    from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
    from paramspec._optax._chain import build_optimizer

    mesh = Mesh(np.array(jax.devices()), ("x",))
    shard = NamedSharding(mesh, P("x"))
    rng = np.random.default_rng(0)
    host = {"w": rng.normal(size=(8, 6)).astype(np.float32),
            "v": rng.normal(size=(4,)).astype(np.float32)}
    grads = [{k: rng.normal(size=a.shape).astype(np.float32) for k, a in host.items()}
             for _ in range(5)]
    for kind in ("adam", "adafactor"):  # the per-leaf stages, and the partition route
        opt = build_optimizer(kind, learning_rate=1e-2, lr_scale={"w": 0.5, "v": 2.0},
                              eps={"w": 1e-8, "v": 1e-6}, weight_decay={"w": 0.1, "v": 0.0},
                              **({"adafactor_kwargs": {"min_dim_size_to_factor": 2}}
                                 if kind == "adafactor" else {}))

        def step(params, state, g):
            updates, state = opt.update(g, state, params)
            return optax.apply_updates(params, updates), state

        results = []
        for sharded in (True, False) if kind == "adam" else (True,):
            put = (lambda a: jax.device_put(a, shard)) if sharded else jnp.asarray
            params = jax.tree.map(put, host)
            gs = [jax.tree.map(put, g) for g in grads]
            state = jax.jit(opt.init)(params)
            jstep = jax.jit(step)
            # The first step compiles and places the fresh state (its step count starts
            # on one device); every later step must run with no transfer at all.
            params, state = jstep(params, state, gs[0])
            with jax.transfer_guard("disallow"):
                for g in gs[1:]:
                    params, state = jstep(params, state, g)
            if sharded:
                assert params["w"].sharding.is_equivalent_to(shard, 2), params["w"].sharding
                if kind == "adam":
                    assert state["core"].mu["w"].sharding.is_equivalent_to(shard, 2)
            results.append(jax.tree.map(np.asarray, params))
        for k in host:
            np.testing.assert_allclose(results[0][k], results[-1][k], rtol=1e-6, atol=1e-7)
    print("OK", len(jax.devices()))
    """
)


def test_sharded_params_without_host_transfers():
    env = dict(os.environ)
    env["XLA_FLAGS"] = env.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=2"
    env["JAX_PLATFORMS"] = "cpu"
    out = subprocess.run(
        [sys.executable, "-c", _SHARDED], env=env, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip() == "OK 2"


# --- cost: state bytes, no extra work --------------------------------------------------------


def _nbytes(state):
    return sum(x.nbytes for x in jax.tree.leaves(state))


def test_adam_state_bytes_equal_optax_adam():
    params = _params()
    assert _nbytes(_compiled("adam").init(params)) == _nbytes(optax.adam(LR).init(params))
    assert _nbytes(_compiled("adam_atan2").init(params)) == _nbytes(optax.adam(LR).init(params))
    schedule = optax.linear_schedule(LR, 0.0, 100)
    assert _nbytes(_compiled("adam", learning_rate=schedule).init(params)) == _nbytes(
        optax.adam(schedule).init(params)
    )
    model = eqx.filter(_mlp(5, 3, 8, 2), eqx.is_array)
    lr, eps, wd = _mlp_numbers(model)
    opt = build_optimizer("adam", learning_rate=LR, lr_scale=lr, eps=eps, weight_decay=wd)
    assert _nbytes(opt.init(model)) == _nbytes(optax.adam(LR).init(model))


def _jaxpr_size(opt, params):
    state = opt.init(params)
    grads = jax.tree.map(jnp.ones_like, params)
    jaxpr = jax.make_jaxpr(lambda g, s, p: opt.update(g, s, p))(grads, state, params)
    return len(jaxpr.eqns)


def test_no_extra_operations_over_hand_written_optax():
    params = _params()
    eps = 1e-8
    ones = {k: 1.0 for k in SHAPES}
    zeros = {k: 0.0 for k in SHAPES}
    # Unit lr_scale and zero decay: the stages vanish, the trace is optax.adam's.
    plain = build_optimizer("adam", learning_rate=LR, lr_scale=ones, eps=eps, weight_decay=zeros)
    assert _jaxpr_size(plain, params) == _jaxpr_size(optax.adam(LR, eps=eps), params)
    # Per-leaf numbers cost one multiply per leaf and scale and one fused add per decayed
    # leaf, no more than the hand-written optax chain with the same numbers.
    hand = _hand_written_adamw(LR)
    assert _jaxpr_size(_compiled("adam"), params) <= _jaxpr_size(hand, params)


# --- scale_by_adam_per_leaf_eps ----------------------------------------------------------


def test_per_leaf_eps_with_equal_eps_is_bit_identical_to_optax_scale_by_adam():
    params, grads = _params(), _grad_seq(20)
    ours = scale_by_adam_per_leaf_eps({k: 1e-8 for k in SHAPES})
    theirs = optax.scale_by_adam(eps=1e-8)
    (u1, s1), (u2, s2) = (_trajectory(tx, params, grads) for tx in (ours, theirs))
    assert type(s1) is type(s2)
    for k in SHAPES:  # the params after each of the 20 steps, bit for bit
        np.testing.assert_array_equal(u1[k], u2[k])
    np.testing.assert_array_equal(
        optax.tree_utils.tree_get(s1, "nu")["hidden"], optax.tree_utils.tree_get(s2, "nu")["hidden"]
    )


def test_per_leaf_eps_divides_each_leaf_by_its_own_eps():
    # Through the compiled chain (lr 1, unit scales, no decay): the first Adam step is
    # -g / (|g| + eps_l), a different number for each leaf's eps.
    params = {k: jnp.zeros(s) for k, s in SHAPES.items()}
    grads = {k: np.full((1, *s), 1e-6, np.float32) for k, s in SHAPES.items()}
    ones, zeros = dict.fromkeys(SHAPES, 1.0), dict.fromkeys(SHAPES, 0.0)
    opt = build_optimizer("adam", learning_rate=1.0, lr_scale=ones, eps=EPS, weight_decay=zeros)
    path, _ = _trajectory(opt, params, grads)
    for k in SHAPES:
        np.testing.assert_allclose(path[k][0], -1e-6 / (1e-6 + EPS[k]), rtol=1e-5)
    assert len({round(float(np.asarray(path[k])[0].flat[0]), 4) for k in SHAPES}) == 3


def test_per_leaf_eps_rejects_a_tree_that_does_not_fit():
    tx = scale_by_adam_per_leaf_eps({"embed": 1e-8})
    with pytest.raises(ValueError, match=r"no value for params leaves \['bias'\]"):
        tx.init(_params())


# --- docstring examples --------------------------------------------------------------------


def test_docstring_examples_run():
    import doctest

    from paramspec._optax import _adam_eps, _atan2, _chain

    for module in (_adam_eps, _atan2, _chain):
        result = doctest.testmod(module, raise_on_error=False, verbose=False)
        assert result.attempted > 0 and result.failed == 0, module.__name__


# --- errors --------------------------------------------------------------------------------


def _kwargs(**changes):
    base = {
        "learning_rate": LR,
        "lr_scale": LR_SCALE,
        "eps": EPS,
        "weight_decay": WD,
    }
    base.update(changes)
    return base


@pytest.mark.parametrize(
    "kind, kwargs, error, match",
    [
        (
            "adamw",
            _kwargs(),
            OptimizerConfigError,
            r"unknown optimizer kind 'adamw'(?s:.*)adam_atan2",
        ),
        (3, _kwargs(), OptimizerTypeError, r"`kind` must be a string"),
        (
            "adam",
            _kwargs(eps={**EPS, "embed": -1e-8}),
            OptimizerConfigError,
            r"`eps` has the value -1e-08; every per-leaf eps must be finite and >= 0",
        ),
        (
            "adam",
            _kwargs(lr_scale={**LR_SCALE, "bias": math.nan}),
            OptimizerConfigError,
            r"`lr_scale` has the value nan",
        ),
        (
            "sgd",
            _kwargs(weight_decay={**WD, "bias": -0.1}),
            OptimizerConfigError,
            r"`weight_decay` has the value -0.1",
        ),
        (
            "adam",
            _kwargs(eps={**EPS, "embed": "1e-8"}),
            OptimizerTypeError,
            r"`eps` must hold static Python floats",
        ),
        (
            "adam",
            _kwargs(lr_scale={**LR_SCALE, "bias": jnp.asarray(1.0)}),
            OptimizerTypeError,
            r"(?s)one leaf is a JAX array.*static_args",
        ),
        (
            "adam",
            _kwargs(eps={k: v for k, v in EPS.items() if k != "bias"}),
            OptimizerConfigError,
            r"`eps` does not have the tree structure of the `lr_scale` tree: no value for .* \['bias'\]",
        ),
        (
            "adam",
            _kwargs(learning_rate=-1e-3),
            OptimizerConfigError,
            r"`learning_rate=-0.001` is invalid",
        ),
        (
            "adam",
            _kwargs(learning_rate="fast"),
            OptimizerTypeError,
            r"`learning_rate` must be a float or an Optax schedule",
        ),
        (
            "adam",
            _kwargs(b2=1.0),
            OptimizerConfigError,
            r"`b2=1.0` is invalid: pass a number in \[0, 1\)",
        ),
        ("adam_atan2", _kwargs(atan2_b=0.0), OptimizerConfigError, r"`atan2_b=0.0` is invalid"),
        (
            "adam",
            _kwargs(adafactor_kwargs={"decay_rate": 0.9}),
            OptimizerConfigError,
            r"`adafactor_kwargs` only applies to kind='adafactor'",
        ),
        (
            "adafactor",
            _kwargs(adafactor_kwargs={"eps": 1e-30}),
            OptimizerConfigError,
            r"unknown `adafactor_kwargs` 'eps'. Set epsilon through the per-leaf `eps` tree",
        ),
    ],
)
def test_invalid_arguments_raise_clear_errors(kind, kwargs, error, match):
    with pytest.raises(error, match=match):
        build_optimizer(kind, **kwargs)


def test_errors_are_value_errors_and_spec_errors():
    from paramspec._errors import SpecError

    with pytest.raises(ValueError) as info:
        build_optimizer("adamw", **_kwargs())
    assert isinstance(info.value, SpecError)
    assert "help: use one of adam, adam_atan2, sgd, adafactor" in str(info.value)


def test_params_that_do_not_fit_the_per_leaf_trees():
    opt = _compiled("adam")
    with pytest.raises(OptimizerConfigError, match=r"no value for params leaves \['extra'\]"):
        opt.init({**_params(), "extra": jnp.zeros(2)})
    with pytest.raises(
        OptimizerConfigError, match=r"`lr_scale`\['bias'\] is 2.0 but the params have None"
    ):
        opt.init({**_params(), "bias": None})
    state = jax.eval_shape(opt.init, _params())  # shapes suffice: the checks run at trace time
    grads = _step(_grad_seq(1))
    with pytest.raises(OptimizerConfigError, match=r"tree structure of the updates"):
        jax.eval_shape(opt.update, {k: v for k, v in grads.items() if k != "readout"}, state)
    with pytest.raises(OptimizerConfigError, match=r"weight-decay stage needs the params"):
        jax.eval_shape(opt.update, grads, state)


def test_none_where_params_have_arrays_is_an_error():
    params = _params()
    eps = {**EPS, "bias": None}
    opt = build_optimizer(
        "adam",
        learning_rate=LR,
        lr_scale={**LR_SCALE, "bias": None},
        eps=eps,
        weight_decay={**WD, "bias": None},
    )
    with pytest.raises(
        OptimizerConfigError, match=r"\['bias'\] is None but the params have an array"
    ):
        opt.init(params)
