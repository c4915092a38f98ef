"""The transfer commands: coord-check, sweep, transfer-metrics (exit codes, JSON, files)."""

import json
import math

import pytest
from typer.testing import CliRunner

from paramspec._cli import app
from paramspec._transfer import ResultsFile, run_key

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def test_coord_check_json_exit_code_and_plot(tmp_path):
    result = invoke(
        "coord-check",
        "mup",
        "--widths",
        "16,32,64",
        "--seeds",
        "1",
        "--out",
        tmp_path,
        "--format",
        "json",
    )
    assert result.exit_code in (0, 3), result.output
    data = json.loads(result.stdout)
    assert data["spec"] == "mup" and data["optimizer"] == "adam"
    assert set(data["layers"]) == {"embed", "hidden[0]", "hidden[1]", "readout"}
    assert data["learning_rate_source"] == "perturbative" and data["model"] == "MLP"
    for layer in data["layers"].values():
        assert layer["widths"] == [16, 32, 64] and len(layer["delta_rms"]) == 3
        below, above = layer["tolerance"]
        inside = -below - 1e-4 <= layer["slope"] - layer["predicted"] <= above + 1e-4
        flagged = layer["relative"] is not None and layer["relative"] > 1
        assert layer["verdict"] == ("flagged" if flagged else "pass" if inside else "fail")
        assert layer["passed"] == (layer["verdict"] == "pass")
    assert result.exit_code == (0 if data["passed"] else 3)
    verdicts = [layer["verdict"] for layer in data["layers"].values()]
    assert data["passed"] == ("fail" not in verdicts and "pass" in verdicts)
    png = tmp_path / "coord-check-mup.png"
    assert data["plot"] == str(png) and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_coord_check_table_verdicts_match_the_exit_code(tmp_path):
    result = invoke(
        "coord-check", "sp-global", "--widths", "16,32,64", "--seeds", "1", "--out", tmp_path
    )
    assert result.exit_code in (0, 3), result.output
    assert "hidden[0]" in result.stdout and ("pass" in result.stdout or "FAIL" in result.stdout)
    assert (result.exit_code == 3) == ("FAIL" in result.stdout)


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (["--widths", "16,x"], "--widths takes comma-separated integers"),
        (["--widths", "16"], "at least two different widths"),
    ],
)
def test_coord_check_bad_flags_exit_2(tmp_path, args, match):
    result = invoke("coord-check", "mup", *args, "--out", tmp_path)
    assert result.exit_code == 2
    assert match in result.stderr


@pytest.mark.parametrize(
    "content",
    [
        b"name,score\nalice,3\n",  # foreign
        b"key,spec,model,width,lr,embed_lr_mult,seed,step,loss,status,wall_s\n"
        b"k,mup,mlp,-8,0.1,1.0,0,3,0.5,ok,1.0\n",  # corrupt: negative width
    ],
)
def test_sweep_on_a_bad_results_file_exits_2_and_keeps_its_bytes(tmp_path, content):
    path = tmp_path / "results.csv"
    path.write_bytes(content)
    result = invoke(
        "sweep",
        "mup",
        "--out",
        tmp_path,
        "--widths",
        "8",
        "--lrs",
        "0.01",
        "--seeds",
        "1",
        "--steps",
        "3",
        "--no-progress",
    )
    assert result.exit_code == 2, result.output
    assert str(path) in result.stderr and "Nothing was changed" in result.stderr
    assert path.read_bytes() == content
    metrics = invoke("transfer-metrics", path)
    assert metrics.exit_code == 2 and path.read_bytes() == content


def test_sweep_cli_writes_results_and_plots(tmp_path):
    args = [
        "sweep",
        "mup",
        "--out",
        tmp_path,
        "--widths",
        "8",
        "--lrs",
        "0.01,0.1",
        "--embed-lr-mult",
        "1,4",
        "--seeds",
        "1",
        "--steps",
        "3",
        "--no-progress",
    ]
    result = invoke(*args)
    assert result.exit_code == 0, result.output
    rows = ResultsFile(tmp_path / "results.csv").final_rows()
    assert len(rows) == 4 and {r["spec"] for r in rows} == {"mup", "mup*emb4"}
    assert (tmp_path / "loss-vs-lr.png").exists() and (
        tmp_path / "optimal-lr-vs-width.png"
    ).exists()
    again = invoke(*args)
    assert again.exit_code == 0 and "0 runs trained, 4 already done" in again.stdout


# A synthetic sweep with known answers: L = L*(n) + K(n)/2 (ln lr - ln eta*(n))^2 exactly,
# eta*(n) = 0.5 / n (p = -1), K(n) = sqrt(n) (kappa = 1/2), and a second spec "b" whose
# L* exceeds "a"'s by 0.05 + 2 n^(-1/2) (R(inf) = 0.05 against "a").
WIDTHS = (32, 64, 128, 256)


def synthetic(path):
    results = ResultsFile(path)
    for spec, gap in (("a", lambda n: 0.0), ("b", lambda n: 0.05 + 2 * n**-0.5)):
        for n in WIDTHS:
            star = math.log(0.5 / n)
            for k in range(-16, 0):
                lr = 2.0**k
                loss = 1.0 + gap(n) + math.sqrt(n) / 2 * (math.log(lr) - star) ** 2
                for seed in (0, 1):
                    results.append(
                        dict(
                            key=run_key(spec, "syn", n, lr, 1.0, seed),
                            spec=spec,
                            model="syn",
                            width=n,
                            lr=lr,
                            embed_lr_mult=1.0,
                            seed=seed,
                            step=10,
                            loss=loss,
                            status="ok",
                            wall_s=0.0,
                        )
                    )


def test_transfer_metrics_known_answers(tmp_path):
    path = tmp_path / "results.csv"
    synthetic(path)
    result = invoke("transfer-metrics", path, "--reference", "a", "--format", "json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert set(data) == {"a", "b"}
    for entry in data.values():
        assert entry["p"] == pytest.approx(-1.0, abs=1e-9)
        assert entry["drift_steps"] == pytest.approx(3.0, abs=1e-9)  # 8x in steps of 2
        assert entry["kappa"] == pytest.approx(0.5, abs=1e-9)
        assert entry["E"] == pytest.approx(0.0, abs=1e-9)
        assert [o["lr_star"] for o in entry["optima"]] == pytest.approx([0.5 / n for n in WIDTHS])
    assert data["b"]["R_inf"] == pytest.approx(0.05, abs=1e-6)
    assert data["b"]["reference"] == "a" and data["a"]["R_inf"] is None

    table = invoke("transfer-metrics", path, "--reference", "a")
    assert table.exit_code == 0
    assert "drift" in table.stdout and "kappa" in table.stdout
    line_b = next(line for line in table.stdout.splitlines() if line.startswith("│ b "))
    assert "0.05" in line_b and "-1" in line_b


def test_transfer_metrics_unknown_reference_and_missing_file_exit_2(tmp_path):
    path = tmp_path / "results.csv"
    synthetic(path)
    result = invoke("transfer-metrics", path, "--reference", "zzz")
    assert result.exit_code == 2 and "reference spec 'zzz' is not in the rows" in result.stderr
    missing = invoke("transfer-metrics", tmp_path / "nope.csv")
    assert missing.exit_code == 2 and "is not a file" in missing.stderr
