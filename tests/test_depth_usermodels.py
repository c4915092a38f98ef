"""Depth on users' own models (issue 13; docs/models.md, "Depth"): the repeated blocks
learned from two depths, the residual-branch multiplier folded into the branches'
output projections (`branches=`), and the depth factors the optimizer gets from them.

The slow tests train tests/usermodels/gpt.py and llama.py under every depth built-in at
two depths, and check the LLaMA's factors: `pytest -m slow tests/test_depth_usermodels.py`.
"""

from __future__ import annotations

import functools
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import paramspec as ps
from paramspec._equinox._depth_learn import learn_places
from paramspec.models import Block, mlp, transformer
from tests import training
from tests.usermodels import gpt, llama

KEY = jax.random.key(0)
REF = functools.partial(transformer, vocab=16, seq_len=4, head_dim=8)
REF_BRANCHES = ["blocks[*].attn.output_proj", "blocks[*].down"]
TIED = {"wte.weight": "readout"}


def _blocks(model):
    return [b for b in jax.tree_util.tree_leaves(model, is_leaf=lambda x: isinstance(x, Block))
            if isinstance(b, Block)]


# ----------------------------------------------------------------------------- learning


class _Scanned(eqx.Module):
    """Blocks stacked along a leading axis (for `lax.scan`) and a fixed readout."""

    w: jax.Array
    readout: eqx.nn.Linear

    def __init__(self, width, key, depth=2):
        self.w = jnp.zeros((depth, width, width))
        self.readout = eqx.nn.Linear(width, 3, key=key)


class _Odd(eqx.Module):
    """A parameter that exists only at some depths, outside any list: not learnable."""

    layers: list
    extra: jax.Array | None

    def __init__(self, width, key, depth=2):
        self.layers = [eqx.nn.Linear(width, width, key=k) for k in jax.random.split(key, depth)]
        self.extra = jnp.zeros(width) if depth > 2 else None


def test_repeated_parameters_are_learned_from_two_depths():
    ref = learn_places(REF, 16, 3, 6, KEY)
    assert {p for p, place in ref.items() if not place.repeated} == {
        "token_embed.weight", "pos_embed.weight", "final_norm.weight", "readout.weight"}
    assert ref["blocks[2].attn.output_proj.weight"].instance == "blocks[2]"
    # an MLP's hidden layers repeat; its first and last layer (other shapes) do not
    deep_mlp = learn_places(functools.partial(mlp, in_size=4, out_size=2), 8, 2, 4, KEY)
    assert {p: v.repeated for p, v in deep_mlp.items()} == {
        "embed.weight": False, "hidden[0].weight": True, "hidden[1].weight": True,
        "readout.weight": False}
    # the user models, by the `depth` keyword they now take
    g = learn_places(gpt.make_model, 32, 2, 4, KEY)
    assert [p for p, v in g.items() if not v.repeated] == [
        "wte.weight", "wpe.weight", "ln_f.weight", "ln_f.bias"]
    lam = learn_places(llama.make_model, 32, 2, 3, KEY)
    assert not lam["norm.weight"].repeated and lam["layers[1].feed_forward.w2.weight"].repeated
    # blocks stacked along a leading axis: the stacked array is repeated
    scanned = learn_places(_Scanned, 8, 2, 4, KEY)
    assert scanned["w"].repeated and not scanned["readout.weight"].repeated
    with pytest.raises(ps.SpecError, match=r"extra: built at one depth and not at the other"):
        learn_places(_Odd, 8, 2, 4, KEY)
    with pytest.raises(ps.SpecError, match="does not change the number of blocks"):
        learn_places(lambda width, key, depth: eqx.nn.Linear(width, width, key=key), 8, 2, 4, KEY)


# ----------------------------------------------------------------------------- branches


def test_folding_the_branch_multiplier_equals_the_branch_multiplier_field():
    # CompleteP at m = 2 (s = 1/2), n = 2: the reference transformer's own route (its
    # blocks' static `branch_multiplier`) against the fold into the output projections.
    c = ps.compile("completep", width=16, base_width=8, depth=2, base_depth=1)
    field = c.init(REF, KEY)
    folded = c.init(REF, KEY, branches=REF_BRANCHES)
    assert {b.branch_multiplier for b in _blocks(field)} == {0.5}
    assert {b.branch_multiplier for b in _blocks(folded)} == {1.0}  # left alone
    assert len(_blocks(folded)) == 2  # built at the compiled depth
    tokens = jnp.arange(8).reshape(2, 4) % 16
    targets = (tokens + 1) % 16

    def loss(model):
        logits = jax.vmap(model)(tokens)
        return optax.softmax_cross_entropy_with_integer_labels(logits, targets).mean()

    params = [eqx.filter(m, eqx.is_inexact_array) for m in (field, folded)]
    assert all(np.array_equal(a, b) for a, b in zip(*map(jax.tree_util.tree_leaves, params),
                                                     strict=True))  # the same stored weights
    value_and_grad = eqx.filter_jit(eqx.filter_value_and_grad(loss))
    values, grads = zip(*(value_and_grad(m) for m in (field, folded)), strict=True)
    assert float(values[0]) == pytest.approx(float(values[1]), rel=1e-6)
    for a, b in zip(*map(jax.tree_util.tree_leaves, grads), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
    # ... and the same optimizer (depth factors from the learned places)
    rows = [{k: r[k] for k in ("path", "lr_scale", "eps_scale", "depth")}
            for r in c.describe(field)]
    assert rows == [{k: r[k] for k in ("path", "lr_scale", "eps_scale", "depth")}
                    for r in c.describe(folded)]
    out = {r["path"]: r for r in c.describe(folded)}
    assert out["blocks[1].down.weight"]["branch_multiplier"] == 0.5
    assert out["blocks[1].down.weight"]["multiplier"] == 0.5
    assert out["blocks[1].up.weight"]["branch_multiplier"] is None


def test_branches_are_checked_against_the_learned_blocks():
    c = ps.compile("completep", width=16, base_width=16, depth=2, base_depth=1)
    with pytest.raises(ps.SpecError, match="no residual-branch module") as e:
        c.init(gpt.make_model, KEY, tied=TIED)  # depth factors but no branch named
    assert "branches=" in e.value.hint
    with pytest.raises(ps.SpecError, match=r"names no module of the model: 'blocks\[\*\].c_proj'"
                       ) as e:
        c.init(gpt.make_model, KEY, tied=TIED, branches=["blocks[*].c_proj"])
    assert "'blocks[*].attn.c_proj', 'blocks[*].mlp.c_proj'" in e.value.hint  # candidates
    with pytest.raises(ps.SpecError, match="outside the repeated blocks: ln_f"):
        c.init(gpt.make_model, KEY, tied=TIED, branches=[*gpt.BRANCHES, "ln_f"])
    with pytest.raises(ps.SpecError, match=r"repeated block\(s\) blocks\[1\]:"):
        c.init(gpt.make_model, KEY, tied=TIED, branches=["blocks[0].*c_proj"])
    with pytest.raises(ps.SpecError, match="a list of path globs"):
        c.init(gpt.make_model, KEY, tied=TIED, branches="blocks[*].attn.c_proj")


def test_a_spec_claim_that_the_model_contradicts_is_an_error():
    spec = ps.parse('''spec wrong "a final norm matched inside the blocks"
extends completep
final_norm {
    match       path="blocks[*].ln_1.*"
    depth       fixed
    init        keep
    lr          auto
    eps         auto
}
''')
    c = ps.compile(spec, width=16, base_width=16, depth=2, base_depth=1)
    with pytest.raises(ps.SpecError, match=r"blocks\[0\].ln_1.weight: block `final_norm` "
                       r"selects it by its `match` lines and says `depth fixed`, but it is "
                       r"inside the repeated block blocks\[0\]") as e:
        c.init(gpt.make_model, KEY, tied=TIED, branches=gpt.BRANCHES)
    assert "correct the block's `depth` line" in e.value.hint


CASES = {
    "gpt": (gpt, {"wte.weight", "wpe.weight", "ln_f.weight", "ln_f.bias"},
            {f"blocks[{i}].{b}.c_proj.{f}" for i in range(2) for b in ("attn", "mlp")
             for f in ("weight", "bias")}),
    "llama": (llama, {"tok_embeddings.weight", "norm.weight", "output.weight"},
              {f"layers[{i}].{m}.weight" for i in range(2)
               for m in ("attention.wo", "feed_forward.w2")}),
}


@pytest.mark.parametrize("name", ["gpt", pytest.param("llama", marks=pytest.mark.slow)])
def test_user_models_get_the_depth_factors_on_the_right_parameters(name):
    # completep (alpha = 1) at n = 2, m = 2: eps m^(-1) (times the width factor) inside
    # the blocks, nothing outside; the branch multiplier 1/2 on the output projections.
    # Against mup (completep's width rules, no depth): its numbers for the same fans.
    mup = ps.compile("mup", width=32, base_width=16)
    c = ps.compile("completep", width=32, base_width=16, depth=2, base_depth=1)
    for module, fixed, projections in (CASES[name],):
        kw = {"tied": TIED} if module is gpt else {}
        model = c.init(module.make_model, KEY, branches=module.BRANCHES, **kw)
        rows = {r["path"]: r for r in c.describe(model)}
        assert {p for p, r in rows.items() if r["depth"] == "fixed"} == fixed
        assert {p for p, r in rows.items() if r["branch_multiplier"] == 0.5} == projections
        assert all(r["branch_multiplier"] is None for p, r in rows.items() if p not in projections)
        for path, r in rows.items():
            block = "vectors" if r["block"] == "final_norm" else r["block"]
            b = {q: mup.value(block, q, fan_in=r["fan_in"], fan_out=r["fan_out"])
                 for q in ("lr", "eps", "multiplier")}
            assert r["lr_scale"] == pytest.approx(b["lr"]), path  # m^(alpha - 1) = 1
            inside = 2 if r["depth"] == "repeated" else 1
            assert r["eps_scale"] == pytest.approx(b["eps"] / inside), path
            assert r["multiplier"] == pytest.approx(b["multiplier"] * (
                0.5 if path in projections else 1)), path


def _train(module, c, steps, **kw):
    model = c.init(module.make_model, KEY, branches=module.BRANCHES, **kw)
    opt = c.optimizer(model, learning_rate=3e-3)
    return training.losses(module, model, opt, steps + 1)


@pytest.mark.slow
def test_gpt_trains_under_completep_deeper_than_its_base_depth():
    c = ps.compile("completep", width=16, base_width=16, depth=2, base_depth=1)
    losses = _train(gpt, c, 5, tied=TIED)
    assert np.all(np.isfinite(losses)) and losses[-1] < losses[0], losses


@pytest.mark.slow
@pytest.mark.parametrize("spec", ["completep", "depth-mup", "sp-depth"])
@pytest.mark.parametrize("name", ["gpt", "llama"])
def test_user_models_train_under_the_depth_builtins_at_two_depths(name, spec):
    module = {"gpt": gpt, "llama": llama}[name]
    kw = {"tied": TIED} if module is gpt else {}
    for depth in (1, 6):
        c = ps.compile(spec, width=32, base_width=16, depth=depth, base_depth=2)
        losses = _train(module, c, 20, **kw)
        assert np.all(np.isfinite(losses)) and losses[-1] < losses[0], (depth, losses)


def _rms(a):
    return float(jnp.sqrt(jnp.mean(a ** 2)))


def test_own_init_is_kept_at_the_base_depth_and_scaled_by_the_spec_in_depth():
    # GPT-2's residual projections are N(0, 0.02 / sqrt(2 L)). With init_from="model" a
    # depth spec keeps the model's own init at the base depth (1) and applies its own
    # depth factors from there: sp-depth's m^(-1/2) gives back GPT-2's 0.02 / sqrt(2 L)
    # at L = 2; completep (init unchanged by depth) keeps the base depth's 0.02 / sqrt(2).
    kw = {"tied": TIED, "branches": gpt.BRANCHES, "init_from": "model"}
    at_base = ps.compile("sp-depth", width=32, base_width=32, depth=1, base_depth=1)
    own = gpt.make_model(32, jax.random.split(KEY)[0], depth=1)  # c.init's model key
    same = ps.unwrap(at_base.init(gpt.make_model, KEY, **kw))
    assert all(np.array_equal(a, b) for a, b in zip(
        jax.tree_util.tree_leaves(eqx.filter(own, eqx.is_inexact_array)),
        jax.tree_util.tree_leaves(eqx.filter(same, eqx.is_inexact_array)), strict=True))
    for spec, proj in (("sp-depth", 0.02 / np.sqrt(2 * 2)), ("completep", 0.02 / np.sqrt(2))):
        c = ps.compile(spec, width=32, base_width=32, depth=2, base_depth=1)
        model = ps.unwrap(c.init(gpt.make_model, KEY, **kw))
        assert len(model.blocks) == 2
        for block in model.blocks:
            assert _rms(block.mlp.c_proj.weight) == pytest.approx(proj, rel=0.05), spec
            assert _rms(block.mlp.c_fc.weight) == pytest.approx(0.02, rel=0.05), spec


def test_cli_roles_takes_a_depth_and_the_files_branches():
    import json

    from typer.testing import CliRunner

    from paramspec._cli import app

    llama_file = Path(__file__).parent / "usermodels" / "llama.py"
    args = ["roles", "completep", "--model", f"{llama_file}:make_model",
            "--width", "16", "--depth", "2", "--base-depth", "1"]
    out = CliRunner().invoke(app, [*args, "--format", "json"])  # (the table: same rows)
    assert out.exit_code == 0, out.output
    rows = {r["path"]: r for r in json.loads(out.output)["parameters"]}
    assert rows["layers[1].feed_forward.w2.weight"]["branch_multiplier"] == 0.5  # BRANCHES
    assert rows["layers[1].feed_forward.w1.weight"]["branch_multiplier"] is None
    assert (rows["norm.weight"]["depth"], rows["layers[1].ffn_norm.weight"]["depth"]) == (
        "fixed", "repeated")


@pytest.mark.slow
def test_cli_roles_table_shows_the_depth():
    from typer.testing import CliRunner

    from paramspec._cli import app

    llama_file = Path(__file__).parent / "usermodels" / "llama.py"
    table = CliRunner().invoke(app, ["roles", "completep", "--model", f"{llama_file}:make_model",
                                     "--width", "16", "--depth", "2", "--base-depth", "1"])
    assert table.exit_code == 0 and "depth 2, base 1" in table.output, table.output
