"""Tied weights: one stored array with two uses (a token embedding that is also the readout).

The route (see `docs/models.md`, "Tied weights"):

- The model is written the usual Equinox way: it *calls* the embedding
  (`jax.vmap(self.wte)(tokens)`) and *reads* its array for the readout
  (`x @ self.wte.weight.T`).
- `c.init(make_model, key, tied={"wte.weight": "readout"})` declares the tie: the stored
  `w` follows the embedding's block (its init std s_e, learning rate, eps, decay), calling
  the module computes with the embedding's `m_e * w`, and reading the field through its
  `Multiplied` wrapper gives the readout use `t * w` with

      t = m_o * s_o / s_e

  (m_o, s_o: the readout block's multiplier and init std at the readout use's fans,
  which are the embedding's transposed), so that at init the readout use has exactly the
  readout's effective scale `m_o * s_o`. The factor is recorded on the model
  (`ParamRecord.tie`), so optimizers, `describe` and checkpoint restores need nothing more.
- An undeclared tie is found at `c.init`, before anything runs: `direct_reads` scans the
  source of the model's own classes for reads of a child module's parameter
  (`self.wte.weight`, `self.transformer.wte.weight`). A read that is neither a table
  lookup (`self.wpe.weight[:T]`, the parameter's own use) nor metadata (`.shape`,
  `.dtype`) of a parameter in an input-role block is taken for a tied readout and, unless
  declared, is an error that names both uses and the one-line fix.

Why a source scan (`ast`), not a trace: `c.init` has no inputs to run the model with, and
the failure it prevents (an embedding array used as a readout with the embedding's
scaling) trains without error, so it must be caught before training. A read the scan cannot
see (a class without source, an alias `e = self.wte; e.weight`) gives the parameter's own
`m * w`, as a position table needs.
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import inspect
import math
import textwrap
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import equinox as eqx
import jax

from .._errors import SpecError
from ._roles import LeafInfo, _cuts_below, join_path, render_path

if TYPE_CHECKING:
    from .._compile import Compiled

__all__ = ["DirectRead", "check_reads", "direct_reads", "resolve_ties"]

Kind = Literal["lookup", "meta", "use"]
_META = frozenset({"shape", "dtype", "ndim", "size", "sharding"})
# Methods that run on the plain module while it is built, never through the wrapper.
_BUILD = frozenset({"__init__", "__post_init__", "__check_init__"})
# Library classes never read a child's parameter as a tie; their source is not scanned.
_SKIP_MODULES = ("equinox", "jax", "builtins", "abc", "typing")


@dataclass(frozen=True)
class DirectRead:
    """One read of a child module's parameter in a model class's source."""

    path: str  # the parameter's path in the model
    kind: Kind  # lookup (`w[...]`), meta (`w.shape`) or use (anything else)
    where: str  # "file.py:line"
    method: str  # "GPT.__call__"
    text: str  # the source line


@dataclass(frozen=True)
class _Read:
    chain: tuple[str, ...]  # ("wte", "weight") for self.wte.weight
    kind: Kind
    line: int
    method: str
    text: str


def _chain(node: ast.Attribute) -> tuple[str, ...] | None:
    names: list[str] = []
    cur: ast.expr = node
    while isinstance(cur, ast.Attribute):
        names.append(cur.attr)
        cur = cur.value
    if isinstance(cur, ast.Name) and cur.id == "self" and len(names) >= 2:
        return tuple(reversed(names))
    return None


@functools.cache
def _class_reads(cls: type) -> tuple[tuple[str, tuple[_Read, ...]], ...]:
    """(file name, reads) for every `self.a.b...` chain in `cls`'s own source."""
    try:
        lines, start = inspect.getsourcelines(cls)
        file = inspect.getsourcefile(cls) or "<unknown>"
        tree = ast.parse(textwrap.dedent("".join(lines)))
    except (OSError, TypeError, SyntaxError):
        return ()
    parents: dict[ast.AST, ast.AST] = {}
    for parent in ast.walk(tree):
        for child in ast.iter_child_nodes(parent):
            parents[child] = parent
    reads: list[_Read] = []
    for fn in ast.walk(tree):
        if not isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef) or fn.name in _BUILD:
            continue
        for node in ast.walk(fn):
            if not isinstance(node, ast.Attribute):
                continue
            chain = _chain(node)  # every prefix is tried; `_resolve` keeps parameter reads
            if chain is None:
                continue
            parent = parents.get(node)
            if isinstance(parent, ast.Subscript) and parent.value is node:
                kind: Kind = "lookup"
            elif isinstance(parent, ast.Attribute) and parent.attr in _META:
                kind = "meta"
            else:
                kind = "use"
            line = start + node.lineno - 1
            text = lines[node.lineno - 1].strip() if node.lineno <= len(lines) else ""
            reads.append(_Read(chain, kind, line, f"{cls.__name__}.{fn.name}", text))
    return ((Path(file).name, tuple(reads)),)


def _own_classes(module: Any) -> Iterator[type]:
    for cls in type(module).__mro__:
        if cls is object or cls.__module__.split(".")[0] in _SKIP_MODULES:
            continue
        yield cls


def _modules(node: Any, path: str) -> Iterator[tuple[str, Any]]:
    from ._multiply import Multiplied

    if isinstance(node, Multiplied):
        node = node.module
    if isinstance(node, eqx.Module):
        yield path, node
    items = jax.tree_util.tree_flatten_with_path(node, is_leaf=_cuts_below(node))[0]
    for keys, item in items:
        if item is not node and isinstance(item, eqx.Module):
            yield from _modules(item, render_path(path, keys))


def _resolve(module: Any, path: str, chain: Sequence[str], params: set[str]) -> str | None:
    """The parameter path that `self.<chain>` reads on `module` (at `path`), if any."""
    from ._multiply import Multiplied

    node, at = module, path
    for i, name in enumerate(chain):
        if isinstance(node, Multiplied):
            node = node.module
        if not isinstance(node, eqx.Module) or name not in {
                f.name for f in dataclasses.fields(node)}:
            return None
        at = join_path(at, name)
        if i == len(chain) - 1:
            # A child's own parameter: at least one module hop (not the class's own field).
            return at if i >= 1 and at in params else None
        node = getattr(node, name)
    return None


def direct_reads(model: Any, params: set[str]) -> list[DirectRead]:
    """Every read, in the model's own classes, of a child module's parameter."""
    out: list[DirectRead] = []
    for path, module in _modules(model, ""):
        for cls in _own_classes(module):
            for file, reads in _class_reads(cls):
                for r in reads:
                    target = _resolve(module, path, r.chain, params)
                    if target is not None:
                        out.append(DirectRead(target, r.kind, f"{file}:{r.line}", r.method,
                                              r.text))
    return out


def _shared(model: Any) -> list[str]:
    return [p or "(the model)" for p, m in _modules(model, "") if isinstance(m, eqx.nn.Shared)]


def _tie_block(compiled: Compiled, path: str, target: str) -> str:
    from .._select import ROLE_ALIASES

    names = [b.name for b in compiled.blocks]
    if target in names:
        return target
    role = ROLE_ALIASES.get(target, target)
    found = [b.name for b in compiled.blocks if not b.match and b.role == role]
    if len(found) != 1:
        raise SpecError(
            f"tied={{{path!r}: {target!r}}}: `{target}` names "
            + ("no block or role" if not found else f"{len(found)} blocks ({', '.join(found)})")
            + f" of spec `{compiled.spec.name}`",
            hint=f"name the block of the second use; the blocks are: {', '.join(names)}")
    return found[0]


def resolve_ties(
    compiled: Compiled,
    leaves: Sequence[LeafInfo],
    blocks: Mapping[str, str],
    values: Mapping[str, Mapping[str, Any]],
    tied: Mapping[str, str] | None,
    value_of: Any,
) -> dict[str, tuple[str, float]]:
    """`{path: (block of the direct-read use, factor t)}` for the declared ties.

    `value_of(block, info)` gives a block's numbers (multiplier, init, ...) for a leaf.
    """
    by_path = {info.path: info for info in leaves}
    out: dict[str, tuple[str, float]] = {}
    for path, target in (tied or {}).items():
        info = by_path.get(path)
        if info is None:
            raise SpecError(
                f"tied={{{path!r}: {target!r}}}: the model has no parameter {path}",
                hint="key tied= by the path of the stored array, e.g. \"wte.weight\"; "
                "`paramspec roles SPEC --model FILE.py:FUNC` lists the paths")
        block = _tie_block(compiled, path, target)
        use_role = compiled.block(block).role
        transposed = {info.role, use_role} == {"input", "output"}
        # The transposed use's fan-out is the table's row count (a lookup table reports
        # fan-in 1, the one-hot convention, but its readout use has one output per row).
        rows = math.prod(info.shape) // max(info.fan_out, 1)
        use = dataclasses.replace(
            info, role=use_role,  # type: ignore[arg-type]
            fan_in=info.fan_out if transposed else info.fan_in,
            fan_out=rows if transposed else info.fan_out)
        theirs = value_of(block, use)
        s_e = values[path]["init"]
        m_o, s_o = theirs["multiplier"], theirs["init"]
        problem = None
        if s_e is None or s_e == 0:
            problem = f"its own block `{blocks[path]}` has init {'keep' if s_e is None else 0}"
        elif s_o is None or s_o == 0:
            problem = f"block `{block}` has init {'keep' if s_o is None else 0}"
        if problem is not None:
            raise SpecError(
                f"cannot tie {path} to `{block}`: {problem}, so no factor t = m_{block} * "
                f"s_{block} / s_{blocks[path]} gives the second use the scale m * s of `{block}`",
                hint="a tied weight needs a nonzero init std in both blocks; untie it, or "
                "give the blocks nonzero `init` lines")
        out[path] = (block, m_o * s_o / s_e)
    return out


_UNDECLARED = (
    "{path} ({kind}, block `{block}`) has two uses: its own, when `{owner}` is called "
    "(block `{block}`), and {method} reads it directly at {where}:\n"
    "    {text}\n"
    "which looks like a tied readout. A tied readout needs the readout's scaling, which "
    "the embedding's array does not have (under multiplier-1 specs it would train silently "
    "wrong)."
)


def check_reads(
    model: Any,
    leaves: Sequence[LeafInfo],
    blocks: Mapping[str, str],
    block_roles: Mapping[str, str | None],
    ties: Mapping[str, tuple[str, float]],
) -> None:
    """Raise at `c.init` for an undeclared tie, a declared tie read as a table, or an
    `eqx.nn.Shared` (see the module docstring)."""
    shared = _shared(model)
    if shared:
        raise SpecError(
            f"{', '.join(shared)} is an eqx.nn.Shared: paramspec cannot tell which of the "
            "shared array's uses follows which block",
            hint="store the array once (e.g. in the eqx.nn.Embedding), call the module for "
            "its own use, read `self.embed.weight` for the second, and declare the tie: "
            'c.init(make_model, key, tied={"embed.weight": "readout"})')
    infos = {info.path: info for info in leaves}
    reads = direct_reads(model, set(infos))
    undeclared = [r for r in reads if r.kind == "use" and r.path not in ties
                  and block_roles.get(blocks[r.path]) == "input"]
    if undeclared:
        r = undeclared[0]
        info = infos[r.path]
        owner = r.path.rsplit(".", 1)[0]
        raise SpecError(
            _UNDECLARED.format(path=r.path, kind=f"{info.module_type}.{info.field}",
                               block=blocks[r.path], owner=owner, method=r.method,
                               where=r.where, text=r.text),
            hint=f'declare the tie: c.init(make_model, key, tied={{"{r.path}": "readout"}}) '
            f'(in a --model file: TIED = {{"{r.path}": "readout"}}); if the read is not a '
            f"readout, read it as paramspec.scaled(self.{owner}).{info.field}")
    lookups = [r for r in reads if r.kind == "lookup" and r.path in ties]
    if lookups:
        r = lookups[0]
        block = ties[r.path][0]
        raise SpecError(
            f"{r.path} is tied to `{block}`, so reading it directly gives the `{block}` use, "
            f"but {r.method} indexes it as a table at {r.where}:\n    {r.text}",
            hint="call the module for its own use (jax.vmap(self.embed)(tokens)) and keep "
            f"direct reads for the `{block}` use only")
