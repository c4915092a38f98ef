"""Which parameters of a built model Muon orthogonalises, and their static shape factors.

Under `optimizer muon` a parameter takes Muon when its block's role is hidden
(`paramspec._muon_rule.MUON`) and it has at least two axes; its matrix comes from its
layout (`_fans.Layout`: fan-in axes reduced, the other fan-out axes the output, the
rest a batch; see `paramspec._optax._muon.muon_dimension_numbers`). Everything else takes
Adam. One reader of the recorded blocks (`parameter_blocks`) and layouts.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .._muon_rule import MUON
from ._build import parameter_blocks
from ._roles import LeafInfo, _params_with_layouts, map_parameters

if TYPE_CHECKING:
    from .._compile import Compiled

__all__ = ["muon_trees"]


def muon_trees(compiled: Compiled, model: Any, scale: str) -> tuple[Any, Any]:
    """(dimension numbers, shape factors): trees shaped like `model`.

    `MuonDimensionNumbers` at Muon leaves and `None` elsewhere; the factor of
    `shape_factor(..., scale, n)` at Muon leaves and 1.0 at the other parameters.
    """
    from .._optax._muon import muon_dimension_numbers, shape_factor

    layouts = {entry.path: layout for entry, layout, _ in _params_with_layouts(model, None)}
    blocks = parameter_blocks(model)
    roles = {b.name: b.role for b in compiled.blocks}

    def dims(info: LeafInfo) -> Any:
        role = roles.get(blocks.get(info.path, ""), "")
        if not MUON.applies(compiled.optimizer_name, role or "") or len(info.shape) < 2:
            return None
        layout, ndim = layouts[info.path], len(info.shape)
        return muon_dimension_numbers(info.shape, layout.fan_in_axes(ndim),
                                      layout.fan_out_axes(ndim))

    def factor(info: LeafInfo) -> float:
        d = dims(info)
        return 1.0 if d is None else shape_factor(info.shape, d, scale, compiled.n)

    return map_parameters(dims, model), map_parameters(factor, model)
