"""The one error type users see: `SpecError`, rendered with file:line:col and a caret.

Every failure caused by user input (a `.pspec` file, a CLI flag, an API argument) is a
`SpecError`. The CLI prints `str(error)` and exits 2; anything else escaping is a bug
in paramspec (exit 1).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Span", "SpecError", "listing"]


@dataclass(frozen=True)
class Span:
    """A place in a source text: 1-based line and column, and the width to underline.

    Spans never take part in equality: two specs parsed from differently formatted
    text are the same spec.
    """

    file: str
    line: int
    column: int
    width: int = 1
    source_line: str = ""

    def __eq__(self, other: object) -> bool:
        # A spec built in Python (no spans) equals the same spec parsed from text.
        return other is None or isinstance(other, Span)

    def __hash__(self) -> int:
        return hash(None)

    def __repr__(self) -> str:
        return f"Span({self.file}:{self.line}:{self.column})"


def _caret_block(span: Span) -> str:
    number = str(span.line)
    pad = " " * len(number)
    # Tabs would shift the caret; show the line with tabs expanded to one space each.
    line = span.source_line.replace("\t", " ")
    if len(line) > 200:  # do not flood the terminal with an absurd line
        start = max(0, span.column - 60)
        line = ("..." if start else "") + line[start : start + 120] + "..."
        column = span.column - start + (3 if start else 0)
    else:
        column = span.column
    width = max(1, min(span.width, max(1, len(line) - column + 1)))
    return (
        f"{pad} |\n{number} | {line}\n{pad} | {' ' * (column - 1)}{'^' * width}"
    )


class SpecError(Exception):
    """A user error in a spec, a flag or an argument: what is wrong, where, and the fix."""

    def __init__(self, message: str, *, hint: str | None = None, span: Span | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.span = span

    @property
    def location(self) -> str | None:
        if self.span is None:
            return None
        return f"{self.span.file}:{self.span.line}:{self.span.column}"

    def __str__(self) -> str:
        parts = [f"error: {self.message}"]
        if self.span is not None:
            parts.append(f"  --> {self.location}")
            if self.span.source_line:
                parts.append(_caret_block(self.span))
        if self.hint:
            parts.append(f"  = help: {self.hint}")
        return "\n".join(parts)


class UnstableSpecWarning(UserWarning):
    """`paramspec.compile` compiled a spec that is unstable for its optimizer and alignment.

    The message names each unstable block and the fix. A spec that is unstable on
    purpose (a sweep baseline) says so with a top-level `unstable "reason"` line and
    compiles without this warning; `warnings.filterwarnings("ignore",
    category=paramspec.UnstableSpecWarning)` silences it for code that compiles
    arbitrary specs.
    """


def listing(lines: list[str], limit: int = 10) -> str:
    """Indented lines for an error message, at most `limit` of them, then a count."""
    shown = "\n".join(f"    {line}" for line in lines[:limit])
    if len(lines) > limit:
        shown += f"\n    ... and {len(lines) - limit} more"
    return shown
