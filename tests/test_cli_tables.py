"""CLI tables print every cell in full (no `…`, whatever the width) and no line of them
ends with a space (paramspec._fullwidth)."""

import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from paramspec._cli import app
from paramspec._fullwidth import strip_line_ends

runner = CliRunner()
LLAMA = f"{Path(__file__).parent / 'usermodels' / 'llama.py'}:make_model"
# A block name longer than the 110 and 120 columns the tables used to be cut to.
LONG = "the_feed_forward_and_attention_projections_of_every_decoder_layer_of_my_rather_large_model"
LONG_SPEC = f'''spec long-names "muP with one block of a very long name"
extends mup

{LONG} {{
    role        hidden
    init        fan_in^(-1/2)
    lr          auto
    eps         auto
}}
'''


def invoke(*args, **kwargs):
    result = runner.invoke(app, [str(a) for a in args], **kwargs)
    assert result.exit_code in (0, 3), result.output
    return result.stdout


def assert_whole(text):
    assert "…" not in text
    assert [line for line in text.splitlines() if line.endswith((" ", "\t"))] == []


def cells(text):
    """The body rows of a boxed table, as lists of stripped cells."""
    return [[c.strip() for c in line.strip("│").split("│")]
            for line in text.splitlines() if line.startswith("│")]


def num(x):  # the CLI's 6 significant digits; `keep` for the module's own init
    return "keep" if x is None else f"{x:.6g}"


def test_roles_table_of_llama_shows_every_path_and_value_of_its_json():
    args = ("roles", "completep", "--model", LLAMA, "--width", "64", "--base-width", "32",
            "--depth", "4", "--base-depth", "2")
    rows = json.loads(invoke(*args, "--format", "json"))["parameters"]
    table = invoke(*args)
    assert_whole(table)
    assert "layers[0].attention.rotary_emb.inv_freq" in table  # 39 characters
    assert cells(table) == [
        [r["path"], r["block"], r["role"] or "-", str(r["fan_in"]), str(r["fan_out"]),
         num(r["multiplier"]), num(r["init_std"]), num(r["lr_scale"]), num(r["eps_scale"]),
         num(r["wd_scale"]), "" if r["tied"] is None else f"{r['tied']['block']} x"
         f"{r['tied']['multiplier']:.4g}", r["depth"] or "-",
         "-" if r["branch_multiplier"] is None else num(r["branch_multiplier"])]
        for r in rows]


@pytest.fixture
def long_spec(tmp_path):
    path = tmp_path / "long.pspec"
    path.write_text(LONG_SPEC, encoding="utf-8")
    return path


def test_compile_table_of_a_long_block_name_shows_every_value_of_its_json(long_spec):
    args = ("compile", long_spec, "--width", "256", "--base-width", "64", "--depth", "16",
            "--base-depth", "4")
    layers = json.loads(invoke(*args, "--format", "json"))["layers"]
    table = invoke(*args)
    assert_whole(table)
    e, d, v = (layers[LONG][k] for k in ("exponents", "depth_exponents", "values"))
    assert [LONG, "hidden", e["a"], e["b"], e["c"], e["e"], e["wd"], d["a"], d["b"], d["c"],
            d["e"], d["wd"], num(v["multiplier"]), num(v["init_std"]), num(v["lr_scale"]),
            num(v["eps_scale"]), num(v["wd_scale"])] in cells(table)


@pytest.mark.parametrize("command", ["check", "check --depth 16", "equiv SPEC"])
def test_check_and_equiv_tables_show_a_long_block_name_whole(long_spec, command):
    name, *rest = command.split()
    text = invoke(name, long_spec, *(long_spec if word == "SPEC" else word for word in rest))
    assert_whole(text)
    # On one line, in its table's layer column: not wrapped nor cut.
    assert re.search(rf"^{LONG} +│", text, re.MULTILINE), text


def test_transfer_metrics_table_shows_every_optimum_of_its_json(tmp_path):
    # Eight widths and long labels: the eta* column alone is wider than 120 columns.
    path = tmp_path / "results.csv"
    lines = ["spec,width,lr,loss"]
    for spec in ("mup-with-a-zero-initialised-readout", "sp-with-a-per-layer-learning-rate"):
        for n in (16, 32, 64, 128, 256, 512, 1024, 2048):
            for k in range(-14, 0):
                lines.append(f"{spec},{n},{2.0**k},{1 + 0.1 * (k + 7 + n.bit_length() / 4) ** 2}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    summary = json.loads(invoke("transfer-metrics", path, "--format", "json"))
    table = invoke("transfer-metrics", path)
    assert_whole(table)
    for spec, entry in summary.items():
        etas = " ".join(f"{o['width']}:{o['lr_star']:.3g}{'*' if o['at_edge'] else ''}"
                        for o in entry["optima"])
        assert next(row for row in cells(table) if row[0] == spec)[1] == etas


def test_on_a_colour_terminal_the_table_is_whole_too(long_spec):
    text = invoke("compile", long_spec, env={"FORCE_COLOR": "1", "TERM": "xterm-256color"})
    assert "\x1b[" in text  # rich saw a terminal
    plain = re.sub(r"\x1b\[[0-9;]*m", "", text)
    assert_whole(plain)
    assert re.search(rf"^│ {LONG} │", plain, re.MULTILINE), plain


def test_strip_line_ends_keeps_the_colour_codes_that_close_a_line():
    assert strip_line_ends("a  \x1b[0m\nb \n c \x1b[1m  \x1b[0m\n") == "a\x1b[0m\nb\n c\x1b[1m\x1b[0m\n"


def test_list_shows_the_whole_first_line_of_a_long_doc():
    from paramspec._cli import _summary

    first = ("A spec whose summary line runs well past the hundred characters that "
             "`paramspec list` used to cut to three dots")
    assert len(first) > 100 and _summary(f"\n  {first}\n\nMore text.\n") == first
