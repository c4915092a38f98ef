"""`c.describe(model)`: what every parameter of a compiled model got, one row each.

Read from what `c.init`/`c.apply` recorded on the model (block, role, explicit layout,
tie; see `ParamRecord`), so a model restored from a checkpoint describes itself the same
way. The numbers are those `c.optimizer(model)` bakes in (`_build._values`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .._errors import SpecError
from ._build import _split_label, _values
from ._multiply import block_labels, recorded_params
from ._roles import describe_leaves

if TYPE_CHECKING:
    from .._compile import Compiled

__all__ = ["COLUMNS", "describe"]

# The keys of every row, in order (the JSON of `paramspec roles`).
COLUMNS = ("path", "block", "role", "fan_in", "fan_out", "multiplier", "init_std",
           "lr_scale", "eps_scale", "wd_scale", "tied")


def describe(compiled: Compiled, model: Any) -> list[dict[str, Any]]:
    """One dict per parameter, in leaf order (see `COLUMNS`).

    `init_std` is None for `init keep` (the module's own values). `tied` is None, or
    `{"block": ..., "multiplier": t}` for a tied parameter: its direct reads are that
    block's use, computed as `t * w` (docs/models.md, "Tied weights"); the other
    columns are the parameter's own block's, which the stored array follows.
    """
    labels = block_labels(model)
    records = recorded_params(model)
    rows = []
    for info in describe_leaves(model):
        label = labels.get(info.path)
        if label is None:
            raise SpecError(
                f"parameter {info.path} was not parameterized by a compiled spec",
                hint="describe a model built by c.init(make_model, key) or c.apply(model, key)")
        form, block = _split_label(label)
        values = _values(compiled, compiled.block(block).name, info, form)
        record = records.get(info.path)
        tie = None if record is None or record.tie is None else {
            "block": record.tie[0], "multiplier": record.tie[1]}
        rows.append({
            "path": info.path,
            "block": block,
            "role": info.role,
            "fan_in": info.fan_in,
            "fan_out": info.fan_out,
            "multiplier": values["multiplier"],
            "init_std": values["init"],
            "lr_scale": values["lr"],
            "eps_scale": values["eps"],
            "wd_scale": values["wd"],
            "tied": tie,
        })
    return rows
