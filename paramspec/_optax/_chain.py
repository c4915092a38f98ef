"""The compiled optimizer: one Optax chain with static per-leaf learning rates, eps, decay.

`build_optimizer` is what a compiled spec calls. Every per-leaf number is a Python
float baked into the trace, so the jitted step is the hand-written Optax chain: no
extra state, no tree of scalars on the device, no host sync.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from .._errors import SpecError
from ._adam_eps import scale_by_adam_per_leaf_eps, tree_mismatch
from ._atan2 import scale_by_adam_atan2
from ._muon import scale_by_muon_and_adam

__all__ = [
    "KINDS",
    "PER_LEAF_ARGS",
    "OptimizerConfigError",
    "OptimizerTypeError",
    "build_optimizer",
]

KINDS = ("adam", "adam_atan2", "sgd", "adafactor", "muon")

# The arguments of `build_optimizer` that are per-leaf trees. Pass them as
# `static_args` to `optax.inject_hyperparams` when they are Equinox Modules (Modules
# are callable, and `inject_hyperparams` would take them for schedules).
PER_LEAF_ARGS = ("lr_scale", "eps", "weight_decay", "param_scale_floor")

# Optax Adafactor's floor on the parameter scale: each update is multiplied by
# max(RMS(w), floor) (`optax.scale_by_param_block_rms(min_scale=1e-3)`).
ADAFACTOR_PARAM_SCALE_FLOOR = 1e-3

# The knobs of `optax.adafactor` that the core stage keeps (its learning rate, weight
# decay and epsilon come from `build_optimizer`'s own arguments), with optax's defaults.
_ADAFACTOR_DEFAULTS: dict[str, Any] = {
    "min_dim_size_to_factor": 128,
    "decay_rate": 0.8,
    "decay_offset": 0,
    "multiply_by_parameter_scale": True,
    "clipping_threshold": 1.0,
    "momentum": None,
    "dtype_momentum": jnp.float32,
    "factored": True,
}

_INJECT_HINT = (
    "If you wrapped `build_optimizer` in `optax.inject_hyperparams`, pass "
    "`static_args=paramspec._optax._chain.PER_LEAF_ARGS` so the per-leaf trees stay static."
)


class OptimizerConfigError(SpecError, ValueError):
    """An invalid argument to `build_optimizer`: what is wrong and how to fix it."""


class OptimizerTypeError(SpecError, TypeError):
    """An argument of `build_optimizer` has the wrong type."""


def _is_none(x: Any) -> bool:
    return x is None


def _is_static_number(x: Any) -> bool:
    return isinstance(x, numbers.Real) and not isinstance(x, bool | jax.Array)


def _per_leaf(name: str, tree: Any) -> Any:
    """Check a per-leaf tree and return it with every value a Python float."""

    def convert(value: Any) -> float | None:
        if value is None:
            return None
        if not _is_static_number(value):
            kind = "a JAX array" if isinstance(value, jax.Array) else type(value).__name__
            raise OptimizerTypeError(
                f"`{name}` must hold static Python floats (None where the params are None), "
                f"but one leaf is {kind}.",
                hint=_INJECT_HINT
                if isinstance(value, jax.Array)
                else f"build it with e.g. `jax.tree.map(lambda p: 1.0, params)`; got {value!r}.",
            )
        value = float(value)
        if not (math.isfinite(value) and value >= 0.0):
            raise OptimizerConfigError(
                f"`{name}` has the value {value!r}; every per-leaf {name} must be finite and >= 0.",
                hint=f"fix the {name} of that parameter in the spec.",
            )
        return value

    return jax.tree.map(convert, tree, is_leaf=_is_none)


def _like(values: Any, tree: Any) -> Any:
    """`values` as a tree shaped like `tree`; a single float is broadcast to every leaf."""
    if isinstance(values, float):
        return jax.tree.map(lambda x: None if x is None else values, tree, is_leaf=_is_none)
    return values


def _product(a: Any, b: Any) -> Any:
    """Leafwise product of two per-leaf trees (either may be a single float)."""
    if isinstance(a, float) and isinstance(b, float):
        return a * b
    reference = b if isinstance(a, float) else a
    return jax.tree.map(
        lambda x, y: None if x is None else x * y,
        _like(a, reference),
        _like(b, reference),
        is_leaf=_is_none,
    )


def _check_number(name: str, value: Any, *, low: float, high: float | None = None) -> None:
    # Only static numbers can be checked; injected or scheduled ones are arrays/tracers.
    if not _is_static_number(value):
        return
    if high is None:
        ok = math.isfinite(value) and value > low
        want = f"a finite number > {low:g}"
    else:
        ok = low <= value < high
        want = f"a number in [{low:g}, {high:g})"
    if not ok:
        raise OptimizerConfigError(f"`{name}={value!r}` is invalid: pass {want}.")


def _scale_by_leaf(factors: Any) -> optax.GradientTransformation:
    """Multiply each leaf by its own static factor; a factor of 1.0 emits no operation.

    Our own because `optax.scale` takes one scalar, and routing through
    `optax.partition` into groups of equal factor costs one masked pass per group at
    trace time for the same compiled result.
    """

    def update_fn(updates, state, params=None):
        del params
        updates = jax.tree.map(
            lambda u, f: u if u is None or f == 1.0 else u * f,
            updates,
            _like(factors, updates),
            is_leaf=_is_none,
        )
        return updates, state

    return optax.GradientTransformation(optax.init_empty_state, update_fn)


def _add_decayed_weights_by_leaf(coefficients: Any) -> optax.GradientTransformation:
    """`optax.add_decayed_weights` with a static coefficient per leaf (0.0: no work).

    Our own for the same reason as `_scale_by_leaf`: Optax's takes one scalar.
    """

    def update_fn(updates, state, params=None):
        if params is None:
            raise OptimizerConfigError(
                "the weight-decay stage needs the params: call "
                "`optimizer.update(grads, state, params)`."
            )
        updates = jax.tree.map(
            lambda u, c, p: u if u is None or c == 0.0 else u + c * p,
            updates,
            _like(coefficients, updates),
            params,
            is_leaf=_is_none,
        )
        return updates, state

    return optax.GradientTransformation(optax.init_empty_state, update_fn)


def _scale_by_param_block_rms_by_leaf(floors: Any) -> optax.GradientTransformation:
    """`optax.scale_by_param_block_rms` with a static floor (`min_scale`) per leaf.

    Our own because Optax's takes one scalar; the transform is stateless, so one
    `tree.map` with Optax's own `safe_root_mean_squares` gives, leaf by leaf, exactly
    what `optax.partition` into one group per floor would, without the masked passes.
    """

    def update_fn(updates, state, params=None):
        if params is None:
            raise OptimizerConfigError(
                "Adafactor's parameter scaling needs the params: call "
                "`optimizer.update(grads, state, params)`."
            )
        updates = jax.tree.map(
            lambda u, f, p: None if u is None else u * optax.safe_root_mean_squares(p, f),
            updates,
            _like(floors, updates),
            params,
            is_leaf=_is_none,
        )
        return updates, state

    return optax.GradientTransformation(optax.init_empty_state, update_fn)


def _adafactor_core(
    eps: Any, kwargs: Mapping[str, Any], floor: Any = ADAFACTOR_PARAM_SCALE_FLOOR
) -> optax.GradientTransformation:
    """Adafactor's parameter-scaled update, as in `optax.adafactor`, without lr and decay.

    Epsilon: Adafactor adds its `epsilon` to the *squared* gradient (`g^2 + eps1`,
    optax's default `1e-30`), Adam adds its `eps` to the root (`sqrt(v) + eps`). A
    per-leaf Adam-style `eps` (in gradient units) therefore maps to Adafactor's
    `epsilon = eps**2`; it scales with width like `g^2`, and `eps = 1e-15` gives
    Adafactor's default `1e-30`. Optax's `scale_by_factored_rms` takes one scalar
    epsilon, so leaves are routed with `optax.partition` into one group per distinct
    eps (one group, no partition, when they are all equal); the state of a group is a
    `FactoredState`, the same accumulators as `optax.adafactor`'s.

    Parameter scale: `optax.adafactor` multiplies each update by `max(RMS(w), 1e-3)`. A
    constant floor breaks the width exponent of a layer whose weights are smaller than
    it (the step stops being relative to the weight), so `floor` is per leaf, and the
    compiled optimizer scales it like the leaf's init std (`1e-3` at the base width).
    """
    options = {**_ADAFACTOR_DEFAULTS, **kwargs}

    def factored_rms(e: float) -> optax.GradientTransformation:
        return optax.scale_by_factored_rms(
            factored=options["factored"],
            decay_rate=options["decay_rate"],
            step_offset=options["decay_offset"],
            min_dim_size_to_factor=options["min_dim_size_to_factor"],
            epsilon=e * e,
        )

    if isinstance(eps, float):
        rms = factored_rms(eps)
    else:
        values = sorted({e for e in jax.tree.leaves(eps)})
        if len(values) == 1:
            rms = factored_rms(values[0])
        else:
            labels = jax.tree.map(lambda e: f"eps={e!r}", eps)
            # A function, not the tree: an Equinox Module is callable and `partition`
            # would call it.
            rms = optax.partition({f"eps={e!r}": factored_rms(e) for e in values}, lambda _: labels)
    parts = [rms]
    if options["clipping_threshold"] is not None:
        parts.append(optax.clip_by_block_rms(options["clipping_threshold"]))
    if options["multiply_by_parameter_scale"]:
        parts.append(
            optax.scale_by_param_block_rms(floor)
            if isinstance(floor, float)
            else _scale_by_param_block_rms_by_leaf(floor)
        )
    if options["momentum"] is not None:
        parts.append(
            optax.ema(
                options["momentum"], debias=False, accumulator_dtype=options["dtype_momentum"]
            )
        )
    return optax.chain(*parts)


def build_optimizer(
    kind: str,
    *,
    learning_rate: optax.ScalarOrSchedule,
    lr_scale: Any,
    eps: Any,
    weight_decay: Any,
    b1: float = 0.9,
    b2: float = 0.999,
    momentum: float | None = 0.9,
    atan2_a: float = 1.27,
    atan2_b: float = 1.0,
    adafactor_kwargs: Mapping[str, Any] | None = None,
    param_scale_floor: Any = None,
    muon_dimension_numbers: Any = None,
) -> optax.GradientTransformationExtraArgs:
    r"""Build the compiled optimizer: a core update, per-leaf scales, decay, learning rate.

    For a leaf :math:`\theta_\ell` with static factors :math:`s_\ell` (`lr_scale`),
    :math:`\epsilon_\ell` (`eps`) and :math:`\lambda_\ell` (`weight_decay`),

    .. math::

        \theta_\ell \leftarrow \theta_\ell - \eta_t\, s_\ell \big(
        u_\ell(\epsilon_\ell) + \lambda_\ell \theta_\ell \big),

    so the per-step decay is `learning_rate * lr_scale * weight_decay` (the PyTorch
    AdamW convention). The chain is an `optax.named_chain`; its state is a plain `dict` by
    stage (named_chain's own is an `OrderedDict`, slower for JAX to flatten per call):

    - `"core"`: `u`, by `kind`: `"adam"` (`scale_by_adam_per_leaf_eps`, state
      `optax.ScaleByAdamState`), `"adam_atan2"` (`scale_by_adam_atan2`, `a=atan2_a`,
      `b=atan2_b`; no epsilon), `"sgd"` (`optax.trace(momentum)`; none if
      `momentum` is None or 0) or `"adafactor"` (`optax.scale_by_factored_rms`,
      `clip_by_block_rms`, `scale_by_param_block_rms` as in `optax.adafactor`; Adam's
      eps maps to Adafactor's as `eps**2`, see `_adafactor_core`).
    - `"lr_scale"`: multiplies leaf `l` by `s_l` (no operation where `s_l = 1`).
    - `"weight_decay"`: adds `s_l * lambda_l * theta_l`; `optax.identity()` when every
      `lambda_l` is 0, so decay-free training pays nothing.
    - `"learning_rate"`: `optax.scale_by_learning_rate(learning_rate)`.

    Args:
        kind: `"adam"`, `"adam_atan2"`, `"sgd"`, `"adafactor"` or `"muon"`.
        learning_rate: a float or an Optax schedule.
        lr_scale: tree with the structure of the params: a Python float >= 0 per array
            leaf (the factor on the global learning rate), `None` where the params are
            `None`. One float applies to every leaf.
        eps: the same form: the absolute per-leaf Adam epsilon (already width-scaled).
        weight_decay: the same form: the absolute per-leaf decoupled decay coefficient.
        b1, b2: the moment decay rates of `"adam"` and `"adam_atan2"`.
        momentum: the momentum of `"sgd"` (for Adafactor use `adafactor_kwargs`).
        atan2_a, atan2_b: `a` and `b` of `scale_by_adam_atan2`.
        muon_dimension_numbers: for `"muon"` only (required): a tree with the structure
            of the params, an `optax.contrib.MuonDimensionNumbers` for each leaf that
            Muon orthogonalises and `None` for Adam's (`_muon.scale_by_muon_and_adam`;
            Muon's momentum is `b1`'s role there: Optax's 0.95, Nesterov).
        adafactor_kwargs: for `"adafactor"` only, any of `min_dim_size_to_factor`,
            `decay_rate`, `decay_offset`, `multiply_by_parameter_scale`,
            `clipping_threshold`, `momentum`, `dtype_momentum`, `factored`
            (`optax.adafactor`'s meaning and defaults).
        param_scale_floor: for `"adafactor"` only, the per-leaf tree (or one float) of
            the floor on the parameter scale, `max(RMS(w), floor)`; None (the default)
            is Optax's 1e-3 for every leaf. `Compiled.optimizer` scales it like each
            leaf's init std.

    Returns:
        An `optax.GradientTransformationExtraArgs`. Its `init` and `update` check the
        per-leaf trees against the params and updates (in Python, at trace time).

    Schedules and injection: `learning_rate` may be a schedule, or injected with
    `optax.inject_hyperparams(build_optimizer)(kind, learning_rate=1e-3, ...)`, which
    makes it (and `b1`, `b2`, ...) an entry of `state.hyperparams` to change between
    steps. With Equinox Modules as per-leaf trees pass
    `optax.inject_hyperparams(build_optimizer, static_args=PER_LEAF_ARGS)`; with bf16
    params also `hyperparam_dtype=jnp.float32` (in bf16, `b2=0.999` rounds to 1).

    Example:
        >>> import jax, jax.numpy as jnp, optax
        >>> from paramspec._optax._chain import build_optimizer
        >>> params = {"w": jnp.ones((2, 2)), "b": jnp.zeros(2)}
        >>> opt = build_optimizer(
        ...     "adam", learning_rate=0.1,
        ...     lr_scale={"w": 0.5, "b": 1.0}, eps={"w": 1e-8, "b": 1e-8},
        ...     weight_decay={"w": 0.1, "b": 0.0})
        >>> state = opt.init(params)
        >>> grads = {"w": jnp.ones((2, 2)), "b": jnp.ones(2)}
        >>> updates, state = opt.update(grads, state, params)
        >>> # w: -0.1 * 0.5 * (1 + 0.1 * 1); b: -0.1 * 1 (a unit first Adam step, no decay)
        >>> round(float(updates["w"][0, 0]), 5), round(float(updates["b"][0]), 5)
        (-0.055, -0.1)
        >>> list(state)
        ['core', 'lr_scale', 'weight_decay', 'learning_rate']
    """
    if not isinstance(kind, str):
        raise OptimizerTypeError(
            f"`kind` must be a string, one of {', '.join(KINDS)}; got {kind!r}."
        )
    if kind not in KINDS:
        raise OptimizerConfigError(
            f"unknown optimizer kind {kind!r}.", hint=f"use one of {', '.join(KINDS)}."
        )
    if isinstance(learning_rate, bool) or not (
        callable(learning_rate)
        or _is_static_number(learning_rate)
        or isinstance(learning_rate, jax.Array | np.ndarray)
    ):
        raise OptimizerTypeError(
            f"`learning_rate` must be a float or an Optax schedule; got {learning_rate!r}."
        )
    if _is_static_number(learning_rate) and not (
        math.isfinite(learning_rate) and learning_rate >= 0.0
    ):
        raise OptimizerConfigError(
            f"`learning_rate={learning_rate!r}` is invalid: pass a finite number >= 0."
        )
    _check_number("b1", b1, low=0.0, high=1.0)
    _check_number("b2", b2, low=0.0, high=1.0)
    if momentum is not None:
        _check_number("momentum", momentum, low=0.0, high=1.0)
    _check_number("atan2_a", atan2_a, low=0.0)
    _check_number("atan2_b", atan2_b, low=0.0)
    if adafactor_kwargs and kind != "adafactor":
        raise OptimizerConfigError(
            f"`adafactor_kwargs` only applies to kind='adafactor', not {kind!r}.",
            hint="drop `adafactor_kwargs` or set kind='adafactor'.",
        )
    adafactor_kwargs = dict(adafactor_kwargs or {})
    unknown = sorted(set(adafactor_kwargs) - set(_ADAFACTOR_DEFAULTS))
    if unknown:
        extra = " Set epsilon through the per-leaf `eps` tree." if "eps" in unknown else ""
        raise OptimizerConfigError(
            f"unknown `adafactor_kwargs` {', '.join(map(repr, unknown))}.{extra}",
            hint=f"allowed keys: {', '.join(_ADAFACTOR_DEFAULTS)}.",
        )

    trees = {
        "lr_scale": _per_leaf("lr_scale", lr_scale),
        "eps": _per_leaf("eps", eps),
        "weight_decay": _per_leaf("weight_decay", weight_decay),
    }
    if param_scale_floor is not None:  # a None default: inject_hyperparams leaves it alone
        trees["param_scale_floor"] = _per_leaf("param_scale_floor", param_scale_floor)
    shaped = [(name, tree) for name, tree in trees.items() if not isinstance(tree, float)]
    for name, tree in shaped[1:]:
        problem = tree_mismatch(name, tree, shaped[0][1], f"`{shaped[0][0]}` tree")
        if problem is not None:
            raise OptimizerConfigError(problem)
    scale, eps_tree, decay = trees["lr_scale"], trees["eps"], trees["weight_decay"]

    if kind == "adam":
        core = scale_by_adam_per_leaf_eps(eps_tree, b1, b2)
    elif kind == "adam_atan2":
        core = scale_by_adam_atan2(b1, b2, a=atan2_a, b=atan2_b)
    elif kind == "sgd":
        no_momentum = momentum is None or (_is_static_number(momentum) and momentum == 0.0)
        core = optax.identity() if no_momentum else optax.trace(decay=momentum)
    elif kind == "muon":
        if muon_dimension_numbers is None:
            raise OptimizerConfigError(
                "kind='muon' needs `muon_dimension_numbers`: which leaves Muon orthogonalises.",
                hint="use Compiled.optimizer(model), which derives it from the roles, or pass "
                "a tree of optax.contrib.MuonDimensionNumbers (None for Adam leaves).")
        if isinstance(eps_tree, float):  # one eps for every leaf: shape it like the params
            if not shaped:
                raise OptimizerConfigError(
                    "kind='muon' needs at least one per-leaf tree (lr_scale, eps or "
                    "weight_decay) shaped like the params.",
                    hint="build them with `jax.tree.map(lambda p: 1.0, params)`.")
            eps_tree = _like(eps_tree, shaped[0][1])
        core = scale_by_muon_and_adam(muon_dimension_numbers, eps_tree, b1=b1, b2=b2)
    else:
        floor = trees.get("param_scale_floor", ADAFACTOR_PARAM_SCALE_FLOOR)
        core = _adafactor_core(eps_tree, adafactor_kwargs, floor)

    # The decay added to the already lr-scaled update: s_l * lambda_l * theta_l.
    coefficients = _product(scale, decay)
    no_decay = all(c == 0.0 for c in jax.tree.leaves(coefficients))
    chain = optax.named_chain(
        ("core", core),
        ("lr_scale", _scale_by_leaf(scale)),
        (
            "weight_decay",
            optax.identity() if no_decay else _add_decayed_weights_by_leaf(coefficients),
        ),
        ("learning_rate", optax.scale_by_learning_rate(learning_rate)),
    )

    def check(tree: Any, tree_name: str) -> None:
        for name, values in shaped:
            problem = tree_mismatch(name, values, tree, tree_name)
            if problem is not None:
                raise OptimizerConfigError(problem)

    # The state is the named chain's, held in a plain dict: the same names (in chain order
    # until a jitted step hands it back with its keys sorted, as JAX does for every dict).
    # `optax.named_chain` returns a `collections.OrderedDict`, a pytree
    # node that JAX flattens through Python callbacks on every jitted call: ~6 us more
    # per step than a dict, 2-3 % of a 10.5M-parameter Adam step on an H100
    # (docs/performance.md). `named_chain`'s update indexes the state by name, so it
    # takes the dict back as it is.
    def init_fn(params: optax.Params) -> Any:
        check(params, "params")
        return dict(chain.init(params))

    def update_fn(updates: optax.Updates, state: Any, params: Any = None, **extra_args: Any):
        check(updates, "updates")
        updates, state = chain.update(updates, state, params, **extra_args)
        return updates, dict(state)

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)
