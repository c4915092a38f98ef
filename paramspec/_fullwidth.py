"""Rich tables printed whole: at least as wide as their widest row, so that no cell is cut
to `…`, whatever the terminal's width or a fixed width; lines carry no trailing spaces.

rich fits a table to the console's width by shrinking columns and ellipsizing their cells;
measuring the table first (rich's own `Measurement`) and giving the console that width
keeps every value. A terminal narrower than the table wraps the lines instead.
"""

from __future__ import annotations

import re
from typing import Any

__all__ = ["natural_width", "strip_line_ends"]

# A console this wide never constrains a measurement (rich clamps to the console's width).
_UNBOUNDED = 1_000_000

# The end of a line made of spaces and colour codes only; its spaces go, its codes stay.
_TRAILING = re.compile(r"(?:[ \t]|\x1b\[[0-9;]*m)+$", re.MULTILINE)


def natural_width(renderable: Any) -> int:
    """The width at which every table in `renderable` (a rich Table, or a Group holding
    tables) shows every cell in full; 0 when it holds no table. Text is not counted: it
    wraps at whatever width the tables need."""
    from rich.console import Console, Group
    from rich.measure import Measurement
    from rich.table import Table

    if isinstance(renderable, Group):
        return max((natural_width(r) for r in renderable.renderables), default=0)
    if isinstance(renderable, Table):
        console = Console(width=_UNBOUNDED, color_system=None, force_terminal=False)
        return Measurement.get(console, console.options, renderable).maximum
    return 0


def strip_line_ends(text: str) -> str:
    """`text` without spaces at the ends of its lines (rich pads titles and captions to the
    table's width); colour codes that close a line are kept."""
    return _TRAILING.sub(lambda end: re.sub(r"[ \t]", "", end.group()), text)
