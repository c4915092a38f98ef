"""`local_jit` (paramspec/_equinox/_jit.py): `eqx.filter_jit`'s results, one compile per
static structure, and its compiled program freed with the function. The jitted closures
that paramspec makes per call (a coordinate check's step, a sweep's trainer) use it:
with `eqx.filter_jit`, each left a compiled program behind for the life of the process,
and a long process (the slow real-models matrix, a notebook of sweeps) ran out of
`vm.max_map_count` and crashed XLA."""

from __future__ import annotations

import gc
import weakref

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.extend.backend import get_backend

from paramspec._equinox._jit import local_jit

X, Y = jnp.linspace(-1.0, 1.0, 24).reshape(6, 4), jnp.ones((6, 2))


def _model(seed=0):
    return eqx.nn.MLP(4, 2, 8, 1, key=jax.random.key(seed))


def _loss(model, x, y):
    return jnp.mean((jax.vmap(model)(x) - y) ** 2)


def _live() -> int:
    gc.collect()
    return len(get_backend().live_executables())


def _step_fn(opt, traces):
    def step(model, state, scale, tag):
        traces.append(tag)
        value, grads = eqx.filter_value_and_grad(_loss)(model, X, Y * scale)
        updates, state = opt.update(grads, state, eqx.filter(model, eqx.is_inexact_array))
        return eqx.apply_updates(model, updates), state, value, f"{tag}!"

    return step


def test_local_jit_gives_filter_jit_results_and_compiles_once_per_static_structure():
    opt = optax.adam(1e-2)
    traces: list[str] = []
    ours, theirs = local_jit(_step_fn(opt, traces)), eqx.filter_jit(_step_fn(opt, []))
    model = _model()
    state = opt.init(eqx.filter(model, eqx.is_inexact_array))
    a = b = (model, state)
    for _ in range(3):
        *a, value_a, tag = ours(*a, jnp.float32(2.0), "t")
        *b, value_b, _ = theirs(*b, jnp.float32(2.0), "t")
        np.testing.assert_allclose(value_a, value_b, rtol=1e-6)
    assert tag == "t!"  # a non-array output comes back as itself
    assert traces == ["t"]  # an array argument is traced: one compile for three calls
    ours(*a, jnp.float32(2.0), "u")  # a new static argument compiles again
    ours(*a, jnp.float32(3.0), "u")
    assert traces == ["t", "u"]
    for x, y in zip(*(jax.tree.leaves(eqx.filter(m, eqx.is_array)) for m in (a[0], b[0])),
                    strict=True):
        np.testing.assert_allclose(x, y, rtol=1e-6)


def _train_once(seed, jit):
    opt = optax.sgd(1e-2)
    model = _model(seed)
    state = opt.init(eqx.filter(model, eqx.is_inexact_array))
    step = jit(_step_fn(opt, []))
    for _ in range(2):
        model, state, value, _ = step(model, state, jnp.float32(1.0), "s")
    return float(value), weakref.ref(step)


def test_a_local_jit_program_is_freed_with_its_function():
    _train_once(0, local_jit)  # the eager programs (init, the batch) compile once
    before = _live()
    refs = [_train_once(seed, local_jit)[1] for seed in (1, 2, 3)]
    assert all(ref() is None for ref in refs)
    # three closures compiled one step each; none is left (eqx.filter_jit: before + 3)
    assert _live() == before


def test_a_coordinate_check_step_is_freed_with_its_run():
    from paramspec._coord import _make_step

    def loss(model, batch):  # a closure per run, as the coordinate check's
        return _loss(model, *batch)

    opt = optax.sgd(1e-2)
    model = _model()
    state = opt.init(eqx.filter(model, eqx.is_inexact_array))
    step = _make_step(opt, loss, (X, Y), jit=True)
    model, state = step(model, state)
    model, state = step(model, state)
    ref = weakref.ref(loss)
    del step, loss
    gc.collect()
    assert ref() is None  # eqx.filter_jit kept the step, and so its loss, forever


def test_a_sweep_trainer_evicted_from_the_cache_frees_its_program():
    from paramspec._transfer._sweep import _Options, _Setup, _Trainer, make_task

    task = make_task("mlp")
    trainer = _Trainer(_Setup(task, "sp-global", 8, _Options()))
    assert np.isfinite(trainer.run(1e-2, 1.0, 0, 2))
    with_it = _live()
    del trainer  # what `_TRAINERS` does past `_MAX_TRAINERS`
    assert _live() < with_it
