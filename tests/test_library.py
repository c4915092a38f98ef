"""Built-in specs, loading by name or path, `extends` merging and cycles, validation."""

from fractions import Fraction as F
from pathlib import Path

import pytest

import paramspec as ps

EXTENDS = Path(__file__).parent / "golden" / "extends"


def test_builtin_names():
    assert set(ps.builtin_names()) >= {"sp", "ntk", "mup", "mfp", "sp-global", "sp-perlayer",
                                       "sp-embed-lr"}


@pytest.mark.parametrize("name", ["sp", "ntk", "mup", "mfp", "sp-global", "sp-perlayer",
                                  "sp-embed-lr"])
def test_builtins_load_and_cite_their_source(name):
    spec = ps.load(name)
    assert spec.extends is None and spec.doc
    assert "et al" in spec.doc or "Kalra" in spec.doc


def test_sweep_baselines_say_they_are_unstable_at_fixed_lr():
    for name in ("sp-global", "sp-embed-lr"):
        assert "unstable" in ps.load(name).doc


def test_load_by_path_equals_by_name():
    path = Path(__file__).parents[1] / "specs" / "mup.pspec"
    assert ps.load(path) == ps.load("mup") == ps.load(str(path))


def test_extends_merges_quantities_and_adds_blocks():
    child = ps.load(EXTENDS / "child.pspec")
    mup = ps.load("mup")
    assert child.name == "child" and child.optimizer == "adam"
    assert [b.name for b in child.blocks] == ["embedding", "hidden", "readout", "vectors",
                                            "constants", "norms"]
    hidden = child.block("hidden")
    assert hidden.lr.kind == "auto" and hidden.lr.constant == 2
    assert hidden.init == mup.block("hidden").init  # inherited
    assert child.block("norms").role == "vector"


def test_sp_embed_lr_is_sp_global_with_embedding_lr_times_n():
    c = ps.compile("sp-embed-lr", width=1024, base_width=64)
    g = ps.compile("sp-global", width=1024, base_width=64)
    assert c.table()["layers"]["embedding"]["values"]["lr_scale"] == pytest.approx(16.0)
    for layer in ("hidden", "readout"):
        assert c.table()["layers"][layer] == g.table()["layers"][layer]


def test_extends_chain_of_builtins_resolves_settings():
    spec = ps.load("sp-perlayer")
    assert spec.optimizer == "adam" and spec.alignment == 1
    c = ps.compile(spec, width=64)
    assert [c.theory.layers[n].c for n in ("embedding", "hidden", "readout")] == [0, 1, 1]


@pytest.mark.parametrize("name", ["a", "self"])
def test_extends_cycles_are_errors(name):
    with pytest.raises(ps.SpecError, match="`extends` forms a cycle"):
        ps.load(EXTENDS / f"{name}.pspec")


def test_extends_in_parsed_text_resolves_builtins():
    spec = ps.parse("spec mine\nextends mup\nreadout {\n    init 0\n}\n")
    c = ps.compile(spec, width=256)
    assert c.table()["layers"]["readout"]["values"]["init_std"] == 0.0
    assert c.table()["layers"]["hidden"]["exponents"]["c"] == "1"


def test_extending_cannot_change_a_role(tmp_path):
    (tmp_path / "p.pspec").write_text("spec p\nnorms {\n    role vector\n}\n")
    (tmp_path / "c.pspec").write_text('spec c\nextends "p.pspec"\nnorms {\n    role hidden\n}\n')
    with pytest.raises(ps.SpecError, match="cannot change a block's role"):
        ps.load(tmp_path / "c.pspec")


def test_allow_unstable_init_waives_the_check():
    text = "spec u\nhidden {\n    init 1\n    lr auto\n    allow unstable_init\n}\n"
    c = ps.compile(ps.parse(text), width=64)  # deliberate: no UnstableSpecWarning either
    assert not c.theory.stable_init


def test_alignment_dependent_init_is_checked_at_both_ends():
    text = "spec u\nreadout {\n    init n^(1/2 - align)\n}\n"
    with pytest.raises(ps.SpecError, match="at alignment 1/2"):
        ps.compile(ps.parse(text), width=64)


def test_compile_defaults_and_overrides():
    c = ps.compile("mup", width=64)
    assert (c.optimizer_name, c.alignment, c.base_width) == ("adam", F(1), 1)
    c = ps.compile("mup", width=64, base_width=16, alignment=0.75, optimizer="sgd")
    assert (c.optimizer_name, c.alignment, c.base_width, c.n) == ("sgd", F(3, 4), 16, 4.0)


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"width": -1}, "width must be a positive integer"),
    ({"width": 64, "base_width": 0}, "base_width must be a positive integer"),
    ({"width": 64, "optimizer": "adamw"}, "unknown optimizer"),
    ({"width": 64, "alignment": "0.4"}, r"outside \[1/2, 1\]"),
    ({"width": 64.0}, "width must be a positive integer"),
])
def test_compile_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ps.SpecError, match=match):
        ps.compile("mup", **kwargs)


def test_values_use_actual_fans():
    c = ps.compile("mup", width=256, base_width=64)
    assert c.value("hidden", "init", fan_in=1024) == pytest.approx(1024 ** -0.5)
    assert c.multiplier("readout") == pytest.approx(0.5)
    with pytest.raises(ps.SpecError, match="has no block `nope`"):
        c.value("nope", "init")


def test_a_file_is_parsed_once_per_content(tmp_path, monkeypatch):
    # A sweep loads its specs many times: the parse is kept by the file's bytes, and an
    # edited file is parsed again.
    from paramspec import _library
    from paramspec._library import load
    from paramspec._resources import specs_dir

    parsed = []
    real = _library.parse
    monkeypatch.setattr(_library, "parse", lambda data, file: parsed.append(file) or
                        real(data, file=file))
    _library._parsed.cache_clear()
    path = tmp_path / "mine.pspec"
    path.write_text((specs_dir() / "mup.pspec").read_text())
    first, again = load(str(path)), load(str(path))
    assert again is first and parsed == [str(path)]
    path.write_text(path.read_text().replace("optimizer adam", "optimizer sgd"))
    edited = load(str(path))
    assert parsed == [str(path), str(path)] and (first.optimizer, edited.optimizer) == (
        "adam", "sgd")
