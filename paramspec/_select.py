"""Which block of a spec covers which parameter of a model.

A parameter (path, owning module type, field, inferred role) is covered by:

1. an explicit override from `roles=` (a role name or a block name), else
2. the blocks whose `match` lines select it (module type, field, path glob), else
3. the blocks *without* `match` lines whose role is the parameter's role.

Exactly one block must cover each parameter: none or two is an error that lists the
parameters and says how to fix it. Pure Python; no JAX.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from ._errors import SpecError, listing
from ._ir import ROLES, Block, Selector

__all__ = ["LeafLike", "Override", "assign_blocks", "parse_override"]

ROLE_ALIASES = {"embedding": "input", "readout": "output"}


class LeafLike(Protocol):
    path: str
    module_type: str | None
    field: str | None
    role: str | None


@dataclass(frozen=True)
class Override:
    """One `roles=` entry: which parameters (a selector) get which role or block."""

    selector: Selector
    target: str  # a role name or a block name
    text: str


def parse_override(key: str, target: str) -> Override:
    """`"module=LayerNorm, field=weight"`, `"path=blocks[*].g"` or a bare path glob."""
    fields: dict[str, str] = {}
    if "=" in key:
        for part in key.split(","):
            name, sep, value = part.partition("=")
            name, value = name.strip(), value.strip().strip('"')
            if not sep or name not in ("module", "field", "path") or not value:
                raise SpecError(
                    f"cannot read the roles= selector {key!r}",
                    hint='use "module=Linear", "field=weight", "path=blocks[*].norm*.weight" '
                    "(comma-separated, all must hold) or a bare path glob",
                )
            fields[name] = value
    else:
        fields["path"] = key
    return Override(selector=Selector(**fields), target=target, text=key)


def selects(selector: Selector, leaf: LeafLike) -> bool:
    if selector.module is not None and selector.module != leaf.module_type:
        return False
    if selector.field is not None and selector.field != leaf.field:
        return False
    # Paths contain `[0]`; in a glob `[` would open a character class, so it is literal.
    return selector.path is None or fnmatch.fnmatchcase(leaf.path, selector.path.replace("[", "[[]"))


def assign_blocks(
    blocks: Sequence[Block],
    leaves: Sequence[LeafLike],
    roles: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """Map every leaf path to the name of the one block that covers it."""
    names = {b.name for b in blocks}
    overrides = [parse_override(k, v) for k, v in (roles or {}).items()]
    for o in overrides:
        if o.target not in names and ROLE_ALIASES.get(o.target, o.target) not in ROLES:
            raise SpecError(
                f"roles={{{o.text!r}: {o.target!r}}}: `{o.target}` is neither a role nor a "
                "block of the spec",
                hint=f"roles: {', '.join(ROLES)}; blocks: {', '.join(b.name for b in blocks)}",
            )
    matched = [b for b in blocks if b.match]
    by_role: dict[str, list[Block]] = {}
    for b in blocks:
        if not b.match and b.role is not None:
            by_role.setdefault(b.role, []).append(b)

    assignment: dict[str, str] = {}
    uncovered: list[str] = []
    doubly: list[str] = []

    def covering(leaf: LeafLike, target: str | None) -> list[Block]:
        """The blocks that cover `leaf` when a roles= entry names `target` (or none)."""
        if target is not None and target in names:
            return [b for b in blocks if b.name == target]
        role = ROLE_ALIASES.get(target, target) if target is not None else leaf.role
        chosen = [b for b in matched if any(selects(s, leaf) for s in b.match)]
        return chosen or by_role.get(role or "", [])

    for leaf in leaves:
        hits = [o for o in overrides if selects(o.selector, leaf)]
        if len(hits) > 1:
            # Entries that agree (they lead to the same one block) are not a conflict.
            outcomes = {tuple(b.name for b in covering(leaf, h.target)) for h in hits}
            if len(outcomes) > 1 or len(next(iter(outcomes))) != 1:
                doubly.append(f"{leaf.path}: roles= entries "
                              + ", ".join(f"{h.text!r} -> {h.target!r}" for h in hits))
                continue
        role = leaf.role
        if hits:
            role = ROLE_ALIASES.get(hits[0].target, hits[0].target)
        chosen = covering(leaf, hits[0].target if hits else None)
        if len(chosen) == 1:
            assignment[leaf.path] = chosen[0].name
        elif not chosen:
            uncovered.append(f"{leaf.path} ({leaf.module_type or 'array'}.{leaf.field or '?'}, "
                             f"role {role or 'unknown'})")
        else:
            doubly.append(f"{leaf.path}: blocks " + ", ".join(b.name for b in chosen))
    if doubly:
        raise SpecError(
            f"{len(doubly)} parameter(s) are covered by more than one rule:\n"
            + listing(doubly),
            hint="make the `match` lines of the blocks exclusive, or give blocks that share "
            "a role a `match` line each",
        )
    if uncovered:
        raise SpecError(
            f"{len(uncovered)} parameter(s) are covered by no block of the spec:\n"
            + listing(uncovered),
            hint="add a block for their role (e.g. `vectors { role vector }` with `init keep`), a "
            "`match` line selecting them, or pass roles={'path.glob': 'role or block'}",
        )
    return assignment
