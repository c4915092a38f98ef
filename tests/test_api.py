"""The public namespace: lazy names resolve, nothing heavy loads at import."""

import subprocess
import sys

import pytest

import paramspec as ps


@pytest.mark.parametrize("name", sorted(ps._LAZY))
def test_lazy_names_resolve(name):
    assert getattr(ps, name) is not None
    assert name in dir(ps)


def test_models_submodule_and_unknown_names():
    assert callable(ps.models.transformer)
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        ps.nope  # noqa: B018


def test_jax_loads_only_when_a_backend_name_is_used():
    code = ("import sys, paramspec as ps; ps.check('mup'); a = 'jax' in sys.modules; "
            "ps.scale_by_adam_atan2; print(a, 'jax' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "True"]
