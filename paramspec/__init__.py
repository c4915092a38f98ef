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

from ._compile import Compiled as Compiled
from ._compile import compile as compile
from ._errors import SpecError as SpecError
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
}

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


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'paramspec' has no attribute {name!r}")
    value = getattr(import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
