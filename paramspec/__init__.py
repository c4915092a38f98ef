"""paramspec: declarative width-scaling parameterizations, compiled to Equinox and Optax.

    import paramspec as ps
    spec = ps.load("mup")
    c = ps.compile(spec, width=1024, base_width=64)
    c.table()

The language layer (text -> IR -> theory) is imported eagerly and never imports JAX.
Everything else loads on first use (PEP 562 `__getattr__`), so `import paramspec` and
`paramspec compile` stay light.
"""

from importlib import import_module
from typing import TYPE_CHECKING, Any

from . import _command

# In the `paramspec` command's own process (and only there), skip pydantic's scan of
# every installed distribution for plugins, and the import of its loader: the CLI uses
# none, and they are a sizeable part of its start-up time (_command.py). A library
# import leaves the environment alone.
if _command.is_command():
    _command.prepare()

from ._compile import Compiled as Compiled
from ._compile import compile as compile
from ._errors import SpecError as SpecError
from ._errors import UnstableSpecWarning as UnstableSpecWarning
from ._ir import Block as Block
from ._ir import Expr as Expr
from ._ir import Spec as Spec
from ._library import builtin_names as builtin_names
from ._library import load as load
from ._parse import parse as parse
from ._render import render as render

__version__ = "0.1.0"

# name -> module that defines it; loaded on first access.
_LAZY = {
    # analysis (pure Python)
    "check": "._analysis",
    "explain": "._analysis",
    "equivalent": "._analysis",
    "absorb": "._analysis",
    "alignment": "._analysis",
    "alignments": "._analysis",
    "CheckReport": "._analysis",
    "EquivReport": "._analysis",
    "AbsorbedLayer": "._analysis",
    # Optax pieces (JAX)
    "scale_by_adam_atan2": "._optax",
    "adam_atan2": "._optax",
    "ScaleByAdamAtan2State": "._optax",
    "scale_by_adam_per_leaf_eps": "._optax",
    "build_optimizer": "._optax",
    # Equinox pieces (JAX)
    "Layout": "._equinox",
    "LeafInfo": "._equinox",
    "Multiplied": "._equinox",
    "scaled": "._equinox",
    "unwrap": "._equinox",
    "infer_leaves": "._equinox",
    "describe_leaves": "._equinox",
    "map_parameters": "._equinox",
    # attention logit scale (pure Python)
    "attention_scale": "._attention",
    "logit_theory": "._attention",
    "LogitTheory": "._attention",
    # coordinate check (JAX)
    "coord_check": "._coord",
    "CoordCheck": "._coord",
    "linear_loss": "._coord",
    "DepthCheck": "._coord_depth",
    # learning-rate sweeps (JAX)
    "sweep": "._transfer._sweep",
    "use_every_cpu_core": "._transfer._vectorised",
    "transfer_metrics": "._transfer._table",
}
_SUBMODULES = ("models",)

if TYPE_CHECKING:  # for type checkers and IDEs; at run time these load lazily
    from ._analysis import AbsorbedLayer as AbsorbedLayer
    from ._analysis import CheckReport as CheckReport
    from ._analysis import EquivReport as EquivReport
    from ._analysis import absorb as absorb
    from ._analysis import alignment as alignment
    from ._analysis import alignments as alignments
    from ._analysis import check as check
    from ._analysis import equivalent as equivalent
    from ._analysis import explain as explain
    from ._attention import LogitTheory as LogitTheory
    from ._attention import attention_scale as attention_scale
    from ._attention import logit_theory as logit_theory
    from ._coord import CoordCheck as CoordCheck
    from ._coord import coord_check as coord_check
    from ._coord import linear_loss as linear_loss
    from ._coord_depth import DepthCheck as DepthCheck
    from ._equinox import Layout as Layout
    from ._equinox import LeafInfo as LeafInfo
    from ._equinox import Multiplied as Multiplied
    from ._equinox import describe_leaves as describe_leaves
    from ._equinox import infer_leaves as infer_leaves
    from ._equinox import map_parameters as map_parameters
    from ._equinox import scaled as scaled
    from ._equinox import unwrap as unwrap
    from ._optax import ScaleByAdamAtan2State as ScaleByAdamAtan2State
    from ._optax import adam_atan2 as adam_atan2
    from ._optax import build_optimizer as build_optimizer
    from ._optax import scale_by_adam_atan2 as scale_by_adam_atan2
    from ._optax import scale_by_adam_per_leaf_eps as scale_by_adam_per_leaf_eps
    from ._transfer._sweep import sweep as sweep
    from ._transfer._table import transfer_metrics as transfer_metrics
    from ._transfer._vectorised import use_every_cpu_core as use_every_cpu_core


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        return import_module(f".{name}", __name__)
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'paramspec' has no attribute {name!r}")
    value = getattr(import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY) | set(_SUBMODULES))
