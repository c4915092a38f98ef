"""Assigning blocks to parameters: overrides, match selectors, role defaults, errors."""

from dataclasses import dataclass

import pytest

import paramspec as ps
from paramspec._select import assign_blocks


@dataclass(frozen=True)
class Leaf:
    path: str
    module_type: str | None
    field: str | None
    role: str | None


LEAVES = [
    Leaf("embed.weight", "Embedding", "weight", "input"),
    Leaf("pos.weight", "Embedding", "weight", "input"),
    Leaf("blocks[0].attn.q.weight", "Linear", "weight", "hidden"),
    Leaf("blocks[0].norm.weight", "LayerNorm", "weight", "vector"),
    Leaf("unembed.weight", "Linear", "weight", "output"),
]


def spec(text):
    return ps.parse("spec t\n" + text)


def test_role_defaults_cover_a_plain_spec():
    s = ps.load("mup")
    got = assign_blocks(s.blocks, LEAVES[:1] + LEAVES[2:])
    assert got == {"embed.weight": "embedding", "blocks[0].attn.q.weight": "hidden",
                   "blocks[0].norm.weight": "vectors", "unembed.weight": "readout"}


def test_match_lines_take_precedence_over_roles():
    s = spec("embedding {\n}\nhidden {\n}\nreadout {\n}\nvectors {\n role vector\n}\n"
             'pos {\n role input\n match path="pos.*"\n}\n')
    got = assign_blocks(s.blocks, LEAVES)
    assert got["pos.weight"] == "pos" and got["embed.weight"] == "embedding"


def test_uncovered_parameters_are_listed():
    s = spec("embedding {\n}\nhidden {\n}\nreadout {\n}\n")
    with pytest.raises(ps.SpecError, match=r"1 parameter\(s\) are covered by no block") as e:
        assign_blocks(s.blocks, LEAVES)
    assert "blocks[0].norm.weight (LayerNorm.weight, role vector)" in str(e.value)


def test_two_rules_for_one_parameter_is_an_error():
    s = spec("embedding {\n}\nhidden {\n}\nreadout {\n}\nvectors {\n role vector\n}\n"
             "a {\n role input\n match module=Embedding\n}\n"
             'b {\n role input\n match path="pos.*"\n}\n')
    with pytest.raises(ps.SpecError, match="more than one rule") as e:
        assign_blocks(s.blocks, LEAVES)
    assert "pos.weight: blocks a, b" in str(e.value)


def test_roles_override_by_role_and_by_block():
    s = ps.load("mup")
    leaves = [Leaf("w", None, None, None), Leaf("gain", "Custom", "g", None)]
    got = assign_blocks(s.blocks, leaves, roles={"w": "readout", "module=Custom, field=g":
                                                 "vectors"})
    assert got == {"w": "readout", "gain": "vectors"}


@pytest.mark.parametrize(("roles", "match"), [
    ({"w": "nonsense"}, "neither a role nor a block"),
    ({"modul=Linear": "hidden"}, "cannot read the roles= selector"),
])
def test_bad_overrides(roles, match):
    with pytest.raises(ps.SpecError, match=match):
        assign_blocks(ps.load("mup").blocks, [Leaf("w", None, None, None)], roles=roles)


def test_agreeing_roles_entries_are_not_a_conflict():
    # Two selectors that both reach `head.weight` and name the same block (directly, or
    # through the role whose one block it is) agree: no error.
    s = ps.load("mup")
    leaves = [Leaf("head.weight", "Linear", "weight", None), Leaf("w", None, None, None)]
    roles = {"head.*": "readout", "module=Linear": "output", "w": "hidden"}
    assert assign_blocks(s.blocks, leaves, roles=roles) == {"head.weight": "readout",
                                                            "w": "hidden"}


def test_disagreeing_roles_entries_list_the_path_and_the_entries():
    s = ps.load("mup")
    leaves = [Leaf("head.weight", "Linear", "weight", None)]
    with pytest.raises(ps.SpecError, match="more than one rule") as e:
        assign_blocks(s.blocks, leaves, roles={"head.*": "readout", "module=Linear": "hidden"})
    assert "head.weight: roles= entries 'head.*' -> 'readout', 'module=Linear' -> 'hidden'" in str(
        e.value)
