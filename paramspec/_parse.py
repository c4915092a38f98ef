"""`.pspec` text -> `Spec` IR, with every error as a `SpecError` pointing at the text.

The grammar (`grammar/pspec.lark`) only fixes the shape of the text; everything that
gives names their meaning (which quantity, which role, what an exponent may be) is
checked here, where a mistake can be reported with a caret and a fix.
"""

from __future__ import annotations

import ast
import difflib
import importlib.util
import inspect
import os
from fractions import Fraction
from functools import cache
from pathlib import Path
from typing import Any

from lark import Lark, Token, Tree
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken

from ._errors import Span, SpecError
from ._ir import (
    ALLOWANCES,
    ATTENTION_SYMBOLS,
    DEPTH_PLACES,
    DEPTH_SYMBOLS,
    MAX_EXPONENT,
    OPTIMIZERS,
    QUANTITIES,
    ROLE_BLOCKS,
    ROLES,
    SYMBOLS,
    Attention,
    Block,
    Exponent,
    Expr,
    Power,
    Residual,
    Selector,
    Spec,
)
from ._resources import grammar_path

__all__ = ["parse"]

MAX_BYTES = 1 << 20  # a spec is a page of text; anything this big is a mistake
MAX_LINE = 2000
MAX_NUMBER_DIGITS = 40

SETTINGS = ("extends", "optimizer", "alignment", "base_width", "unstable", "base_depth",
            "depth_alpha")
ITEMS = (*QUANTITIES, "role", "match", "allow", "depth")
# Symbols of a layer block's quantities: the width symbols and the depth multiplier m.
BLOCK_SYMBOLS = (*SYMBOLS, *DEPTH_SYMBOLS)
# The `residual` block: its name, and its one quantity (in `m` only).
RESIDUAL = "residual"
RESIDUAL_ITEMS = ("branch",)
ROLE_ALIASES = {"embedding": "input", "readout": "output"}
SELECTOR_KEYS = ("module", "field", "path")
# The `attention` block: its name, and its one quantity.
ATTENTION = "attention"
ATTENTION_ITEMS = ("logits",)
# Which quantity accepts which keyword.
AUTO_QUANTITIES = ("lr", "eps", "wd")

_TERMINALS = {
    "LBRACE": "`{`",
    "RBRACE": "`}`",
    "LPAR": "`(`",
    "RPAR": "`)`",
    "CIRCUMFLEX": "`^`",
    "STAR": "`*`",
    "SLASH": "`/`",
    "EQUAL": "`=`",
    "COMMA": "`,`",
    "MINUS": "`-`",
    "PLUS": "`+`",
    "SPEC": "`spec`",
    "_NL": "a new line",
    "NAME": "a name",
    "NUMBER": "a number",
    "STRING": "a string",
    "$END": "the end of the file",
}


def _cache_file() -> str | bool:
    """Where Lark may keep its compiled parser: the user's cache folder, never site-packages.

    Building the LALR tables in strict mode takes ~0.4 s; loading them takes ~5 ms, which
    keeps `paramspec compile` quick to start. Set PARAMSPEC_NO_CACHE=1 to disable.
    """
    if os.environ.get("PARAMSPEC_NO_CACHE"):
        return False
    root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "paramspec"
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError:
        return False
    if not os.access(root, os.W_OK):
        return False
    return str(root / "pspec-grammar.lark.cache")  # Lark checks its own hash of the grammar


def build_parser(*, cache_file: str | bool = False, strict: bool | None = None) -> Lark:
    """LALR so that parsing is linear and never recursive; strict (two terminals can never
    silently collide) wherever Lark's optional `interegular` is installed.

    The test extras install it and the tests build the grammar strictly
    (tests/test_parse.py), so the shipped grammar is always strict-clean; a plain
    install goes without it, which keeps `paramspec compile` quick to start (importing
    interegular costs about a third of the start-up time).
    """
    if strict is None:
        strict = importlib.util.find_spec("interegular") is not None
    return Lark(
        grammar_path().read_text(encoding="utf-8"),
        parser="lalr",
        propagate_positions=True,
        strict=strict,
        cache=cache_file,
    )


@cache
def _parser() -> Lark:
    return build_parser(cache_file=_cache_file())  # built once per process


# ---------------------------------------------------------------- entry point


def parse(text: str | bytes, *, file: str = "<string>") -> Spec:
    """Parse `.pspec` text into a `Spec`. Raises `SpecError` (never anything else)."""
    text = _check_text(text, file)
    lines = text.splitlines()
    try:
        tree = _parser().parse(text if text.endswith("\n") else text + "\n")
    except UnexpectedInput as e:
        raise _syntax_error(e, lines, file) from None
    return _Builder(lines, file).spec(tree)


def _check_text(text: str | bytes, file: str) -> str:
    if isinstance(text, bytes):
        if b"\0" in text[:8192]:
            raise SpecError(
                f"{file} is a binary file, not a .pspec text",
                hint="pass the path of a .pspec text file (UTF-8)",
            )
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as e:
            line = text[: e.start].count(b"\n") + 1
            column = e.start - (text.rfind(b"\n", 0, e.start) + 1) + 1
            raise SpecError(
                f"{file} is not valid UTF-8 (byte 0x{text[e.start]:02x} at line {line}, "
                f"column {column})",
                hint="save the file as UTF-8",
            ) from None
    if not isinstance(text, str):
        raise SpecError(f"expected spec text, got {type(text).__name__}")
    if "\0" in text:
        raise SpecError(f"{file} contains NUL characters: it looks like a binary file",
                        hint="pass the path of a .pspec text file (UTF-8)")
    if len(text) > MAX_BYTES:
        raise SpecError(
            f"{file} is {len(text)} characters long; a spec is at most {MAX_BYTES}",
            hint="a .pspec file holds one parameterization, a page of text",
        )
    if not text.strip() or all(
        not ln.strip() or ln.lstrip().startswith("#") for ln in text.splitlines()
    ):
        raise SpecError(
            f"{file} is empty: there is no spec in it",
            hint='start the file with a header such as `spec mup "Maximal update parameterization"`',
        )
    for number, line in enumerate(text.splitlines(), 1):
        if len(line) > MAX_LINE:
            raise SpecError(
                f"line {number} is {len(line)} characters long (at most {MAX_LINE})",
                hint="put one statement on each line",
                span=Span(file, number, MAX_LINE + 1, 1, line),
            )
    return text


# ---------------------------------------------------------------- syntax errors


def _describe(names: set[str] | frozenset[str]) -> str:
    described = sorted({_TERMINALS.get(n, f"`{n}`") for n in names if not n.startswith("__")})
    if not described:
        return "something else"
    if len(described) == 1:
        return described[0]
    return ", ".join(described[:-1]) + " or " + described[-1]


def _syntax_error(e: UnexpectedInput, lines: list[str], file: str) -> SpecError:
    line = getattr(e, "line", None) or len(lines)
    column = getattr(e, "column", None) or 1
    if line < 1 or line > len(lines):  # end of file
        line = max(1, len(lines))
        column = len(lines[line - 1]) + 1 if lines else 1
    source = lines[line - 1] if lines else ""
    hint = None
    if isinstance(e, UnexpectedCharacters):
        char = source[column - 1] if column - 1 < len(source) else "?"
        message = f"unexpected character {char!r}"
        if char in "\"'":
            hint = 'strings use double quotes and end on the same line (or use """...""")'
        elif char == ".":
            hint = "decimal numbers need a digit before the point: 0.5"
        else:
            hint = "quantities are written like `n^(-1/2)` or `2 * fan_in^(-1/2)`"
        return SpecError(message, hint=hint, span=Span(file, line, column, 1, source))
    if isinstance(e, UnexpectedEOF) or (
        isinstance(e, UnexpectedToken) and e.token.type == "$END"
    ):
        expected = set(getattr(e, "expected", ()) or ())
        message = "the file ends too early"
        if "RBRACE" in expected:
            message = "a block opened with `{` is never closed"
            hint = "add `}` after the block's last line"
        elif expected:
            hint = f"expected {_describe(expected)}"
        return SpecError(message, hint=hint, span=Span(file, line, column, 1, source))
    assert isinstance(e, UnexpectedToken)
    token = e.token
    expected = set(e.expected)
    width = max(1, len(str(token)))
    shown = "a new line" if token.type == "_NL" else f"`{token}`"
    message = f"unexpected {shown}"
    before = source[: column - 1].rstrip()
    if token.type == "SLASH" and before.endswith(tuple("0123456789")) and "^" in before:
        hint = "an exponent with a fraction needs parentheses: write `n^(1/2)`"
    elif token.type == "LPAR" and "(" in before:
        hint = "exponents are one level of parentheses, affine in align: `n^(1/2 - align)`"
    elif "SPEC" in expected:
        hint = 'a spec file starts with its header: `spec NAME "doc string"`'
    elif token.type == "NAME" and "STAR" in expected:
        hint = "multiply factors with `*`, e.g. `2 * n^(-1/2)`, one statement per line"
    elif token.type == "LBRACE":
        hint = "a block is `NAME {` followed by one `quantity value` per line and `}`"
    elif token.type == "RBRACE" and "RBRACE" not in expected:
        hint = "this `}` closes no block"
    elif token.type == "_NL" and expected:
        hint = f"the line is incomplete: expected {_describe(expected)}"
    else:
        hint = f"expected {_describe(expected)}"
    return SpecError(message, hint=hint, span=Span(file, line, column, width, source))


# ---------------------------------------------------------------- tree -> IR


# Words people coming from other libraries write, and what paramspec calls them.
_ALIASES = {
    "learning_rate": "lr", "lr_mult": "lr", "learning-rate": "lr", "epsilon": "eps",
    "weight_decay": "wd", "decay": "wd", "std": "init", "init_std": "init", "mult": "multiplier",
    "scale": "multiplier", "output_mult": "multiplier", "width": "n", "fanin": "fan_in",
    "fanout": "fan_out", "atan2": "adam_atan2", "adamw": "adam", "embed": "embedding",
    "unembedding": "readout", "output": "readout", "input": "embedding", "base": "base_width",
    "L": "m", "alpha": "depth_alpha", "residual_multiplier": "branch",
}


def _suggest(word: str, options: tuple[str, ...]) -> str:
    alias = _ALIASES.get(word)
    close = [alias] if alias in options else difflib.get_close_matches(word, options, n=1)
    listed = ", ".join(f"`{o}`" for o in options)
    return (f"did you mean `{close[0]}`? " if close else "") + f"expected one of {listed}"


class _Builder:
    """Walks the Lark tree (shallow: the grammar has no deep recursion) into IR."""

    def __init__(self, lines: list[str], file: str):
        self.lines = lines
        self.file = file

    # -- helpers

    def span(self, node: Token | Tree, width: int | None = None) -> Span:
        if isinstance(node, Token):
            line, column = node.line or 1, node.column or 1
            w = width or max(1, len(str(node)))
        else:
            line, column = node.meta.line, node.meta.column
            end = node.meta.end_column if node.meta.end_line == line else None
            w = width or (max(1, end - column) if end else 1)
        source = self.lines[line - 1] if 0 < line <= len(self.lines) else ""
        return Span(self.file, line, column, w, source)

    def error(self, node: Token | Tree, message: str, hint: str | None = None) -> SpecError:
        return SpecError(message, hint=hint, span=self.span(node))

    def string(self, token: Token) -> str:
        text = str(token)
        if text.startswith('"""'):
            return inspect.cleandoc(text[3:-3])
        try:
            return ast.literal_eval(text)
        except (ValueError, SyntaxError):
            raise self.error(token, "invalid escape sequence in string",
                             hint=r'use \" for a quote and \\ for a backslash') from None

    def fraction(self, num: Token, den: Token | None = None, *, exact: bool = False) -> Fraction:
        for t in (num, den):
            if t is not None and len(str(t)) > MAX_NUMBER_DIGITS:
                raise self.error(t, f"number with {len(str(t))} characters is too long",
                                 hint=f"numbers have at most {MAX_NUMBER_DIGITS} characters")
        if exact:
            for t in (num, den):
                if t is not None and not str(t).isdigit():
                    raise self.error(
                        t, f"exponents are exact rationals, `{t}` is a decimal",
                        hint="write the exponent as a fraction, e.g. `n^(1/2)` instead of "
                        "`n^0.5`",
                    )
        value = Fraction(str(num))
        if den is not None:
            d = Fraction(str(den))
            if d == 0:
                raise self.error(den, "division by zero",
                                 hint="a fraction needs a non-zero denominator, e.g. `1/2`")
            value /= d
        return value

    # -- file

    def spec(self, tree: Tree) -> Spec:
        header = tree.children[0]
        name_tok = header.children[0]
        doc = self.string(header.children[1]) if len(header.children) > 1 else None
        settings: dict[str, Any] = {}
        blocks: list[Block] = []
        attention: Attention | None = None
        residual: Residual | None = None
        seen_settings: dict[str, Token] = {}
        seen_blocks: dict[str, Token] = {}
        inherits = any(
            node.data == "setting" and str(node.children[0]) == "extends"
            for node in tree.children[1:]
        )
        for node in tree.children[1:]:
            if node.data == "setting":
                key_tok, value = node.children
                key = str(key_tok)
                if key not in SETTINGS:
                    if key in (RESIDUAL, *RESIDUAL_ITEMS):
                        raise self.error(
                            key_tok, f"`{key}` is not a setting",
                            hint="the residual-branch multiplier goes in a block of its own: "
                            "`residual { branch m^(-alpha) }`")
                    if key in (ATTENTION, *ATTENTION_ITEMS):
                        raise self.error(
                            key_tok, f"`{key}` is not a setting",
                            hint="the logit scale goes in a block of its own: "
                            "`attention { logits head_dim^(-1/2) }`")
                    if key in ITEMS:
                        raise self.error(
                            key_tok, f"`{key}` must be inside a layer block",
                            hint=f"put it in a block, e.g. `hidden {{ {key} ... }}`")
                    raise self.error(key_tok, f"unknown setting `{key}`",
                                     hint=_suggest(key, SETTINGS))
                if key in seen_settings:
                    first = seen_settings[key]
                    raise self.error(key_tok, f"`{key}` is set twice",
                                     hint=f"it was already set on line {first.line}; "
                                     "keep one of the two")
                seen_settings[key] = key_tok
                settings[key] = getattr(self, f"setting_{key}")(key_tok, value)
            else:
                if str(node.children[0]) == ATTENTION:
                    block_or_attention: Block | Attention | Residual = self.attention(node)
                elif str(node.children[0]) == RESIDUAL:
                    block_or_attention = self.residual(node)
                else:
                    block_or_attention = self.block(node, inherits)
                name = str(node.children[0])
                if name in seen_blocks:
                    raise self.error(node.children[0], f"block `{name}` is defined twice",
                                     hint=f"it was first defined on line "
                                     f"{seen_blocks[name].line}; merge the two blocks")
                seen_blocks[name] = node.children[0]
                if isinstance(block_or_attention, Attention):
                    attention = block_or_attention
                elif isinstance(block_or_attention, Residual):
                    residual = block_or_attention
                else:
                    blocks.append(block_or_attention)
        return Spec._trusted(name=str(name_tok), doc=doc, blocks=tuple(blocks),
                             attention=attention, residual=residual, span=self.span(name_tok), **settings)

    # -- settings

    def word(self, value: Tree | Token, what: str) -> Token:
        """A value that must be a single bare name (e.g. `adam`)."""
        if isinstance(value, Tree) and value.data == "expr" and len(value.children) == 1:
            factor = value.children[0]
            if isinstance(factor, Tree) and factor.data == "symbol":
                return factor.children[0]
        raise self.error(value, f"expected {what} here",
                         hint="write a single word, e.g. `optimizer adam` or `role vector`")

    def setting_extends(self, key: Token, value: Tree) -> str:
        if value.data == "string":
            return self.string(value.children[0])
        return str(self.word(value, "the name or quoted path of the spec to extend"))

    def setting_optimizer(self, key: Token, value: Tree) -> str:
        tok = self.word(value, "an optimizer name")
        if str(tok) not in OPTIMIZERS:
            raise self.error(tok, f"unknown optimizer `{tok}`", hint=_suggest(str(tok), OPTIMIZERS))
        return str(tok)

    def setting_alignment(self, key: Token, value: Tree) -> Fraction:
        hint = "alignment is `full` (1), `none` (1/2), or a rational in [1/2, 1] such as `3/4`"
        if value.data == "expr" and len(value.children) == 1:
            factor = value.children[0]
            if isinstance(factor, Tree) and factor.data == "symbol":
                word = str(factor.children[0])
                if word == "full":
                    return Fraction(1)
                if word == "none":
                    return Fraction(1, 2)
                raise self.error(factor, f"unknown alignment `{word}`", hint=hint)
            if isinstance(factor, Tree) and factor.data == "number":
                a = self.fraction(*factor.children)
                if not Fraction(1, 2) <= a <= 1:
                    raise self.error(factor, f"alignment {a} is outside [1/2, 1]", hint=hint)
                return a
        raise self.error(value, "expected an alignment", hint=hint)

    def setting_base_width(self, key: Token, value: Tree) -> int:
        return self._positive_whole(
            value, "base_width",
            hint="e.g. `base_width 256`: the width at which the constants were tuned")

    def setting_base_depth(self, key: Token, value: Tree) -> int:
        return self._positive_whole(
            value, "base_depth",
            hint="e.g. `base_depth 4`: the number of residual blocks at which the "
            "constants were tuned")

    def _positive_whole(self, value: Tree, name: str, *, hint: str) -> int:
        """A setting that is a positive whole number (`base_width`, `base_depth`)."""
        if value.data == "expr" and len(value.children) == 1:
            factor = value.children[0]
            if isinstance(factor, Tree) and factor.data == "number" and len(factor.children) == 1:
                tok = factor.children[0]
                if str(tok).isdigit() and len(str(tok)) <= 12 and int(str(tok)) > 0:
                    return int(str(tok))
        raise self.error(value, f"{name} must be a positive whole number", hint=hint)

    def setting_depth_alpha(self, key: Token, value: Tree) -> Fraction:
        hint = ("depth_alpha is a rational in [1/2, 1]: `1` (CompleteP) or `1/2` (Depth-muP); "
                "SP's depth heuristic (alpha = 0) has no residual multiplier: leave out the "
                "`residual` block instead")
        if value.data == "expr" and len(value.children) == 1:
            factor = value.children[0]
            if isinstance(factor, Tree) and factor.data == "number":
                a = self.fraction(*factor.children, exact=True)
                if not Fraction(1, 2) <= a <= 1:
                    raise self.error(factor, f"depth_alpha {a} is outside [1/2, 1]", hint=hint)
                return a
        raise self.error(value, "expected a depth exponent", hint=hint)

    def setting_unstable(self, key: Token, value: Tree) -> str:
        if value.data == "string":
            reason = self.string(value.children[0])
            if reason.strip():
                return reason
        raise self.error(value, "`unstable` takes the reason in quotes",
                         hint='e.g. `unstable "a sweep baseline: the learning rate is re-tuned '
                         'at every width"`')

    # -- blocks

    def block(self, node: Tree, inherits: bool) -> Block:
        name_tok = node.children[0]
        name = str(name_tok)
        rest = node.children[1:]
        doc = None
        if rest and isinstance(rest[0], Token) and rest[0].type == "STRING":
            doc = self.string(rest[0])
            rest = rest[1:]
        fields: dict[str, Any] = {}
        first: dict[str, Token] = {}
        matches: list[Selector] = []
        allow: list[str] = []
        role_tok: Token | None = None
        for item in rest:
            key_tok, value = item.children
            key = str(key_tok)
            if key not in ITEMS:
                if key in ATTENTION_ITEMS:
                    raise self.error(key_tok, f"`{key}` belongs in the `attention` block",
                                     hint="write it in a block of its own: "
                                     f"`attention {{ {key} head_dim^(-1/2) }}`")
                if key in RESIDUAL_ITEMS:
                    raise self.error(key_tok, f"`{key}` belongs in the `residual` block",
                                     hint="write it in a block of its own: "
                                     f"`residual {{ {key} m^(-alpha) }}`")
                if key in SETTINGS:
                    raise self.error(key_tok, f"`{key}` is a setting of the whole spec",
                                     hint="move it out of the block, above the blocks")
                raise self.error(key_tok, f"unknown quantity `{key}` in block `{name}`",
                                 hint=_suggest(key, ITEMS))
            if key in first and key not in ("match", "allow"):
                raise self.error(key_tok, f"`{key}` is set twice in block `{name}`",
                                 hint=f"it was already set on line {first[key].line}; "
                                 "keep one of the two")
            first[key] = key_tok
            if key == "role":
                role_tok = self.word(value, "a role name")
            elif key == "match":
                matches.append(self.selectors(value))
            elif key == "depth":
                tok = self.word(value, "`repeated` or `fixed`")
                if str(tok) not in DEPTH_PLACES:
                    raise self.error(tok, f"unknown depth place `{tok}`",
                                     hint="`depth repeated` (inside the repeated residual "
                                     "blocks) or `depth fixed` (outside them: embedding, final "
                                     "norm, readout)")
                fields["depth"] = str(tok)
            elif key == "allow":
                tok = self.word(value, "an allowance name")
                if str(tok) not in ALLOWANCES:
                    raise self.error(tok, f"unknown allowance `{tok}`",
                                     hint=_suggest(str(tok), ALLOWANCES))
                allow.append(str(tok))
            else:
                fields[key] = self.quantity(key, value, symbols=BLOCK_SYMBOLS)
        role = self.role(name_tok, role_tok, inherits)
        return Block._trusted(name=name, role=role, doc=doc, match=tuple(matches),
                              allow=tuple(allow), span=self.span(name_tok), **fields)

    def attention(self, node: Tree) -> Attention:
        """`attention { logits EXPR }`: the logit scale, in head_dim and head_n only."""
        doc, logits = self._one_quantity_block(
            node, "attention", ATTENTION_ITEMS, ATTENTION_SYMBOLS,
            "the attention block holds only the logit scale; to set the queries' init or "
            'learning rate, add a layer block with `match path="*query_proj.weight"`')
        return Attention._trusted(doc=doc, logits=logits, span=self.span(node.children[0]))

    def residual(self, node: Tree) -> Residual:
        """`residual { branch EXPR }`: each residual branch's output multiplier, in `m` only."""
        doc, branch = self._one_quantity_block(
            node, "residual", RESIDUAL_ITEMS, DEPTH_SYMBOLS,
            "the residual block holds only the branch multiplier; per-layer quantities go "
            "in layer blocks (with `depth repeated` for the parameters inside the repeated "
            "blocks)")
        return Residual._trusted(doc=doc, branch=branch, span=self.span(node.children[0]))

    def _one_quantity_block(self, node: Tree, name: str, items: tuple[str, ...],
                            symbols: tuple[str, ...], layer_hint: str
                            ) -> tuple[str | None, Expr | None]:
        """(doc, expression) of a block that holds one quantity (`attention`, `residual`);
        `layer_hint` answers a layer block's quantity written there by mistake."""
        rest = node.children[1:]
        doc = None
        if rest and isinstance(rest[0], Token) and rest[0].type == "STRING":
            doc = self.string(rest[0])
            rest = rest[1:]
        expr: Expr | None = None
        first: Token | None = None
        for item in rest:
            key_tok, value = item.children
            key = str(key_tok)
            if key not in items:
                hint = layer_hint if key in ITEMS else _suggest(key, items)
                raise self.error(key_tok, f"unknown quantity `{key}` in block `{name}`",
                                 hint=hint)
            if first is not None:
                raise self.error(key_tok, f"`{key}` is set twice in block `{name}`",
                                 hint=f"it was already set on line {first.line}; "
                                 "keep one of the two")
            first = key_tok
            expr = self.quantity(key, value, symbols=symbols)
        return doc, expr

    def role(self, name_tok: Token, role_tok: Token | None, inherits: bool) -> str | None:
        name = str(name_tok)
        implied = ROLE_BLOCKS.get(name)
        if role_tok is None:
            if implied is None and inherits:
                return None  # taken from the extended spec's block of the same name
            if implied is None:
                raise self.error(
                    name_tok, f"block `{name}` has no role",
                    hint="name the block `embedding`, `hidden` or `readout`, or add a line "
                    f"`role R` with R one of {', '.join(ROLES)}")
            return implied
        word = str(role_tok)
        role = ROLE_ALIASES.get(word, word)
        if role not in ROLES:
            raise self.error(role_tok, f"unknown role `{word}`",
                             hint=_suggest(word, (*ROLES, *ROLE_ALIASES)))
        if implied is not None and role != implied:
            raise self.error(role_tok, f"block `{name}` always has role `{implied}`",
                             hint=f"remove the `role` line, or rename the block to give it role "
                             f"`{role}`")
        return role

    def selectors(self, value: Tree) -> Selector:
        if not (isinstance(value, Tree) and value.data == "selectors"):
            raise self.error(value, "expected selectors such as `module=Linear, field=weight`",
                             hint='keys are module, field and path (a glob in quotes: '
                             'path="blocks.*.norm.weight")')
        found: dict[str, str] = {}
        for sel in value.children:
            key_tok, val_tok = sel.children
            key = str(key_tok)
            if key not in SELECTOR_KEYS:
                raise self.error(key_tok, f"unknown selector `{key}`",
                                 hint=_suggest(key, SELECTOR_KEYS))
            if key in found:
                raise self.error(key_tok, f"selector `{key}` is given twice on one line",
                                 hint="all conditions on one `match` line must hold; use two "
                                 "`match` lines for alternatives")
            found[key] = self.string(val_tok) if val_tok.type == "STRING" else str(val_tok)
        return Selector._trusted(span=self.span(value), **found)

    # -- expressions

    def quantity(self, key: str, value: Tree,
                 symbols: tuple[str, ...] = SYMBOLS) -> Expr:
        if value.data != "expr":
            raise self.error(value, f"`{key}` takes an expression, not a string or selectors",
                             hint=f"e.g. `{key} n^(-1/2)` or `{key} 2 * fan_in^(-1/2)`")
        constant = Fraction(1)
        powers: list[Power] = []
        keyword: Token | None = None
        for factor in value.children:
            kind = factor.data
            if kind == "number":
                constant *= self.fraction(*factor.children)
            elif kind == "symbol":
                tok = factor.children[0]
                word = str(tok)
                if word in ("auto", "keep"):
                    if keyword is not None:
                        raise self.error(tok, f"`{word}` appears twice",
                                         hint=f"write `{word}` once, e.g. `lr 0.5 * auto`")
                    keyword = tok
                    continue
                powers.append(Power._trusted(symbol=self.symbol(tok, symbols),
                                             exponent=Exponent._trusted(const=Fraction(1))))
            else:  # power
                tok, exponent = factor.children
                symbol = self.symbol(tok, symbols)
                exp = self.exponent(exponent)
                if symbol in DEPTH_SYMBOLS and exp.align != 0:
                    raise self.error(exponent, "`align` cannot appear in an exponent of `m`",
                                     hint="depth exponents are rationals affine in `alpha`, "
                                     "e.g. `m^(alpha - 1)`")
                if symbol not in DEPTH_SYMBOLS and exp.alpha != 0:
                    raise self.error(exponent, f"`alpha` cannot appear in an exponent of "
                                     f"`{symbol}`",
                                     hint="`alpha` is the depth exponent: use it in exponents "
                                     "of the depth multiplier, e.g. `m^(-alpha)`")
                powers.append(Power._trusted(symbol=symbol, exponent=exp))
        span = self.span(value)
        if keyword is not None:
            word = str(keyword)
            if word == "auto" and key not in AUTO_QUANTITIES:
                example = ("head_dim^(-1/2)" if key in ATTENTION_ITEMS else
                           "m^(-alpha)" if key in RESIDUAL_ITEMS else "n^(-1/2)")
                raise self.error(
                    keyword, f"`auto` is not allowed for `{key}`",
                    hint="the theory derives only lr, eps and wd; write the "
                    f"{key} explicitly, e.g. `{key} {example}`")
            if word == "keep" and key != "init":
                raise self.error(keyword, f"`keep` is only allowed for `init`, not `{key}`",
                                 hint="`init keep` keeps a module's own initial values")
            if powers:
                raise self.error(value, f"`{word}` cannot be multiplied by powers of symbols",
                                 hint=f"`{word}` stands for the whole width factor; only a "
                                 "constant may multiply it, e.g. `lr 0.5 * auto`")
            if word == "keep" and constant != 1:
                raise self.error(value, "`keep` cannot have a constant",
                                 hint="`init keep` keeps the module's own values as they are")
            return Expr._trusted(kind=word, constant=constant, span=span)
        minimum, what = (0, "zero or positive") if key in ("init", "lr", "wd") else (None, "positive")
        if constant < 0 or (minimum is None and constant == 0):
            raise self.error(value, f"the constant of `{key}` must be {what}, got {constant}",
                             hint=f"write e.g. `{key} 1` or `{key} 0.5 * n^(-1/2)`")
        return Expr._trusted(constant=constant, powers=tuple(powers), span=span)

    def symbol(self, tok: Token, symbols: tuple[str, ...] = SYMBOLS) -> str:
        word = str(tok)
        if word == "align":
            raise self.error(tok, "`align` is a number in [1/2, 1], not a width",
                             hint="use it inside an exponent, e.g. `n^(-align)`")
        if word == "alpha":
            raise self.error(tok, "`alpha` is the depth exponent in [1/2, 1], not a depth",
                             hint="use it inside an exponent of `m`, e.g. `m^(-alpha)`")
        if word in ("auto", "keep"):
            raise self.error(tok, f"`{word}` cannot be raised to a power",
                             hint=f"`{word}` stands alone, optionally times a constant")
        if word not in symbols:
            if word in DEPTH_SYMBOLS:
                raise self.error(tok, f"the depth multiplier `{word}` cannot appear here",
                                 hint="`m` (depth / base_depth) belongs in layer blocks' "
                                 "quantities and in `residual { branch m^(-alpha) }`")
            if symbols == DEPTH_SYMBOLS:
                raise self.error(tok, f"`{word}` cannot appear in the residual branch multiplier",
                                 hint="the branch multiplier depends on depth only: "
                                 "`branch m^(-alpha)`, `branch m^(-1/2)`")
            if word in ATTENTION_SYMBOLS:
                raise self.error(tok, f"`{word}` is a symbol of the attention block only",
                                 hint="write the logit scale as `attention { logits "
                                 "head_dim^(-1/2) * head_n^(-1/2) }`")
            if word in SYMBOLS:
                raise self.error(
                    tok, f"`{word}` cannot appear in the attention logit scale",
                    hint="the scale depends on the head size only: `head_dim` (d) and "
                    "`head_n` (d / d_base, 1 where the head count grows), e.g. "
                    "`logits head_dim^(-1/2) * head_n^(-1/2)`")
            raise self.error(tok, f"unknown symbol `{word}`", hint=_suggest(word, symbols))
        return word

    def exponent(self, node: Tree) -> Exponent:
        if node.data == "signed":
            *minus, num = node.children
            value = self.fraction(num, exact=True)
            exp = Exponent._trusted(const=-value if minus else value)
        else:  # affine
            exp = Exponent._trusted()
            sign = 1
            for child in node.children:
                if isinstance(child, Token):  # leading minus
                    sign = -1
                elif child.data == "sign":
                    sign = -1 if str(child.children[0]) == "-" else 1
                else:
                    exp = exp + self.aterm(child, sign)
                    sign = 1
        for coef in (exp.const, exp.align, exp.alpha):
            if abs(coef) > MAX_EXPONENT:
                raise self.error(
                    node, f"exponent {exp} is outside what the theory reasons about",
                    hint=f"width exponents lie within [-{MAX_EXPONENT}, {MAX_EXPONENT}] "
                    "(the standard parameterizations use -3/2 .. 1)")
        return exp

    def aterm(self, node: Tree, sign: int) -> Exponent:
        if node.data == "const_term":
            children = list(node.children)
            name = children.pop() if children and children[-1].type == "NAME" else None
            value = sign * self.fraction(*children, exact=True)
            if name is None:
                return Exponent._trusted(const=value)
        else:  # name_term: align or align/2
            name, *den = node.children
            divisor = self.fraction(den[0], exact=True) if den else Fraction(1)
            if divisor == 0:
                raise self.error(den[0], "division by zero",
                                 hint="a fraction needs a non-zero denominator, e.g. `align/2`")
            value = sign / divisor
        if str(name) == "alpha":
            return Exponent._trusted(alpha=value)
        if str(name) != "align":
            raise self.error(name, f"`{name}` cannot appear in an exponent",
                             hint="exponents are rationals, affine in `align` (width) or "
                             "`alpha` (depth), e.g. `(1 - align)`, `m^(alpha - 1)`")
        return Exponent._trusted(align=value)
