"""`paramspec compile` starts quickly (benchmarks/cli_cold_start.py): the command builds
no pydantic validator (the parser checks everything and builds the IR with `_trusted`),
imports no JAX and not `importlib.metadata`; and `_trusted` builds exactly what
validation would."""

from __future__ import annotations

import json
import subprocess
import sys
from fractions import Fraction

import pydantic
import pytest

import paramspec as ps
from paramspec import _ir

IR_CLASSES = ("Exponent", "Power", "Expr", "Selector", "Block", "Attention", "Residual",
              "Spec")

COMMAND = """
import json, sys
sys.argv = ["paramspec", "compile", "mup", "--width", "4096", "--base-width", "256",
            "--format", "json"]
from paramspec._cli import main
try:
    main()
except SystemExit as e:
    code = e.code
from paramspec import _ir
sys.stderr.write(json.dumps({
    "code": code,
    "built": [n for n in IR_CLASSES if getattr(_ir, n).__pydantic_complete__],
    "modules": sorted(m for m in sys.modules if m.split(".")[0] in
                      ("jax", "jaxlib", "equinox", "optax", "numpy", "importlib", "email")),
}))
""".replace("IR_CLASSES", repr(IR_CLASSES))


def test_compile_command_builds_no_validator_and_imports_no_heavy_module():
    out = subprocess.run([sys.executable, "-c", COMMAND], capture_output=True, text=True,
                         check=True, stdin=subprocess.DEVNULL)
    report = json.loads(out.stderr.strip().splitlines()[-1])
    assert report["code"] in (0, None)
    assert json.loads(out.stdout)["spec"] == "mup"
    assert report["built"] == []  # pydantic validators: built lazily, never on this path
    heavy = [m for m in report["modules"] if m.split(".")[0] in ("jax", "jaxlib", "equinox",
                                                                 "optax", "numpy", "email")
             or m == "importlib.metadata"]
    assert heavy == []


def test_a_library_import_keeps_pydantics_own_plugin_loader():
    code = ("import paramspec, os, pydantic.plugin._loader as loader; "
            "print(hasattr(loader, 'entry_points'), 'PYDANTIC_DISABLE_PLUGINS' in os.environ)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, env={k: v for k, v in __import__("os").environ.items()
                                          if k != "PYDANTIC_DISABLE_PLUGINS"})
    assert out.stdout.split() == ["True", "False"]


def _revalidate(value):
    """The same IR built through pydantic's validation, recursively."""
    if isinstance(value, _ir._Frozen):
        return type(value)(**{k: _revalidate(v) for k, v in value.__dict__.items()})
    if isinstance(value, tuple):
        return tuple(_revalidate(v) for v in value)
    return value


def _types(value):
    if isinstance(value, _ir._Frozen):
        return (type(value).__name__, {k: _types(v) for k, v in value.__dict__.items()})
    if isinstance(value, tuple):
        return tuple(_types(v) for v in value)
    return type(value).__name__


@pytest.mark.parametrize("name", ps.builtin_names())
def test_trusted_ir_is_what_validation_builds(name):
    spec = ps.load(name)
    again = _revalidate(spec)
    assert again == spec
    assert _types(again) == _types(spec)
    assert list(again.__dict__) == list(spec.__dict__)


def test_trusted_canonicalises_and_checks_like_validation():
    n = _ir.Power(symbol="n", exponent=_ir.Exponent(const=Fraction(1)))
    m = _ir.Power(symbol="fan_in", exponent=_ir.Exponent(const=Fraction(-1)))
    assert _ir.Expr._trusted(powers=(n, m, n)) == _ir.Expr(powers=(n, m, n))
    assert _ir.Block._trusted(name="b", allow=("unstable_init",) * 2).allow == ("unstable_init",)
    for cls, values in ((_ir.Expr, {"kind": "auto", "powers": (n,)}), (_ir.Selector, {}),
                        (_ir.Spec, {"name": "s", "unstable": " "}),
                        (_ir.Spec, {"name": "s", "base_width": 0})):
        with pytest.raises(pydantic.ValidationError):
            cls(**values)
        with pytest.raises(ValueError):
            cls._trusted(**values)
    with pytest.raises(TypeError, match="no field"):
        _ir.Block._trusted(name="b", rol="hidden")


def test_the_stand_in_loader_hands_other_names_to_pydantics_own() -> None:
    """A pydantic release that asks the loader for more than `get_plugins` still works:
    the stand-in imports the real loader and answers from it."""
    code = (
        "import sys; from paramspec import _command; "
        "sys.modules.pop('pydantic.plugin._loader', None); "
        "import os; os.environ['PYDANTIC_DISABLE_PLUGINS'] = '__all__'; "
        "_command.prepare(); stub = sys.modules['pydantic.plugin._loader']; "
        "assert stub.get_plugins() == (); "
        "real = stub._plugins; "
        "assert sys.modules['pydantic.plugin._loader'] is not stub; "
        "print(type(real).__name__)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() in {"dict", "NoneType"}
