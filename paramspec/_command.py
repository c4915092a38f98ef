"""Start-up of the `paramspec` command's own process (never of a library import).

pydantic looks for plugins whenever it builds a validator, and typer builds one per
option of the command it runs. `PYDANTIC_DISABLE_PLUGINS=__all__` skips the scan of
every installed distribution's entry points, but pydantic's plugin loader still imports
`importlib.metadata` (with `email`, `zipfile`, `csv`, `socket`: about a tenth of
`paramspec compile`'s start-up) only to define that scan. With every plugin disabled the
loader's one function answers "no plugins" without using it, so the command registers
that function, with that answer, under the loader's name instead
(benchmarks/cli_cold_start.py; tests/test_cli.py checks the modules the command imports).
"""

from __future__ import annotations

import os
import sys
import types

__all__ = ["is_command", "prepare"]

_LOADER = "pydantic.plugin._loader"
_ALL_DISABLED = ("__all__", "1", "true")  # pydantic's own test, plugin/_loader.py


def is_command() -> bool:
    """`paramspec ...` (the console script) or `python -m paramspec ...`."""
    if os.path.basename(sys.argv[0] if sys.argv else "") in ("paramspec", "paramspec.exe"):
        return True
    argv = list(getattr(sys, "orig_argv", ()))
    return any(a == "-m" and b == "paramspec" for a, b in zip(argv, argv[1:], strict=False))


def prepare() -> None:
    """Disable pydantic's plugins (the command uses none), and skip importing the loader
    that would look for them."""
    os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")
    if os.environ["PYDANTIC_DISABLE_PLUGINS"] not in _ALL_DISABLED or _LOADER in sys.modules:
        return  # the user enables some plugins: pydantic's own loader finds them
    loader = types.ModuleType(_LOADER, "pydantic's plugin loader, all plugins disabled")
    loader.get_plugins = lambda: ()  # type: ignore[attr-defined]
    loader.__getattr__ = _real_loader_attribute  # type: ignore[attr-defined]
    sys.modules[_LOADER] = loader


def _real_loader_attribute(name: str) -> object:
    """Anything but `get_plugins` (a pydantic release that asks for more): hand the name
    back to pydantic's real loader, so the stand-in can only ever cost the import it saves."""
    if name.startswith("__"):
        raise AttributeError(name)
    import importlib

    sys.modules.pop(_LOADER, None)
    return getattr(importlib.import_module(_LOADER), name)
