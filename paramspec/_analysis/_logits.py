"""`check` for the attention logits: does the spec's logit scale keep them Theta(1)?

The exponents come from `paramspec._attention.logit_theory` (docs/theory.md §9): with the
scale `s ∝ n^(-t)`, the logits at init are `n^(-(t - delta/2))` and their change
`n^(-r)`, `delta` = 1 where the head size grows with width (a fixed head count), 0 where
the head count grows. A spec does not say which its model does, so `check` looks at both
and reports a growth under which the logits grow as a warning; told the growth
(`attention="head_size"` or `"heads"`), it counts the logits in the verdict.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .._attention import GROWTHS, LogitTheory, logit_theory
from .._errors import SpecError
from .._ir import Spec
from .._render import render_expr
from .._theory import Theory

__all__ = ["LogitCheck", "check_logits", "logit_words"]

GROWTH_WORDS = {
    "head_size": "where the head size grows with width (a fixed head count)",
    "heads": "where the head count grows with width (a fixed head size)",
}
MUP_LOGITS = "head_dim^(-1/2) * head_n^(-1/2)"


def logit_words(spec: Spec) -> str:
    """The spec's logit scale as written (the standard `head_dim^(-1/2)` when unset)."""
    if spec.attention is None or spec.attention.logits is None:
        return "head_dim^(-1/2) (unset: the standard 1/sqrt(d))"
    return render_expr(spec.attention.logits)


@dataclass(frozen=True)
class LogitCheck:
    """The logits under one growth: `theory` holds t, the init exponent and r."""

    growth: str
    theory: LogitTheory
    counted: bool  # part of the case's verdict (the growth was given)

    @property
    def stable(self) -> bool:
        return self.theory.stable

    @property
    def message(self) -> str:
        th = self.theory
        parts = []
        if th.init is not None and th.init < 0:
            parts.append(f"at init they grow like n^({-th.init})")
        if th.r < 0:
            parts.append(f"their change grows like n^({-th.r}) (r = {th.r})")
        state = "; ".join(parts) if parts else (
            "Theta(1)" if th.r == 0 else f"their change vanishes like n^(-{th.r})")
        scale = "1" if th.t == 0 else f"n^({-th.t})"
        text = f"attention logits {GROWTH_WORDS[self.growth]}: scale ∝ {scale}, {state}"
        if not self.stable:
            text += (f". Fix: `attention {{ logits {MUP_LOGITS} }}` (muP's 1/d, docs/theory.md "
                     "§9)")
        return text

    def to_dict(self) -> dict[str, Any]:
        th = self.theory
        return {"growth": self.growth, "t": str(th.t),
                "init": None if th.init is None else str(th.init), "r": str(th.r),
                "stable": self.stable, "counted": self.counted, "message": self.message}


def check_logits(spec: Spec, theory: Theory, growth: str | None) -> tuple[LogitCheck, ...]:
    """Both growths (or the one given) for a spec with a hidden block; () otherwise, and
    () while the blocks themselves are unstable (their change, not the scale, is the cause
    then, and the width check names it)."""
    if growth is not None and growth not in GROWTHS:
        raise SpecError(f"unknown attention growth `{growth}`",
                        hint=f"use one of {', '.join(GROWTHS)}")
    if not theory.stable:
        return ()
    out = []
    for g in GROWTHS if growth is None else (growth,):
        try:
            th = logit_theory(spec, theory, g)
        except SpecError:  # no hidden block to hold queries and keys: nothing to check
            return ()
        out.append(LogitCheck(g, th, counted=growth is not None))
    return tuple(out)
