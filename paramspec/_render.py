"""`Spec` IR -> canonical `.pspec` text (`paramspec fmt`), so that parse(render(s)) == s."""

from __future__ import annotations

import json
from decimal import Decimal
from fractions import Fraction

from ._ir import (
    QUANTITIES,
    ROLE_BLOCKS,
    Attention,
    Block,
    Expr,
    Residual,
    Selector,
    Spec,
    _fraction_text,
    render_exponent,
)

__all__ = ["render", "render_expr", "render_number"]

_REVERSE_ALIGNMENT = {Fraction(1): "full", Fraction(1, 2): "none"}


def render_number(x: Fraction) -> str:
    """Exact text of a constant: `2`, `0.25`, `1e-08`, or `1/3` when not a finite decimal."""
    if x.denominator == 1:
        return str(x.numerator)
    den = x.denominator
    for p in (2, 5):
        while den % p == 0:
            den //= p
    if den != 1:
        return f"{x.numerator}/{x.denominator}"
    text = format(Decimal(x.numerator) / Decimal(x.denominator), "f")
    sci = f"{float(x):g}"
    # Prefer the short scientific form only when it is exact.
    return sci if len(sci) < len(text) and Fraction(sci) == x else text


def _power(symbol: str, exponent) -> str:
    text = render_exponent(exponent)
    if (exponent.align == 0 and exponent.alpha == 0 and exponent.const.denominator == 1 and exponent.const >= 0):
        return symbol if exponent.const == 1 else f"{symbol}^{text}"
    return f"{symbol}^({text})"


def render_expr(expr: Expr) -> str:
    factors = [] if expr.constant == 1 else [render_number(expr.constant)]
    if expr.kind != "value":
        factors.append(expr.kind)
    factors += [_power(p.symbol, p.exponent) for p in expr.powers]
    return " * ".join(factors) or "1"


def _string(text: str) -> str:
    if "\n" in text:
        if '"""' not in text and "\\" not in text and not text.endswith('"'):
            return '"""\n' + text + '\n"""'
    return json.dumps(text, ensure_ascii=False)


def _selector(sel: Selector) -> str:
    parts = []
    for key in ("module", "field", "path"):
        value = getattr(sel, key)
        if value is not None:
            bare = value.isidentifier()
            parts.append(f"{key}={value if bare else _string(value)}")
    return ", ".join(parts)


def _block(block: Block) -> list[str]:
    head = block.name + (f" {_string(block.doc)}" if block.doc is not None else "") + " {"
    lines = [head]
    if block.role is not None and ROLE_BLOCKS.get(block.name) != block.role:
        lines.append(f"    role        {block.role}")
    lines += [f"    match       {_selector(s)}" for s in block.match]
    if block.depth is not None:
        lines.append(f"    depth       {block.depth}")
    for q in QUANTITIES:
        expr = block.quantity(q)
        if expr is not None:
            lines.append(f"    {q:<11} {render_expr(expr)}")
    lines += [f"    allow       {a}" for a in block.allow]
    lines.append("}")
    return lines


def _attention(attention: Attention) -> list[str]:
    return _one_quantity_block("attention", attention.doc, "logits", attention.logits)


def _residual(residual: Residual) -> list[str]:
    return _one_quantity_block("residual", residual.doc, "branch", residual.branch)


def _one_quantity_block(name: str, doc: str | None, quantity: str,
                        expr: Expr | None) -> list[str]:
    """A block that holds one quantity (`attention`, `residual`)."""
    head = f" {_string(doc)}" if doc is not None else ""
    lines = [f"{name}{head} {{"]
    if expr is not None:
        lines.append(f"    {quantity:<11} {render_expr(expr)}")
    lines.append("}")
    return lines


def render(spec: Spec) -> str:
    """The canonical text of a spec (settings in a fixed order, four-space blocks)."""
    head = f"spec {spec.name}" + (f" {_string(spec.doc)}" if spec.doc is not None else "")
    lines = [head]
    if spec.extends is not None:
        ext = spec.extends
        lines.append(f"extends {ext if _is_name(ext) else _string(ext)}")
    if spec.optimizer is not None:
        lines.append(f"optimizer {spec.optimizer}")
    if spec.alignment is not None:
        a = spec.alignment
        lines.append(f"alignment {_REVERSE_ALIGNMENT.get(a, _fraction_text(a))}")
    if spec.base_width is not None:
        lines.append(f"base_width {spec.base_width}")
    if spec.base_depth is not None:
        lines.append(f"base_depth {spec.base_depth}")
    if spec.depth_alpha is not None:
        lines.append(f"depth_alpha {_fraction_text(spec.depth_alpha)}")
    if spec.unstable is not None:
        lines.append(f"unstable {_string(spec.unstable)}")
    for block in spec.blocks:
        lines.append("")
        lines += _block(block)
    if spec.attention is not None:
        lines.append("")
        lines += _attention(spec.attention)
    if spec.residual is not None:
        lines.append("")
        lines += _residual(spec.residual)
    return "\n".join(lines) + "\n"


def _is_name(text: str) -> bool:
    import re

    return re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*(-[A-Za-z][A-Za-z0-9_]*)*", text) is not None
