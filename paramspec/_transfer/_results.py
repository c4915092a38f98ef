"""The results file of a learning-rate sweep: `DIR/results.csv`, append-only, resumable.

One CSV line per row, with the columns of `COLUMNS`, or of `DEPTH_COLUMNS` (the same
plus `depth` after `width`) for a sweep across depths: the header says which, and every
row of a file has its header's columns (a width-only sweep's file is exactly as it was
before depth existed, so old files resume). A sweep appends the rows of
each run when the run finishes (`ResultsFile.append`, one `write` + `fsync` per
call) and never rewrites or truncates the file, so a killed sweep resumes from
`done_keys()`: a run is done once its *final* row (status `ok` or `diverged`)
is in the file; rows with status `partial` (e.g. points of a loss curve) are
kept but make nothing done.

Reading validates everything. A foreign file (wrong header) or a bad row is a
`ResultsFileError` naming the file, the line and the fix, and nothing is changed.
A last line without its newline is what a write cut short leaves (a kill during
a large write, a full disk, a crash): reading ignores it with a
`PartialLineWarning` (its run is not done, so it runs again); appending after it
is an error that gives the exact command to drop it, because gluing new rows
onto it would corrupt them, and this module never removes bytes on its own.
"""

from __future__ import annotations

import csv
import io
import math
import operator
import os
import warnings
from collections import Counter
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, NamedTuple

from .._errors import SpecError

__all__ = [
    "COLUMNS",
    "DEPTH_COLUMNS",
    "PartialLineWarning",
    "ResultsFile",
    "ResultsFileError",
    "run_key",
]

#: The columns of results.csv, in order; the first line of the file is exactly these.
COLUMNS = (
    "key",  # the run's identity (see `run_key`), the same on every row of the run
    "spec",  # parameterization label, e.g. "mup"
    "model",  # model label, e.g. "gpt-d2"
    "width",  # int > 0
    "lr",  # global learning rate, > 0
    "embed_lr_mult",  # extra factor on the embedding learning rate, > 0 (1 if none)
    "seed",  # int
    "step",  # int >= 0, the step the loss was measured at
    "loss",  # float; nan/inf allowed for a diverged run
    "status",  # ok | diverged (final rows) | partial (a row before the end)
    "wall_s",  # seconds of wall time of the run so far, >= 0
)
#: The columns of a sweep across depths: `COLUMNS` with `depth` (number of blocks,
#: int > 0) after `width`.
DEPTH_COLUMNS = (*COLUMNS[:4], "depth", *COLUMNS[4:])
FINAL_STATUSES = ("ok", "diverged")
STATUSES = (*FINAL_STATUSES, "partial")
HEADER = ",".join(COLUMNS)
DEPTH_HEADER = ",".join(DEPTH_COLUMNS)
HEADERS = (HEADER, DEPTH_HEADER)

_INT_COLUMNS = ("width", "depth", "seed", "step")
_FLOAT_COLUMNS = ("lr", "embed_lr_mult", "loss", "wall_s")
_NUMBER_COLUMNS = (*_INT_COLUMNS, *_FLOAT_COLUMNS)


class ResultsFileError(SpecError, ValueError):
    """results.csv is not a valid results file, or rows to append are invalid."""


class PartialLineWarning(UserWarning):
    """results.csv ends with an incomplete line, which was ignored."""


def run_key(
    spec: str,
    model: str,
    width: int,
    lr: float,
    embed_lr_mult: float = 1.0,
    seed: int = 0,
    **extra: Any,
) -> str:
    """A readable, deterministic key for one run, e.g. `mup/gpt/w64/lr0.001/emb1.0/s0`.

    `extra` (e.g. `steps=1000`) adds further settings that tell runs apart, in
    sorted order.

    ```python
    assert run_key("mup", "gpt", 64, 1e-3) == "mup/gpt/w64/lr0.001/emb1.0/s0"
    ```
    """
    parts = [spec, model, f"w{int(width)}", f"lr{float(lr)!r}"]
    parts += [f"emb{float(embed_lr_mult)!r}", f"s{int(seed)}"]
    parts += [f"{name}={value}" for name, value in sorted(extra.items())]
    return "/".join(parts)


def parse_number(column: str, text: str) -> int | float:
    """The value of one numeric field as written in text: an int for `width`, `depth`,
    `seed` and `step`, a float (nan and inf allowed) for the others; a ValueError saying
    what is wrong otherwise. Shared with the reader of other tools' tables (`_table`)."""
    if column in _INT_COLUMNS:
        try:
            return int(text)
        except ValueError:
            raise ValueError(f"{column} must be an integer, found {text!r}") from None
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"{column} must be a number, found {text!r}") from None


_FOREIGN_FIX = (
    "This is not a paramspec results file, or it was edited by hand. Nothing was "
    "changed. Correct or delete that line in an editor, or point the sweep at a new "
    "directory."
)


def _parse(
    fields: list[str], where: str, fix: str = _FOREIGN_FIX, columns: tuple[str, ...] = COLUMNS
) -> dict[str, Any]:
    """Typed values of one row's fields (of `columns`, the file's header); an error
    starts with `where` and ends with `fix`."""

    def bad(message: str) -> ResultsFileError:
        return ResultsFileError(f"{where}: {message}. {fix}")

    if len(fields) != len(columns):
        raise bad(
            f"expected {len(columns)} fields ({','.join(columns)}), found {len(fields)}: "
            f"{fields!r}"
        )
    text = dict(zip(columns, fields, strict=True))
    row: dict[str, Any] = {}
    for column, value in text.items():
        try:
            row[column] = parse_number(column, value) if column in _NUMBER_COLUMNS else value
        except ValueError as error:
            raise bad(str(error)) from None
    positive = [
        c for c in ("width", "depth", "lr", "embed_lr_mult") if c in row and not 0 < row[c] < math.inf
    ]
    if positive:
        raise bad(f"{', '.join(positive)} must be positive and finite, found {text}")
    if row["step"] < 0 or not (0 <= row["wall_s"] < math.inf):
        raise bad(
            f"step and wall_s must be >= 0, found step={text['step']}, wall_s={text['wall_s']}"
        )
    if not row["key"] or not row["spec"]:
        raise bad("key and spec must not be empty")
    if row["status"] not in STATUSES:
        raise bad(f"status must be one of {'|'.join(STATUSES)}, found {row['status']!r}")
    if row["status"] == "ok" and not math.isfinite(row["loss"]):
        raise bad(f"status is 'ok' but the loss is {text['loss']}; a non-finite loss is 'diverged'")
    return row


def _field(column: str, value: Any) -> str:
    """The CSV text of one value; TypeError or ValueError if it has the wrong type."""
    if column in _INT_COLUMNS:
        if isinstance(value, bool):
            raise TypeError(value)
        return str(operator.index(value))
    if column in _FLOAT_COLUMNS:
        return repr(float(value))  # repr round-trips every float exactly
    if isinstance(value, str) and "\n" not in value and "\r" not in value:
        return value
    raise TypeError(value)


def _line(row: Mapping[str, Any], where: str) -> str:
    """One CSV line (with its newline) for a row to append, validated like a read row:
    of `DEPTH_COLUMNS` if the row has a `depth`, else of `COLUMNS`."""
    if not isinstance(row, Mapping):
        raise ResultsFileError(f"{where}: a row must be a mapping of {HEADER}; got {row!r}.")
    columns = _columns_of(row)
    missing = [c for c in columns if c not in row]
    extra = sorted(str(c) for c in row if c not in columns)
    if missing or extra:
        raise ResultsFileError(
            f"{where}: a row needs exactly the columns {','.join(columns)}; missing {missing}, "
            f"unknown {extra}. Nothing was written."
        )
    fields = []
    for column in columns:
        try:
            fields.append(_field(column, row[column]))
        except (TypeError, ValueError):
            kind = {
                **dict.fromkeys(_INT_COLUMNS, "an int"),
                **dict.fromkeys(_FLOAT_COLUMNS, "a number"),
            }
            raise ResultsFileError(
                f"{where}: {column} must be {kind.get(column, 'a one-line string')}; got "
                f"{row[column]!r}. Nothing was written."
            ) from None
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerow(fields)
    line = buffer.getvalue()
    _parse(next(csv.reader([line])), where, "Nothing was written.", columns)  # reading's checks
    return line


def _columns_of(row: Mapping[str, Any]) -> tuple[str, ...]:
    """The columns of a row: `DEPTH_COLUMNS` if it has a depth, else `COLUMNS`."""
    return DEPTH_COLUMNS if "depth" in row else COLUMNS


class _Contents(NamedTuple):
    rows: list[dict[str, Any]]  # every complete row, typed
    tail: bytes  # the incomplete last line (no newline), b"" if none
    offset: int  # byte offset of `tail`: the size the file has without it
    tail_line: int  # 1-based line number of `tail`
    columns: tuple[str, ...] | None = None  # the header's columns; None without a header


class ResultsFile:
    """The append-only results of a sweep, conventionally `DIR/results.csv`.

    ```python
    import tempfile, pathlib
    results = ResultsFile(pathlib.Path(tempfile.mkdtemp()) / "results.csv")
    key = run_key("mup", "gpt", 64, 1e-3)
    row = dict(key=key, spec="mup", model="gpt", width=64, lr=1e-3, embed_lr_mult=1.0,
               seed=0, step=100, loss=3.2, status="ok", wall_s=12.5)
    results.append([row])             # once per finished run
    assert results.done_keys() == {key}
    ```
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"ResultsFile({str(self.path)!r})"

    def _read(self) -> _Contents:
        """The file's rows and partial last line; raises on any corruption."""
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return _Contents([], b"", 0, 1)
        complete, newline, tail = data.rpartition(b"\n")
        offset = len(complete) + len(newline)
        lines = complete.split(b"\n") if newline else []
        if not lines and tail and not any(h.encode().startswith(tail) for h in HEADERS):
            raise ResultsFileError(
                f"{self.path}:1: expected the header {HEADER!r}, found {tail[:200]!r}. "
                f"{_FOREIGN_FIX}"
            )
        rows: list[dict[str, Any]] = []
        final: dict[str, int] = {}
        columns: tuple[str, ...] | None = None
        for number, raw in enumerate(lines, start=1):
            where = f"{self.path}:{number}"
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError:
                raise ResultsFileError(
                    f"{where}: not UTF-8 text: {raw[:200]!r}. {_FOREIGN_FIX}"
                ) from None
            if number == 1:
                if line not in HEADERS:
                    raise ResultsFileError(
                        f"{where}: expected the header {HEADER!r} (or, across depths, "
                        f"{DEPTH_HEADER!r}), found {line[:200]!r}. {_FOREIGN_FIX}"
                    )
                columns = DEPTH_COLUMNS if line == DEPTH_HEADER else COLUMNS
                continue
            row = _parse(next(csv.reader([line]), []), where, columns=columns or COLUMNS)
            if row["status"] in FINAL_STATUSES:
                if row["key"] in final:
                    raise ResultsFileError(
                        f"{where}: run {row['key']!r} already has a final row at line "
                        f"{final[row['key']]}; a run ends once. {_FOREIGN_FIX}"
                    )
                final[row["key"]] = number
            rows.append(row)
        return _Contents(rows, tail, offset, len(lines) + 1, columns)

    def _rows(self) -> list[dict[str, Any]]:
        contents = self._read()
        if contents.tail:
            warnings.warn(
                f"{self.path}:{contents.tail_line}: ignored the incomplete last line "
                f"({contents.tail[:80]!r}), left by a write cut short; its run is not done and "
                f"will run again. Before appending, drop it with "
                f"`truncate -s {contents.offset} {self.path}`.",
                PartialLineWarning,
                stacklevel=3,
            )
        return contents.rows

    def rows(self) -> list[dict[str, Any]]:
        """Every complete row, in file order, with typed values (int, float, str)."""
        return self._rows()

    def final_rows(self) -> list[dict[str, Any]]:
        """The final row (status ok or diverged) of every done run, in file order."""
        return [row for row in self._rows() if row["status"] in FINAL_STATUSES]

    def done_keys(self) -> set[str]:
        """Keys of the runs whose final row is in the file: skip these when resuming."""
        return {row["key"] for row in self._rows() if row["status"] in FINAL_STATUSES}

    def append(self, rows: Iterable[Mapping[str, Any]] | Mapping[str, Any]) -> None:
        """Append rows (those of one finished run, its final row last) in one write.

        Everything is checked first (the rows, the file, no run ending twice); the
        bytes are then written with `O_APPEND` in one call, flushed and fsynced, and
        the header is written first if the file is new or empty. Existing content is
        never rewritten or truncated.
        """
        if isinstance(rows, Mapping):
            rows = [rows]
        rows = list(rows)
        if not rows:
            return
        lines = [_line(row, f"{self.path}: row {i} to append") for i, row in enumerate(rows)]
        ending = Counter(row["key"] for row in rows if row["status"] in FINAL_STATUSES)
        twice = sorted(key for key, count in ending.items() if count > 1)
        if twice:
            raise ResultsFileError(
                f"{self.path}: runs {twice} have more than one final row among the rows to "
                "append; a run ends once. Nothing was written."
            )
        kinds = {_columns_of(row) for row in rows}
        if len(kinds) > 1:
            raise ResultsFileError(
                f"{self.path}: some rows to append have a depth and some do not; a results "
                "file holds one kind. Nothing was written."
            )
        contents = self._read()
        if contents.columns is not None and contents.columns not in kinds:
            have = "across depths (a depth column)" if "depth" in contents.columns else (
                "across widths only (no depth column)")
            raise ResultsFileError(
                f"{self.path}: this file holds a sweep {have}, and the rows to append "
                f"{'do not have' if 'depth' in contents.columns else 'have'} a depth. "
                "Nothing was written. Point the sweep at a new directory (`out`)."
            )
        if contents.tail:
            raise ResultsFileError(
                f"{self.path}:{contents.tail_line}: the last line is incomplete (no newline: "
                f"{contents.tail[:80]!r}), left by a write cut short. Nothing was written or "
                f"changed. Drop that partial line to resume, e.g. `truncate -s {contents.offset} "
                f"{self.path}` or `os.truncate({str(self.path)!r}, {contents.offset})`; its run "
                "is not done and will run again."
            )
        done = {row["key"] for row in contents.rows if row["status"] in FINAL_STATUSES}
        again = sorted(done.intersection(ending))
        if again:
            raise ResultsFileError(
                f"{self.path}: runs {again} are already done in this file; skip the keys in "
                "`done_keys()` when resuming. Nothing was written."
            )
        new = contents.offset == 0  # no header yet
        header = ",".join(next(iter(kinds)))
        data = ((header + "\n" if new else "") + "".join(lines)).encode("utf-8")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        created = not self.path.exists()
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            view = memoryview(data)
            while view:  # os.write may write less than asked
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        if created:  # make the new directory entry durable too
            _fsync_dir(self.path.parent)


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # e.g. Windows cannot open directories; the data itself is synced
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
