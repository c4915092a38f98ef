"""The CLI: exact JSON contract, readable table, exit codes, no tracebacks."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from paramspec._cli import app

runner = CliRunner()

# DESIGN.md's JSON example, for the mup embedding at width 4096, base width 256.
DESIGN_EMBEDDING = {
    "role": "input",
    "exponents": {"a": "-1/2", "b": "1/2", "c": "1/2", "e": "1/2", "wd": "0"},
    "values": {"multiplier": 4.0, "init_std": 0.25, "lr_scale": 0.25, "eps_scale": 0.25,
               "wd_scale": 1.0},
}


def run(*args):
    return runner.invoke(app, list(args), catch_exceptions=False)


def test_compile_json_matches_design_contract():
    result = run("compile", "mup", "--width", "4096", "--base-width", "256", "--format", "json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert list(data) == ["spec", "optimizer", "alignment", "width", "base_width", "layers"]
    assert data["spec"] == "mup" and data["optimizer"] == "adam" and data["alignment"] == "1"
    assert data["width"] == 4096 and data["base_width"] == 256
    assert list(data["layers"]) == ["embedding", "hidden", "readout", "vectors", "constants"]
    assert data["layers"]["embedding"] == DESIGN_EMBEDDING
    hidden = data["layers"]["hidden"]
    assert hidden["exponents"] == {"a": "0", "b": "1/2", "c": "1", "e": "1", "wd": "0"}
    assert hidden["values"]["init_std"] == pytest.approx(4096 ** -0.5)
    assert hidden["values"]["lr_scale"] == pytest.approx(1 / 16)


def test_compile_output_is_deterministic_bytes():
    args = ("compile", "mfp", "--width", "333", "--alignment", "3/4", "--optimizer", "sgd",
            "--format", "json")
    assert run(*args).stdout == run(*args).stdout


def test_compile_table_is_readable():
    result = run("compile", "sp", "--width", "2048", "--base-width", "128")
    assert result.exit_code == 0
    for word in ("embedding", "hidden", "readout", "width 2048", "n = 16"):
        assert word in result.stdout


def test_flags_override_the_spec():
    result = run("compile", "mup", "--optimizer", "sgd", "--alignment", "none", "--format", "json")
    data = json.loads(result.stdout)
    assert data["optimizer"] == "sgd" and data["alignment"] == "1/2"
    assert data["layers"]["hidden"]["exponents"]["c"] == "-1/2"


def test_spec_errors_exit_2_with_location(tmp_path):
    bad = tmp_path / "bad.pspec"
    bad.write_text("spec bad\nhidden {\n    lr n^0.5\n}\n")
    result = run("compile", str(bad))
    assert result.exit_code == 2
    assert f"{bad}:3:10" in result.stderr
    assert "Traceback" not in result.output + result.stderr


@pytest.mark.parametrize("args", [
    ("compile", "no-such-spec"),
    ("compile", "mup", "--alignment", "2"),
    ("compile", "mup", "--alignment", "sideways"),
    ("compile", "mup", "--width", "0"),
    ("compile", "/nonexistent/x.pspec"),
])
def test_bad_arguments_exit_2(args):
    result = run(*args)
    assert result.exit_code == 2
    assert "error" in result.stderr.lower()


def test_unknown_optimizer_flag_is_a_usage_error():
    result = run("compile", "mup", "--optimizer", "adamw")
    assert result.exit_code == 2


def test_internal_bug_exits_1_without_traceback(monkeypatch):
    import paramspec._compile as compile_module

    def boom(*args, **kwargs):
        raise ZeroDivisionError("boom")

    monkeypatch.setattr(compile_module, "compile", boom)
    result = run("compile", "mup")
    assert result.exit_code == 1
    assert "internal error" in result.stderr and "Traceback" not in result.stderr


def test_list_shows_every_builtin_with_its_doc():
    result = run("list")
    for name in ("sp", "ntk", "mup", "mfp", "sp-global", "sp-perlayer", "sp-embed-lr"):
        assert any(line.startswith(name + " ") for line in result.stdout.splitlines())
    entries = json.loads(run("list", "--format", "json").stdout)
    assert all(e["doc"] for e in entries)


def test_fmt_and_check(tmp_path):
    messy = tmp_path / "m.pspec"
    messy.write_text("spec m\nhidden {   init   fan_in^(-1/2)\n lr auto }\n")
    result = run("fmt", str(messy))
    assert result.exit_code == 0
    assert "    init        fan_in^(-1/2)\n" in result.stdout
    assert run("fmt", "--check", str(messy)).exit_code == 3
    tidy = tmp_path / "t.pspec"
    tidy.write_text(result.stdout)
    assert run("fmt", "--check", str(tidy)).exit_code == 0


def test_schema_is_json_schema_of_the_ir():
    schema = json.loads(run("schema").stdout)
    assert schema["title"] == "Spec" and "blocks" in schema["properties"]


def test_console_script_runs_in_a_subprocess():
    """The real entry point, as a user runs it (no stdin, exit code propagated)."""
    result = subprocess.run(
        [sys.executable, "-m", "paramspec", "compile", "mup", "--format", "json"],
        capture_output=True, text=True, stdin=subprocess.DEVNULL, check=False,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["spec"] == "mup"


def test_import_paramspec_and_compile_do_not_import_jax():
    code = ("import sys, paramspec; paramspec.compile('mup', width=128).table(); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('jax', 'equinox', 'optax')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=Path(__file__).parent)
    assert out.stdout.strip() == "[]"


def test_readme_example_output_is_current(tmp_path, monkeypatch):
    """The README's tour shows real output: rerun it and compare the table."""
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    spec_text = readme.split("# my-mup.pspec\n", 1)[1].split("```", 1)[0]
    (tmp_path / "my-mup.pspec").write_text(spec_text)
    monkeypatch.chdir(tmp_path)
    result = run("compile", "my-mup.pspec", "--width", "2048", "--base-width", "128")
    shown = readme.split("$ paramspec compile my-mup.pspec --width 2048 --base-width 128\n")[1]
    shown_lines = shown.split("```", 1)[0].strip().splitlines()
    actual = [line.rstrip() for line in result.stdout.splitlines() if line.strip()]
    assert actual[: len(shown_lines)] == shown_lines


@pytest.mark.parametrize("name", ["sp", "ntk", "mup", "mfp", "sp-perlayer"])
def test_check_passes_builtins_for_their_optimizer(name):
    result = run("check", name, "--format", "json")
    assert result.exit_code == 0, result.stdout
    data = json.loads(result.stdout)
    assert data["stable"] is True and data["feature_learning"] is True


@pytest.mark.parametrize("name", ["sp-global", "sp-embed-lr"])
def test_check_fails_sweep_baselines_naming_the_layer(name):
    result = run("check", name)
    assert result.exit_code == 3
    assert "hidden" in result.stdout and "unstable" in result.stdout.lower()


def test_explain_and_equiv_commands():
    result = run("explain", "mup", "--layer", "hidden")
    assert result.exit_code == 0 and "c = 1" in result.stdout
    assert run("explain", "mup", "--layer", "nope").exit_code == 2
    ok = run("equiv", "mup", "mfp", "--optimizer", "sgd", "--format", "json")
    assert ok.exit_code == 0 and json.loads(ok.stdout)["equivalent"] is True
    assert json.loads(ok.stdout)["theta"]["readout"] == "1/2"
    assert run("equiv", "sp", "mup").exit_code == 3
