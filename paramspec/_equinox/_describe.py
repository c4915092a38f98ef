"""`c.describe(model)`: what every parameter of a compiled model got, one row each.

Read from what `c.init`/`c.apply` recorded on the model (block, role, explicit layout,
tie; see `ParamRecord`), so a model restored from a checkpoint describes itself the same
way. The numbers are those `c.optimizer(model)` bakes in (`_build._values`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .._errors import SpecError
from ._attention import query_multipliers
from ._build import _split_label, _values
from ._multiply import block_labels, recorded_params
from ._roles import describe_leaves

if TYPE_CHECKING:
    from .._compile import Compiled

__all__ = ["COLUMNS", "describe"]

# The keys of every row, in order (the JSON of `paramspec roles`).
COLUMNS = ("path", "block", "role", "fan_in", "fan_out", "multiplier", "init_std",
           "lr_scale", "eps_scale", "wd_scale", "tied")
# Added after those where the compiled spec involves depth (as `c.table()`'s depth keys).
DEPTH_COLUMNS = ("depth", "branch_multiplier")


def describe(compiled: Compiled, model: Any) -> list[dict[str, Any]]:
    """One dict per parameter, in leaf order (see `COLUMNS`).

    `init_std` is None for `init keep` (the module's own values). `tied` is None, or
    `{"block": ..., "multiplier": t}` for a tied parameter: its direct reads are that
    block's use, computed as `t * w` (docs/models.md, "Tied weights"); the other
    columns are the parameter's own block's, which the stored array follows.

    Where the spec involves depth (`compiled.depth_shown`) two columns follow
    (`DEPTH_COLUMNS`): `depth`, where the parameter sits ("repeated" inside the repeated
    blocks or "fixed", as learned from two depths; else the block's `depth` line, or
    None), and `branch_multiplier`, the residual-branch multiplier folded into its
    `multiplier` (an output projection named by `branches=`), else None.
    """
    labels = block_labels(model)
    records = recorded_params(model)
    queries = query_multipliers(model)  # with the attention logit scale's factor
    rows = []
    for info in describe_leaves(model):
        label = labels.get(info.path)
        if label is None:
            raise SpecError(
                f"parameter {info.path} was not parameterized by a compiled spec",
                hint="describe a model built by c.init(make_model, key) or c.apply(model, key)")
        form, block = _split_label(label)
        record = records.get(info.path)
        place = None if record is None else record.depth
        branch = None if record is None else record.branch
        values = _values(compiled, compiled.block(block).name, info, form, place)
        tie = None if record is None or record.tie is None else {
            "block": record.tie[0], "multiplier": record.tie[1]}
        # as held by the model: a query projection's includes the attention factor (and
        # any branch factor); elsewhere the block's multiplier times the branch factor
        multiplier = queries.get(info.path, values["multiplier"] * (branch or 1.0))
        row = {
            "path": info.path,
            "block": block,
            "role": info.role,
            "fan_in": info.fan_in,
            "fan_out": info.fan_out,
            "multiplier": multiplier,
            "init_std": values["init"],
            "lr_scale": values["lr"],
            "eps_scale": values["eps"],
            "wd_scale": values["wd"],
            "tied": tie,
        }
        if compiled.depth_shown:
            row["depth"] = place if place is not None else compiled.block(block).depth
            row["branch_multiplier"] = branch
        rows.append(row)
    return rows
