"""The `--model FILE.py:FUNC` convention: load a user's model factory from a file.

    paramspec roles mup --model my_models.py:make_gpt --width 256
    paramspec coord-check mup --model my_models.py:make_gpt
    paramspec sweep mup --model my_models.py:make_gpt ...

`FUNC(width, key)` builds an Equinox model. The file is imported as a module of its own
(its folder goes first on `sys.path` while it imports, so it can import its siblings), and
the module is returned too, so that a command can look up the file's optional companions
(inputs, loss, layouts, roles: each command documents the ones it reads).

One reader for every command: a mistake in the reference, a missing file, an import that
fails inside the user's file, or a missing or non-callable name is a `SpecError` (exit 2)
that names the file and line where that is known, never a traceback.
"""

from __future__ import annotations

import hashlib
import importlib.util
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from ._errors import SpecError

__all__ = ["UserModel", "load_model"]

_HINT = "write --model FILE.py:FUNC, where FUNC(width, key) returns an Equinox module"


@dataclass(frozen=True)
class UserModel:
    """A loaded `FILE.py:FUNC`: the factory, the module it lives in, and the reference."""

    make_model: Callable[[int, Any], Any]
    module: ModuleType
    reference: str

    def companion(self, name: str) -> Any | None:
        """An optional module-level name of the user's file (None where it is absent)."""
        return getattr(self.module, name, None)


def _split(reference: str) -> tuple[Path, str]:
    path, sep, func = reference.rpartition(":")
    if not sep or not path or not func:
        raise SpecError(f"--model {reference!r} does not name a function", hint=_HINT)
    if not func.isidentifier():
        raise SpecError(f"--model {reference!r}: {func!r} is not a Python name", hint=_HINT)
    return Path(path), func


def _import(path: Path) -> ModuleType:
    if not path.is_file():
        raise SpecError(f"--model: {path} is not a file", hint=_HINT)
    if path.suffix != ".py":
        raise SpecError(f"--model: {path} is not a Python file (.py)", hint=_HINT)
    resolved = path.resolve()
    digest = hashlib.sha1(str(resolved).encode()).hexdigest()[:12]
    name = f"_paramspec_user_{resolved.stem}_{digest}"
    spec = importlib.util.spec_from_file_location(name, resolved)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    folder = str(resolved.parent)
    sys.path.insert(0, folder)
    sys.modules[name] = module  # dataclasses and pickling look the module up by name
    try:
        spec.loader.exec_module(module)
    except Exception as e:
        sys.modules.pop(name, None)
        # The innermost frame inside the user's file says where it went wrong.
        frames = [f for f in traceback.extract_tb(e.__traceback__)
                  if Path(f.filename).resolve() == resolved]
        where = f"{path}:{frames[-1].lineno}" if frames else str(path)
        raise SpecError(f"importing {where} failed: {type(e).__name__}: {e}",
                        hint="fix the error in the model file (it is imported as a "
                        "module, as `python FILE.py` would run it)") from None
    finally:
        sys.path.remove(folder)
    return module


def load_model(reference: str) -> UserModel:
    """Load `FILE.py:FUNC` (see the module docstring); errors are `SpecError`s."""
    path, func = _split(reference)
    module = _import(path)
    factory = getattr(module, func, None)
    if factory is None:
        names = sorted(n for n, v in vars(module).items()
                       if callable(v) and not n.startswith("_")
                       and getattr(v, "__module__", None) == module.__name__)
        raise SpecError(f"{path} has no function {func!r}",
                        hint=f"functions defined there: {', '.join(names) or 'none'}")
    if not callable(factory):
        raise SpecError(f"{path}:{func} is a {type(factory).__name__}, not a function",
                        hint=_HINT)
    return UserModel(make_model=factory, module=module, reference=reference)
