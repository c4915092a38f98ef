"""The warning `paramspec.compile` gives for a spec that is unstable for its optimizer.

`check` answers "is this spec stable?" when asked; this module says it unasked, at
compile time, in one message: each unstable block, why (the reasons of `check`), and
the fix -- most often `lr auto` in a block that was given a fixed learning rate. A
spec that is unstable on purpose (a sweep baseline) says so with a top-level
`unstable "reason"` line and is not warned about.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import TYPE_CHECKING

from .._errors import UnstableSpecWarning
from .._resources import specs_dir
from ._check import DEFAULT_EPS, GRAD_SCALE, GRAD_WIDTH, UNDERFLOW_RATIO, _check_case

if TYPE_CHECKING:
    from .._compile import Compiled

__all__ = ["unstable_message", "warn_unstable"]


def _where(compiled: Compiled) -> str:
    words = {1: "full", 0.5: "none"}
    align = words.get(float(compiled.alignment), str(compiled.alignment))
    return f"under {compiled.optimizer_name} with alignment {align}"


def unstable_message(compiled: Compiled) -> str | None:
    """The warning's text, or None when the compiled spec is stable."""
    spec = compiled.spec
    case = _check_case(spec, compiled.optimizer_name, compiled.alignment, compiled.width,
                       compiled.base_width, DEFAULT_EPS, GRAD_SCALE, GRAD_WIDTH,
                       UNDERFLOW_RATIO)
    lines = []
    chain = {"output": 2, "hidden": 1}  # the order of §4's chain: causes before receivers
    for name in sorted(case.unstable_layers, key=lambda n: chain.get(case.layers[n].role, 0)):
        layer = case.layers[name]
        block = spec.block(name)
        # An unstable init that the block allows (`allow unstable_init`) is deliberate.
        if layer.stable_training and "unstable_init" in block.allow:
            continue
        reasons = "; ".join(layer.reasons) or layer.verdict
        lines.append(f"  block `{name}` ({layer.role}): {reasons}")
        own_lr_too_large = layer.r is not None and layer.c < layer.prescribed_c and (
            block.lr is None or block.lr.kind != "auto")
        if own_lr_too_large:
            lines.append(f"    fix: `lr auto` in block `{name}`")
    if not lines:
        return None
    file = spec.span.file if spec.span is not None else "<string>"
    builtin = file == "<string>" or Path(file).parent == specs_dir()
    ref = spec.name if builtin else file
    lines.insert(0, f"spec `{spec.name}` is unstable {_where(compiled)}:")
    lines.append(
        f"  (details: `paramspec check {ref} --optimizer {compiled.optimizer_name}`; if "
        "the instability is deliberate, e.g. a sweep baseline whose learning rate is re-tuned "
        "at every width, say so with a top-level line `unstable \"reason\"`)")
    return "\n".join(lines)


def warn_unstable(compiled: Compiled, *, stacklevel: int = 2) -> None:
    """`warnings.warn` the message of `unstable_message`, if any (UnstableSpecWarning)."""
    message = unstable_message(compiled)
    if message is not None:
        warnings.warn(message, UnstableSpecWarning, stacklevel=stacklevel + 1)
