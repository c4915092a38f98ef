"""Training a model file's model for the user-model tests: one loop, jitted."""

from __future__ import annotations

from types import ModuleType
from typing import Any

import equinox as eqx
import jax
import numpy as np

from paramspec._equinox._jit import local_jit


def losses(module: ModuleType, model: Any, opt: Any, calls: int) -> np.ndarray:
    """The loss before each of `calls` optimizer steps of `opt` on `model`, on the model
    file's own fixed batch (`module.make_batch(key(1))`) and `module.loss(model, x, y)`:
    `calls = steps + 1` ends with the loss after `steps` steps."""
    state = opt.init(eqx.filter(model, eqx.is_inexact_array))
    x, y = module.make_batch(jax.random.key(1))

    # `local_jit`, not `eqx.filter_jit`: each call's step (a new closure) is freed with it;
    # eqx.filter_jit would keep every one compiled for the life of the process
    # (paramspec/_equinox/_jit.py), and the slow real-models matrix compiles ~250.
    @local_jit
    def step(model, state):
        value, grads = eqx.filter_value_and_grad(module.loss)(model, x, y)
        updates, state = opt.update(grads, state, eqx.filter(model, eqx.is_inexact_array))
        return eqx.apply_updates(model, updates), state, value

    out = []
    for _ in range(calls):
        model, state, value = step(model, state)
        out.append(float(value))
    return np.asarray(out)
