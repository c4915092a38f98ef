"""`explain`: the derivation of one layer's exponents, step by step, in plain words.

The numbers come from the theory core (`resolve_theory`); the words are built here from
the exponents and the §4 terms (`update_terms`), so the text always matches the
numbers. The solver's own notes (`LayerTheory.steps`) are quoted where they explain a
choice the words here do not (Adafactor's `b`, SGD's readout knee).
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

from .._compile import compile_quiet as compile_spec
from .._ir import Expr, Spec
from .._muon_rule import MUON
from .._render import render_expr
from .._theory import (
    INPUT_LIKE,
    LayerTheory,
    Theory,
    entry_step,
    resolve_theory,
    stability_condition,
)
from ._check import HALF, _all_auto, alignment_label, as_spec, update_terms

__all__ = ["explain", "npow"]

ROLE_WORDS = {
    "input": "input (embedding): fan-in fixed, fan-out ~ n",
    "hidden": "hidden: fan-in and fan-out ~ n",
    "output": "output (readout): fan-in ~ n, fan-out fixed",
    "vector": "vector (bias, norm gain): one axis ~ n, behaves like an input",
    "constant": "constant: nothing grows with width",
}

INIT_NEEDS = {
    "input": "an input layer's output is a sum over a fixed fan-in, so its entries are "
    "Theta(1) exactly when a+b = 0",
    "vector": "a vector parameter acts entrywise, so it is Theta(1) exactly when a+b = 0",
    "hidden": "a hidden layer sums ~n independent terms at init, ~ n^(1/2) n^(-(a+b)), "
    "so its output is Theta(1) exactly when a+b = 1/2",
    "output": "the readout sums ~n independent terms at init, ~ n^(1/2 - (a+b)), which "
    "must not grow: a+b >= 1/2 (a+b > 1/2 makes the initial output vanish)",
}


def npow(x: Fraction) -> str:
    """Text of `n^(-x)`: `n^(-1/2)`, `n`, `n^(1/2)`, `1` for x = 0."""
    if x == 0:
        return "1"
    if x == -1:
        return "n"
    return f"n^({-x})"


def _written(expr: Expr | None) -> str:
    return "1 (unset)" if expr is None else render_expr(expr)


def _readout_factor(theory: Theory) -> tuple[Fraction, list[str]]:
    """The backward factor of the readout(s), as in the theory core, with its words."""
    words, values = [], []
    for o in theory.layers.values():
        if o.role != "output":
            continue
        step = entry_step(o, theory.optimizer)
        size = o.a + (step if o.zero_init else min(o.b, step))
        values.append(size)
        init = (
            "zero init, so only its update counts"
            if o.zero_init
            else (f"min(b, c~) = min({o.b}, {step})")
        )
        words.append(f"`{o.name}`: a = {o.a}, {init}: entries ~ {npow(size)}")
    return (min(values) if values else Fraction(0)), words


def explain(
    spec: Spec | str | Path,
    layer: str,
    *,
    optimizer: str | None = None,
    alignment: str | float | Fraction | None = None,
    width: int | None = None,
    base_width: int | None = None,
    depth: int | None = None,
    base_depth: int | None = None,
    depth_alpha: str | float | Fraction | None = None,
) -> str:
    """How every exponent of `layer` follows from the spec, for one optimizer and alignment.

    Unset `optimizer`/`alignment` come from the spec, then adam and full (as `compile`).
    With `width`, the numbers at that width are appended. When the spec uses depth or
    `depth`/`base_depth`/`depth_alpha` is given, a depth step follows (`_explainextra`);
    `layer="attention"` explains the logit scale and `layer="residual"` the residual
    branch multiplier (unless the spec has blocks of those names).

    Example:
        >>> from paramspec._analysis._explain import explain
        >>> "c = 1" in explain("mup", "hidden")
        True
    """
    from ._depthcheck import depth_wanted
    from ._explainextra import explain_attention, explain_depth, explain_residual

    resolved = as_spec(spec)
    compiled = compile_spec(
        resolved, width=width or 1, base_width=base_width, optimizer=optimizer, alignment=alignment,
        depth=depth, base_depth=base_depth, depth_alpha=depth_alpha,
    )
    deep = depth_wanted(resolved, depth, base_depth, depth_alpha)
    if layer in ("attention", "residual") and layer not in [b.name for b in resolved.blocks]:
        out: list[str] = [
            f"{resolved.name}, {layer}, under {compiled.optimizer_name} with alignment "
            f"{alignment_label(compiled.alignment)}", ""]
        number = [0]

        def step(text: str) -> None:
            number[0] += 1
            out.append(f"{number[0]}. {text}")

        (explain_attention if layer == "attention" else explain_residual)(
            compiled, out.append, step)
        return "\n".join(out) + "\n"
    block = compiled.block(layer)
    theory = compiled.theory
    t = theory.layers[layer]
    opt, align = theory.optimizer, theory.alignment
    lines: list[str] = []
    say = lines.append
    count = [0]

    def head(text: str) -> None:
        count[0] += 1
        say(f"{count[0]}. {text}")

    say(
        f"{resolved.name}, layer `{layer}`, under {opt} with alignment "
        f"{alignment_label(align)} (alpha = u = {align}, omega = 1/2)"
    )
    say(
        "Exponents use the n^(-x) convention: a quantity ~ n^(-x) is reported as x; "
        "n = width / base_width."
    )
    say("")
    head(f"Role: {ROLE_WORDS[t.role]}. fan_in and fan_out are folded in by role.")
    say(f"   multiplier  {_written(block.multiplier):<16} -> ~ {npow(t.a)}, a = {t.a}")
    if block.init is not None and block.init.kind == "keep":
        say(f"   init        {'keep':<16} -> the module's own values, no width factor: b = {t.b}")
    else:
        say(f"   init        {_written(block.init):<16} -> std ~ {npow(t.b)}, b = {t.b}")
    if t.role == "constant":
        say(
            "   A constant-role parameter has no width factors: the theory sets c = 0 "
            "for `auto` and predicts no r."
        )
    else:
        need = stability_condition(t.role, t.ab)
        verdict = (
            "zero init: nothing to be unstable"
            if t.zero_init
            else "stable at init"
            if need is None
            else f"UNSTABLE at init (needs {need})"
        )
        say(f"   a+b = {t.ab}: {INIT_NEEDS[t.role]} -> {verdict}.")
    say("")

    # ---------------------------------------------------------------- gradient
    m, readout_words = _readout_factor(theory)
    head("Gradient of the stored weight w (theory.md §6): ~ n^(-g).")
    if t.role == "output":
        say(
            f"   The readout's input is Theta(1) and the loss gradient on the output is Theta(1); "
            f"dW = n^(-a) dw, so g = a = {t.g}."
        )
    elif t.role == "constant":
        say(f"   A constant-role parameter carries no width factor of its own: g = {t.g}.")
    else:
        say(
            "   The backward signal reaches this layer through the readout, whose effective "
            "entries set its size:"
        )
        for w in readout_words:
            say(f"     {w}")
        say(f"   g = a + {m} = {t.a} + {m} = {t.g}.")
    say("")

    # ---------------------------------------------------------------- update
    terms = update_terms(resolved, theory)[layer]
    head("Learning rate: lr ~ n^(-c).")
    lr_auto = block.lr is not None and block.lr.kind == "auto"
    if lr_auto:
        say(
            f"   lr is `auto`: the theory takes the largest learning rate (smallest c) that "
            f"keeps every layer stable (r >= 0) -> c = {t.c}."
        )
    else:
        say(f"   lr is written `{_written(block.lr)}` -> c = {t.c}.")
    if terms is not None:
        say(
            f"   One entry of w's update is ~ n^(-c~) with c~ = {terms.step_formula} "
            f"= {terms.step};"
        )
        say(
            f"   the effective weight W = n^(-a) w moves by ~ n^(-(a + c~)) = "
            f"{npow(t.a + terms.step)} per entry."
        )
        _lr_bound(say, theory, t, terms.step)
        if not lr_auto:
            prescribed = resolve_theory(_all_auto(resolved), opt, align).layers[layer].c
            rel = (
                "the same"
                if prescribed == t.c
                else f"{'larger' if t.c < prescribed else 'smaller'} than the theory's largest "
                f"stable learning rate by {npow(t.c - prescribed)}"
            )
            say(
                f"   With every lr `auto` the theory would pick c = {prescribed}; this lr is {rel}."
            )
    say("")

    # ---------------------------------------------------------------- r
    if terms is not None:
        head("Output change of the layer: dz ~ n^(-r), r = the smallest of (theory.md §4):")
        if terms.r_prev is not None:
            say(f"   (r_prev = {terms.r_prev}: the change arriving from the layers before)")
        for term in terms.terms:
            say(f"     {term.name:<6} {term.formula:<44} = {term.value}")
        r = t.r if t.r is not None else terms.r
        if r < 0:
            what = f"UNSTABLE in training: the change grows like n^({-r})"
        elif r == 0:
            what = (
                "maximal update: the output moves Theta(1)"
                if t.role == "output"
                else "feature learning: the features move Theta(1)"
            )
        else:
            what = f"kernel/lazy: the change vanishes like n^(-{r})"
        say(f"   r = {r} -> {what}.")
        say("")

    # ---------------------------------------------------------------- eps, wd
    head("Epsilon: eps ~ n^(-e).")
    eps_auto = block.eps is not None and block.eps.kind == "auto"
    if opt in ("sgd", "adam_atan2"):
        say(f"   {opt} has no epsilon: e = {t.e} is unused.")
    elif MUON.applies(opt, t.role):
        say(f"   Muon's eps guards m / (||m||_F + eps); ||G||_F ~ n^-(g-1) = "
            f"{npow(MUON.eps_exponent(t.g))}; e = {t.e}"
            + (" (auto: e = g - 1, eps tracks the norm)." if eps_auto else "."))
    elif eps_auto:
        say(
            f"   eps is `auto`: e = g = {t.e}, so eps shrinks with the gradient and "
            "eps / sqrt(v) is the same at every width (no gradient underflow)."
        )
    else:
        gap = t.g - t.e
        say(f"   eps is written `{_written(block.eps)}` -> e = {t.e}; the gradient has g = {t.g}.")
        if gap > 0:
            say(
                f"   eps / sqrt(v) grows like n^({gap}): at large width eps swamps sqrt(v) "
                "and the step collapses to m / eps (gradient underflow). `eps auto` fixes it."
            )
        else:
            say("   eps / sqrt(v) does not grow with width.")
    head(
        "Weight decay: decoupled, per step w -= lr * wd * w, so the decay per step is "
        "~ n^(-(c + wd))."
    )
    if block.wd is not None and block.wd.kind == "auto":
        say(f"   wd is `auto`: wd = -c = {t.wd}, so lr * wd is the same at every width.")
    else:
        say(
            f"   wd is written `{_written(block.wd)}` -> wd = {t.wd}; "
            f"lr * wd ~ {npow(t.c + t.wd)} (it matters only when the optimizer's weight decay "
            "is > 0)."
        )
    if deep:
        say("")
        explain_depth(compiled, layer, say, head)
    if width is not None:
        say("")
        head(
            f"Numbers at width {compiled.width} (base width {compiled.base_width}, "
            f"n = {compiled.n:g}):"
        )
        for quantity, label in (
            ("multiplier", "multiplier"),
            ("init", "init std"),
            ("lr", "lr factor"),
            ("eps", "eps factor"),
            ("wd", "wd factor"),
        ):
            value = compiled.value(layer, quantity)
            say(f"   {label:<11} {'keep' if value is None else f'{value:.6g}'}")
    return "\n".join(lines) + "\n"


def _lr_bound(say, theory: Theory, t: LayerTheory, step: Fraction) -> None:
    """Say which bound the layer's own §4 term puts on c."""
    alpha = theory.alignment
    outputs = [o for o in theory.layers.values() if o.role == "output" and not o.zero_init]
    k = max([Fraction(0)] + [HALF - o.ab for o in outputs])
    offset = step - t.c  # c~ - c: 0, b, g or a
    if t.role in INPUT_LIKE:
        floor, term = k, "a + c~"
        bound = k - t.a
    elif t.role == "hidden":
        floor, term = k, "a + c~ - alpha"
        bound = alpha - t.a + k
    elif t.role == "output":
        floor, term = Fraction(0), "a + c~ - alpha"
        bound = alpha - t.a
    else:
        return
    why = (
        ""
        if floor == 0
        else (f" (not 0: a readout with a+b < 1/2 needs every earlier r >= {floor})")
    )
    solved = (
        f"c >= {bound}"
        if offset == 0
        else f"c >= {bound} - {offset} = {bound - offset} (c~ - c = {offset})"
    )
    say(f"   Its own term {term} must be >= {floor}{why}: c~ >= {bound}, i.e. {solved}.")
    if t.c > bound - offset and "lr" in t.auto:
        for note in t.steps:
            if "raising c" in note or "knee" in note:
                say(f"   The solver goes above that bound: {note}.")
