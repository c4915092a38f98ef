"""Hypothesis strategies for specs: random IR, and random *stable* specs for the theory."""

import os
from fractions import Fraction

from hypothesis import strategies as st

from paramspec._ir import ROLE_BLOCKS, ROLES, Block, Exponent, Expr, Power, Selector, Spec

# The slow properties fix their example counts for the `ci` profile (the whole suite in
# under 10 minutes on 2 cores); the `thorough` profile multiplies them.
THOROUGH_FACTOR = 10


def examples(ci: int) -> int:
    """`max_examples` of a slow property: `ci` under the ci profile, 10x under thorough."""
    thorough = os.environ.get("HYPOTHESIS_PROFILE", "ci") == "thorough"
    return ci * THOROUGH_FACTOR if thorough else ci


names = st.from_regex(r"[a-z][a-z0-9_]{0,8}(-[a-z][a-z0-9]{0,4})?", fullmatch=True)
rationals = st.builds(Fraction, st.integers(-4, 4), st.sampled_from([1, 2, 3, 4, 8]))
exponents = st.builds(Exponent, const=rationals, align=st.sampled_from(
    [Fraction(0), Fraction(0), Fraction(1), Fraction(-1), Fraction(1, 2)]))
constants = st.one_of(
    st.just(Fraction(1)),
    st.builds(Fraction, st.integers(1, 10**6), st.sampled_from([1, 2, 3, 10, 1000, 10**8])),
)
powers = st.lists(st.builds(Power, symbol=st.sampled_from(["n", "fan_in", "fan_out"]),
                            exponent=exponents), max_size=3, unique_by=lambda p: p.symbol)
values = st.builds(lambda c, p: Expr(constant=c, powers=tuple(p)), constants, powers)
autos = st.builds(lambda c: Expr(kind="auto", constant=c), constants)
docs = st.one_of(st.none(), st.text(
    st.characters(codec="utf-8", exclude_categories=["Cs", "Cc"]), max_size=30),
    st.just("two\nlines"))
selectors = st.builds(
    Selector,
    module=st.sampled_from([None, "Linear", "LayerNorm"]),
    field=st.sampled_from([None, "weight", "bias"]),
    path=st.sampled_from(["blocks.*.norm.weight", "a[0].b", "x y"]),
)


@st.composite
def blocks(draw, name):
    role = ROLE_BLOCKS.get(name) or draw(st.sampled_from(ROLES))
    return Block(
        name=name,
        role=role,
        doc=draw(docs),
        match=tuple(draw(st.lists(selectors, max_size=2))),
        multiplier=draw(st.one_of(st.none(), values)),
        init=draw(st.one_of(st.none(), values, st.just(Expr(kind="keep")))),
        lr=draw(st.one_of(st.none(), values, autos)),
        eps=draw(st.one_of(st.none(), values, autos)),
        wd=draw(st.one_of(st.none(), values, autos)),
        allow=tuple(draw(st.lists(st.just("unstable_init"), max_size=1))),
    )


@st.composite
def specs(draw):
    """Any well-formed Spec IR (not necessarily stable)."""
    block_names = draw(st.lists(st.one_of(st.sampled_from(sorted(ROLE_BLOCKS)), names),
                                unique=True, max_size=4))
    return Spec(
        name=draw(names),
        doc=draw(docs),
        extends=draw(st.one_of(st.none(), names, st.just("../x/y.pspec"))),
        optimizer=draw(st.sampled_from([None, "adam", "adam_atan2", "sgd", "adafactor"])),
        alignment=draw(st.sampled_from([None, Fraction(1), Fraction(1, 2), Fraction(3, 4)])),
        base_width=draw(st.one_of(st.none(), st.integers(1, 4096))),
        unstable=draw(st.sampled_from([None, "a sweep baseline", 'a "quoted"\nreason'])),
        blocks=tuple([draw(blocks(n)) for n in block_names]),
    )


grid = st.sampled_from([Fraction(k, 2) for k in range(-2, 3)])


@st.composite
def stable_specs(draw, lr_auto=None):
    """Random specs that are stable at init, on a half-integer grid of exponents.

    Per role, the multiplier exponent `a` is drawn and the init exponent `b` is set so
    that a+b meets the role's condition (0 / 1/2 / >= 1/2).
    """
    blocks_ = []
    for name, target in (("embedding", 0), ("hidden", Fraction(1, 2)), ("readout", None)):
        a = draw(grid)
        if target is None:
            ab = draw(st.sampled_from([Fraction(1, 2), Fraction(1)]))
        else:
            ab = Fraction(target)
        b = ab - a
        auto = draw(st.booleans()) if lr_auto is None else lr_auto
        lr = Expr(kind="auto") if auto else Expr(powers=(Power(symbol="n", exponent=Exponent(
            const=-draw(st.sampled_from([Fraction(k, 2) for k in range(0, 4)])))),))
        blocks_.append(Block(
            name=name,
            role=ROLE_BLOCKS[name],
            multiplier=Expr(powers=(Power(symbol="n", exponent=Exponent(const=-a)),)),
            init=Expr(powers=(Power(symbol="n", exponent=Exponent(const=-b)),)),
            lr=lr,
            eps=Expr(kind="auto"),
        ))
    return Spec(name="random", blocks=tuple(blocks_))
