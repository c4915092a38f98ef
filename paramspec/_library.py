"""Finding specs (built-in names or paths), resolving `extends`, and validating the result."""

from __future__ import annotations

import difflib
import functools
from fractions import Fraction
from pathlib import Path

from ._errors import Span, SpecError
from ._ir import Block, Spec
from ._parse import parse
from ._resources import specs_dir
from ._theory import power, stability_condition

__all__ = ["builtin_names", "load", "resolve", "validate"]

MAX_EXTENDS_DEPTH = 32


def builtin_names() -> list[str]:
    """The names of the built-in specs, sorted."""
    return sorted(p.stem for p in specs_dir().glob("*.pspec"))


def _is_path(ref: str) -> bool:
    return ref.endswith(".pspec") or "/" in ref or "\\" in ref or ref.startswith(".")


def _read(path: Path, span: Span | None = None) -> Spec:
    try:
        data = path.read_bytes()
    except IsADirectoryError:
        raise SpecError(f"{path} is a folder, not a .pspec file", span=span) from None
    except OSError as e:
        raise SpecError(
            f"cannot read {path}: {e.strerror or e}",
            hint="check the path, or use a built-in name (`paramspec list`)",
            span=span,
        ) from None
    return _parsed(data, str(path))


@functools.lru_cache(maxsize=64)
def _parsed(data: bytes, file: str) -> Spec:
    """`parse` of a file's bytes, kept by content: a sweep (or a notebook) loads the same
    specs many times, the parse is most of a load, and a `Spec` is frozen. An edited
    file has other bytes, so it is parsed again; a parse error is raised each time."""
    return parse(data, file=file)


def _find(ref: str, relative_to: Path | None, span: Span | None) -> Path:
    if _is_path(ref):
        path = Path(ref).expanduser()
        if not path.is_absolute() and relative_to is not None:
            path = relative_to / path
        if not path.exists():
            raise SpecError(f"spec file {path} does not exist",
                            hint="check the path; relative paths in `extends` are relative to "
                            "the file that extends", span=span)
        return path
    builtin = specs_dir() / f"{ref}.pspec"
    if builtin.exists():
        return builtin
    local = (relative_to / f"{ref}.pspec") if relative_to is not None else None
    if local is not None and local.exists():
        return local
    names = builtin_names()
    close = difflib.get_close_matches(ref, names, n=1)
    raise SpecError(
        f"no spec named `{ref}`",
        hint=(f"did you mean `{close[0]}`? " if close else "")
        + f"built-in specs: {', '.join(names)}; or give a path to a .pspec file",
        span=span,
    )


def load(ref: str | Path) -> Spec:
    """Load a built-in spec by name (`"mup"`) or a `.pspec` file by path, resolved and checked.

    The result has `extends` merged in and passed `validate`, ready for `compile`.
    """
    ref = str(ref)
    if isinstance(ref, str) and not ref.strip():
        raise SpecError("no spec given", hint="give a built-in name (`paramspec list`) or a path")
    return validate(resolve(_read(_find(ref, Path.cwd(), None))))


def resolve(spec: Spec, _stack: tuple[str, ...] = ()) -> Spec:
    """Merge `extends` chains: the child's settings and quantities replace the parent's.

    Blocks keep the parent's order; a child block with a parent's name changes only the
    quantities it sets (and replaces `match` lines if it has any); new blocks come last.
    """
    if spec.extends is None:
        return _check_roles(spec)
    file = spec.span.file if spec.span is not None else "<string>"
    in_file = file != "<string>"
    here = Path(file).resolve().parent if in_file else None
    stack = (*_stack, str(Path(file).resolve()) if in_file else f"<{spec.name}>")
    parent_path = _find(spec.extends, here, spec.span)
    parent_key = str(parent_path.resolve())
    if parent_key in stack or len(stack) > MAX_EXTENDS_DEPTH:
        chain = " -> ".join(Path(k).stem for k in (*stack, parent_key))
        raise SpecError(f"`extends` forms a cycle: {chain}",
                        hint="a spec cannot extend itself, directly or through others",
                        span=spec.span)
    parent = resolve(_read(parent_path, spec.span), stack)
    return _check_roles(_merge(parent, spec))


def _merge(parent: Spec, child: Spec) -> Spec:
    children = {b.name: b for b in child.blocks}
    blocks: list[Block] = []
    for pb in parent.blocks:
        cb = children.pop(pb.name, None)
        if cb is None:
            blocks.append(pb)
            continue
        if cb.role is not None and cb.role != pb.role:
            raise SpecError(
                f"block `{cb.name}` has role `{cb.role}` here but `{pb.role}` in `{parent.name}`",
                hint="an extending spec cannot change a block's role; use a new block name",
                span=cb.span,
            )
        updates = {q: getattr(cb, q) for q in ("multiplier", "init", "lr", "eps", "wd")
                   if getattr(cb, q) is not None}
        if cb.match:
            updates["match"] = cb.match
        if cb.doc is not None:
            updates["doc"] = cb.doc
        if cb.depth is not None:
            updates["depth"] = cb.depth
        updates["allow"] = tuple(sorted(set(pb.allow) | set(cb.allow)))
        blocks.append(pb.model_copy(update=updates))
    blocks += [b for b in child.blocks if b.name in children]
    settings = {
        k: getattr(child, k) if getattr(child, k) is not None else getattr(parent, k)
        for k in ("optimizer", "alignment", "base_width", "base_depth", "depth_alpha")
    }
    # `unstable` is a statement about this spec, not inherited: a spec that extends a
    # deliberately unstable baseline is checked (and warned about) on its own.
    attention = child.attention if child.attention is not None else parent.attention
    settings["residual"] = child.residual if child.residual is not None else parent.residual
    return Spec._trusted(name=child.name, doc=child.doc, blocks=tuple(blocks),
                         attention=attention, span=child.span, unstable=child.unstable,
                         **settings)


def _check_roles(spec: Spec) -> Spec:
    for b in spec.blocks:
        if b.role is None:
            raise SpecError(
                f"block `{b.name}` has no role, and the spec it extends has no block of that name",
                hint="add a line `role R` (input, hidden, output, vector or constant)",
                span=b.span,
            )
    return spec


def validate(spec: Spec) -> Spec:
    """Reject inits that are unstable for their role (theory.md §1) unless allowed.

    `a+b` must be 0 for input and vector blocks, 1/2 for hidden ones and at least 1/2
    for readouts, at every alignment in [1/2, 1] (exponents are affine in `align`, so
    checking the two ends suffices). `allow unstable_init` in a block waives it.
    """
    for b in spec.blocks:
        if "unstable_init" in b.allow or b.role is None:
            continue
        if b.init is not None and b.init.kind == "value" and b.init.constant == 0:
            continue  # zero init: nothing to be unstable
        for align in (Fraction(1), Fraction(1, 2)):
            a = -power(b.multiplier, b.role, align)
            bb = -power(b.init, b.role, align)
            needed = stability_condition(b.role, a + bb)
            if needed is not None:
                depends = any(
                    p.exponent.align != 0
                    for e in (b.multiplier, b.init) if e is not None for p in e.powers
                )
                at = f" at alignment {align}" if depends else ""
                span = (b.init.span if b.init is not None and b.init.span else
                        b.multiplier.span if b.multiplier is not None and b.multiplier.span
                        else b.span)
                raise SpecError(
                    f"block `{b.name}` (role {b.role}) is unstable at initialisation{at}: "
                    f"a+b = {a + bb}, but the role needs {needed}",
                    hint=_stability_hint(b.role, a, bb),
                    span=span,
                )
    return spec


def _stability_hint(role: str, a: Fraction, b: Fraction) -> str:
    target = {"input": 0, "vector": 0, "hidden": Fraction(1, 2), "output": Fraction(1, 2)}[role]
    want = target - a
    form = f"n^({-want})" if want.denominator != 1 or want < 0 else f"n^{-want}"
    return (f"with multiplier exponent a = {a}, use `init {form}`"
            + (" (or any smaller std)" if role == "output" else "")
            + ", or add `allow unstable_init` to the block if this is deliberate")
