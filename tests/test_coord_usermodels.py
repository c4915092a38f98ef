"""The coordinate check on a user's own Equinox model (no `features` method): recorded
features, validation before training, the perturbative default learning rate, flags,
and the CLI's `--model FILE.py:FUNC` convention (docs/coord-check.md)."""

from __future__ import annotations

import json

import equinox as eqx
import jax
import pytest
from typer.testing import CliRunner

from paramspec import SpecError
from paramspec._cli import app
from paramspec._coord import coord_check, linear_loss

WIDTHS = (16, 32, 64)


class TinyNet(eqx.Module):
    """A plain model: embed -> LayerNorm -> two hidden layers -> readout."""

    embed: eqx.nn.Linear
    norm: eqx.nn.LayerNorm
    hidden: list
    head: eqx.nn.Linear

    def __init__(self, width, key, depth=2):
        k0, k1, *ks = jax.random.split(key, 2 + depth)
        self.embed = eqx.nn.Linear(8, width, use_bias=False, key=k0)
        self.norm = eqx.nn.LayerNorm(width)
        self.hidden = [eqx.nn.Linear(width, width, use_bias=False, key=k) for k in ks]
        self.head = eqx.nn.Linear(width, 4, use_bias=False, key=k1)

    def __call__(self, x):
        h = self.norm(self.embed(x))
        for layer in self.hidden:
            h = jax.nn.relu(layer(h))
        return self.head(h)


def make_tiny(width, key):
    return TinyNet(width, key)


def _batch():
    kx, ky = jax.random.split(jax.random.key(3))
    return jax.random.normal(kx, (8, 8)), jax.random.normal(ky, (8, 4))


def test_a_plain_model_is_checked_by_recording_its_layers():
    # widths 32..128: at 16..64 finite-size effects alone move muP's slopes by up to -0.22
    check = coord_check("mup", make_tiny, _batch(), linear_loss, widths=(32, 64, 128),
                        seeds=(0,))
    roles = {layer.name: layer.role for layer in check.layers}
    # forward order, module paths, the roles of their parameters; the readout module's
    # output is the model's output, so no separate "(output)" feature
    assert roles == {"embed": "input", "norm": "vector", "hidden[0]": "hidden",
                     "hidden[1]": "hidden", "head": "output"}
    assert check.model == "TinyNet" and check.learning_rate_source == "perturbative"
    # the perturbative learning rate: the largest relative change is about 1 %
    assert 3e-3 < max(layer.relative for layer in check.layers) < 3e-2
    assert check.passed, [(la.name, round(la.slope, 3), la.tolerance) for la in check.layers]


def test_a_change_larger_than_the_layer_is_flagged_not_judged():
    # two widths suffice to flag (no slope is judged), and 32, 64 are the plain model's
    # widths above: their kernels are compiled once for both tests
    check = coord_check("sp-global", make_tiny, _batch(), linear_loss, widths=(32, 64),
                        seeds=(0,), learning_rate=30.0)
    flagged = [layer for layer in check.layers if layer.verdict == "flagged"]
    assert flagged and all(layer.relative > 1 for layer in flagged)
    assert all("not judged" in layer.note for layer in flagged)
    assert set(check.flagged) == {layer.name for layer in flagged}


class Counting:
    """Records the widths built: validation builds the smallest width only (and the
    twice-as-wide model that role inference compares it with), never the largest."""

    def __init__(self):
        self.widths = set()

    def __call__(self, width, key):
        self.widths.add(width)
        return TinyNet(width, key)


def test_bad_inputs_are_reported_before_training_and_name_the_users_class():
    make = Counting()
    x, y = _batch()
    with pytest.raises(SpecError, match="TinyNet") as info:
        coord_check("mup", make, (x[:, :5], y), linear_loss, widths=WIDTHS, seeds=(0,))
    assert "Multiplied" not in str(info.value)
    assert max(WIDTHS) not in make.widths


def test_a_loss_that_is_not_a_scalar_is_reported_before_training():
    with pytest.raises(SpecError, match="shape \\(8, 4\\), not a scalar"):
        coord_check("mup", make_tiny, _batch(), lambda m, b: jax.vmap(m)(b[0]),
                    widths=WIDTHS, seeds=(0,))


def test_a_role_the_spec_does_not_cover_is_reported_before_training():
    import paramspec as ps

    spec = ps.load("mup").model_copy(update={"blocks": tuple(
        b for b in ps.load("mup").blocks if b.role != "vector")})
    make = Counting()
    with pytest.raises(SpecError, match="vector"):
        coord_check(spec, make, _batch(), linear_loss, widths=WIDTHS, seeds=(0,))
    assert max(WIDTHS) not in make.widths


def test_the_model_output_is_a_feature_when_no_module_produces_it():
    import paramspec as ps

    class ReadsItsHead(eqx.Module):  # reads the readout's matrix instead of calling it
        embed: eqx.nn.Linear
        hidden: eqx.nn.Linear
        head: eqx.nn.Linear

        def __init__(self, width, key):
            k0, k1, k2 = jax.random.split(key, 3)
            self.embed = eqx.nn.Linear(8, width, use_bias=False, key=k0)
            self.hidden = eqx.nn.Linear(width, width, use_bias=False, key=k1)
            self.head = eqx.nn.Linear(width, 4, use_bias=False, key=k2)

        def __call__(self, x):
            return ps.scaled(self.head).weight @ jax.nn.relu(self.hidden(self.embed(x)))

    check = coord_check("mup", ReadsItsHead, _batch(), linear_loss, widths=WIDTHS,
                        seeds=(0,), learning_rate=1e-3)
    names = [layer.name for layer in check.layers]
    assert names == ["embed", "hidden", "(output)"]
    assert check.layer("(output)").role == "output"


# ----------------------------------------------------------------------------- CLI

runner = CliRunner()

MODEL_FILE = '''
import equinox as eqx, jax, jax.numpy as jnp

class Net(eqx.Module):
    embed: eqx.nn.Linear
    hidden: eqx.nn.Linear
    head: eqx.nn.Linear

    def __init__(self, width, key):
        k0, k1, k2 = jax.random.split(key, 3)
        self.embed = eqx.nn.Linear(8, width, use_bias=False, key=k0)
        self.hidden = eqx.nn.Linear(width, width, use_bias=False, key=k1)
        self.head = eqx.nn.Linear(width, 4, use_bias=False, key=k2)

    def __call__(self, x):
        return self.head(jax.nn.relu(self.hidden(self.embed(x))))

def make_model(width, key):
    return Net(width, key)
'''

BATCH = '''
def make_batch(key):
    kx, ky = jax.random.split(key)
    return jax.random.normal(kx, (8, 8)), jax.random.randint(ky, (8,), 0, 4)
'''

LOSS = '''
def loss(model, x, y):
    logits = jax.vmap(model)(x)
    return -jnp.mean(jax.nn.log_softmax(logits)[jnp.arange(len(y)), y])
'''


@pytest.mark.parametrize("with_loss", [True, False])
def test_cli_checks_a_model_file(tmp_path, with_loss):
    path = tmp_path / "net.py"
    path.write_text(MODEL_FILE + BATCH + (LOSS if with_loss else ""))
    result = runner.invoke(app, ["coord-check", "mup", "--model", f"{path}:make_model",
                                 "--widths", "16,32,64", "--seeds", "1", "--out",
                                 str(tmp_path), "--format", "json"])
    assert result.exit_code in (0, 3), result.output
    data = json.loads(result.stdout)
    assert data["model"] == "Net" and list(data["layers"]) == ["embed", "hidden", "head"]
    assert data["learning_rate_source"] == "perturbative"
    assert result.exit_code == (0 if data["passed"] else 3)


def test_cli_without_make_batch_exits_2_before_training(tmp_path):
    path = tmp_path / "net.py"
    path.write_text(MODEL_FILE)
    result = runner.invoke(app, ["coord-check", "mup", "--model", f"{path}:make_model",
                                 "--out", str(tmp_path)])
    assert result.exit_code == 2
    assert "make_batch" in result.stderr


# ----------------------------------------------------------------------------- must-show
# The third-party-style models of tests/usermodels under muP at the default
# (perturbative) learning rate, widths 64..512, as
# `paramspec coord-check mup --model tests/usermodels/NAME.py:make_model` runs them.
# Minutes each on 2 CPU cores: `pytest -m slow`. Measured tables: docs/coord-check.md.


def _usermodel_check(name):
    from pathlib import Path

    from paramspec._cli import _coord_task

    path = Path(__file__).parent / "usermodels" / f"{name}.py"
    if not path.is_file():
        pytest.skip(f"{path.name} is not in tests/usermodels yet")
    make, inputs, loss, extra = _coord_task(f"{path}:make_model")
    return coord_check("mup", make, inputs, loss, widths=(64, 128, 256, 512), **extra)


def _table(check):
    return "\n".join(f"{la.name} {la.role} {la.slope:+.3f} {la.predicted:+g} {la.verdict}"
                     for la in check.layers)


@pytest.mark.slow
def test_cnn_passes_under_mup():
    check = _usermodel_check("cnn")
    assert check.passed and not check.flagged, _table(check)


@pytest.mark.slow
def test_llama_logits_pass_under_mup_at_vocab_100():
    check = _usermodel_check("llama")
    logits = check.layer("output")
    assert logits.role == "output" and logits.verdict == "pass", _table(check)
    assert "100 outputs" in logits.note


@pytest.mark.slow
def test_vit_passes_under_mup_with_a_fixed_head_count():
    """Queries are judged as q (their recorded output divided by the folded 1/d
    attention factor, docs/attention.md); every layer passes."""
    check = _usermodel_check("vit")
    assert not check.flagged, _table(check)
    assert check.passed, _table(check)
