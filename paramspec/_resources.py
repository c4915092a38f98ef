"""Where the grammar and the built-in specs live, installed or in a checkout.

The user asked for `grammar/` and `specs/` at the top of the repository; the wheel ships
them inside the package (`paramspec/grammar`, `paramspec/specs`, see pyproject.toml).
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

__all__ = ["grammar_path", "specs_dir"]

_PACKAGE = Path(__file__).resolve().parent


def _find(name: str) -> Path:
    for candidate in (_PACKAGE / name, _PACKAGE.parent / name):
        if candidate.is_dir():
            return candidate
    raise RuntimeError(
        f"paramspec is installed without its `{name}/` folder (looked in {_PACKAGE} and "
        f"{_PACKAGE.parent}); reinstall it with `pip install paramspec`"
    )


@cache
def grammar_path() -> Path:
    return _find("grammar") / "pspec.lark"


@cache
def specs_dir() -> Path:
    return _find("specs")
