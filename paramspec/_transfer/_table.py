"""Learning-rate sweeps from any tool: read a CSV or JSON Lines table of runs' losses.

`transfer_metrics(path)` is `summarize` on a file. A file that `sweep` wrote (its
first line is exactly the `results.csv` header) goes through `ResultsFile`, which
validates its strict format; anything else goes through `read_runs`, which takes
the table of any tool:

- **CSV** (`.csv`): a header line, then one line per row. LF or CRLF line ends,
  quoted fields (as Python's `csv` module, pandas or a spreadsheet write them), a
  UTF-8 byte-order mark, any column order; column names are matched ignoring case
  and surrounding spaces; other columns are ignored.
- **JSON Lines** (`.jsonl`, `.ndjson`): one JSON object per line; other keys ignored.
- Any other name: JSON Lines if the first non-blank line starts with `{`, CSV if it
  is a header naming the required columns, else an error.

Columns: `spec`, `width` (integer > 0), `lr` (number > 0, finite), `loss` (a
number; nan, inf, an empty CSV field or JSON `null` mean the run diverged), and
optionally `seed` (any label; the losses of a (spec, width, lr) are averaged over
seeds) and `step` (integer >= 0; each run's row of its last step is taken), and
`depth` (number of blocks, integer > 0). Across depth (`axis="depth"`) the required
columns are `spec`, `depth`, `lr`, `loss`, and `width` is the optional one. Every
failure is a `TableError` at `FILE:LINE` with the fix. The file is only read.

Why not pandas: it is not a dependency, and its parsers report a bad value without
the line it is on; `csv` and `json` from the standard library do all the parsing here.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from pathlib import Path
from typing import Any

from .._errors import SpecError
from ._metrics import AXES, LOG2, TransferMetricError, summarize
from ._results import HEADERS, ResultsFile, parse_number

__all__ = ["REQUIRED", "TableError", "read_runs", "transfer_metrics"]

#: The columns every table needs; `seed`, `step` and `depth` are optional.
REQUIRED = ("spec", "width", "lr", "loss")
OPTIONAL = ("seed", "step", "depth")
_CSV = (".csv",)
_JSONL = (".jsonl", ".ndjson")
_NEEDS = (
    "A table of runs needs the columns spec, width, lr, loss (seed and step optional, "
    "any order, others ignored)"
)
_FIX = "Correct that line (paramspec never changes the file)."


class TableError(SpecError, ValueError):
    """A table of runs that cannot be read: the file and line, what is wrong, the fix."""


def transfer_metrics(
    path: str | os.PathLike[str],
    reference: str | None = None,
    *,
    k: int = 2,
    delta: float = LOG2,
    grid_ratio: float | None = None,
    axis: str = "width",
) -> dict[str, dict[str, Any]]:
    """`summarize` (E, kappa, R(inf), drift per spec) on a sweep stored in a file;
    `axis="depth"` measures transfer across depth (the rows' `depth` column).

    `path`: a `results.csv` written by `sweep`, or any CSV / JSON Lines table with
    the columns `spec`, `width`, `lr`, `loss` (`seed`, `step` optional; see
    `read_runs`). The other arguments are `summarize`'s. The file is only read.

    ```python
    import json, math, tempfile, pathlib
    path = pathlib.Path(tempfile.mkdtemp()) / "runs.jsonl"
    lines = [json.dumps({"spec": "sp", "width": n, "lr": 2.0**e,
                         "loss": 1 + (math.log(2.0**e) - math.log(1 / n)) ** 2})
             for n in (64, 128, 256) for e in range(-12, 0)]
    path.write_text("\\n".join(lines) + "\\n")
    assert abs(transfer_metrics(path)["sp"]["p"] + 1) < 1e-9
    ```
    """
    path = Path(path)
    try:
        with open(path, "rb") as file:
            first = file.readline().rstrip(b"\n")
    except OSError as error:
        raise TableError(f"{path}: cannot read it ({error.strerror}).") from None
    if axis not in AXES:
        raise TransferMetricError(f"Unknown axis {axis!r}; use one of {', '.join(AXES)}.")
    sweep_file = first in [header.encode() for header in HEADERS]
    rows = ResultsFile(path).final_rows() if sweep_file else read_runs(path, axis=axis)
    return summarize(rows, reference, k=k, delta=delta, grid_ratio=grid_ratio, axis=axis)


def read_runs(path: str | os.PathLike[str], *, axis: str = "width") -> list[dict[str, Any]]:
    """The final loss of every run in a CSV or JSON Lines table, as `summarize` takes them.

    One dict per run, `{spec, width, lr, seed, loss}` (`seed` None without that
    column; `loss` nan if the run diverged; `depth` too where the table has it), in
    file order of the rows taken. With a `step` column the row of each run's largest
    step is taken; without one, a run (spec, width, depth, lr, seed) must have one row.
    `axis="depth"` requires `depth` and makes `width` optional. Raises `TableError` at
    `FILE:LINE`.
    """
    required = _required(axis)
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as error:
        raise TableError(f"{path}: cannot read it ({error.strerror}).") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        raise TableError(
            f"{path}:{line}: not UTF-8 text (byte {data[error.start : error.start + 1]!r}). "
            "Save the table as UTF-8 CSV or JSON Lines."
        ) from None
    if not text.strip():
        raise TableError(
            f"{path}:1: the file is empty. {_NEEDS}: a CSV header line and one line per "
            "run, or one JSON object per line."
        )
    if _is_jsonl(text, path, required):
        records = _jsonl(text, path, required)
    else:
        records = _csv(text, path, required)
    return _last_steps(records, path)


def _required(axis: str) -> tuple[str, ...]:
    """The required columns of a table measured across `axis` (`width` or `depth`)."""
    return ("spec", axis, "lr", "loss") if axis in AXES else REQUIRED


def _is_jsonl(text: str, path: Path, required: tuple[str, ...] = REQUIRED) -> bool:
    suffix = path.suffix.lower()
    if suffix in _CSV + _JSONL:
        return suffix in _JSONL
    first = next(line.strip() for line in text.splitlines() if line.strip())
    if first.startswith("{"):
        return True
    names = {name.strip().lower() for name in next(csv.reader([first]), [])}
    if set(required) <= names:
        return False
    number = next(i for i, line in enumerate(text.splitlines(), 1) if line.strip())
    what = (
        "a JSON array, not JSON Lines (one object per line)"
        if first.startswith("[")
        else f"neither a JSON object nor a CSV header naming {', '.join(required)}"
    )
    raise TableError(
        f"{path}:{number}: cannot tell the format: the name ends in {suffix or 'no suffix'!r} "
        f"(not .csv, .jsonl or .ndjson) and this line is {what}: {first[:120]!r}. "
        f"{_needs(required)}; "
        "name the file .csv or .jsonl."
    )


# A record: (line number, {column: raw value}) with the column names lower-cased.
_Record = tuple[int, dict[str, Any]]


def _needs(required: tuple[str, ...]) -> str:
    if required == REQUIRED:
        return _NEEDS
    return (f"A table of runs across depth needs the columns {', '.join(required)} (seed, "
            "step and width optional, any order, others ignored)")


def _columns(names: list[str], line: int, path: Path, required: tuple[str, ...] = REQUIRED) -> None:
    missing = [c for c in required if c not in names]
    if missing:
        raise TableError(
            f"{path}:{line}: missing column{'s' if len(missing) > 1 else ''} "
            f"{', '.join(missing)}; found {names}. {_needs(required)}: rename or add "
            f"{'them' if len(missing) > 1 else 'it'}."
        )


def _csv(text: str, path: Path, required: tuple[str, ...] = REQUIRED) -> list[_Record]:
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    records: list[_Record] = []
    header: list[str] | None = None
    header_line = 0
    while True:
        start = reader.line_num + 1  # a quoted field may span lines: report the first
        try:
            fields = next(reader)
        except StopIteration:
            break
        except csv.Error as error:
            raise TableError(f"{path}:{start}: not valid CSV ({error}). {_FIX}") from None
        if not any(field.strip() for field in fields):
            continue  # blank line
        if header is None:
            header = [name.strip().lower() for name in fields]
            header_line = start
            twice = sorted({n for n in header if header.count(n) > 1 and n in REQUIRED + OPTIONAL})
            if twice:
                raise TableError(
                    f"{path}:{start}: the column{'s' if len(twice) > 1 else ''} "
                    f"{', '.join(twice)} appear{'' if len(twice) > 1 else 's'} twice. "
                    "Keep one of each."
                )
            _columns(header, start, path, required)
            continue
        if len(fields) != len(header):
            raise TableError(
                f"{path}:{start}: expected {len(header)} fields (the columns of line "
                f"{header_line}), found {len(fields)}: {fields[:20]!r}. {_FIX}"
            )
        records.append((start, dict(zip(header, fields, strict=True))))
    if not records:
        raise TableError(
            f"{path}:{header_line + 1}: no rows after the header; add one line per run."
        )
    return records


def _jsonl(text: str, path: Path, required: tuple[str, ...] = REQUIRED) -> list[_Record]:
    records: list[_Record] = []
    # Split on "\n" only: str.splitlines would also split at U+2028 inside a JSON string.
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as error:
            raise TableError(
                f"{path}:{number}: not valid JSON ({error.msg} at column {error.colno}). "
                f"JSON Lines needs one complete object per line. {_FIX}"
            ) from None
        if not isinstance(value, dict):
            raise TableError(
                f"{path}:{number}: expected a JSON object, found {type(value).__name__} "
                f"{line.strip()[:80]!r}. {_needs(required)}. {_FIX}"
            )
        row = {str(key).strip().lower(): item for key, item in value.items()}
        _columns(sorted(row), number, path, required)
        records.append((number, row))
    return records


def _value(column: str, raw: Any) -> Any:
    """The typed value of one field (text from CSV, any JSON value); ValueError if bad."""
    if isinstance(raw, str):
        raw = raw.strip()
    if column == "spec" or column == "seed":
        if isinstance(raw, bool) or not isinstance(raw, str | int) or raw == "":
            raise ValueError(f"{column} must be a non-empty label, found {raw!r}")
        return str(raw) if column == "spec" else raw
    if column == "loss" and raw in ("", None):
        return math.nan  # pandas writes NaN as an empty field, json.dumps(nan) as NaN
    if isinstance(raw, str):
        value = parse_number(column, raw)
    elif isinstance(raw, int | float) and not isinstance(raw, bool):
        value = raw
    else:
        kind = "an integer" if column in ("width", "depth", "step") else "a number"
        raise ValueError(f"{column} must be {kind}, found {raw!r}")
    if column in ("width", "depth") and not (isinstance(value, int) and value > 0):
        raise ValueError(f"{column} must be a positive integer, found {raw!r}")
    if column == "step" and not (isinstance(value, int) and value >= 0):
        raise ValueError(f"step must be an integer >= 0, found {raw!r}")
    if column == "lr" and not 0 < value < math.inf:
        raise ValueError(f"lr must be a positive, finite number, found {raw!r}")
    return float(value) if column in ("lr", "loss") else value


def _last_steps(records: list[_Record], path: Path) -> list[dict[str, Any]]:
    """One row per run (spec, width, depth, lr, seed): the one of its largest step."""
    runs: dict[tuple[Any, ...], tuple[int, int, dict[str, Any]]] = {}  # -> step, line, row
    for line, record in records:
        try:
            row = {c: _value(c, record[c]) for c in (*REQUIRED, *OPTIONAL) if c in record}
        except ValueError as error:
            raise TableError(f"{path}:{line}: {error}. {_FIX}") from None
        row.setdefault("seed", None)
        step = row.pop("step", None)
        run = (row["spec"], row.get("width"), row.get("depth"), row["lr"], row["seed"])
        if run in runs:
            seen_step, seen_line, _ = runs[run]
            if step is None or seen_step is None or step == seen_step:
                what = "" if step is None else f" and step {step}"
                at = f"width={run[1]}" if run[2] is None else (
                    f"depth={run[2]}" if run[1] is None else f"width={run[1]}, depth={run[2]}")
                raise TableError(
                    f"{path}:{line}: a second row for the run spec={run[0]!r}, {at}, "
                    f"lr={run[3]!r}, seed={run[4]!r}{what} (the first is line {seen_line}). "
                    "Give each run one row per step (a step column tells a loss curve's rows "
                    "apart, a seed column the repeats); runs that differ in another setting "
                    "need different spec labels."
                )
            if step < seen_step:
                continue
        runs[run] = (step, line, row)
    return [row for _, _, row in runs.values()]
