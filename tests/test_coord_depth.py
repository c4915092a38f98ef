"""The coordinate check across depth (issue 13's must-show; docs/coord-check.md, "Across
depth"): `completep` passes and its residual stream is flat in depth, while the
depth-blind `mup`'s stream grows like L (and, on the reference transformer at depths
2..16, fails its first-order prediction); the predictions come from the spec's depth
exponents; the CLI's `coord-check --depths`. The default run uses a pre-norm residual MLP
(tests/depth_model.py), the `slow` one the reference transformer.
"""

import functools
import json
from fractions import Fraction as F

import jax
import optax
import pytest
from typer.testing import CliRunner

import paramspec as ps
from paramspec._cli import app
from paramspec._coord_depth import depth_first_step_terms
from paramspec.models import mlp, transformer

from .depth_model import resmlp

GROUPS = {"embedding": ["embedding"], "norm": ["vectors"], "first": ["hidden"],
          "second": ["hidden"], "final_norm": ["final_norm"], "readout": ["readout"]}


def _task(vocab=16, seq=4, batch=2):
    tokens = jax.random.randint(jax.random.key(1), (batch, seq + 1), 0, vocab)

    def loss(model, x):
        logits = jax.vmap(model)(x)
        return optax.softmax_cross_entropy_with_integer_labels(logits, tokens[:, 1:]).mean()

    return functools.partial(transformer, vocab=vocab, seq_len=seq, head_dim=8), \
        tokens[:, :-1], loss


def _slopes(check):
    return {layer.name: (round(layer.slope, 3), layer.predicted) for layer in check.layers}


def _leading(spec, optimizer, groups=GROUPS):
    c = ps.compile(spec, width=64, depth=8, base_depth=2, optimizer=optimizer)
    return {q: -min(t) for q, t in depth_first_step_terms(c, groups).items()}


def test_depth_predictions_follow_the_spec_exponents():
    """Pinned leading slopes: CompleteP's stream and logits flat and each block Θ(1/L)
    under every optimizer (the derived rules); Depth-muP's blocks Θ(L^(-1/2)); muP's
    stream Θ(L) under Adam (the L blocks' Θ(1) updates add up), Θ(L^(1/2)) under SGD."""
    for optimizer in ("adam", "sgd", "adafactor", "adam_atan2"):
        p = _leading("completep", optimizer)
        assert (p["stream"], p["blocks (mean)"], p["logits"]) == (0, -1, 0), optimizer
        p = _leading("depth-mup", optimizer)
        assert (p["stream"], p["blocks (mean)"], p["logits"]) == (0, F(-1, 2), 0), optimizer
    mup = {**GROUPS, "final_norm": ["vectors"]}
    p = _leading("mup", "adam", mup)
    assert (p["stream"], p["block (first)"], p["blocks (mean)"], p["logits"]) == \
        (1, 0, F(1, 2), F(1, 2))
    assert _leading("mup", "sgd", mup)["stream"] == F(1, 2)


def _resmlp_task():
    key = jax.random.key(42)
    batch = (jax.random.normal(key, (8, 8)), jax.random.normal(jax.random.fold_in(key, 1), (8, 4)))
    return resmlp, batch, ps.linear_loss


@pytest.mark.parametrize("model", [
    "resmlp",  # the transformer's block structure without attention: seconds on a CPU
    pytest.param("transformer", marks=pytest.mark.slow),  # docs/coord-check.md's table
])
def test_completep_is_flat_in_depth_and_mup_is_not(model):
    make, inputs, loss = _resmlp_task() if model == "resmlp" else _task(32, 8, 4)
    depths = (2, 4, 8) if model == "resmlp" else (2, 4, 8, 16)
    # the transformer: perturbative learning rates, exactly the documented run
    kw = {"depths": depths, "width": 32, "seeds": (0, 1),
          "learning_rate": 1e-3 if model == "resmlp" else None}
    completep = ps.coord_check("completep", make, inputs, loss, **kw)
    assert isinstance(completep, ps.DepthCheck)
    assert completep.passed and completep.flat, _slopes(completep)
    assert abs(completep.layer("logits").slope) <= 0.15, _slopes(completep)
    assert completep.layer("blocks (mean)").slope < -0.8, _slopes(completep)  # Θ(1/L) each
    mup = ps.coord_check("mup", make, inputs, loss, **kw)
    assert not mup.flat and mup.layer("stream").slope > 0.6, _slopes(mup)  # grows like L
    if model == "transformer":
        depth_mup = ps.coord_check("depth-mup", make, inputs, loss, **kw)
        assert depth_mup.passed and depth_mup.flat, _slopes(depth_mup)
        assert not mup.passed, _slopes(mup)  # beta = 0: the blocks compound beyond L^1


def test_depth_check_refuses_what_it_cannot_check():
    make, inputs, loss = _task()
    with pytest.raises(ps.SpecError, match="depths= and one width="):
        ps.coord_check("completep", make, inputs, loss, depths=(1, 2), widths=(16, 32))
    with pytest.raises(ps.SpecError, match="at least two different"):
        ps.coord_check("completep", make, inputs, loss, depths=(2,))
    with pytest.raises(ps.SpecError, match=r"make_model\(width, key, depth=L\)"):
        ps.coord_check("completep", lambda w, k: make(w, k), inputs, loss, depths=(1, 2))


def test_cli_coord_check_depths(tmp_path):
    runner = CliRunner()
    result = runner.invoke(app, ["coord-check", "completep", "--model", "transformer",
                                 "--depths", "1,2", "--width", "16", "--seeds", "1",
                                 "--lr", "1e-3", "--out", str(tmp_path), "--format", "json"])
    assert result.exit_code in (0, 3), result.output
    data = json.loads(result.stdout)
    assert data["axis"] == "depth" and data["width"] == 16 and data["base_depth"] == 1
    assert result.exit_code == (0 if data["passed"] else 3)
    assert list(data["layers"]) == ["stream", "block (first)", "blocks (mean)",
                                    "block (last)", "logits"]
    assert data["layers"]["stream"]["depths"] == [1, 2]
    assert (tmp_path / "coord-check-depth-completep.png").read_bytes()[:4] == b"\x89PNG"
    for args, match in ((["--model", "mlp"], "no residual blocks"),
                        (["--widths", "16,32"], "--widths does not apply")):
        bad = runner.invoke(app, ["coord-check", "completep", "--depths", "1,2", *args])
        assert bad.exit_code == 2 and match in bad.stderr, bad.output


def test_a_model_without_depth_features_is_refused():
    """The MLP has no residual blocks: refused before any training."""
    x = jax.numpy.ones((2, 16))
    with pytest.raises(ps.SpecError, match=r"must name `embed`, `blocks\[i\]"):
        ps.coord_check("completep", mlp, (x, x[:, :8]), ps.linear_loss, depths=(1, 2))
