"""The coordinate check across depth (reference/theory.md §9 with L in place of n, §10).

At one fixed width, train `steps` optimizer steps on one fixed batch at several depths
`L` (the spec compiled at `depth=L`, `m = L / base_depth`), measure the rms change of
the residual stream and of every block's contribution to it, and fit the slope of its log
against `log L`; compare it with the first-step prediction derived from the spec's depth
exponents (`depth_first_step_terms`), judged by the width check's one rule
(`paramspec._coord.judgement`).

The quantities (docs/coord-check.md, "Across depth"):

- `stream`: the final residual stream, before the final norm: `embed + sum of every
  branch's output as added` (after the branch multiplier `m^(-beta)`).
- `block (first)`, `blocks (mean)`, `block (last)`: one block's contribution to the
  stream (its branches' outputs as added) for the first block, averaged over all blocks,
  for the last block. CompleteP: each is Theta(1/L) (slope -1), the branch itself before
  `m^(-1)` moves by Theta(1): no block is lazy.
- `logits`: the model's output.

The model must be built by `make_model(width, key, depth=L)` and expose
`features(x) -> {name: array}` with `embed` (the stream's start), `blocks[i].NAME` (each
branch's output as added to the stream) and `logits`: the reference transformer
(`paramspec.models.transformer`) does. Users' own models follow once `c.init` learns the
repeated blocks of a model (issue 13); until then they are refused with a SpecError.
"""

from __future__ import annotations

import inspect
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import numpy as np

from ._compile import compile as compile_spec
from ._coord import CoordCheck, LayerSlope, _calibrate, _make_step, _slope, judgement
from ._errors import SpecError
from ._ir import Spec

__all__ = ["DepthCheck", "branch_groups", "coord_check_depth", "depth_first_step_terms"]

ZERO, HALF = Fraction(0), Fraction(1, 2)
STREAM, FIRST, MEAN, LAST, LOGITS = (
    "stream", "block (first)", "blocks (mean)", "block (last)", "logits")
QUANTITY_ROLES = {STREAM: "stream", FIRST: "block", MEAN: "block", LAST: "block",
                  LOGITS: "output"}
BLOCK = re.compile(r"^blocks\[(\d+)\]\.")
# The modules of a branch that write into the residual stream (the second matrix of a
# branch: the MLP's down projection, attention's output projection): the reference
# transformer's and nanoGPT's names. The others inside a block read from the stream.
WRITERS = ("down", "output_proj", "c_proj")
INSIDE = ("norm", "first", "second")
OUTSIDE = ("embedding", "final_norm", "readout")


# ----------------------------------------------------------------------------- theory


def branch_groups(compiled: Any, model: Any) -> dict[str, list[str]]:
    """Where each spec block's parameters sit in a pre-norm residual network, by path:
    inside a repeated block (`blocks[i]....`): `norm` (its norms' gains), `first` (the
    matrices reading the normalised stream: q, k, v, up), `second` (the matrices writing
    into the stream: attention's output projection, the MLP's down projection); outside:
    `embedding`, `final_norm`, `readout`. Positions come from the model, exponents from
    the spec (a depth-blind spec such as `mup` declares no `depth repeated` block, but
    its hidden matrices still sit inside the blocks)."""
    from ._equinox._build import parameter_blocks

    groups: dict[str, list[str]] = {g: [] for g in INSIDE + OUTSIDE}
    for path, name in parameter_blocks(model).items():
        role = compiled.block(name).role
        if BLOCK.match(path):
            modules = path.split(".")[:-1]
            group = ("norm" if role == "vector" else
                     "second" if modules and modules[-1] in WRITERS else "first")
        else:
            group = {"input": "embedding", "vector": "final_norm", "output": "readout",
                     "hidden": "first", "constant": "readout"}[role]
            if role == "hidden":  # a hidden matrix outside the blocks: not this model
                raise SpecError(f"{path} is a hidden matrix outside the residual blocks",
                                hint="the depth check knows pre-norm residual networks: "
                                "embedding, blocks[i], final norm, readout")
        if name not in groups[group]:
            groups[group].append(name)
    return groups


def depth_first_step_terms(compiled: Any, groups: Mapping[str, Sequence[str]]
                           ) -> dict[str, tuple[Fraction, ...]]:
    """The exponents `r` (change `∝ m^(-r)`) of the first-order terms of each depth
    quantity's first-step change; its predicted slope is `-min(terms)`.

    From the spec's depth exponents (`compiled.depth_theory`: branch multiplier
    `m^(-beta)`, each block's multiplier `a`, init `b` and learning rate `c`) and where
    its parameters sit (`branch_groups`), for a pre-norm network whose branches are a
    norm gain, a first matrix and a second matrix in series (docs/coord-check.md):

    - sizes at init: a group's weights `m^(-rho)`, `rho = a + b`; a branch's output as
      added `m^(-f)`, `f = beta + rho_norm + rho_first + rho_second`; the stream grows
      like `m^sigma`, `sigma = max(0, 1/2 - f)` (L independent branches), and the final
      and the blocks' norms divide by it, so the stream's gradient carries `m^(-sigma)`;
    - a parameter's per-entry step `s`: `c` (adam, adam_atan2, muon), `b + c`
      (adafactor), `c + g` (sgd; `g` its gradient's exponent: `sigma + beta + a +` the
      sizes of what is in series with it inside the branch; outside: `sigma + a` for the
      embedding, `a +` the other's size for the final norm and the readout);
    - one branch's change from its own update: `u = beta + a + s +` the others' sizes;
      the embedding moves the stream by `u_e = a + s`;
    - `stream`: `u_e`, and `u - 1` for each group inside the blocks (the parts of the L
      blocks' changes along the descent direction add up coherently: each lowers the
      loss), and `u - 1/2` (their random parts add up like `sqrt(L)`: subleading, but
      visible at small depths);
    - a block: its own `u`s, and its response to the change of its normalised input,
      `f + r_stream + sigma` (`f + u_e` for the first block, whose input is the
      embedding);
    - `logits`: the readout's and the final norm's own updates, and the stream's change
      through the final norm, `r_stream + sigma + rho_final_norm + rho_readout`.

    - finite depth: for `f > 1/2` the blocks' share of the stream at init falls like
      `m^(1 - 2f)` against the embedding's, and everything behind a norm sees a relative
      correction of that order: each quantity gets a subleading term `min(terms) + 2f - 1`
      (CompleteP: 1; measured on its first block: -1.15 for a predicted -1).

    Only groups the model has take part. Known gaps: attention's q/k path (a term
    `2 (rho_norm + rho_first)` above the v path, subleading when those are >= 0) is left
    out, and so are second-order terms.
    """
    dt = compiled.depth_theory
    opt = compiled.optimizer_name
    beta = dt.branch
    layers = {g: [dt.layers[name] for name in groups.get(g, ())] for g in INSIDE + OUTSIDE}

    def rho(g: str) -> Fraction:  # the largest weights of the group lead
        return min((d.a + d.b for d in layers[g]), default=ZERO)

    r_n, r_1, r_2 = rho("norm"), rho("first"), rho("second")
    f = beta + r_n + r_1 + r_2
    sigma = max(ZERO, HALF - f)
    others = {"norm": r_1 + r_2, "first": r_n + r_2, "second": r_n + r_1,
              "embedding": ZERO, "final_norm": rho("readout"), "readout": rho("final_norm")}

    def updates(g: str) -> list[Fraction]:
        out = []
        for d in layers[g]:
            if opt == "sgd":
                grad = d.a + others[g] + (sigma + beta if g in INSIDE else
                                          sigma if g == "embedding" else ZERO)
                s = d.c + grad
            elif opt == "adafactor":
                s = d.b + d.c
            else:  # adam, adam_atan2 (sign-like first step), muon (orthogonalised)
                s = d.c
            out.append((beta if g in INSIDE else ZERO) + d.a + s + others[g])
        return out

    u_e = updates("embedding")
    inside = [u for g in INSIDE for u in updates(g)]
    # each block's own change: a part along the descent direction (L blocks add up, -1)
    # and a random part (L blocks add up like sqrt(L), -1/2: subleading)
    stream = tuple(sorted(set(u_e + [u - 1 for u in inside] + [u - HALF for u in inside])))
    if not stream:
        raise SpecError("the model has no trained parameter in the residual stream",
                        hint="the depth check needs an embedding or residual blocks")
    r_stream = min(stream)
    block = tuple(sorted(set(inside + [f + r_stream + sigma])))
    first = tuple(sorted(set(inside + [f + u for u in u_e])))
    logits = tuple(sorted(set(updates("readout") + updates("final_norm")
                              + [r_stream + sigma + rho("final_norm") + rho("readout")])))
    out = {STREAM: stream, FIRST: first, MEAN: block, LAST: block, LOGITS: logits}
    if f > HALF:  # the blocks' share of the stream at init, m^(1 - 2f) (see above)
        out = {q: tuple(sorted(set(t + (min(t) + 2 * f - 1,)))) for q, t in out.items()}
    return out


# ----------------------------------------------------------------------------- result


@dataclass(frozen=True)
class DepthCheck(CoordCheck):
    """A coordinate check across depth: `layers` are the depth quantities (`stream`,
    `block (first)`, `blocks (mean)`, `block (last)`, `logits`), their `widths` the
    depths. `passed`: every quantity's slope matches its prediction (as across width);
    `flat`: the residual stream's change is flat in depth (its slope within the band
    around 0): the spec is depth-stable, the L blocks together move the stream by Θ(1)."""

    width: int = 0
    base_depth: int = 1
    depth_alpha: Fraction = Fraction(1)

    @property
    def flat(self) -> bool:
        stream = self.layer(STREAM)
        below, above = stream.tolerance
        return -below <= stream.slope <= above

    def to_dict(self) -> dict[str, Any]:
        out = super().to_dict()
        for layer in out["layers"].values():
            layer["depths"] = layer.pop("widths")
        return {**out, "axis": "depth", "width": self.width, "base_depth": self.base_depth,
                "depth_alpha": str(self.depth_alpha), "flat": self.flat}


# ----------------------------------------------------------------------------- measurement


def _quantities(features: Mapping[str, Any], depth: int) -> dict[str, np.ndarray]:
    """The stream, every block's contribution, the logits, from the model's features."""
    blocks: dict[int, Any] = {}
    for name, value in features.items():
        match = BLOCK.match(name)
        if match:
            i = int(match.group(1))
            blocks[i] = blocks.get(i, 0) + np.asarray(value, dtype=np.float64)
    stream = np.asarray(features["embed"], dtype=np.float64) + sum(blocks.values())
    out = {STREAM: stream, LOGITS: np.asarray(features["logits"], dtype=np.float64)}
    out.update({f"block {i}": blocks[i] for i in range(depth)})
    return out


def _check_model(make_model: Callable, model: Any, features: Mapping[str, Any],
                 depth: int) -> None:
    names = set(features)
    found = {int(m.group(1)) for n in names if (m := BLOCK.match(n))}
    if "embed" not in names or "logits" not in names or found != set(range(depth)):
        raise SpecError(
            f"{type(model).__name__}.features(x) must name `embed`, `blocks[i].NAME` for "
            f"i < {depth} (each branch's output as added to the stream) and `logits`; got "
            f"{', '.join(sorted(names)[:6])}{', ...' if len(names) > 6 else ''}",
            hint="the reference transformer (paramspec.models.transformer) does")


def coord_check_depth(
    spec: Spec | str,
    make_model: Callable[..., Any],
    inputs: Any,
    loss: Callable[[Any, Any], Any],
    *,
    depths: Sequence[int] = (2, 4, 8, 16),
    width: int = 64,
    base_depth: int | None = None,
    base_width: int | None = None,
    depth_alpha: Any = None,
    steps: int = 1,
    seeds: Sequence[int] = (0, 1),
    learning_rate: float | None = None,
    optimizer: str | None = None,
    tolerance: float | None = None,
    eps: float = 1e-8,
    target_change: float = 1e-2,
    layouts: Mapping[str, Any] | None = None,
    roles: Mapping[str, str] | None = None,
    tied: Mapping[str, str] | None = None,
    branches: Sequence[str] | None = None,
) -> DepthCheck:
    """The coordinate check across depth: `ps.coord_check(..., depths=...)` lands here.

    - `make_model(width, key, depth=L)` builds the model with `L` blocks (e.g.
      `functools.partial(paramspec.models.transformer, vocab=32)`); each depth is built
      with `c.init`, the spec compiled at `width`, `depth=L`, `base_depth` (default: the
      smallest depth, so the first model is the spec at its base depth) and `depth_alpha`.
    - `inputs`: one fixed batch, `loss(model, inputs) -> scalar`.
    - `learning_rate=None` calibrates a perturbative one as across width: one probe at
      the smallest and the largest depth, scaled so that the largest relative change of
      any quantity is about `target_change`.
    - Judged by the width check's rule (`judgement`), or a symmetric `tolerance`.
    """
    import equinox as eqx
    import jax

    depths = tuple(depths)
    if len(depths) < 2 or len(set(depths)) != len(depths) or min(depths) < 1:
        raise SpecError("a coordinate check across depth needs at least two different "
                        "positive depths", hint="e.g. depths=(2, 4, 8, 16)")
    if steps < 1:
        raise SpecError(f"steps must be at least 1, got {steps}")
    if not seeds:
        raise SpecError("a coordinate check needs at least one seed")
    if learning_rate is not None and not learning_rate > 0:
        raise SpecError(f"the learning rate must be positive, got {learning_rate}")
    try:
        takes_depth = "depth" in inspect.signature(make_model).parameters
    except (TypeError, ValueError):
        takes_depth = False
    if not takes_depth:
        raise SpecError(
            "make_model must take the number of blocks, make_model(width, key, depth=L), "
            "for a coordinate check across depth",
            hint="e.g. functools.partial(paramspec.models.transformer, vocab=32); your own "
            "models: once c.init learns their repeated blocks (issue 13)")
    base = base_depth if base_depth is not None else min(depths)
    init_kwargs = {k: v for k, v in (("layouts", layouts), ("roles", roles), ("tied", tied),
                                     ("branches", branches)) if v is not None}

    def compiled(depth: int) -> Any:
        return compile_spec(spec, width=width, base_width=base_width, optimizer=optimizer,
                            depth=depth, base_depth=base, depth_alpha=depth_alpha)

    def build(c: Any, depth: int, seed: int) -> Any:
        # `c` is compiled at `depth`, so `c.init` builds make_model(width, key, depth=depth)
        # itself, and learns the repeated blocks from a second depth (docs/models.md "Depth").
        return c.init(make_model, jax.random.key(seed), **init_kwargs)

    x = inputs[0] if isinstance(inputs, tuple) else inputs

    def features(model: Any) -> dict[str, Any]:
        return jax.vmap(model.features)(x)

    # Validation, before any training: the model at the smallest depth and its features.
    c0 = compiled(min(depths))
    first = build(c0, min(depths), seeds[0])
    if not (hasattr(first, "features") and hasattr(first, "feature_roles")):
        raise SpecError(
            f"the coordinate check across depth needs the model's own features(x) (embed, "
            f"blocks[i].NAME, logits); {type(first).__name__} has none",
            hint="use the reference transformer (--model transformer); users' own models "
            "follow once c.init learns their repeated blocks (issue 13)")
    _check_model(make_model, first, features(first), min(depths))
    terms = depth_first_step_terms(c0, branch_groups(c0, first))

    def run(c: Any, depth: int, seed: int, lr: float, model: Any = None
            ) -> tuple[dict[str, float], dict[str, float], dict[str, float]]:
        model = build(c, depth, seed) if model is None else model
        opt = c.optimizer(model, learning_rate=lr, eps=eps)
        state = opt.init(eqx.filter(model, eqx.is_inexact_array))
        step = _make_step(opt, loss, inputs, jit=False)  # eager: L blocks unroll slowly
        before = _quantities(features(model), depth)
        for _ in range(steps):
            model, state = step(model, state)
        after = _quantities(features(model), depth)
        delta, size = {}, {}
        for name in before:
            d = after[name] - before[name]
            delta[name] = float(np.sqrt(np.mean(d * d)))
            size[name] = float(np.sqrt(np.mean(before[name] ** 2)))
        blocks = [f"block {i}" for i in range(depth)]
        out_d = {STREAM: delta[STREAM], LOGITS: delta[LOGITS], FIRST: delta[blocks[0]],
                 LAST: delta[blocks[-1]], MEAN: sum(delta[b] for b in blocks) / depth}
        out_s = {STREAM: size[STREAM], LOGITS: size[LOGITS], FIRST: size[blocks[0]],
                 LAST: size[blocks[-1]], MEAN: sum(size[b] for b in blocks) / depth}
        rel = {k: out_d[k] / out_s[k] if out_s[k] > 0 else math.nan for k in out_d}
        return out_d, out_s, rel

    source = "given"
    if learning_rate is None:
        source = "perturbative"

        def probe(lr: float) -> dict[str, float]:
            out: dict[str, float] = {}
            for depth in (min(depths), max(depths)):
                for name, r in run(compiled(depth), depth, seeds[0], lr)[2].items():
                    out[name] = max(out.get(name, -math.inf), r) if math.isfinite(r) else r
            return out

        learning_rate = _calibrate(probe, 1e-3, target_change)

    deltas: dict[str, list[float]] = {q: [] for q in QUANTITY_ROLES}
    sizes: dict[str, list[float]] = {q: [] for q in QUANTITY_ROLES}
    relative: dict[str, float] = {q: 0.0 for q in QUANTITY_ROLES}
    for depth in depths:
        c = compiled(depth)
        per_seed = [run(c, depth, seed, learning_rate,
                        model=first if (depth, seed) == (min(depths), seeds[0]) else None)
                    for seed in seeds]
        for q in QUANTITY_ROLES:
            deltas[q].append(sum(p[0][q] for p in per_seed) / len(per_seed))
            sizes[q].append(sum(p[1][q] for p in per_seed) / len(per_seed))
            relative[q] = max(relative[q], sum(p[2][q] for p in per_seed) / len(per_seed))

    layers = []
    for q, role in QUANTITY_ROLES.items():
        band, note = judgement(role, terms[q], depths)
        if tolerance is not None:
            band, note = (tolerance, tolerance), ""
        layer = LayerSlope(q, role, depths, tuple(deltas[q]), tuple(sizes[q]),
                           _slope(depths, deltas[q]), float(-min(terms[q])), band,
                           relative[q], note.replace("n^", "m^"))
        if layer.flagged:
            layer = LayerSlope(**{**layer.__dict__, "note": (
                f"changed by {layer.relative:.2g}x its own size: outside the perturbative "
                "regime, not judged (lower the learning rate)")})
        layers.append(layer)
    return DepthCheck(
        spec.name if isinstance(spec, Spec) else str(spec), c0.optimizer_name, c0.alignment,
        steps, learning_rate, tuple(layers), "first_step", source, type(first).__name__,
        width=width, base_depth=base, depth_alpha=c0.depth_alpha)


def plot_depth_check(checks: Sequence[DepthCheck], path: Any) -> Any:
    """Log-log rms change against depth: one panel per quantity, one curve per check
    (spec), with the measured and the predicted slope in the legend."""
    from ._transfer._plots import _pyplot, save_figure

    plt = _pyplot()
    names = [layer.name for layer in checks[0].layers]
    fig, axes = plt.subplots(1, len(names), figsize=(3.2 * len(names), 3.4), squeeze=False)
    for ax, name in zip(axes[0], names, strict=True):
        for check in checks:
            layer = check.layer(name)
            ax.plot(layer.widths, layer.deltas, "o-",
                    label=f"{check.spec}: {layer.slope:+.2f} ({layer.predicted:+.2g})")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("depth L")
        ax.set_title(name, fontsize=9)
        ax.legend(fontsize=7)
    axes[0][0].set_ylabel("rms change (slope, predicted)")
    fig.suptitle(f"coordinate check across depth ({checks[0].optimizer}, width "
                 f"{checks[0].width}, {checks[0].steps} step(s))", fontsize=9)
    return save_figure(fig, path)
