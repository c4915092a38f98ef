"""The installed wheel, not the checkout: grammar/ and specs/ ship inside the package."""

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "--no-build-isolation",
         "--quiet", "-w", str(out)],
        check=True, stdin=subprocess.DEVNULL,
    )
    (path,) = out.glob("paramspec-*.whl")
    return path


def test_wheel_contains_grammar_specs_and_marker(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    assert "paramspec/grammar/pspec.lark" in names
    assert "paramspec/py.typed" in names
    for spec in ("sp", "ntk", "mup", "mfp", "sp-global", "sp-perlayer", "sp-embed-lr"):
        assert f"paramspec/specs/{spec}.pspec" in names


def test_installed_wheel_compiles_from_another_folder(wheel, tmp_path):
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--quiet",
                    "--target", str(site), str(wheel)], check=True, stdin=subprocess.DEVNULL)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {**os.environ, "PYTHONPATH": str(site), "PARAMSPEC_NO_CACHE": "1"}
    code = (f"import paramspec, json; assert paramspec.__file__.startswith({str(site)!r});"
            "print(json.dumps(paramspec.compile('sp-embed-lr', width=512).table()))")
    out = subprocess.run([sys.executable, "-c", code], cwd=elsewhere, env=env,
                         capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["spec"] == "sp-embed-lr"
    assert not list(site.glob("paramspec/**/*.cache")), "no cache written into the package"
