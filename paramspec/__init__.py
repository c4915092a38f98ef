"""paramspec: declarative width-scaling parameterizations, compiled to Equinox and Optax.

    import paramspec as ps
    spec = ps.load("mup")
    c = ps.compile(spec, width=1024, base_width=64)
    c.table()

Only the language layer is imported eagerly; names that need JAX load on first use.
"""

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
