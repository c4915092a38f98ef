"""The spec's attention logit scale, applied to `eqx.nn.MultiheadAttention`.

`eqx.nn.MultiheadAttention` computes `softmax(q.k / sqrt(qk_size))` with the
`1/sqrt(qk_size)` hard-coded in `eqx.nn._attention.dot_product_attention_weights`. A spec
that wants the logits `s * q.k` gets them by multiplying the query projection's forward
multiplier (weight and bias) by `f = s * sqrt(qk_size)`: the module then computes
`(f * q) . k / sqrt(qk_size) = s * q.k`.

This is exact, not an approximation: the model is the same function of its stored
parameters as one that multiplies the logits by `s`, so it has the same gradients and
trains the same under every optimizer (up to float rounding: the factor multiplies `W_q`
instead of the logits). With zero-initialised queries the logits are 0 at init
whatever `f` is; `f` then acts on the updates only: the query gradient carries `f` and
the change of `q` is `f` times the change of the stored weight, so the logit change is
`f` times larger under Adam-like updates (`f^2` under SGD), exactly as with `s` on the
logits.

What grows (the head count or the head size) is read from two widths, like roles
(`eqx.filter_eval_shape`: shapes only): `num_heads` and `qk_size` are static fields of
the module. `head_n`, the head-size multiplier, is the width multiplier `n` where the
head size grows and 1 where the head count grows; so at the base width every spec gives
the module's own `1/sqrt(qk_size)` (the factor is exactly 1.0).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import equinox as eqx
import jax

from .._attention import GROWTHS, module_factor, needs_growth
from .._errors import SpecError
from ._multiply import Multiplied, multiply
from ._roles import LeafInfo, _cuts_below, join_path, render_path

if TYPE_CHECKING:
    from .._compile import Compiled

__all__ = ["attention_growth", "attention_modules", "scale_attention"]

# The projection whose forward multiplier carries the factor, and its fields.
_QUERY = "query_proj"
_QUERY_FIELDS = ("weight", "bias")


def attention_modules(model: Any) -> list[tuple[str, eqx.nn.MultiheadAttention]]:
    """Every `eqx.nn.MultiheadAttention` in `model`, with its path, in tree order."""
    out: list[tuple[str, eqx.nn.MultiheadAttention]] = []

    def walk(node: Any, path: str) -> None:
        if isinstance(node, Multiplied):
            walk(node.module, path)
            return
        if isinstance(node, eqx.nn.MultiheadAttention):
            out.append((path, node))
            return
        items = jax.tree_util.tree_flatten_with_path(node, is_leaf=_cuts_below(node))[0]
        for keys, item in items:
            if item is not node and isinstance(item, eqx.Module):
                walk(item, render_path(path, keys))

    walk(model, "")
    return out


def _growth(path: str, small: Any, large: Any) -> str:
    heads = small.num_heads != large.num_heads
    size = small.qk_size != large.qk_size
    if heads and size:
        raise SpecError(
            f"attention {path or '(the model)'} changes both its head count "
            f"({small.num_heads} -> {large.num_heads}) and its head size "
            f"({small.qk_size} -> {large.qk_size}) between widths",
            hint="keep one of them fixed: a fixed head size (the head count grows) or a "
            "fixed head count (the head size grows)",
        )
    return "head_size" if size else "heads"  # nothing grows: d is fixed, like "heads"


def attention_growth(
    make_model: Callable[[int, Any], Any], width: int, other_width: int, key: Any
) -> dict[str, str]:
    """What grows in each attention module of `make_model`: "heads" or "head_size"."""
    small = attention_modules(eqx.filter_eval_shape(make_model, width, key))
    large = attention_modules(eqx.filter_eval_shape(make_model, other_width, key))
    if [p for p, _ in small] != [p for p, _ in large]:
        raise SpecError(
            "the model's attention modules differ between widths "
            f"{width} and {other_width}",
            hint="make_model(width, key) must build the same modules at every width",
        )
    return {path: _growth(path, s, m) for (path, s), (_, m) in zip(small, large, strict=True)}


def _growth_of(path: str, growth: Mapping[str, str] | str | None, width: int,
               base_width: int) -> str:
    if isinstance(growth, str):
        value = growth
    elif growth is not None and path in growth:
        value = growth[path]
    elif width == base_width:
        return "heads"  # head_n is 1 either way
    else:
        raise SpecError(
            f"cannot tell whether the head count or the head size of attention "
            f"{path or '(the model)'} grows with width: the spec's logit scale depends on it",
            hint='build the model with c.init(make_model, key), which compares two widths, '
            'or say it: c.apply(model, key, attention="head_size") (or "heads")',
        )
    if value not in GROWTHS:
        raise SpecError(f"unknown attention growth {value!r}",
                        hint=f"use one of {', '.join(GROWTHS)}")
    return value


def query_factors(compiled: Compiled, model: Any,
                  growth: Mapping[str, str] | str | None) -> dict[str, float]:
    """The factor on each query-projection parameter (by path); factors of 1 left out."""
    attention = compiled.spec.attention
    factors: dict[str, float] = {}
    for path, module in attention_modules(model):
        head_n = 1.0
        if needs_growth(attention):
            if _growth_of(path, growth, compiled.width, compiled.base_width) == "head_size":
                head_n = compiled.n
        f = module_factor(attention, head_dim=module.qk_size, head_n=head_n,
                          alignment=compiled.alignment)
        if f != 1.0:
            proj = module.query_proj
            proj = proj.module if isinstance(proj, Multiplied) else proj
            for field in _QUERY_FIELDS:
                if getattr(proj, field, None) is not None:
                    factors[join_path(join_path(path, _QUERY), field)] = f
    return factors


def scale_attention(compiled: Compiled, model: Any, leaves: list[LeafInfo],
                    growth: Mapping[str, str] | str | None) -> Any:
    """`model` with each attention module's logits scaled as the spec says."""
    factors = query_factors(compiled, model, growth)
    if not factors:
        return model
    return multiply(model, lambda info: factors.get(info.path), leaves=leaves)
