"""Adam with one epsilon per parameter leaf, and the checks shared by per-leaf trees.

Why our own transform rather than `optax.partition` into groups of equal epsilon, each
with its own `optax.scale_by_adam(eps=...)`:

- State: `optax.partition` keeps one full-size `ScaleByAdamState` per group, each
  with `MaskedNode`s where the other groups' leaves are, so the state has one
  `count` per group and a tree of trees that no longer looks like Adam's. This
  transform returns `optax.ScaleByAdamState` itself, with the same leaves, shapes,
  dtypes and bytes as `optax.scale_by_adam`: a checkpoint is interchangeable and
  `optax.tree_utils.tree_get(state, "mu")` works as for Adam.
- Trace cost: `partition` runs every group's `masked` transform over the whole tree,
  so tracing is O(groups x leaves); a width-scaled model easily has one epsilon per
  role and more. Here it is one `jax.tree.map`, O(leaves).
- Run cost: the same. Each leaf's epsilon is a Python float, baked into the trace as
  a literal exactly as Optax bakes its scalar `eps`; with equal epsilons the step is
  bit-identical to `optax.scale_by_adam` (tested).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax
from optax import tree_utils as otu

__all__ = ["scale_by_adam_per_leaf_eps"]


def _is_none(x: Any) -> bool:
    return x is None


def _paths(tree: Any) -> dict[str, Any]:
    leaves, _ = jax.tree_util.tree_flatten_with_path(tree, is_leaf=_is_none)
    return {jax.tree_util.keystr(path): leaf for path, leaf in leaves}


def _short(items: list[str], limit: int = 5) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f", ... ({len(items) - limit} more)" if len(items) > limit else "")


def tree_mismatch(name: str, values: Any, params: Any, params_name: str = "params") -> str | None:
    """Why the per-leaf tree `values` does not fit `params`, or `None` when it does.

    It fits when both have the same tree structure, counting `None` as a leaf, and
    `values` is `None` exactly where `params` is `None` (e.g. the non-array fields of an
    Equinox model filtered with `eqx.filter(model, eqx.is_array)`). Runs in Python at
    trace time only: no device work, no host sync.
    """
    values_def = jax.tree.structure(values, is_leaf=_is_none)
    params_def = jax.tree.structure(params, is_leaf=_is_none)
    value_paths, param_paths = _paths(values), _paths(params)
    if values_def != params_def:
        missing = sorted(param_paths.keys() - value_paths.keys())
        extra = sorted(value_paths.keys() - param_paths.keys())
        detail = []
        if missing:
            detail.append(f"no value for {params_name} leaves {_short(missing)}")
        if extra:
            detail.append(f"values for leaves the {params_name} do not have: {_short(extra)}")
        if not detail:
            detail.append(
                f"the leaf paths agree but the containers or static fields differ "
                f"({str(values_def)[:200]} vs {str(params_def)[:200]})"
            )
        return (
            f"`{name}` does not have the tree structure of the {params_name}: "
            + "; ".join(detail)
            + f". Build it from the same tree, e.g. `jax.tree.map(lambda p: 1.0, {params_name})`"
            " on `eqx.filter(model, eqx.is_array)`, with `None` where the params are `None`."
        )
    for path, value in value_paths.items():
        param = param_paths[path]
        if (value is None) != (param is None):
            what = "is None" if value is None else f"is {value!r}"
            has = "an array" if param is not None else "None"
            return (
                f"`{name}`{path} {what} but the {params_name} have {has} there: "
                "per-leaf values must be None exactly where the params are None."
            )
    return None


def scale_by_adam_per_leaf_eps(
    eps: Any,
    b1: jax.typing.ArrayLike = 0.9,
    b2: jax.typing.ArrayLike = 0.999,
    *,
    eps_root: jax.typing.ArrayLike = 0.0,
    mu_dtype: jax.typing.DTypeLike | None = None,
) -> optax.GradientTransformation:
    r"""Rescale updates by Adam with a separate, static epsilon for every leaf.

    For a leaf with epsilon :math:`\varepsilon_\ell`, exactly `optax.scale_by_adam`:

    .. math::

        m_t = \beta_1 m_{t-1} + (1-\beta_1) g_t, \qquad
        v_t = \beta_2 v_{t-1} + (1-\beta_2) g_t^2,

        u_t = \frac{m_t / (1-\beta_1^t)}{\sqrt{v_t / (1-\beta_2^t) + \bar\varepsilon}
        + \varepsilon_\ell}.

    Why per leaf: raw gradients shrink with width like `n^(-g_l)`, a different `g_l`
    per layer; a constant epsilon then dominates `sqrt(v)` at large width and silently
    changes the update's scaling ("gradient underflow"). Scaling each layer's epsilon
    like its gradient, `eps_l = eps_0 (n / n_base)^(-g_l)`, keeps the exponents
    (`reference/theory.md` section 6).

    Args:
        eps: a tree with the structure of the params holding one Python float per array
            leaf (`None` where the params are `None`), or one float for every leaf.
        b1: decay rate of the first moment.
        b2: decay rate of the second moment.
        eps_root: added inside the square root, as in `optax.scale_by_adam`.
        mu_dtype: optional dtype of the first moment.

    Returns:
        An `optax.GradientTransformation` whose state is an `optax.ScaleByAdamState`,
        the same leaves and bytes as `optax.scale_by_adam`'s.

    References:
        Kingma and Ba, *Adam: A Method for Stochastic Optimization*, ICLR 2015.
        Everett et al., *Scaling Exponents Across Parameterizations and Optimizers*,
        ICML 2024, https://arxiv.org/abs/2407.05872

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from paramspec._optax._adam_eps import scale_by_adam_per_leaf_eps
        >>> params = {"hidden": jnp.zeros(3), "readout": jnp.zeros(2)}
        >>> tx = scale_by_adam_per_leaf_eps({"hidden": 1e-8, "readout": 1e-3})
        >>> state = tx.init(params)
        >>> grads = {"hidden": jnp.full(3, 1e-3), "readout": jnp.full(2, 1e-3)}
        >>> updates, state = jax.jit(tx.update)(grads, state)
        >>> round(float(updates["hidden"][0]), 4), round(float(updates["readout"][0]), 4)
        (1.0, 0.5)
    """
    mu_dtype = jax.dtypes.canonicalize_dtype(mu_dtype) if mu_dtype is not None else None
    uniform = isinstance(eps, int | float) and not isinstance(eps, bool)

    def eps_like(tree: Any, tree_name: str) -> Any:
        if uniform:
            return jax.tree.map(lambda x: None if x is None else eps, tree, is_leaf=_is_none)
        problem = tree_mismatch("eps", eps, tree, tree_name)
        if problem is not None:
            raise ValueError(f"scale_by_adam_per_leaf_eps: {problem}")
        return eps

    def init_fn(params: optax.Params) -> optax.ScaleByAdamState:
        eps_like(params, "params")
        return optax.ScaleByAdamState(
            count=jnp.zeros([], jnp.int32),
            mu=otu.tree_zeros_like(params, dtype=mu_dtype),
            nu=otu.tree_zeros_like(params),
        )

    def update_fn(
        updates: optax.Updates, state: optax.ScaleByAdamState, params: optax.Params | None = None
    ) -> tuple[optax.Updates, optax.ScaleByAdamState]:
        del params
        eps_tree = eps_like(updates, "updates")
        # Line for line `optax.scale_by_adam` (nesterov=False), with `eps` per leaf.
        mu = otu.tree_update_moment(updates, state.mu, b1, 1)
        nu = otu.tree_update_moment_per_elem_norm(updates, state.nu, b2, 2)
        count_inc = optax.safe_increment(state.count)
        mu_hat = otu.tree_bias_correction(mu, b1, count_inc)
        nu_hat = otu.tree_bias_correction(nu, b2, count_inc)
        updates = jax.tree.map(
            lambda m, v, e: None if m is None else m / (jnp.sqrt(v + eps_root) + e),
            mu_hat,
            nu_hat,
            eps_tree,
            is_leaf=_is_none,
        )
        mu = otu.tree_cast(mu, mu_dtype)
        nu = otu.tree_cast_like(nu, state.nu)
        return updates, optax.ScaleByAdamState(count=count_inc, mu=mu, nu=nu)

    return optax.GradientTransformation(init_fn, update_fn)
