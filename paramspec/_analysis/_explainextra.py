"""`explain` for depth and for the two spec-wide blocks (`attention`, `residual`).

The numbers come from `_depth.resolve_depth` (via the compiled spec), `_depthcheck`
and `_attention.logit_theory`; the words here follow docs/theory.md §12 (depth) and §9
(attention logits).
"""

from __future__ import annotations

from collections.abc import Callable

from .._attention import GROWTHS, logit_theory
from .._compile import Compiled
from .._depth import DepthLayer
from .._errors import SpecError
from .._ir import Expr
from .._render import render_expr
from ._depthcheck import check_depth, mpow, needed_lr_power, placement, step_words
from ._logits import GROWTH_WORDS, MUP_LOGITS, logit_words

__all__ = ["explain_attention", "explain_depth", "explain_residual"]

Say = Callable[[str], None]


def _written(expr: Expr | None) -> str:
    return "1 (unset)" if expr is None else render_expr(expr)


def _branch_words(compiled: Compiled) -> str:
    spec = compiled.spec
    if spec.residual is None or spec.residual.branch is None:
        return "no `residual` block: each branch's output is added as it is, beta = 0"
    beta = compiled.depth_theory.branch  # type: ignore[union-attr]
    return (f"`residual {{ branch {render_expr(spec.residual.branch)} }}`: each branch's output "
            f"is multiplied by m^(-beta), beta = {beta}")


def _head(compiled: Compiled) -> str:
    return (f"m = depth / base_depth = {compiled.depth}/{compiled.base_depth} "
            f"(= {compiled.m:g}), depth exponent alpha = {compiled.depth_alpha}")


def explain_depth(compiled: Compiled, layer: str, say: Say, head: Say) -> None:
    """The depth part of `explain(spec, layer)` (docs/theory.md §12)."""
    spec = compiled.spec
    dt = compiled.depth_theory
    assert dt is not None
    opt = compiled.optimizer_name
    d: DepthLayer = dt.layers[layer]
    block = compiled.block(layer)
    deep = check_depth(spec, opt, compiled.depth_alpha, compiled.depth, compiled.base_depth, dt)
    x = deep.layers[layer]
    inside, assumed = placement(spec)
    head(f"Depth (docs/theory.md §12): {_head(compiled)}; quantities ~ m^(-x) are reported "
         "as x (_m).")
    say(f"   {_branch_words(compiled)}.")
    if inside[layer]:
        where = ("assumed inside the repeated blocks (the spec has no `depth` line; hidden and "
                 "vector blocks are read as a transformer's)" if assumed
                 else "inside the repeated blocks (`depth repeated`)")
    else:
        where = ("assumed outside the repeated blocks (no `depth` line; input, output and "
                 "constant blocks)" if assumed else
                 "outside the repeated blocks (`depth fixed`, or no `depth` line)")
    say(f"   Placement: {where}.")
    say(f"   multiplier  {_written(block.multiplier):<16} -> depth part {mpow(d.a)}, "
        f"a_m = {d.a}")
    say(f"   init        {_written(block.init):<16} -> depth part {mpow(d.b)}, b_m = {d.b}")
    if x.repeated:
        say(f"   Gradient: the block sits behind the branch multiplier, g_m = beta + a_m = "
            f"{deep.beta} + {d.a} = {x.g}.")
        say("   Requirement (CompleteP's 'every block learns'): the m blocks' updates together "
            "move the residual stream by Theta(1): beta + a_m + s = 1, s the per-entry step.")
    else:
        say(f"   Gradient: outside the repeated blocks the stream's gradient is Theta(1) in "
            f"depth (beta >= 1/2): g_m = a_m = {x.g}.")
        say("   Requirement: one block outside the repeated ones moves the stream by Theta(1) "
            "already, so it needs no depth factor: a_m + s = 0.")
    lr_auto = block.lr is not None and block.lr.kind == "auto"
    need = needed_lr_power(spec, block, opt, x.repeated)
    need_text = "1 (no depth factor)" if need.is_zero else f"m^({need})"
    if lr_auto:
        for step in d.steps:
            if step.startswith("lr auto"):
                say(f"   {step}.")
        if x.repeated and not dt.layers[layer].repeated:
            say("   (`lr auto` gave no depth factor: the block has no `depth repeated` line.)")
    else:
        say(f"   lr is written `{_written(block.lr)}` -> c_m = {d.c}.")
    say(f"   One entry's step: {step_words(opt)} = {x.step}; lr needs {need_text} "
        f"(= {mpow(-need.at_alpha(compiled.depth_alpha))} at alpha {compiled.depth_alpha}).")
    if x.repeated:
        say(f"   The branch's own output moves by m^(-q), q = a_m + s = {x.q}; the stream by "
            f"m^(-r_m), r_m = beta + q - 1 = {x.r}.")
    else:
        say(f"   Its change in depth: a_m + s = {x.r}.")
    say(f"   -> {x.verdict}" + (f": {'; '.join(x.reasons)}" if x.reasons else "."))
    if opt in ("adam", "adafactor", "muon"):
        eps_auto = block.eps is not None and block.eps.kind == "auto"
        how = "auto: e_m = g_m, eps tracks the gradient in depth" if eps_auto else (
            f"written `{_written(block.eps)}`")
        say(f"   Epsilon: {how} -> e_m = {d.e}" + (
            f"; the gradient shrinks like {mpow(x.g)}, so eps/sqrt(v) grows like "
            f"{mpow(d.e - x.g)}." if x.g > d.e else "."))
    say(f"   Weight decay: wd_m = {d.wd}; lr * wd ~ {mpow(d.c + d.wd)} in depth" + (
        " (auto: -c_m) [open: unmeasured]." if block.wd is not None and block.wd.kind == "auto"
        else "."))


def explain_residual(compiled: Compiled, say: Say, head: Say) -> None:
    """`explain(spec, "residual")`: the branch multiplier and the stream at init."""
    spec = compiled.spec
    deep = check_depth(spec, compiled.optimizer_name, compiled.depth_alpha, compiled.depth,
                       compiled.base_depth, compiled.depth_theory)
    head(f"Residual branches (docs/theory.md §12): x_(l+1) = x_l + m^(-beta) F_l(x_l); "
         f"{_head(compiled)}.")
    say(f"   {_branch_words(compiled)}; at this depth it is {compiled.branch_multiplier():.6g}.")
    say("   alpha = 1 is CompleteP (every block learns), alpha = 1/2 Depth-muP (reference "
        "theory §10).")
    inner = [n for n, v in placement(spec)[0].items() if v]
    head("The residual stream at init: the m branches are independent, so together they add "
         "m^(1/2 - beta - B), B = sum of a_m + b_m over the repeated blocks "
         f"({', '.join(f'`{n}`' for n in inner) or 'none'}).")
    verdict = ("O(1): stable at init" if deep.init >= 0
               else f"grows like {mpow(deep.init)}: unstable at init")
    say(f"   1/2 - beta - B = {-deep.init} -> the branches add {mpow(deep.init)} to the stream, "
        f"{verdict}.")
    head(f"Training under {compiled.optimizer_name}: {deep.verdict} (per block: `paramspec "
         "explain SPEC --layer BLOCK`, all blocks: `paramspec check SPEC --depth N`).")
    for reason in deep.reasons:
        say(f"   {reason}")


def explain_attention(compiled: Compiled, say: Say, head: Say) -> None:
    """`explain(spec, "attention")`: the logit scale under both growths (§9)."""
    spec = compiled.spec
    head(f"Attention logits (docs/theory.md §9): logits = s * q.k, s = {logit_words(spec)}.")
    say("   head_dim is the head size d, head_n = d / d_base (n where the head size grows, "
        "1 where the head count grows); s ~ n^(-t).")
    for growth in GROWTHS:
        head(f"{GROWTH_WORDS[growth][0].upper()}{GROWTH_WORDS[growth][1:]}:")
        try:
            th = logit_theory(spec, compiled.theory, growth)
        except SpecError as err:  # no hidden block: nothing to say
            say(f"   {err}")
            continue
        for step in th.steps:
            say(f"   {step}")
        init = "zero (zero-initialised queries)" if th.init is None else (
            "Theta(1)" if th.init == 0 else
            f"vanishing like n^(-{th.init})" if th.init > 0 else f"growing like n^({-th.init})")
        change = ("Theta(1): the logits learn" if th.r == 0 else
                  f"vanishing like n^(-{th.r})" if th.r > 0 else
                  f"growing like n^({-th.r}): unstable (fix: `logits {MUP_LOGITS}`, muP's 1/d)")
        say(f"   -> logits at init {init}; their change {change}.")
