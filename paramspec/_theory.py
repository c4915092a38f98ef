"""The width-scaling theory (reference/theory.md §1-§6), in exact rational arithmetic.

Input: a resolved `Spec` (no `extends`), an optimizer and an alignment A in [1/2, 1].
Output: per block, the exponents in the `n^(-x)` convention

    a  multiplier       b  init std       c  learning rate
    e  Adam epsilon     wd weight decay   g  gradient     r  activation update

with `fan_in`/`fan_out` folded in by role and every `auto` resolved:

- `lr auto`: the largest stable learning rate of the constraint system of §4, i.e. the
  solution of "minimise sum(c) subject to every r >= 0" (solved in closed form below).
- `eps auto`: the gradient exponent g (§6), so that eps tracks sqrt(v) at every width;
  0 for optimizers without an epsilon (sgd, adam_atan2).
- `wd auto`: -c, so that the per-step decay lr * lr_scale * wd * wd_scale is
  width-invariant (decoupled, PyTorch-AdamW convention: decay scales with the layer's
  learning rate).

Alignment A sets the exponents of the three sums of §4: alpha = u = A, omega = 1/2
(A = 1 "full", A = 1/2 "none").

Nothing here imports JAX.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction

from ._errors import SpecError
from ._ir import Block, Expr, Spec
from ._muon_rule import MUON

__all__ = [
    "FANS",
    "LayerTheory",
    "Theory",
    "entry_step",
    "power",
    "resolve_theory",
    "stability_condition",
]

HALF = Fraction(1, 2)
ZERO = Fraction(0)

# Which dimensions grow with width, per role: (fan_in grows, fan_out grows).
FANS: dict[str, tuple[bool, bool]] = {
    "input": (False, True),
    "hidden": (True, True),
    "output": (True, False),
    "vector": (False, True),
    "constant": (False, False),
}
INPUT_LIKE = ("input", "vector")
OPTIMIZERS_WITH_EPS = ("adam", "adafactor", "muon")


def power(expr: Expr | None, role: str, alignment: Fraction) -> Fraction:
    """The exponent p of `expr ∝ n^p` once fan_in/fan_out are folded in for `role`."""
    if expr is None or expr.kind != "value":
        return ZERO
    grows_in, grows_out = FANS[role]
    p = expr.exponent_of("n").at(alignment)
    if grows_in:
        p += expr.exponent_of("fan_in").at(alignment)
    if grows_out:
        p += expr.exponent_of("fan_out").at(alignment)
    return p


def stability_condition(role: str, ab: Fraction) -> str | None:
    """None when `a+b` is stable at init for `role` (theory.md §1), else the condition."""
    if role in INPUT_LIKE and ab != 0:
        return "a+b = 0"
    if role == "hidden" and ab != HALF:
        return "a+b = 1/2"
    if role == "output" and ab < HALF:
        return "a+b >= 1/2"
    return None


@dataclass
class LayerTheory:
    """Everything the theory says about one block (exponents in the n^(-x) convention)."""

    name: str
    role: str
    a: Fraction
    b: Fraction
    c: Fraction = ZERO
    e: Fraction = ZERO
    wd: Fraction = ZERO
    g: Fraction = ZERO  # gradient exponent of the stored weight
    r: Fraction | None = None  # activation-update exponent (None for constant role)
    zero_init: bool = False
    auto: tuple[str, ...] = ()
    steps: list[str] = field(default_factory=list)  # the derivation, in words

    @property
    def ab(self) -> Fraction:
        return self.a + self.b

    @property
    def stable_init(self) -> bool:
        return self.zero_init or stability_condition(self.role, self.ab) is None


@dataclass
class Theory:
    optimizer: str
    alignment: Fraction
    layers: dict[str, LayerTheory]
    r_last_hidden: Fraction | None

    @property
    def stable_init(self) -> bool:
        return all(layer.stable_init for layer in self.layers.values())

    @property
    def stable_training(self) -> bool:
        return all(layer.r is None or layer.r >= 0 for layer in self.layers.values())

    @property
    def stable(self) -> bool:
        return self.stable_init and self.stable_training

    @property
    def feature_learning(self) -> bool:
        return self.stable and self.r_last_hidden == 0


def _q(x: Fraction) -> str:
    return str(x)


def resolve_theory(spec: Spec, optimizer: str, alignment: Fraction) -> Theory:
    """Fold, solve and derive every exponent of a resolved spec (no `extends`)."""
    if spec.extends is not None:
        raise SpecError(f"spec `{spec.name}` still extends `{spec.extends}`",
                        hint="resolve it first with paramspec.load(...)")
    if not HALF <= alignment <= 1:
        raise SpecError(f"alignment {alignment} is outside [1/2, 1]",
                        hint="use full (1), none (1/2) or a rational in between")
    alpha = u = alignment
    omega = HALF
    layers: dict[str, LayerTheory] = {}
    for block in spec.blocks:
        layers[block.name] = _fold(block, alignment)
    outputs = [layers[b.name] for b in spec.blocks if b.role == "output"]
    others = [layers[b.name] for b in spec.blocks if b.role in (*INPUT_LIKE, "hidden")]
    auto_lr = {b.name for b in spec.blocks if b.lr is not None and b.lr.kind == "auto"}

    # Readout unstable at init needs r_L >= k > 0 (the a+b+r_L-omega >= 0 term).
    k = max([ZERO] + [omega - o.ab for o in outputs if not o.zero_init])
    if k > 0:
        for layer in others:
            layer.steps.append(f"the readout has a+b < 1/2, so every r before it must be "
                               f">= {_q(k)}")

    # -- learning rates: explicit first, then the closed-form optimum for `auto`
    for block in spec.blocks:
        layer = layers[block.name]
        if block.name not in auto_lr:
            layer.c = -power(block.lr, layer.role, alignment)
    # per-entry update exponent of w for each optimizer, relative to c ("c tilde")
    if optimizer == "sgd":
        for o in outputs:
            if o.name in auto_lr:
                lower = alpha - 2 * o.a
                o.steps.append(f"SGD: the readout's update term 2a+c-alpha >= 0 gives "
                               f"c >= alpha - 2a = {_q(lower)}")
                if any(x.name in auto_lr for x in others):
                    knee = o.b - o.a
                    if knee > lower:
                        o.steps.append(
                            f"raising c up to b-a = {_q(knee)} lowers every earlier layer's "
                            "gradient exponent one for one, so the summed exponents are "
                            f"smallest at c = max({_q(lower)}, {_q(knee)})")
                    lower = max(lower, knee)
                o.c = lower
        m = _readout_factor(outputs, optimizer)
        for layer in others:
            if layer.name in auto_lr:
                adam = _adam_lower(layer, alpha, k)
                layer.c = adam - (layer.a + m)
                layer.steps.append(
                    f"SGD: the update is lr times the gradient, whose exponent is "
                    f"g = a + {_q(m)} = {_q(layer.a + m)}; so c = {_q(adam)} - g = {_q(layer.c)}")
    else:
        for layer in [*others, *outputs]:
            if layer.name not in auto_lr:
                continue
            lower = _adam_lower(layer, alpha, k)
            if MUON.applies(optimizer, layer.role):
                layer.steps[-1:] = [MUON.lr_words(layer.a, k)]
                lower = MUON.entry_step(lower, ZERO) - alpha  # alpha - a + k -> k - a
            if optimizer == "adafactor":
                layer.steps.append(f"Adafactor scales the update by the parameter's RMS "
                                   f"(n^-b, b = {_q(layer.b)}), so c = {_q(lower)} - b")
                lower -= layer.b
            layer.c = lower
    for block in spec.blocks:  # constant role: no width factors
        layer = layers[block.name]
        if layer.role == "constant" and block.name in auto_lr:
            layer.c = ZERO
            layer.steps.append("constant role: nothing grows with width, so c = 0")

    # -- gradients (§6) and the update exponents r (§4)
    m = _readout_factor(outputs, optimizer)
    for layer in layers.values():
        # the readout's gradient and a constant-role one carry no width factor of their own
        layer.g = layer.a if layer.role in ("output", "constant") else layer.a + m
    _update_exponents(spec, layers, optimizer, alpha, u, omega)

    # -- epsilon and weight decay
    for block in spec.blocks:
        layer = layers[block.name]
        if block.eps is not None and block.eps.kind == "auto":
            if MUON.applies(optimizer, layer.role):
                layer.e = MUON.eps_exponent(layer.g)
                layer.steps.append(f"eps auto: Muon's eps tracks ||G||_F ~ n^-(g-1), "
                                   f"e = g - 1 = {_q(layer.e)}")
            elif optimizer in OPTIMIZERS_WITH_EPS:
                layer.e = layer.g
                layer.steps.append(f"eps auto: eps tracks the gradient, e = g = {_q(layer.g)}")
            else:
                layer.e = ZERO
                layer.steps.append(f"eps auto: {optimizer} has no epsilon, e = 0")
        else:
            layer.e = -power(block.eps, layer.role, alignment)
        if block.wd is not None and block.wd.kind == "auto":
            layer.wd = -layer.c
            layer.steps.append(f"wd auto: wd = -c = {_q(-layer.c)} keeps lr * wd per step "
                               "width-invariant")
        else:
            layer.wd = -power(block.wd, layer.role, alignment)
    hidden_r = [x.r for x in layers.values() if x.role == "hidden" and x.r is not None]
    input_r = [x.r for x in layers.values() if x.role in INPUT_LIKE and x.r is not None]
    r_last = min(hidden_r) if hidden_r else (min(input_r) if input_r else None)
    return Theory(optimizer, alignment, layers, r_last)


def _fold(block: Block, alignment: Fraction) -> LayerTheory:
    role = block.role
    assert role is not None, "resolved specs always have roles"
    a = -power(block.multiplier, role, alignment)
    b = -power(block.init, role, alignment)
    zero = block.init is not None and block.init.kind == "value" and block.init.constant == 0
    auto = tuple(q for q in ("lr", "eps", "wd") if getattr(block, q) is not None
                 and getattr(block, q).kind == "auto")
    layer = LayerTheory(block.name, role, a, b, zero_init=zero, auto=auto)
    layer.steps.append(f"role {role}: multiplier n^(-a), a = {_q(a)}; init std n^(-b), "
                       f"b = {_q(b)}; a+b = {_q(a + b)}")
    return layer


def _adam_lower(layer: LayerTheory, alpha: Fraction, k: Fraction) -> Fraction:
    """Smallest c with r >= 0 when the per-entry update is n^(-c) (Adam's system)."""
    if layer.role in INPUT_LIKE:
        layer.steps.append(f"r = a + c >= {_q(k)} gives c >= {_q(k - layer.a)}")
        return k - layer.a
    if layer.role == "hidden":
        layer.steps.append(f"the hidden term a + c - alpha >= {_q(k)} (alpha = {_q(alpha)}) "
                           f"gives c >= {_q(alpha - layer.a + k)}")
        return alpha - layer.a + k
    if layer.role == "output":
        layer.steps.append(f"the readout term a + c - alpha >= 0 (alpha = {_q(alpha)}) gives "
                           f"c >= {_q(alpha - layer.a)}")
        return alpha - layer.a
    return ZERO


def entry_step(layer: LayerTheory, optimizer: str, alignment: Fraction = Fraction(1)) -> Fraction:
    """The per-entry update exponent of the stored weight ("c~" of §4): n^(-c~).

    Adam and Adam-atan2 normalise the gradient (c~ = c); Adafactor also scales by the
    parameter's RMS (c~ = b + c); SGD multiplies the gradient (c~ = c + g, and for the
    readout, whose gradient exponent is a, c~ = c + a); Muon's orthogonalised hidden
    update has c~ = c + alignment (paramspec._muon_rule), its other blocks Adam's.
    """
    if MUON.applies(optimizer, layer.role):
        return MUON.entry_step(layer.c, alignment)
    if optimizer == "sgd":
        return layer.c + (layer.a if layer.role == "output" else layer.g)
    if optimizer == "adafactor":
        return layer.b + layer.c
    return layer.c


def _readout_factor(outputs: list[LayerTheory], optimizer: str) -> Fraction:
    """Exponent of the readout's effective weight entries: a_o + min(b_o, c_o tilde).

    The backward signal into every earlier layer goes through the readout, so a
    gradient's exponent is its own `a` plus this (§6). With several readouts the
    largest signal (smallest exponent) wins; with none, 0.
    """
    values = []
    for o in outputs:
        step = entry_step(o, optimizer)
        values.append(o.a + (step if o.zero_init else min(o.b, step)))
    return min(values) if values else ZERO


def _update_exponents(spec: Spec, layers: dict[str, LayerTheory], optimizer: str,
                      alpha: Fraction, u: Fraction, omega: Fraction) -> None:
    chain: list[Fraction] = []
    for block in spec.blocks:
        layer = layers[block.name]
        if layer.role in INPUT_LIKE:
            layer.r = layer.a + entry_step(layer, optimizer)
            chain.append(layer.r)
    r_prev = min(chain) if chain else ZERO
    hidden: list[Fraction] = []
    for block in spec.blocks:  # hidden blocks form one chain, in written order
        layer = layers[block.name]
        if layer.role == "hidden":
            x = layer.a + entry_step(layer, optimizer, alpha)
            layer.r = min(x - alpha, x + r_prev - u, HALF + r_prev - omega)
            hidden.append(layer.r)
            r_prev = min(r_prev, layer.r)
    for block in spec.blocks:
        layer = layers[block.name]
        if layer.role == "output":
            x = layer.a + entry_step(layer, optimizer)
            terms = [x - alpha, x + r_prev - u]
            if not layer.zero_init:
                terms.append(layer.ab + r_prev - omega)
            layer.r = min(terms)
