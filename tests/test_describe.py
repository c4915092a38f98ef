"""What c.init learns travels with the model: c.optimizer, c.describe, checkpoint restores,
coord_check and sweep forwarding; routers and buffers; `paramspec roles`."""

import json
import re
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from typer.testing import CliRunner

import paramspec as ps
from paramspec._cli import app
from paramspec._equinox._describe import COLUMNS
from paramspec._equinox._roles import RoleInferenceError
from paramspec._usermodel import load_model
from tests.equinox._small_models import MOE_LAYOUTS, MoE

KEY = jax.random.key(0)


def _docs_spec():
    """The router and buffer blocks of docs/models.md, as one spec (the docs run here)."""
    text = (Path(__file__).parents[1] / "docs" / "models.md").read_text()
    blocks = re.findall(r"```[a-z]*\n(.*?)```", text, re.S)
    router = next(b for b in blocks if b.startswith("spec moe-mup"))
    buffers = next(b for b in blocks if b.startswith("buffers "))
    return router + "\n" + buffers


MOE_SPEC = _docs_spec()


def _train(c, model, steps=3, weight_decay=0.0):
    opt = c.optimizer(model, learning_rate=1e-2, weight_decay=weight_decay)
    state = opt.init(eqx.filter(model, eqx.is_inexact_array))
    x = jax.random.normal(jax.random.key(1), (8, 32))

    @eqx.filter_jit
    def step(model, state):
        grads = eqx.filter_grad(lambda m: jnp.mean(jax.vmap(m)(x) ** 2))(model)
        updates, state = opt.update(grads, state, eqx.filter(model, eqx.is_inexact_array))
        return eqx.apply_updates(model, updates), state

    for _ in range(steps):
        model, state = step(model, state)
    return model


def test_layouts_travel_with_the_model_to_optimizer_describe_and_restore(tmp_path):
    c = ps.compile("mup", width=32, base_width=16)
    model = c.init(MoE, KEY, layouts=MOE_LAYOUTS)
    # No layouts= again: the optimizer, describe and a restore read what c.init recorded.
    opt = c.optimizer(model, learning_rate=1e-2)
    opt.init(eqx.filter(model, eqx.is_inexact_array))
    trained = eqx.tree_at(lambda m: m.module.w_in, model, replace_fn=lambda w: w + 1.0)
    rows = {r["path"]: r for r in c.describe(trained)}
    assert list(c.describe(trained)[0]) == list(COLUMNS)
    assert (rows["w_in"]["role"], rows["w_in"]["fan_in"], rows["w_in"]["fan_out"]) == (
        "hidden", 32, 64)
    assert (rows["w_out"]["fan_in"], rows["w_out"]["fan_out"]) == (64, 32)
    assert (rows["cls_token"]["role"], rows["cls_token"]["block"]) == ("input", "embedding")
    assert rows["w_in"]["init_std"] == pytest.approx(32 ** -0.5)
    assert rows["cls_token"]["multiplier"] == pytest.approx(c.multiplier("embedding"))
    path = tmp_path / "ckpt.eqx"
    eqx.tree_serialise_leaves(path, trained)
    restored = eqx.tree_deserialise_leaves(path, c.init(MoE, jax.random.key(5),
                                                        layouts=MOE_LAYOUTS))
    assert eqx.tree_equal(restored, trained)
    assert c.describe(restored) == c.describe(trained)
    ps.compile("mup", width=32, base_width=16).optimizer(restored, learning_rate=1.0)


def test_the_layout_error_of_a_stacked_array_shows_its_ndim_and_a_stacked_layout():
    c = ps.compile("mup", width=32)
    with pytest.raises(RoleInferenceError) as info:
        c.init(MoE, KEY)
    text = str(info.value)
    assert "w_in  (MoE.w_in, shape (4, 32, 64), ndim 3)" in text
    assert 'layouts={"w_in": Layout(fan_in=(0,), fan_out=(1,), ndim=2)}' in text
    # The example it gives is right: with it, the experts axis is a stacked copy.
    fixed = c.init(MoE, KEY, layouts={**MOE_LAYOUTS, "w_in": ps.Layout((0,), (1,), ndim=2)})
    assert {r["path"]: r["fan_in"] for r in c.describe(fixed)}["w_in"] == 32


def test_a_router_gets_its_own_block_and_a_buffer_stays_untrained():
    c = ps.compile(ps.parse(MOE_SPEC), width=32, base_width=16)
    model = c.init(MoE, KEY, layouts=MOE_LAYOUTS)
    rows = {r["path"]: r for r in c.describe(model)}
    assert rows["router.weight"]["block"] == "router"  # not the zero-init readout
    assert rows["head.weight"]["block"] == "readout"
    assert rows["inv_freq"]["block"] == "buffers" and rows["inv_freq"]["lr_scale"] == 0.0
    plain = ps.unwrap(model)
    assert float(jnp.std(plain.router.weight)) > 0.1
    assert not jnp.any(plain.head.weight)
    built = MoE(32, KEY)
    np.testing.assert_array_equal(plain.inv_freq, built.inv_freq)  # init keep
    trained = ps.unwrap(_train(c, model, weight_decay=0.1))
    np.testing.assert_array_equal(trained.inv_freq, built.inv_freq)  # lr 0: even no decay
    assert not jnp.allclose(trained.router.weight, plain.router.weight)


def test_without_its_own_block_the_router_falls_into_the_readout():
    c = ps.compile("mup", width=32, base_width=16)
    rows = {r["path"]: r for r in c.describe(c.init(MoE, KEY, layouts=MOE_LAYOUTS))}
    assert rows["router.weight"]["block"] == "readout"
    assert rows["inv_freq"]["block"] == "constants" and rows["inv_freq"]["lr_scale"] > 0


class _Features(eqx.Module):
    """A bare (in, out) matrix in a custom module, with the coordinate check's methods."""

    w: jax.Array
    head: eqx.nn.Linear

    def __init__(self, width, key):
        k1, k2 = jax.random.split(key)
        self.w = jax.random.normal(k1, (8, width))
        self.head = eqx.nn.Linear(width, 2, key=k2)

    def features(self, x):
        h = jnp.tanh(x @ self.w)
        return {"h": h, "out": self.head(h)}

    def feature_roles(self):
        return {"h": "input", "out": "output"}

    def __call__(self, x):
        return self.features(x)["out"]


def test_coord_check_and_sweep_forward_layouts_and_roles(tmp_path):
    # Fast: the forwarded arguments decide which error comes before any training.
    x = jax.random.normal(KEY, (4, 8))
    y = jax.random.normal(jax.random.key(1), (4, 2))
    run = dict(widths=(16, 32), seeds=(0,))
    with pytest.raises(RoleInferenceError):  # without layouts= the bare matrix is unknown
        ps.coord_check("mup", _Features, (x, y), ps.linear_loss, **run)
    with pytest.raises(ps.SpecError, match="`nope` is neither a role nor a block"):
        ps.coord_check("mup", _Features, (x, y), ps.linear_loss, **run,
                       layouts={"_Features.w": ps.Layout((0,), (1,))}, roles={"head.*": "nope"})
    from paramspec._transfer._sweep import sweep

    with pytest.raises(ps.SpecError, match="`nope` is neither a role nor a block"):
        sweep(["mup"], model="mlp", widths=[16, 32], lrs=[1e-2], seeds=[0], steps=1,
              out=tmp_path, progress=False, roles={"*": "nope"})


MODEL_FILE = '''
import equinox as eqx, jax, jax.numpy as jnp
from paramspec import Layout

LAYOUTS = {"Net.table": Layout(fan_in=(0,), fan_out=(1,))}
ROLES = {"head.bias": "vectors"}


class Net(eqx.Module):
    table: jax.Array
    head: eqx.nn.Linear

    def __call__(self, x):
        return self.head(x @ self.table)


def make(width, key):
    k1, k2 = jax.random.split(key)
    return Net(jax.random.normal(k1, (5, width)), eqx.nn.Linear(width, 3, key=k2))
'''


def test_cli_roles_prints_every_parameter(tmp_path):
    model = tmp_path / "net.py"
    model.write_text(MODEL_FILE)
    runner = CliRunner()
    result = runner.invoke(app, ["roles", "mup", "--model", f"{model}:make", "--width", "64",
                                 "--base-width", "16", "--format", "json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)["parameters"]
    c = ps.compile("mup", width=64, base_width=16)
    user = load_model(f"{model}:make")
    expected = c.describe(c.init(user.make_model, jax.random.key(0),
                                 layouts={"Net.table": ps.Layout((0,), (1,))},
                                 roles={"head.bias": "vectors"}))
    assert rows == json.loads(json.dumps(expected))
    assert {r["path"]: r["block"] for r in rows} == {
        "table": "embedding", "head.weight": "readout", "head.bias": "vectors"}
    table = runner.invoke(app, ["roles", "mup", "--model", f"{model}:make", "--width", "64"])
    assert table.exit_code == 0 and "head.bias" in table.stdout and "vectors" in table.stdout
    bad = runner.invoke(app, ["roles", "mup", "--model", f"{model}:nothing", "--width", "64"])
    assert bad.exit_code == 2 and "has no function 'nothing'" in bad.stderr
    # The third-party GPT as written: its tied head is found, and the fix is named (exit 2);
    # with a TIED companion the tie shows (a smaller GPT of the same pattern, for speed).
    gpt = f"{Path(__file__).parent / 'usermodels' / 'gpt.py'}:make_model"
    untied = runner.invoke(app, ["roles", "sp", "--model", gpt, "--width", "32"])
    assert untied.exit_code == 2 and 'TIED = {"wte.weight": "readout"}' in untied.stderr
    tied = tmp_path / "tied_gpt.py"
    tied.write_text("from tests.equinox._small_models import TiedGPT as make_model\n"
                    'TIED = {"wte.weight": "readout"}\n')
    shown = runner.invoke(app, ["roles", "sp", "--model", f"{tied}:make_model", "--width",
                                "32", "--format", "json"])
    assert shown.exit_code == 0, shown.output
    wte = next(r for r in json.loads(shown.stdout)["parameters"] if r["path"] == "wte.weight")
    assert wte["tied"]["block"] == "readout" and wte["block"] == "embedding"


@pytest.mark.parametrize("name", ["vit", "moe"])
def test_the_third_party_vit_and_moe_get_an_optimizer_with_their_layouts_given_once(name):
    import importlib

    m = importlib.import_module(f"tests.usermodels.{name}")
    c = ps.compile("mup", width=32, base_width=16)
    model = c.init(m.make_model, KEY, layouts=m.LAYOUTS, roles=m.ROLES)
    opt = c.optimizer(model, learning_rate=1e-3)  # no layouts= here (it used to raise)
    opt.init(eqx.filter(model, eqx.is_inexact_array))
    rows = c.describe(model)
    assert {r["path"]: r["role"] for r in rows} == m.EXPECTED_ROLES
