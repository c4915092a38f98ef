"""Depth on users' own models: which parameters sit in the repeated blocks, and where
each residual branch ends.

**Repeated blocks, learned from two depths** (as roles are learned from two widths,
`_roles.py`). `make_model(width, key, depth=L)` is traced (`eqx.filter_eval_shape`: shapes
only) at the compiled depth and at another one (default twice it). A parameter is
*repeated* when

- it sits in an element of a list or tuple (`blocks[3]`, `h[3]`, `layers[3]`) and the
  number of elements *like it* (the same parameters with the same shapes) in that
  container grows with depth: a GPT's `blocks[*]`, an `eqx.nn.MLP`'s hidden layers (its
  first and last layer, of other shapes, stay `fixed`); or
- its own shape changes with depth (blocks stacked along a leading axis, for a scan).

Everything else is *fixed* and must be built alike at both depths. An element whose
contents change with depth while its container keeps its length (ResNet stages holding
more blocks) is looked into, element by element. What does not fit these rules is
refused with a `SpecError` (no guess).

How the spec's `depth` lines and what is learned combine (docs/models.md, "Depth"): a
parameter follows its block's repeated-block rule (depth factors on `auto` lr/eps/wd)
when the block says `depth repeated` **and** the parameter is inside the repeated
blocks; a role-wide block (`vectors { depth repeated }`) thus leaves a final norm or a
patch-embedding bias alone. A block that selects parameters by `match` lines and says
`depth repeated` or `depth fixed` makes a claim about exactly those parameters: a claim
that contradicts the model is an error naming the parameter and the fix.

**Residual branches, declared.** Multiplying a branch's output by `s` (`x + s F(x)`) is
exactly multiplying its *output projection* (the last linear map before the residual
add: GPT's `c_proj`s, LLaMA's `wo`/`w2`) and that projection's bias by `s`: the module's
multiplier (`Multiplied`) carries the factor, so the stored weights, their gradients
(`d/dw` of `s W h` is `s` times the unscaled one, as behind a branch multiplier) and
checkpoints stay those of the plain model. Which modules those are is named by
`branches=` (path globs over module or parameter paths); finding them from the forward
computation would need an example input and a trace of the residual adds, and a wrong
guess silently trains another model, so it is declared, and checked: every named module
must sit in the repeated blocks, and every repeated block must have at least one.
"""

from __future__ import annotations

import fnmatch
import inspect
import re
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import equinox as eqx

from .._errors import SpecError, listing
from ._roles import LeafInfo, iter_leaves

if TYPE_CHECKING:
    from .._compile import Compiled

__all__ = ["Place", "accepts_depth", "at_depth", "branch_parameters", "check_declared",
           "counterparts", "learn_places"]

_INDEX = re.compile(r"\[(\d+)\]")

_DEPTH_HINT = (
    "make_model(width, key, depth=L) must build L copies of the repeated block (a list or "
    "tuple of blocks, or arrays stacked along a leading axis of length L) and everything "
    "else alike at every depth; or leave the `depth` keyword out of make_model, and c.init "
    "uses the spec's `depth repeated` lines as they are")


@dataclass(frozen=True)
class Place:
    """Where a parameter sits: inside the repeated blocks or not, and in which one
    (`"blocks[3]"`; `None` for fixed parameters and for stacked arrays)."""

    repeated: bool
    instance: str | None = None

    @property
    def name(self) -> str:
        return "repeated" if self.repeated else "fixed"


def accepts_depth(make_model: Callable[..., Any]) -> bool:
    """Whether `make_model` has a parameter named `depth` that can be passed by keyword
    (`**kwargs` alone does not count: it may not mean blocks)."""
    try:
        params = inspect.signature(make_model).parameters
    except (TypeError, ValueError):  # a builtin or an object without a signature
        return False
    p = params.get("depth")
    return p is not None and p.kind is not inspect.Parameter.POSITIONAL_ONLY


def at_depth(make_model: Callable[..., Any], depth: int) -> Callable[[int, Any], Any]:
    """`make_model` as a `make_model(width, key)` at one depth."""
    return lambda width, key: make_model(width, key, depth=depth)


def _shapes(make_model: Callable[..., Any], width: int, depth: int, key: Any
            ) -> list[tuple[str, tuple[int, ...]]]:
    try:
        model = eqx.filter_eval_shape(make_model, width, key, depth=depth)
    except Exception as e:  # the user's constructor: say which depth it was asked for
        raise SpecError(
            f"learning the repeated blocks builds make_model({width}, key, depth={depth}), "
            f"which failed: {type(e).__name__}: {e}",
            hint="pass other_depth= (a depth make_model accepts), or compile at a depth it "
            "accepts") from e
    return [(e.path, tuple(int(s) for s in e.leaf.shape)) for e in iter_leaves(model)
            if e.is_param]


def learn_places(make_model: Callable[..., Any], width: int, depth: int, other_depth: int,
                 key: Any) -> dict[str, Place]:
    """The `Place` of every parameter of `make_model(width, key, depth=depth)`, learned
    by comparing it with the model at `other_depth` (see the module docstring)."""
    if other_depth == depth or other_depth <= 0:
        raise SpecError(f"learning the repeated blocks needs another positive depth than "
                        f"{depth}, got other_depth={other_depth}",
                        hint=f"e.g. other_depth={2 * depth}")
    here = _shapes(make_model, width, depth, key)
    there = _shapes(make_model, width, other_depth, key)
    out: dict[str, Place] = {}
    problems: list[str] = []
    _classify(here, there, "", other_depth > depth, out, problems)
    if problems:
        raise SpecError(
            f"cannot tell which parameters sit in the repeated blocks from depths {depth} and "
            f"{other_depth}:\n" + listing(problems), hint=_DEPTH_HINT)
    if not any(p.repeated for p in out.values()):
        raise SpecError(
            f"make_model builds the same parameters at depth {depth} and depth {other_depth}: "
            "its `depth` keyword does not change the number of blocks", hint=_DEPTH_HINT)
    return out


def _split(rel: str) -> tuple[str, int, str] | None:
    m = _INDEX.search(rel)
    return None if m is None else (rel[:m.start()], int(m.group(1)), rel[m.end():])


Items = list[tuple[str, tuple[int, ...]]]


def _group(items: Items) -> tuple[dict[str, tuple[int, ...]], dict[str, dict[int, Items]]]:
    flat: dict[str, tuple[int, ...]] = {}
    groups: dict[str, dict[int, Items]] = {}
    for rel, shape in items:
        parts = _split(rel)
        if parts is None:
            flat[rel] = shape
        else:
            head, k, rest = parts
            groups.setdefault(head, {}).setdefault(k, []).append((rest, shape))
    return flat, groups


def _classify(here: Items, there: Items, prefix: str, deeper: bool,
              out: dict[str, Place], problems: list[str]) -> None:
    """Classify `here`'s parameters (paths relative to `prefix`) against `there`'s."""
    flat_a, groups_a = _group(here)
    flat_b, groups_b = _group(there)
    for rel, shape in flat_a.items():
        path = prefix + rel
        if rel not in flat_b:
            problems.append(f"{path}: built at one depth and not at the other")
        elif flat_b[rel] != shape and len(shape) == len(flat_b[rel]):
            out[path] = Place(True)  # stacked blocks: an axis follows the depth
        elif flat_b[rel] != shape:
            problems.append(f"{path}: shape {shape} at one depth, {flat_b[rel]} at the other")
        else:
            out[path] = Place(False)
    problems.extend(f"{prefix + rel}: built at one depth and not at the other"
                    for rel in flat_b if rel not in flat_a)
    for head, elements in groups_a.items():
        others = groups_b.get(head, {})
        count_a = Counter(tuple(sorted(v)) for v in elements.values())
        count_b = Counter(tuple(sorted(v)) for v in others.values())
        for k, items in elements.items():
            sig, elem = tuple(sorted(items)), f"{prefix}{head}[{k}]"
            a, b = count_a[sig], count_b.get(sig, 0)
            if (b > a) if deeper else (b < a):  # more elements like it when deeper
                for rest, _ in items:
                    out[elem + rest] = Place(True, elem)
            elif a == b:
                for rest, _ in items:
                    out[elem + rest] = Place(False)
            elif k in others and len(elements) == len(others):
                # the element itself changes with depth (a stage holding more blocks)
                _classify(items, others[k], elem, deeper, out, problems)
            else:
                problems.append(f"{elem}: {a} element(s) like it at one depth and {b} at the "
                                "other, in the wrong direction")


def counterparts(places: Mapping[str, Place], base_paths: Sequence[str] | Mapping[str, Any]
                 ) -> dict[str, str]:
    """For `init_from="model"` under depth: each repeated parameter's counterpart in the
    model built at the base depth, by its block's index modulo the base model's number of
    such blocks (`blocks[5].mlp.c_proj.weight` -> `blocks[1]...` with 4 blocks there).
    Only parameters whose own path is missing there are mapped."""
    present = set(base_paths)
    count: dict[str, set[int]] = {}
    for path in present:
        for m in _INDEX.finditer(path):
            count.setdefault(path[:m.start()], set()).add(int(m.group(1)))
    out: dict[str, str] = {}
    for path, place in places.items():
        if path in present or place.instance is None:
            continue
        head, _, k = place.instance[:-1].rpartition("[")
        indices = count.get(head)
        if indices:
            n = max(indices) + 1
            out[path] = f"{head}[{int(k) % n}]" + path[len(place.instance):]
    return out


# ----------------------------------------------------------------------------- the spec


def check_declared(compiled: Compiled, leaves: Sequence[LeafInfo], blocks: Mapping[str, str],
                   places: Mapping[str, Place]) -> None:
    """A block with `match` lines and a `depth` line claims where exactly those
    parameters sit; raise where the model says otherwise."""
    bad: list[str] = []
    for info in leaves:
        block = compiled.block(blocks[info.path])
        if not block.match or block.depth is None:
            continue
        place = places[info.path]
        if (block.depth == "repeated") != place.repeated:
            where = (f"inside the repeated block {place.instance}" if place.instance
                     else "inside the repeated blocks" if place.repeated
                     else "outside the repeated blocks (built alike at both depths)")
            bad.append(f"{info.path}: block `{block.name}` selects it by its `match` lines and "
                       f"says `depth {block.depth}`, but it is {where}")
    if bad:
        raise SpecError(
            f"{len(bad)} parameter(s) are not where the spec's `depth` lines say:\n"
            + listing(bad),
            hint="correct the block's `depth` line or its `match` lines (a spec that "
            "`extends` this one can redefine the block); or, if make_model's `depth` keyword "
            "misleads the inference, leave it out and the spec's lines are used as they are")


def _module_path(info: LeafInfo) -> str | None:
    """The path of the module that owns the parameter (`"blocks[0].mlp.c_proj"`)."""
    if info.field is None:
        return None
    at = info.path.rfind("." + info.field)
    return info.path[:at] if at >= 0 else ""


def _glob(pattern: str) -> str:
    return pattern.replace("[", "[[]")  # `[0]` in a path is literal, as in `match`


def branch_parameters(compiled: Compiled, leaves: Sequence[LeafInfo], globs: Sequence[str],
                      places: Mapping[str, Place] | None) -> set[str]:
    """The parameter paths whose multiplier carries the branch multiplier: every
    parameter owned by a module named by `globs` (a module path, or one of its parameters'
    paths). Checked against the learned places where there are any."""
    if isinstance(globs, str):
        raise SpecError(f"branches= is a list of path globs, got the string {globs!r}",
                        hint=f"branches=[{globs!r}]")
    modules: dict[str, list[LeafInfo]] = {}
    for info in leaves:
        mp = _module_path(info)
        if mp is not None:
            modules.setdefault(mp, []).append(info)
    chosen: set[str] = set()
    unmatched = []
    for g in globs:
        pat = _glob(str(g))
        hits = {mp for mp, infos in modules.items()
                if fnmatch.fnmatchcase(mp, pat) or any(fnmatch.fnmatchcase(i.path, pat)
                                                       for i in infos)}
        if not hits:
            unmatched.append(str(g))
        chosen |= hits
    if unmatched:
        raise SpecError(
            f"branches= names no module of the model: {', '.join(map(repr, unmatched))}",
            hint=_candidates(compiled, leaves, places))
    if places is not None:
        outside = sorted(mp for mp in chosen for i in modules[mp] if not places[i.path].repeated)
        if outside:
            raise SpecError(
                f"branches= names module(s) outside the repeated blocks: "
                f"{', '.join(dict.fromkeys(outside))}",
                hint="name only the output projections inside the repeated blocks; "
                + _candidates(compiled, leaves, places))
        instances = {p.instance for p in places.values() if p.repeated and p.instance}
        covered = {places[i.path].instance for mp in chosen for i in modules[mp]}
        missing = sorted(instances - covered, key=_natural)
        if missing:
            raise SpecError(
                f"branches= names no output projection in the repeated block(s) "
                f"{', '.join(missing)}: their residual branches would not be scaled",
                hint="use globs over every block, e.g. 'blocks[*].attn.c_proj'; "
                + _candidates(compiled, leaves, places))
    return {i.path for mp in chosen for i in modules[mp]}


def _natural(text: str) -> list[Any]:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", text)]


def _candidates(compiled: Compiled, leaves: Sequence[LeafInfo],
                places: Mapping[str, Place] | None) -> str:
    """A hint: the modules of the first repeated block that own a hidden matrix writing a
    width-sized output (the output projections are among them)."""
    first = None
    if places is not None:
        firsts = sorted({p.instance for p in places.values() if p.instance}, key=_natural)
        first = firsts[0] if firsts else None
    found = []
    for info in leaves:
        mp = _module_path(info)
        if (mp is None or info.role != "hidden" or info.fan_out != compiled.width
                or (first is not None and not mp.startswith(first))):
            continue
        found.append(_INDEX.sub("[*]", mp, count=1) if first is not None else mp)
    shown = ", ".join(repr(m) for m in dict.fromkeys(found))
    return ("name each branch's last linear map before the residual add (docs/models.md, "
            "\"Depth\")" + (f"; the hidden matrices writing width-sized outputs here: {shown}"
                            if shown else ""))
