"""The `paramspec` command: a thin typer shell over the Python API.

Exit codes: 0 ok; 2 a user error (bad spec, flag or file: a `SpecError`, printed with
file:line:col and a fix, never a traceback); 3 a negative answer (`check` finds the spec
unstable, `equiv` finds two specs different, `fmt --check` finds unformatted text);
1 an internal bug in paramspec (set PARAMSPEC_DEBUG=1 for the traceback).
"""

from __future__ import annotations

import functools
import json
import os
import sys
import traceback
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

from ._errors import SpecError

EXIT_OK, EXIT_BUG, EXIT_USER, EXIT_NO = 0, 1, 2, 3

app = typer.Typer(
    name="paramspec",
    help="Compile, check and compare width-scaling parameterizations (.pspec files).",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


class Format(StrEnum):
    table = "table"
    json = "json"


class OptimizerName(StrEnum):
    adam = "adam"
    adam_atan2 = "adam_atan2"
    sgd = "sgd"
    adafactor = "adafactor"
    muon = "muon"


SpecArg = Annotated[str, typer.Argument(help="A built-in spec name (see `paramspec list`) "
                                        "or the path of a .pspec file.")]
WidthOpt = Annotated[int, typer.Option("--width", help="Model width to compile for.")]
BaseWidthOpt = Annotated[int | None, typer.Option(
    "--base-width", help="Width at which the constants were tuned (default: the spec's, else 1).")]
AlignmentOpt = Annotated[str | None, typer.Option(
    "--alignment", help="full | none | a rational in [1/2, 1] (default: the spec's, else full).")]
OptimizerOpt = Annotated[OptimizerName | None, typer.Option(
    "--optimizer", help="adam | adam_atan2 | sgd | adafactor | muon (default: the spec's, "
    "else adam).")]
FormatOpt = Annotated[Format, typer.Option("--format", help="table (readable) or json.")]
DepthOpt = Annotated[int | None, typer.Option(
    "--depth", help="Number of residual blocks to compile for (default: the base depth).")]
BaseDepthOpt = Annotated[int | None, typer.Option(
    "--base-depth", help="Depth at which the constants were tuned (default: the spec's, else 1).")]
DepthAlphaOpt = Annotated[str | None, typer.Option(
    "--depth-alpha", help="Depth exponent alpha in [1/2, 1] (default: the spec's, else 1).")]


def _emit(text: str) -> None:
    sys.stdout.write(text if text.endswith("\n") else text + "\n")


def _json(data: Any) -> None:
    _emit(json.dumps(data, indent=2, ensure_ascii=False))


def handle_errors(fn):
    """User errors exit 2 with the located message; bugs exit 1 without a traceback."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except SpecError as e:
            sys.stderr.write(f"{e}\n")
            raise typer.Exit(EXIT_USER) from None
        except (typer.Exit, typer.Abort, KeyboardInterrupt):
            raise
        except Exception as e:  # an internal bug: say so plainly
            if os.environ.get("PARAMSPEC_DEBUG"):
                traceback.print_exc()
            sys.stderr.write(
                f"internal error in paramspec: {type(e).__name__}: {e}\n"
                "This is a bug in paramspec, not in your spec. Rerun with PARAMSPEC_DEBUG=1 "
                "for the traceback and report it.\n"
            )
            raise typer.Exit(EXIT_BUG) from None

    return wrapper


def _render_table(title: str, columns: list[str], rows: list[list[str]],
                  caption: str | None = None, min_width: int = 120) -> None:
    from rich.console import Console
    from rich.table import Table

    from ._fullwidth import natural_width, strip_line_ends

    table = Table(title=title, caption=caption, title_justify="left", caption_justify="left")
    for i, col in enumerate(columns):
        table.add_column(col, justify="left" if i < 2 else "right", no_wrap=True)
    for row in rows:
        table.add_row(*row)
    # As wide as the widest row: no cell cut to `…` (a narrower terminal wraps the lines);
    # colour only on a terminal, as rich decides.
    console = Console(width=max(min_width, len(title), natural_width(table)))
    with console.capture() as captured:
        console.print(table)
    sys.stdout.write(strip_line_ends(captured.get()))


def _num(x: float | None) -> str:
    return "keep" if x is None else f"{x:.6g}"


# ---------------------------------------------------------------------------- compile


@app.command("compile")
@handle_errors
def compile_cmd(
    spec: SpecArg,
    width: WidthOpt = 1024,
    base_width: BaseWidthOpt = None,
    alignment: AlignmentOpt = None,
    optimizer: OptimizerOpt = None,
    format: FormatOpt = Format.table,
    depth: DepthOpt = None,
    base_depth: BaseDepthOpt = None,
    depth_alpha: DepthAlphaOpt = None,
) -> None:
    """Resolve SPEC for a width: exact per-layer exponents and the numbers to use.
    Warns on stderr (exit 0) when SPEC is unstable for its optimizer and alignment."""
    import warnings

    from ._compile import compile as compile_spec
    from ._errors import UnstableSpecWarning

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UnstableSpecWarning)
        c = compile_spec(spec, width=width, base_width=base_width, alignment=alignment,
                         optimizer=optimizer.value if optimizer else None, depth=depth,
                         base_depth=base_depth, depth_alpha=depth_alpha)
    for w in caught:
        if issubclass(w.category, UnstableSpecWarning):
            sys.stderr.write(f"warning: {w.message}\n")
        else:  # not ours: shown as Python would have
            warnings.showwarning(w.message, w.category, w.filename, w.lineno)
    table = c.table()
    if format is Format.json:
        _json(table)
        return
    rows = []
    for name, layer in table["layers"].items():
        e, v = layer["exponents"], layer["values"]
        rows.append([name, layer["role"], e["a"], e["b"], e["c"], e["e"], e["wd"],
                     _num(v["multiplier"]), _num(v["init_std"]), _num(v["lr_scale"]),
                     _num(v["eps_scale"]), _num(v["wd_scale"])])
    title = (f"{table['spec']}: optimizer {table['optimizer']}, alignment {table['alignment']}, "
             f"width {table['width']}, base width {table['base_width']} (n = {c.n:g})")
    columns = ["layer", "role", "a", "b", "c", "e", "wd", "multiplier", "init std", "lr x",
               "eps x", "wd x"]
    caption = ("Exponents: quantity ∝ n^(-x) (a multiplier, b init std, c learning rate, "
               "e epsilon, wd weight decay).\nValues at this width for nominal shapes; lr/eps/wd "
               "are factors on your global learning rate, epsilon and weight decay.")
    if "depth" in table:  # depth exponents beside the width ones (docs/cli.md)
        title += (f", depth {table['depth']}, base depth {table['base_depth']} (m = {c.m:g}), "
                  f"alpha {table['depth_alpha']}, branch m^(-{table['residual']['branch']})")
        columns[7:7] = ["a_m", "b_m", "c_m", "e_m", "wd_m"]
        for row, layer in zip(rows, table["layers"].values(), strict=True):
            d = layer["depth_exponents"]
            row[7:7] = [d["a"], d["b"], d["c"], d["e"], d["wd"]]
        caption += "\nDepth exponents (_m): quantity ∝ m^(-x), m = depth / base depth; values "
        caption += "include them."
    _render_table(title, columns, rows, caption=caption, min_width=160 if "depth" in table else 120)


# ---------------------------------------------------------------------------- analysis

AnyOptimizerOpt = Annotated[str | None, typer.Option(
    "--optimizer", help="adam | adam_atan2 | sgd | adafactor | muon | all (default: the spec's; "
    "every optimizer when the spec sets none).")]
AnyAlignmentOpt = Annotated[str | None, typer.Option(
    "--alignment", help="full | none | Q | all (default: the spec's; both when it sets none).")]


@app.command("check")
@handle_errors
def check_cmd(
    spec: SpecArg,
    optimizer: AnyOptimizerOpt = None,
    alignment: AnyAlignmentOpt = None,
    width: Annotated[int | None, typer.Option(
        "--width", help="Width at which to test for epsilon underflow (default 16384).")] = None,
    base_width: BaseWidthOpt = None,
    eps: Annotated[float, typer.Option("--eps", help="Base Adam epsilon.")] = 1e-8,
    strict: Annotated[bool, typer.Option(
        "--strict", help="Also exit 3 when there are warnings (epsilon underflow).")] = False,
    format: FormatOpt = Format.table,
    depth: DepthOpt = None,
    base_depth: BaseDepthOpt = None,
    depth_alpha: DepthAlphaOpt = None,
    attention: Annotated[str | None, typer.Option(
        "--attention", help="head_size | heads: what grows with width in the model's "
        "attention; counts the logits in the verdict (default: both reported, as warnings).")
    ] = None,
) -> None:
    """Is SPEC stable? Per layer: a+b, the update exponent r, the gradient exponent g, a
    verdict, and epsilon-underflow warnings; the depth axis too when SPEC uses depth or
    --depth/--base-depth/--depth-alpha is given. Exit 0 when stable, 3 when not."""
    from ._analysis import check, render_check, to_text

    report = check(spec, optimizer=optimizer, alignment=alignment, width=width,
                   base_width=base_width, eps=eps, depth=depth, base_depth=base_depth,
                   depth_alpha=depth_alpha, attention=attention)
    if format is Format.json:
        _json(report.to_dict())
    else:
        _emit(to_text(render_check(report)))
    if not report.stable or (strict and report.warnings):
        raise typer.Exit(EXIT_NO)


@app.command("explain")
@handle_errors
def explain_cmd(
    spec: SpecArg,
    layer: Annotated[str, typer.Option("--layer", help="The block to explain.")],
    optimizer: OptimizerOpt = None,
    alignment: AlignmentOpt = None,
    width: Annotated[int | None, typer.Option(
        "--width", help="Also show the numbers at this width.")] = None,
    base_width: BaseWidthOpt = None,
    depth: DepthOpt = None,
    base_depth: BaseDepthOpt = None,
    depth_alpha: DepthAlphaOpt = None,
) -> None:
    """Derive each of LAYER's exponents, step by step, in plain words (its depth exponents
    too when SPEC uses depth or a depth option is given). LAYER `attention` explains the
    logit scale, `residual` the residual branch multiplier."""
    from ._analysis import explain

    _emit(explain(spec, layer, optimizer=optimizer.value if optimizer else None,
                  alignment=alignment, width=width, base_width=base_width, depth=depth,
                  base_depth=base_depth, depth_alpha=depth_alpha))


@app.command("equiv")
@handle_errors
def equiv_cmd(
    a: Annotated[str, typer.Argument(help="First spec (name or path).")],
    b: Annotated[str, typer.Argument(help="Second spec (name or path).")],
    optimizer: OptimizerOpt = None,
    alignment: AlignmentOpt = None,
    width: Annotated[int, typer.Option("--width", help="Width for comparing constants.")] = 1024,
    base_width: BaseWidthOpt = None,
    exponents_only: Annotated[bool, typer.Option(
        "--exponents-only", help="Compare exponents only, not the constants.")] = False,
    weight_decay: Annotated[bool, typer.Option(
        "--weight-decay", help="Also require the per-step weight decay to match.")] = False,
    format: FormatOpt = Format.table,
    depth_alpha: DepthAlphaOpt = None,
) -> None:
    """Do A and B train identically under the symmetry (a, b, c, e) -> (a+θ, b-θ, c', e')?
    Prints θ per layer and the canonical forms. Exit 0 when equivalent, 3 when not."""
    from ._analysis import equivalent, render_equiv, to_text

    report = equivalent(a, b, optimizer=optimizer.value if optimizer else None,
                        alignment=alignment, width=width, base_width=base_width,
                        constants=not exponents_only, weight_decay=weight_decay,
                        depth_alpha=depth_alpha)
    if format is Format.json:
        _json(report.to_dict())
    else:
        _emit(to_text(render_equiv(report)))
    if not report.equivalent:
        raise typer.Exit(EXIT_NO)


# ---------------------------------------------------------------------------- list


def _summary(doc: str | None) -> str:
    """The first line of a doc string (by convention a one-line summary), in full."""
    lines = (doc or "").strip().splitlines()
    return lines[0].strip() if lines else ""


@app.command("list")
@handle_errors
def list_cmd(format: FormatOpt = Format.table) -> None:
    """Show the built-in specs with the first line of their doc strings."""
    from ._library import builtin_names, load

    entries = []
    for name in builtin_names():
        spec = load(name)
        entries.append({"name": name, "doc": _summary(spec.doc),
                        "optimizer": spec.optimizer})
    if format is Format.json:
        _json(entries)
        return
    width = max(len(e["name"]) for e in entries)
    for e in entries:
        _emit(f"{e['name']:<{width}}  {e['doc']}")


# ---------------------------------------------------------------------------- fmt, schema


@app.command("fmt")
@handle_errors
def fmt_cmd(
    path: Annotated[Path, typer.Argument(help="A .pspec file.")],
    check: Annotated[bool, typer.Option("--check", help="Exit 3 if the file is not in "
                                        "canonical form, instead of printing it.")] = False,
) -> None:
    """Print a .pspec file in canonical form (comments are not kept; use doc strings)."""
    from ._library import _read
    from ._render import render

    text = render(_read(path))
    if check:
        if path.read_text(encoding="utf-8") != text:
            sys.stderr.write(f"{path} is not in canonical form (run `paramspec fmt {path}`)\n")
            raise typer.Exit(EXIT_NO)
        return
    _emit(text.rstrip("\n"))


@app.command("schema")
@handle_errors
def schema_cmd() -> None:
    """Print the JSON schema of the Spec IR."""
    from ._ir import Spec

    _json(Spec.model_json_schema())


def main() -> None:
    app()



# ---------------------------------------------------------------------------- transfer
# (registered at import time: `main` runs the app after the whole module is loaded)


def _ints(flag: str, text: str) -> list[int]:
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise SpecError(f"{flag} takes comma-separated integers, e.g. 64,128,256; got {text!r}") \
            from None
    if not values:
        raise SpecError(f"{flag} is empty; give comma-separated integers, e.g. 64,128,256")
    return values


def _floats(flag: str, text: str) -> list[float]:
    try:
        values = [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise SpecError(f"{flag} takes comma-separated numbers, e.g. 1e-3,3e-3,1e-2; got "
                        f"{text!r}") from None
    if not values:
        raise SpecError(f"{flag} is empty; give comma-separated numbers, e.g. 1e-3,1e-2")
    return values


class ModelName(StrEnum):
    mlp = "mlp"
    transformer = "transformer"


@app.command("coord-check")
@handle_errors
def coord_check_cmd(
    spec: SpecArg,
    model: Annotated[str, typer.Option(
        "--model", help="mlp | transformer (reference models) or FILE.py:FUNC, where "
        "FUNC(width, key) builds your model and the file defines make_batch(key) -> (x, y) "
        "and optionally loss(model, x, y), LAYOUTS, ROLES, TIED, BRANCHES (docs/coord-check.md).")] = "mlp",
    widths: Annotated[str | None, typer.Option(
        "--widths", help="Comma-separated widths (default 64,128,256,512).")] = None,
    steps: Annotated[int, typer.Option("--steps", help="Optimizer steps on the batch.")] = 1,
    seeds: Annotated[int, typer.Option("--seeds", help="Seeds averaged (0..N-1).")] = 2,
    lr: Annotated[float | None, typer.Option(
        "--lr", help="Global learning rate (default: calibrated so that the largest "
        "relative change is about 1%, the perturbative regime).")] = None,
    base_width: BaseWidthOpt = None,
    optimizer: OptimizerOpt = None,
    out: Annotated[Path, typer.Option("--out", help="Directory of the PNG.")] = Path("."),
    format: FormatOpt = Format.table,
    depths: Annotated[str | None, typer.Option(
        "--depths", help="Check across depth instead: comma-separated block counts, e.g. "
        "2,4,8,16, at one --width (docs/coord-check.md, 'Across depth').")] = None,
    width: Annotated[int, typer.Option("--width", help="With --depths: the fixed width.")]
    = 64,
    base_depth: BaseDepthOpt = None,
    depth_alpha: DepthAlphaOpt = None,
) -> None:
    """Train a few steps on one fixed batch at several widths and compare each layer's
    activation-change slope with the theory's prediction. Writes OUT/coord-check-SPEC.png.
    Exit 0 when every judged layer passes, 3 when one does not (a layer that changed by
    more than its own size is flagged, not judged). With --depths: the same check across
    depth at one width (the residual stream, the blocks, the logits)."""
    from ._coord import coord_check
    from ._transfer._plots import plot_coord_check

    if seeds < 1 or steps < 1:
        raise SpecError(f"--seeds and --steps must be >= 1; got --seeds {seeds} --steps {steps}")
    if depths is not None:
        if widths is not None:
            raise SpecError("--depths checks across depth at one --width; --widths does not "
                            "apply", hint="drop --widths, or drop --depths")
        _coord_check_depth(spec, model, _ints("--depths", depths), width, steps, seeds, lr,
                           base_width, base_depth, depth_alpha,
                           optimizer.value if optimizer else None, out, format)
        return
    width_list = _ints("--widths", widths or "64,128,256,512")
    make, inputs, loss, extra = _coord_task(model)
    result = coord_check(spec, make, inputs, loss, widths=width_list, steps=steps,
                         seeds=tuple(range(seeds)), learning_rate=lr, base_width=base_width,
                         optimizer=optimizer.value if optimizer else None, **extra)
    name = Path(spec).stem if spec.endswith(".pspec") else spec
    png = plot_coord_check(result, out / f"coord-check-{name}.png")
    if format is Format.json:
        _json({**result.to_dict(), "plot": str(png)})
    else:
        rows, notes, lr_text = _coord_rows(result, with_role=True)
        _render_table(
            f"coordinate check of {result.spec} on {result.model} ({result.optimizer}, "
            f"{steps} step(s), {lr_text}, widths {','.join(map(str, width_list))})",
            ["layer", "role", "slope", "predicted", "band", "relative", "verdict"], rows,
            caption=f"slope of log rms(x_t - x_0) against log width; relative: largest "
            f"rms(x_t - x_0)/rms(x_0); FLAG: changed by more than its own size, not judged; "
            f"plot: {png}{notes}")
    if not result.passed:
        raise typer.Exit(EXIT_NO)


def _coord_rows(result: Any, with_role: bool) -> tuple[list[list[str]], str, str]:
    """A coordinate check's table rows (across width: with each layer's role), its notes
    and its learning-rate text, for `coord-check` with --widths or --depths."""
    rows = [[layer.name, *([layer.role] if with_role else []), f"{layer.slope:+.3f}",
             f"{layer.predicted:+.3f}", f"-{layer.tolerance[0]:.2f}/+{layer.tolerance[1]:.2f}",
             "-" if layer.relative is None else f"{layer.relative:.2g}",
             {"pass": "pass", "fail": "FAIL", "flagged": "FLAG"}[layer.verdict]]
            for layer in result.layers]
    notes = "".join(f"\n{layer.name}: {layer.note}" for layer in result.layers if layer.note)
    lr_text = f"lr {result.learning_rate:.3g}" + (
        " (perturbative)" if result.learning_rate_source == "perturbative" else "")
    return rows, notes, lr_text


def _coord_check_depth(spec: str, model: str, depths: list[int], width: int, steps: int,
                       seeds: int, lr: float | None, base_width: int | None,
                       base_depth: int | None, depth_alpha: str | None,
                       optimizer: str | None, out: Path, format: Format) -> None:
    """`coord-check --depths`: the check across depth (paramspec._coord_depth)."""
    from ._coord_depth import coord_check_depth, plot_depth_check

    if model == "mlp":
        raise SpecError("the reference MLP has no residual blocks to check across depth",
                        hint="use --model transformer")
    make, inputs, loss, extra = _coord_task(model)
    result = coord_check_depth(spec, make, inputs, loss, depths=depths, width=width,
                               steps=steps, seeds=tuple(range(seeds)), learning_rate=lr,
                               base_width=base_width, base_depth=base_depth,
                               depth_alpha=depth_alpha, optimizer=optimizer, **extra)
    name = Path(spec).stem if spec.endswith(".pspec") else spec
    png = plot_depth_check([result], out / f"coord-check-depth-{name}.png")
    if format is Format.json:
        _json({**result.to_dict(), "plot": str(png)})
    else:
        rows, notes, lr_text = _coord_rows(result, with_role=False)
        _render_table(
            f"coordinate check across depth of {result.spec} on {result.model} "
            f"({result.optimizer}, {steps} step(s), {lr_text}, width {width}, depths "
            f"{','.join(map(str, depths))}, base depth {result.base_depth})",
            ["quantity", "slope", "predicted", "band", "relative", "verdict"], rows,
            caption=f"slope of log rms(change) against log depth; stream: the residual "
            f"stream before the final norm, {'flat' if result.flat else 'NOT flat'} in depth; "
            f"block: one block's branches as added; plot: {png}{notes}")
    if not result.passed:
        raise typer.Exit(EXIT_NO)


def _coord_task(model: str) -> tuple[Any, Any, Any, dict[str, Any]]:
    """(make_model, inputs, loss(model, inputs), extra coord_check kwargs) for --model."""
    import jax

    from . import models
    from ._coord import linear_loss

    if model == "mlp":
        kx, ky = jax.random.split(jax.random.key(42))
        batch = (jax.random.normal(kx, (16, 16)), jax.random.normal(ky, (16, 8)))
        return models.mlp, batch, linear_loss, {}  # width-independent output gradient
    if model == "transformer":
        import optax

        from ._transfer._data import DEFAULT_VOCAB_SIZE, batches

        x, y = next(batches(42, 16, 8, num_batches=1))
        make = functools.partial(models.transformer, vocab=DEFAULT_VOCAB_SIZE, seq_len=16,
                                 depth=2, head_dim=16)

        def loss(m: Any, batch: Any) -> Any:
            logits = jax.vmap(m)(batch[0])
            return optax.softmax_cross_entropy_with_integer_labels(logits, batch[1]).mean()

        return make, (jax.numpy.asarray(x), jax.numpy.asarray(y)), loss, {}
    if ":" not in model:
        raise SpecError(f"--model {model!r} is neither a reference model nor FILE.py:FUNC",
                        hint="use --model mlp, --model transformer or --model FILE.py:FUNC")
    from ._usermodel import load_model

    user = load_model(model)
    make_batch = user.companion("make_batch")
    if not callable(make_batch):
        raise SpecError(f"{model.rpartition(':')[0]} defines no make_batch(key)",
                        hint="define make_batch(key) -> (x, y), one fixed batch for the check "
                        "(docs/coord-check.md)")
    batch = make_batch(jax.random.key(42))
    if not isinstance(batch, tuple) or len(batch) != 2:
        raise SpecError(f"make_batch(key) in {model.rpartition(':')[0]} returned "
                        f"{type(batch).__name__}, not a pair (x, y)",
                        hint="return (inputs, targets); targets may be None with no loss")
    user_loss = user.companion("loss")
    if callable(user_loss):
        def loss(m: Any, b: Any) -> Any:
            return user_loss(m, *b)
    else:
        loss = _linear_output_loss  # no loss: mean(model(x) * r), r fixed
    extra = {"layouts": user.companion("LAYOUTS"), "roles": user.companion("ROLES"),
             "tied": user.companion("TIED"), "branches": user.companion("BRANCHES")}
    return user.make_model, batch, loss, {k: v for k, v in extra.items() if v is not None}


def _linear_output_loss(model: Any, batch: Any) -> Any:
    # Without the file's own loss: `linear_loss` against a fixed N(0, 1) target of the
    # output's shape, so the output gradient is the same at every width.
    import jax
    import jax.numpy as jnp

    out = jax.vmap(model)(batch[0])
    r = jax.random.normal(jax.random.key(7), jnp.shape(out), dtype=out.dtype)
    return jnp.mean(out * r)


@app.command("sweep")
@handle_errors
def sweep_cmd(
    specs: Annotated[list[str], typer.Argument(help="Specs to sweep (names or paths).")],
    out: Annotated[Path, typer.Option("--out", help="Directory of results.csv and plots.")],
    model: Annotated[str, typer.Option("--model", help="Reference task (mlp, transformer) "
                                       "or your model as FILE.py:FUNC (FUNC(width, key); the "
                                       "file's make_batch(key, batch_size) -> (x, y), optional "
                                       "loss(model, x, y), LAYOUTS, ROLES, TIED, BRANCHES).")] = "mlp",
    widths: Annotated[str, typer.Option("--widths", help="Comma-separated widths.")]
    = "32,64,128",
    lrs: Annotated[str, typer.Option("--lrs", help="Comma-separated learning rates.")]
    = "1e-3,3e-3,1e-2,3e-2,1e-1",
    embed_lr_mult: Annotated[str, typer.Option(
        "--embed-lr-mult", help="Comma-separated factors on the learning rate of the "
        "input-role (embedding) blocks; each is swept as its own spec label.")] = "1",
    seeds: Annotated[int, typer.Option("--seeds", help="Seeds per point (0..N-1).")] = 2,
    steps: Annotated[int, typer.Option("--steps", help="Training steps per run.")] = 100,
    base_width: BaseWidthOpt = None,
    weight_decay: Annotated[float, typer.Option(
        "--weight-decay", help="Decoupled weight decay (AdamW), times each layer's factor.")]
    = 0.0,
    batch_size: Annotated[int | None, typer.Option(
        "--batch-size", help="Training batch size (default: the task's).")] = None,
    engine: Annotated[str, typer.Option(
        "--engine", help="vectorised (every lr and seed of a spec and width in one "
        "compiled program) or sequential (one run at a time).")] = "vectorised",
    chunk: Annotated[int | None, typer.Option(
        "--chunk", help="Runs per compiled program with --engine vectorised (default: as "
        "many as fit a quarter of the memory); lower it if memory runs out.")] = None,
    optimizer: OptimizerOpt = None,
    progress: Annotated[bool, typer.Option("--progress/--no-progress",
                                           help="Show a progress bar on stderr.")] = True,
    depths: Annotated[str | None, typer.Option(
        "--depths", help="Comma-separated depths (numbers of blocks): sweep across depth "
        "too (the model factory takes depth=; results gain a depth column).")] = None,
    base_depth: Annotated[int | None, typer.Option(
        "--base-depth", help="With --depths: the depth the constants were tuned at "
        "(default: the spec's, else the smallest depth).")] = None,
) -> None:
    """Train the reference model over specs x widths x lrs x seeds, appending each
    finished run to OUT/results.csv (rerun to resume), then plot into OUT. With
    --depths, also across depths (one --width for transfer across depth)."""
    from ._transfer import ResultsFile, TransferMetricError, summarize
    from ._transfer._plots import plot_sweep
    from ._transfer._sweep import sweep
    from ._transfer._vectorised import use_every_cpu_core

    if engine == "vectorised":
        use_every_cpu_core()  # before JAX starts: one CPU device per core
    if seeds < 1:
        raise SpecError(f"--seeds must be >= 1; got {seeds}")
    report = sweep(specs, model=model, widths=_ints("--widths", widths),
                   lrs=_floats("--lrs", lrs), embed_lr_mults=_floats("--embed-lr-mult",
                                                                     embed_lr_mult),
                   seeds=tuple(range(seeds)), steps=steps, base_width=base_width, out=out,
                   weight_decay=weight_decay, batch_size=batch_size, engine=engine,
                   chunk_size=chunk, progress=progress,
                   optimizer=optimizer.value if optimizer else None,
                   depths=_ints("--depths", depths) if depths is not None else None,
                   base_depth=base_depth)
    rows = ResultsFile(report.results).final_rows()
    # Across depth when depth is what varies (one width); else across width.
    axis = "depth" if depths is not None and len({r["width"] for r in rows}) == 1 else "width"
    if depths is not None and axis == "width":  # a width x depth grid: no one series
        _emit(f"{report.ran} runs trained, {report.skipped} already done; results in "
              f"{report.results}; no plots or metrics for several widths and depths: run "
              "`paramspec transfer-metrics` on the rows of one width (--axis depth) or one depth")
        return
    try:
        summary = summarize(rows, axis=axis)
    except TransferMetricError as e:  # e.g. everything diverged: still plot the losses
        sys.stderr.write(f"no metrics: {e}\n")
        summary = {}
    plots = plot_sweep(rows, summary, out, axis=axis)
    _emit(f"{report.ran} runs trained, {report.skipped} already done; results in "
          f"{report.results}; plots {', '.join(str(p) for p in plots)}")


@app.command("transfer-metrics")
@handle_errors
def transfer_metrics_cmd(
    results: Annotated[Path, typer.Argument(
        help="A sweep's results.csv, or any CSV / JSON Lines table with the columns spec, "
        "width, lr, loss (seed, step optional).")],
    reference: Annotated[str | None, typer.Option(
        "--reference", help="Spec label to measure R(inf) against (default: the best).")]
    = None,
    format: FormatOpt = Format.table,
    axis: Annotated[str, typer.Option(
        "--axis", help="width, or depth: transfer across depth (the rows' depth column, "
        "one width per spec).")] = "width",
) -> None:
    """Learning-rate transfer metrics of a sweep: eta* per width, p, E, kappa, R(inf) and
    the drift of the optimal learning rate in grid steps. Reads paramspec's results.csv or
    any tool's CSV / JSON Lines (seeds averaged, each run's last step); never writes it.
    --axis depth: the same across depth."""
    from ._transfer import transfer_metrics

    if not results.is_file():
        raise SpecError(f"{results} is not a file; pass the results.csv of a sweep "
                        "(`paramspec sweep ... --out DIR` writes DIR/results.csv) or a CSV / "
                        "JSON Lines table with the columns spec, width, lr, loss")
    summary = transfer_metrics(results, reference=reference, axis=axis)
    if format is Format.json:
        _json(summary)
        return

    def num(x: Any) -> str:
        return "-" if x is None else f"{x:.3g}"

    rows = []
    for spec, entry in summary.items():
        etas = " ".join(f"{o[axis]}:{o['lr_star']:.3g}{'*' if o['at_edge'] else ''}"
                        for o in entry["optima"])
        rows.append([spec, etas, num(entry["drift_steps"]), num(entry["p"]), num(entry["E"]),
                     num(entry["holdout_steps"]), num(entry["kappa"]), num(entry["R_inf"])])
    ref = next(iter(summary.values()))["reference"]
    _render_table(
        f"learning-rate transfer ({results})",
        ["spec", f"eta* by {axis}", "drift", "p", "E", "holdout", "kappa", "R(inf)"], rows,
        caption=f"drift and holdout in grid steps; E in ln(eta); R(inf) against {ref or '-'}; "
        "* = optimum at the grid's edge (left out of the fits).")
    notes = [f"{spec}: {note}" for spec, e in summary.items() for note in e["notes"]]
    for note in notes:
        _emit(note)


# ---------------------------------------------------------------------------- roles


@app.command("roles")
@handle_errors
def roles_cmd(
    spec: SpecArg,
    model: Annotated[str, typer.Option(
        "--model", help="FILE.py:FUNC, where FUNC(width, key) builds the Equinox model. The "
        "file's optional LAYOUTS, ROLES, TIED dicts and BRANCHES list are passed to c.init.")],
    width: Annotated[int, typer.Option("--width", help="Width to build the model at.")],
    base_width: BaseWidthOpt = None,
    optimizer: OptimizerOpt = None,
    format: FormatOpt = Format.table,
    depth: DepthOpt = None,
    base_depth: BaseDepthOpt = None,
) -> None:
    """Which block, role, fans and numbers every parameter of your model gets:
    c.describe(c.init(FUNC, key)) for the spec at --width (and --depth: FUNC(width, key,
    depth=...), docs/models.md "Depth")."""
    import jax

    from . import compile as compile_spec
    from ._usermodel import load_model

    user = load_model(model)
    c = compile_spec(spec, width=width, base_width=base_width,
                     optimizer=optimizer.value if optimizer else None, depth=depth,
                     base_depth=base_depth)
    built = c.init(user.make_model, jax.random.key(0), layouts=user.companion("LAYOUTS"),
                   roles=user.companion("ROLES"), tied=user.companion("TIED"),
                   branches=user.companion("BRANCHES"))
    rows = c.describe(built)
    if format is Format.json:
        _json({"parameters": rows})
        return

    def tie(row: dict[str, Any]) -> str:
        t = row["tied"]
        return "" if t is None else f"{t['block']} x{t['multiplier']:.4g}"

    deep = c.depth_given  # the depth columns (docs/models.md, "Depth")
    _render_table(
        f"{c.spec.name} at width {c.width} (base {c.base_width}, {c.optimizer_name}"
        + (f", depth {c.depth}, base {c.base_depth}" if deep else "") + f"): {model}",
        ["path", "block", "role", "fan_in", "fan_out", "multiplier", "init std", "lr x",
         "eps x", "wd x", "tied"] + (["depth", "branch x"] if deep else []),
        [[r["path"], r["block"], r["role"] or "-", str(r["fan_in"]), str(r["fan_out"]),
          _num(r["multiplier"]), _num(r["init_std"]), _num(r["lr_scale"]),
          _num(r["eps_scale"]), _num(r["wd_scale"]), tie(r)]
         + ([r["depth"] or "-", "-" if r["branch_multiplier"] is None
              else _num(r["branch_multiplier"])] if deep else []) for r in rows],
        caption="init std `keep`: the module's own values. tied: the block whose use the "
        "parameter's direct reads are, and the factor t on the stored array there.")


if __name__ == "__main__":  # pragma: no cover
    main()
