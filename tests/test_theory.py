"""The theory core reproduces every cell of theory.md §2, §5 and §6 exactly.

The expected tables are typed in here from reference/theory.md, independently of the
implementation, as exact rationals.
"""

from fractions import Fraction as F

import pytest

import paramspec as ps
from paramspec._theory import resolve_theory

H = F(1, 2)
LAYERS = ("embedding", "hidden", "readout")

# §2: (a, b) per role.
TABLE_2 = {
    "sp": ((0, 0), (0, H), (0, H)),
    "ntk": ((0, 0), (H, 0), (H, 0)),
    "mup": ((-H, H), (0, H), (H, H)),
    "mfp": ((0, 0), (H, 0), (1, 0)),
}

# §5: learning-rate exponents c = (input, hidden, output). Starred cells: see the rule
# documented in docs/theory.md (the constraint system's value, -1/2).
TABLE_5 = {
    ("sp", "sgd", "full"): (-H, H, 1),
    ("sp", "sgd", "none"): (-H, 0, H),
    ("sp", "adam", "full"): (0, 1, 1),
    ("sp", "adam", "none"): (0, H, H),
    ("sp", "adafactor", "full"): (0, H, H),
    ("sp", "adafactor", "none"): (0, 0, 0),
    ("ntk", "sgd", "full"): (-H, -H, 0),
    ("ntk", "sgd", "none"): (-H, -1, -H),
    ("ntk", "adam", "full"): (0, H, H),
    ("ntk", "adam", "none"): (0, 0, 0),
    ("ntk", "adafactor", "full"): (0, H, H),
    ("ntk", "adafactor", "none"): (0, 0, 0),
    ("mup", "sgd", "full"): (0, 0, 0),
    ("mup", "sgd", "none"): (0, -H, 0),
    ("mup", "adam", "full"): (H, 1, H),
    ("mup", "adam", "none"): (H, H, 0),
    ("mup", "adafactor", "full"): (0, H, 0),
    ("mup", "adafactor", "none"): (0, 0, -H),  # starred
    ("mfp", "sgd", "full"): (-1, -1, -1),
    ("mfp", "sgd", "none"): (-1, -F(3, 2), -1),
    ("mfp", "adam", "full"): (0, H, 0),
    ("mfp", "adam", "none"): (0, 0, -H),  # starred
    ("mfp", "adafactor", "full"): (0, H, 0),
    ("mfp", "adafactor", "none"): (0, 0, -H),  # starred
}

# §6: gradient exponents with the Adam full-alignment c (= auto eps exponents).
TABLE_6 = {
    "sp": (H, H, 0),
    "ntk": (H, 1, H),
    "mup": (H, 1, H),
    "mfp": (1, F(3, 2), 1),
}


def _exps(name, optimizer, alignment, key):
    table = ps.compile(name, width=64, optimizer=optimizer, alignment=alignment).table()
    return tuple(F(table["layers"][layer]["exponents"][key]) for layer in LAYERS)


@pytest.mark.parametrize("name", sorted(TABLE_2))
def test_table_2_multiplier_and_init(name):
    expected = TABLE_2[name]
    assert _exps(name, "adam", "full", "a") == tuple(F(a) for a, _ in expected)
    assert _exps(name, "adam", "full", "b") == tuple(F(b) for _, b in expected)


@pytest.mark.parametrize("key", sorted(TABLE_5), ids=lambda k: "-".join(k))
def test_table_5_learning_rates(key):
    name, optimizer, alignment = key
    assert _exps(name, optimizer, alignment, "c") == tuple(F(c) for c in TABLE_5[key])


@pytest.mark.parametrize("name", sorted(TABLE_6))
def test_table_6_epsilon_tracks_gradient(name):
    assert _exps(name, "adam", "full", "e") == tuple(F(g) for g in TABLE_6[name])


def test_exponents_are_exact_fractions():
    theory = ps.compile("mfp", width=64, optimizer="sgd", alignment="none").theory
    for layer in theory.layers.values():
        for x in (layer.a, layer.b, layer.c, layer.e, layer.wd, layer.g):
            assert type(x) is F


def test_eps_auto_is_zero_without_an_epsilon():
    for optimizer in ("sgd", "adam_atan2"):
        assert _exps("mup", optimizer, "full", "e") == (0, 0, 0)


def test_adam_atan2_uses_adams_learning_rates():
    for name in TABLE_2:
        assert _exps(name, "adam_atan2", "full", "c") == _exps(name, "adam", "full", "c")


def test_wd_auto_keeps_per_step_decay_invariant():
    spec = ps.parse("spec w\nhidden {\n init fan_in^(-1/2)\n lr auto\n wd auto\n}\n")
    c = ps.compile(spec, width=1024, base_width=64)
    layer = c.table()["layers"]["hidden"]
    assert F(layer["exponents"]["wd"]) == -F(layer["exponents"]["c"])
    assert layer["values"]["lr_scale"] * layer["values"]["wd_scale"] == pytest.approx(1.0)


def test_intermediate_alignment_interpolates():
    # alpha = u = A: the hidden Adam exponent of SP is A (1 at full, 1/2 at none).
    assert _exps("sp", "adam", "3/4", "c") == (0, F(3, 4), F(3, 4))


def _brute_force_sgd(a, b, alpha):
    """Minimise sum(c) over a grid, subject to every r >= 0 (theory.md §4, SGD)."""
    grid = [F(k, 2) for k in range(-8, 9)]
    best = None
    for c_in in grid:
        for c_h in grid:
            for c_out in grid:
                m = min(a[2] + b[2], 2 * a[2] + c_out)
                r1 = a[0] + (a[0] + m) + c_in
                x = a[1] + (a[1] + m) + c_h
                r_h = min(x - alpha, x + r1 - alpha, r1)
                y = 2 * a[2] + c_out
                r_o = min(a[2] + b[2] + r_h - H, y - alpha, y + r_h - alpha)
                if min(r1, r_h, r_o) >= 0:
                    total = c_in + c_h + c_out
                    if best is None or total < best[0]:
                        best = (total, (c_in, c_h, c_out))
    return best


@pytest.mark.parametrize("name", sorted(TABLE_2))
@pytest.mark.parametrize("alignment", [F(1), H])
def test_sgd_solution_minimises_the_summed_exponents(name, alignment):
    a = tuple(F(x) for x, _ in TABLE_2[name])
    b = tuple(F(y) for _, y in TABLE_2[name])
    total, _ = _brute_force_sgd(a, b, alignment)
    c = _exps(name, "sgd", str(alignment), "c")
    assert sum(c) == total


def test_theory_rejects_alignment_outside_range():
    spec = ps.load("mup")
    with pytest.raises(ps.SpecError, match=r"outside \[1/2, 1\]"):
        resolve_theory(spec, "adam", F(2))


def test_verdicts_of_builtins():
    for name in ("sp", "ntk", "mup", "mfp", "sp-perlayer"):
        theory = ps.compile(name, width=64).theory
        assert theory.stable and theory.feature_learning, name
    for name in ("sp-global", "sp-embed-lr"):
        theory = ps.compile(name, width=64, optimizer="adam", alignment="full").theory
        assert theory.stable_init and not theory.stable_training, name
