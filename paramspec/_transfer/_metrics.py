"""Metrics of learning-rate transfer across widths (theory.md §8, Kalra & Barkeshli).

A learning-rate sweep at several widths is reduced, per width, to the optimum of a
parabola in `ln(eta)` (`optimum`), and the optima across widths to three numbers:

- **E** (`lr_scaling`): how well `ln eta*(n) = ln C + p ln n` fits, as an rms
  residual and as the error when the largest width is predicted from the others;
- **kappa** (`kappa`): how fast the loss cost of a fixed multiplicative learning-rate
  error, `dL(n) = K(n) delta^2 / 2`, grows with width (`dL ∝ n^kappa`);
- **R(inf)** (`asymptotic_penalty`): the limit of the optimal-loss gap to a reference
  parameterization, fitted as `R(inf) + A n^(-rho)`.

`summarize` runs all of them on the rows of a sweep. Every logarithm is natural.
`summarize(rows, axis="depth")` computes the same with the depth (number of blocks)
in place of the width: the fits take `ln L` where they take `ln n`.
The formulas are paramspec's reading of the paper (its formulas are **[open]** in
theory.md); `docs/transfer-metrics.md` gives the reasoning and a worked example.

Fitted exponents (`p`, `kappa`, `rho`) are measurements, hence floats, unlike the
exact `Fraction` exponents of a spec.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np

from .._errors import SpecError

__all__ = [
    "Fit",
    "KappaFit",
    "Optimum",
    "Penalty",
    "TransferMetricError",
    "asymptotic_penalty",
    "drift_in_grid_steps",
    "kappa",
    "lr_scaling",
    "optimum",
    "summarize",
]

#: The scaling axes `summarize` can measure transfer across (a column of the rows).
AXES = ("width", "depth")

#: Default `delta` of `kappa`: a learning rate off by a factor of 2 either way.
LOG2 = math.log(2.0)

# The grid of `asymptotic_penalty` over rho in (0, 3]: coarse steps, then a fine
# grid around the best coarse value.
_RHO_COARSE = np.arange(1, 301) / 100.0
_RHO_FINE_STEP = 1e-4


class TransferMetricError(SpecError, ValueError):
    """A transfer metric cannot be computed from the data it was given."""


class Optimum(NamedTuple):
    """The optimum of one width's learning-rate sweep (see `optimum`)."""

    lr_star: float  # eta*, the fitted optimal learning rate
    loss_star: float  # L*, the fitted loss at eta*
    curvature: float  # K = d^2 L / d(ln eta)^2 at eta*; nan when at_edge
    log_lr_star: float  # ln eta*
    n_points: int  # grid points the parabola was fitted to; 1 when at_edge (no fit)
    at_edge: bool  # the best finite loss is the first or last finite grid point
    n_excluded: int = 0  # grid points dropped because their loss was nan or inf


class Fit(NamedTuple):
    """A power-law fit `ln eta*(n) = log_c + p ln n` (see `lr_scaling`)."""

    p: float  # exponent of eta* in the width
    log_c: float  # ln C, the intercept (the fitted ln eta* at n = 1)
    residual_rms: float  # E: rms of the residuals in ln eta; 0 for two widths
    holdout_error: float  # ln(eta*_predicted / eta*_measured) at the largest width; nan if < 3
    holdout_steps: float  # holdout_error in grid steps; nan without grid_ratio


class KappaFit(NamedTuple):
    """Growth of the loss cost of a learning-rate error with width (see `kappa`)."""

    kappa: float  # slope of ln dL against ln n
    delta_loss: tuple[float, ...]  # dL(n) = K(n) delta^2 / 2, in the order of the widths


class Penalty(NamedTuple):
    """`L*_P(n) - L*_ref(n) = r_inf + a n^(-rho)` (see `asymptotic_penalty`)."""

    r_inf: float  # R(inf), the asymptotic loss penalty
    a: float  # A, the amplitude of the finite-width part
    rho: float  # the decay exponent, in (0, 3]


# ----------------------------------------------------------------- validation


def _vector(name: str, values: Any, *, positive: bool = False, finite: bool = True) -> np.ndarray:
    try:
        array = np.asarray(values, dtype=float)
    except (TypeError, ValueError):
        raise TransferMetricError(
            f"`{name}` must be a sequence of numbers; got {values!r}."
        ) from None
    if array.ndim != 1 or array.size == 0:
        raise TransferMetricError(
            f"`{name}` must be a non-empty 1-D sequence of numbers; got shape {array.shape}."
        )
    if finite and not np.all(np.isfinite(array)):
        raise TransferMetricError(f"`{name}` must be finite; got {array.tolist()}.")
    if positive and not np.all(array > 0):
        raise TransferMetricError(
            f"`{name}` must be positive (they are taken logarithms of); got {array.tolist()}."
        )
    return array


def _same_length(**arrays: np.ndarray) -> None:
    lengths = {name: len(array) for name, array in arrays.items()}
    if len(set(lengths.values())) != 1:
        raise TransferMetricError(f"The sequences must have the same length; got {lengths}.")


def _widths(widths: Any, minimum: int, what: str) -> np.ndarray:
    array = _vector("widths", widths, positive=True)
    if len(np.unique(array)) != len(array):
        raise TransferMetricError(
            f"`widths` must be distinct; got {array.tolist()}. Average repeated widths first."
        )
    if len(array) < minimum:
        raise TransferMetricError(
            f"{what} needs at least {minimum} widths; got {len(array)} ({array.tolist()}). "
            "Sweep more widths."
        )
    return array


def _line(x: np.ndarray, y: np.ndarray) -> tuple[float, float, np.ndarray]:
    """Least-squares `y ≈ intercept + slope x`; returns slope, intercept, residuals."""
    design = np.column_stack([np.ones_like(x), x])
    (intercept, slope), *_ = np.linalg.lstsq(design, y, rcond=None)
    return float(slope), float(intercept), y - (intercept + slope * x)


# ------------------------------------------------------------------- optimum


def _vertex(dx: np.ndarray, y: np.ndarray) -> tuple[float, float, float] | None:
    """Vertex `(x, L, K)` of the least-squares parabola in `dx`, or None if not convex."""
    design = np.column_stack([dx**2, dx, np.ones_like(dx)])
    (a, b, c), *_ = np.linalg.lstsq(design, y, rcond=None)
    if not a > 0:
        return None
    return -b / (2 * a), c - b * b / (4 * a), 2 * a


def optimum(lrs: Sequence[float], losses: Sequence[float], *, k: int = 2) -> Optimum:
    r"""The optimal learning rate of one sweep, from a parabola in $\ln\eta$.

    With the finite-loss grid points sorted by learning rate and $i$ the one of least
    loss (the first on ties), a parabola $L \approx c + b x + a x^2$ in
    $x = \ln\eta - \ln\eta_i$ is least-squares fitted to point $i$ and up to `k`
    neighbours each side (fewer where the grid ends). Its vertex gives
    $\ln\eta^* = -b/(2a)$, $L^* = c - b^2/(4a)$ and the curvature
    $K = d^2L/d(\ln\eta)^2 = 2a$.

    The vertex of a unimodal loss lies between the neighbours $\eta_{i-1}$ and
    $\eta_{i+1}$; if the wider fit is not convex or puts it outside that bracket,
    the parabola through the three points $i-1, i, i+1$ is used, which is always
    convex with its vertex in the bracket (so $K > 0$ whenever not `at_edge`).

    **Diverged runs**: a loss that is `nan` or `±inf` is excluded (counted in
    `n_excluded`); the grid is the remaining points.

    **Edge**: if point $i$ is the first or last finite point, the optimum is not
    bracketed and is not extrapolated: `at_edge=True`, $\eta^*$ and $L^*$ are that
    grid point's, $K$ is `nan`. This includes a best run whose next larger learning
    rate diverged; refine the grid between the two to locate the optimum.

    **Arguments:**

    - `lrs`: the swept learning rates, positive and distinct (average seeds first).
    - `losses`: the final loss of each, `nan`/`inf` for diverged runs.
    - `k`: neighbours each side used by the fit (default 2: up to five points).

    **Returns:** an `Optimum`.

    ```python
    import numpy as np
    lrs = 2.0 ** np.arange(-12, -4)
    losses = 3.0 + 0.25 * (np.log(lrs) - np.log(1e-3)) ** 2  # K = 0.5, eta* = 1e-3
    opt = optimum(lrs, losses)
    assert abs(opt.lr_star - 1e-3) < 1e-12 and abs(opt.curvature - 0.5) < 1e-9
    ```
    """
    lr = _vector("lrs", lrs, positive=True)
    loss = _vector("losses", losses, finite=False)
    _same_length(lrs=lr, losses=loss)
    if not (isinstance(k, int) and k >= 1):
        raise TransferMetricError(f"`k` (neighbours each side) must be an int >= 1; got {k!r}.")
    order = np.argsort(lr)
    lr, loss = lr[order], loss[order]
    if np.any(np.diff(lr) == 0):
        raise TransferMetricError(
            f"`lrs` must be distinct; got {lr.tolist()}. Average the seeds of each "
            "learning rate first (as `summarize` does)."
        )
    finite = np.isfinite(loss)
    n_excluded = int(np.sum(~finite))
    if not finite.any():
        raise TransferMetricError(
            f"Every run diverged ({len(loss)} of {len(loss)} losses are nan or inf) at learning rates "
            f"{lr.tolist()}; there is no optimum. Sweep smaller learning rates."
        )
    x, y = np.log(lr[finite]), loss[finite]
    i = int(np.argmin(y))
    if i == 0 or i == len(y) - 1:
        return Optimum(
            float(lr[finite][i]), float(y[i]), math.nan, float(x[i]), 1, True, n_excluded
        )
    lo, hi = max(0, i - k), min(len(y), i + k + 1)
    vertex = _vertex(x[lo:hi] - x[i], y[lo:hi]) if hi - lo > 3 else None
    if vertex is None or not x[i - 1] <= x[i] + vertex[0] <= x[i + 1]:
        # The parabola through i-1, i, i+1 (i is the first least loss, so its slopes
        # are s1 < 0 <= s2) is always convex with its vertex in the bracket.
        d0, d2 = x[i - 1] - x[i], x[i + 1] - x[i]
        s1, s2 = (y[i - 1] - y[i]) / d0, (y[i + 1] - y[i]) / d2
        a = (s2 - s1) / (d2 - d0)
        b = s2 - a * d2
        vertex = -b / (2 * a), y[i] - b * b / (4 * a), 2 * a
        lo, hi = i - 1, i + 2
    dx, loss_star, curvature = vertex
    log_lr = float(x[i] + dx)
    return Optimum(
        math.exp(log_lr), float(loss_star), float(curvature), log_lr, hi - lo, False, n_excluded
    )


# ------------------------------------------------------------------ scaling E


def lr_scaling(
    widths: Sequence[float], lr_stars: Sequence[float], *, grid_ratio: float | None = None
) -> Fit:
    r"""Fit $\ln\eta^*(n) = \ln C + p \ln n$ and measure how well it extrapolates (**E**).

    - `p`, `log_c`: ordinary least squares over all widths.
    - `residual_rms` (**E**): $\sqrt{\frac1N\sum_j r_j^2}$ of the residuals $r_j$ in
      $\ln\eta$ (divided by N, not N-2: a plain rms; exactly 0 for two widths).
    - `holdout_error`: refit without the largest width, predict its $\ln\eta^*$;
      the error is $\ln\hat\eta^* - \ln\eta^*$ (positive: the extrapolation
      *overshoots*, the more dangerous side). Needs 3 widths, else `nan`.
    - `holdout_steps`: the same in steps of a log-spaced grid,
      `holdout_error / ln(grid_ratio)`; `nan` without `grid_ratio`.

    `widths` may be widths or width multipliers (only `log_c` depends on which).

    ```python
    fit = lr_scaling([64, 128, 256], [4e-3, 2e-3, 1e-3], grid_ratio=2.0)
    assert abs(fit.p + 1) < 1e-12 and abs(fit.holdout_steps) < 1e-9
    ```
    """
    n = _widths(widths, 2, "lr_scaling")
    eta = _vector("lr_stars", lr_stars, positive=True)
    _same_length(widths=n, lr_stars=eta)
    step = _grid_step(grid_ratio) if grid_ratio is not None else math.nan
    x, y = np.log(n), np.log(eta)
    p, log_c, residuals = _line(x, y)
    holdout = math.nan
    if len(n) >= 3:
        last = int(np.argmax(n))
        keep = np.arange(len(n)) != last
        slope, intercept, _ = _line(x[keep], y[keep])
        holdout = float(intercept + slope * x[last] - y[last])
    rms = float(np.sqrt(np.mean(residuals**2)))
    return Fit(p, log_c, rms, holdout, holdout / step)


def _grid_step(grid_ratio: float) -> float:
    if not (isinstance(grid_ratio, int | float) and math.isfinite(grid_ratio) and grid_ratio > 1):
        raise TransferMetricError(
            f"`grid_ratio` is the factor between neighbouring learning rates of the sweep "
            f"(e.g. 2 ** 0.5) and must be a number > 1; got {grid_ratio!r}."
        )
    return math.log(grid_ratio)


def drift_in_grid_steps(lr_stars: Sequence[float], grid_ratio: float) -> float:
    r"""How far apart the optimal learning rates of all widths are, in grid steps.

    $(\max_n \ln\eta^*(n) - \min_n \ln\eta^*(n)) / \ln(\text{grid\_ratio})$. 0 is
    perfect transfer; below 1 the optima share a grid point or neighbouring ones.

    ```python
    assert abs(drift_in_grid_steps([1e-3, 2e-3, 4e-3], grid_ratio=2 ** 0.5) - 4) < 1e-12
    ```
    """
    log_eta = np.log(_vector("lr_stars", lr_stars, positive=True))
    return float((log_eta.max() - log_eta.min()) / _grid_step(grid_ratio))


# ---------------------------------------------------------------------- kappa


def kappa(widths: Sequence[float], curvatures: Sequence[float], delta: float = LOG2) -> KappaFit:
    r"""The exponent **κ** of the loss cost of a fixed learning-rate error, $\Delta L \propto n^\kappa$.

    A learning rate off by a factor $e^{\delta}$ from $\eta^*(n)$ costs, to second
    order, $\Delta L(n) = K(n)\,\delta^2/2$ with $K$ the curvature of `optimum`.
    `kappa` is the least-squares slope of $\ln \Delta L$ against $\ln n$. Larger
    κ: an extrapolation error of the same size hurts more at larger width (less
    robust transfer). κ equals the slope of $\ln K$; `delta` (default $\ln 2$, a
    factor-2 error) only sets the `delta_loss` values.

    ```python
    fit = kappa([64, 256], [1.0, 4.0])  # K quadruples when n does: kappa = 1
    assert abs(fit.kappa - 1) < 1e-12
    ```
    """
    n = _widths(widths, 2, "kappa")
    curvature = _vector("curvatures", curvatures)
    _same_length(widths=n, curvatures=curvature)
    if not np.all(curvature > 0):
        bad = [(float(w), float(c)) for w, c in zip(n, curvature, strict=True) if not c > 0]
        raise TransferMetricError(
            f"Every curvature must be positive; got (width, K) = {bad}. A zero or nan K "
            "comes from a flat sweep or an optimum at the grid's edge: leave those widths out."
        )
    if not (isinstance(delta, int | float) and math.isfinite(delta) and delta != 0):
        raise TransferMetricError(
            f"`delta` is the log of a learning-rate error factor (e.g. math.log(2)) and must "
            f"be a finite non-zero number; got {delta!r}."
        )
    delta_loss = curvature * delta**2 / 2
    slope, _, _ = _line(np.log(n), np.log(delta_loss))
    return KappaFit(slope, tuple(float(v) for v in delta_loss))


# ------------------------------------------------------------------- R(inf)


def _penalty_at(rho: float, n: np.ndarray, gap: np.ndarray) -> tuple[float, float, float]:
    design = np.column_stack([np.ones_like(n), n**-rho])
    (r_inf, a), *_ = np.linalg.lstsq(design, gap, rcond=None)
    residual = gap - design @ np.array([r_inf, a])
    return float(residual @ residual), float(r_inf), float(a)


def asymptotic_penalty(
    widths: Sequence[float], loss_p: Sequence[float], loss_ref: Sequence[float],
    axis: str = "width",
) -> Penalty:
    r"""Fit $L^*_P(n) - L^*_{ref}(n) = R(\infty) + A n^{-\rho}$; $R(\infty)$ is the penalty.

    For fixed ρ the model is linear in $(R(\infty), A)$, so the fit minimises the
    squared residual over ρ (variable projection): a grid over ρ in (0, 3] in steps
    of 0.01, then steps of 1e-4 around the best, each solved by linear least
    squares. Why not `scipy.optimize.curve_fit`: scipy is not a dependency, and
    a local optimiser needs a starting ρ and can stop in a local minimum, while the
    1-D grid finds the global one over the stated range. The best ρ on the
    boundary (0.01 or 3) means the data don't pin it down; with A ≈ 0, ρ is
    meaningless. R(∞) is an extrapolation: trust it as far as the widths reach.
    `axis` (`"width"`, `"depth"`) names the size in the messages.

    **Undetermined fits raise.** When the gap is still moving at the largest width
    (e.g. it grows like ln n over the measured widths), the best ρ runs to the small
    end of the range, where 1 and n^(-ρ) are nearly collinear, and R(∞) and A
    blow up with opposite signs (R(∞) = -37 from gaps of a few 1e-3). The fit is
    accepted only if it extrapolates no further than the data moved: the change it
    predicts beyond the largest width, |A| n_max^(-ρ) = |R(∞) - fit(n_max)|, must
    not exceed the range of the measured gaps (max - min). Otherwise it raises
    `TransferMetricError` saying so (`summarize` reports `R_inf` as `None` with
    that reason in `notes`). For a fit that follows the data this is the condition
    (n_max/n_min)^ρ >= 2 (ρ >= 1/3 for widths spanning 8x).

    Needs at least three widths (three unknowns).

    ```python
    n = np.array([64.0, 128, 256, 512])
    fit = asymptotic_penalty(n, 3.0 + 0.05 + 2 * n**-0.5, np.full(4, 3.0))
    assert abs(fit.r_inf - 0.05) < 1e-6 and abs(fit.rho - 0.5) < 1e-3
    ```
    """
    n = _widths(widths, 3, "asymptotic_penalty (R(inf) + A n^(-rho) has three unknowns)")
    p = _vector("loss_p", loss_p)
    ref = _vector("loss_ref", loss_ref)
    _same_length(widths=n, loss_p=p, loss_ref=ref)
    n0 = float(n.min())
    n = n / n0  # n^-rho in (0, 1]: the same fit, better conditioned; A is rescaled below
    gap = p - ref
    coarse = [_penalty_at(rho, n, gap)[0] for rho in _RHO_COARSE]
    best = float(_RHO_COARSE[int(np.argmin(coarse))])
    fine = np.arange(best - 0.01, best + 0.01 + _RHO_FINE_STEP / 2, _RHO_FINE_STEP)
    fine = fine[(fine >= _RHO_COARSE[0] - 1e-12) & (fine <= 3)]  # the stated range
    fits = [(*_penalty_at(rho, n, gap), rho) for rho in fine]
    _, r_inf, a, rho = min(fits, key=lambda fit: fit[0])
    rho = float(rho)
    beyond = abs(a) * float(n.max()) ** -rho  # the change the fit predicts past n_max
    seen = float(gap.max() - gap.min())
    if beyond > seen + 1e-12 * max(1.0, float(np.abs(gap).max())):
        raise TransferMetricError(
            f"R(inf) is undetermined: the loss gap still moves at the largest {axis} "
            f"(best rho = {rho:.2g}), so the fit R(inf) + A n^(-rho) would extrapolate "
            f"{beyond:.3g} beyond {axis} {n.max() * n0:g}, more than the {seen:.3g} the gap "
            f"moved across {axis}s {n.min() * n0:g}..{n.max() * n0:g} (its R(inf) would be "
            f"{r_inf:.3g}); the gap at the largest {axis} is {gap[np.argmax(n)]:.3g}. "
            f"Add {'wider widths' if axis == 'width' else f'larger {axis}s'} to pin the "
            "limit down."
        )
    return Penalty(r_inf, a * n0**rho, rho)


# ------------------------------------------------------------------ summarize


def _number(value: float) -> float | None:
    """A plain float for JSON, or None for nan/inf (missing)."""
    value = float(value)
    return value if math.isfinite(value) else None


def _run(
    row: Mapping[str, Any], index: int, axis: str = "width"
) -> tuple[str, int, float, Any, float]:
    """(spec, width, lr, seed, loss) of one final row, the loss inf if it diverged; with
    `axis="depth"` the depth in place of the width."""
    try:
        spec, width, lr, seed, loss = (row[key] for key in ("spec", axis, "lr", "seed", "loss"))
    except KeyError as missing:
        raise TransferMetricError(
            f"Row {index} has no {missing}; every row needs spec, {axis}, lr, seed and loss "
            f"(and may have status). Got keys {sorted(row)}."
        ) from None
    status = row.get("status", "ok")
    if status not in ("ok", "diverged"):
        raise TransferMetricError(
            f"Row {index} has status {status!r}; summarize takes the final row of each run "
            "(status 'ok' or 'diverged'), e.g. `ResultsFile(path).final_rows()`."
        )
    try:
        width, lr, loss = int(width), float(lr), float(loss)
    except (TypeError, ValueError):
        raise TransferMetricError(
            f"Row {index}: {axis} must be an int, lr and loss numbers; got "
            f"{axis}={row[axis]!r}, lr={row['lr']!r}, loss={row['loss']!r}."
        ) from None
    if width != float(row[axis]) or width <= 0 or not lr > 0:
        raise TransferMetricError(
            f"Row {index}: {axis} must be a positive integer and lr a positive number; got "
            f"{axis}={row[axis]!r}, lr={row['lr']!r}."
        )
    diverged = status == "diverged" or not math.isfinite(loss)
    return str(spec), width, lr, seed, math.inf if diverged else loss


def _losses_by_lr(
    rows: Iterable[Mapping[str, Any]], axis: str = "width"
) -> dict[str, dict[int, dict[float, list]]]:
    """spec -> width (or depth, by `axis`) -> lr -> [loss of each seed], inf for a
    diverged run. The other axis, where the rows have it, must be one value per spec."""
    runs: dict[tuple[str, int, float], dict[Any, float]] = {}
    other = "depth" if axis == "width" else "width"
    held: dict[str, set[Any]] = {}  # spec -> the values of the other axis
    for index, row in enumerate(rows):
        spec, width, lr, seed, loss = _run(row, index, axis)
        held.setdefault(spec, set()).add(row.get(other))
        if len(held[spec]) > 1:
            values = sorted(held[spec], key=repr)
            raise TransferMetricError(
                f"Transfer across {axis} needs one {other} per spec; {spec!r} has {other}s "
                f"{values}. Pass the rows of one {other} (e.g. filter on row['{other}']), or "
                f"measure across {other} (axis={other!r}, `--axis {other}`)."
            )
        seeds = runs.setdefault((spec, width, lr), {})
        if seed in seeds:
            raise TransferMetricError(
                f"Two rows for spec={spec!r}, {axis}={width}, lr={lr!r}, seed={seed!r}; pass one "
                "final row per run (`ResultsFile(path).final_rows()`), and give runs that differ "
                "in anything else (model, embed_lr_mult, ...) different spec labels."
            )
        seeds[seed] = loss
    nested: dict[str, dict[int, dict[float, list]]] = {}
    for (spec, width, lr), seeds in runs.items():
        nested.setdefault(spec, {}).setdefault(width, {})[lr] = list(seeds.values())
    return nested


def summarize(
    rows: Iterable[Mapping[str, Any]],
    reference: str | None = None,
    *,
    k: int = 2,
    delta: float = LOG2,
    grid_ratio: float | None = None,
    axis: str = "width",
) -> dict[str, dict[str, Any]]:
    r"""All transfer metrics, per spec, from the final rows of a sweep.

    `rows`: mappings with `spec`, `width`, `lr`, `seed`, `loss` and optionally
    `status` (`'ok'` or `'diverged'`), one per run: `ResultsFile(path).final_rows()`
    or plain dicts.

    1. **Seeds are averaged first**: for each (spec, width, lr) the loss is the mean
       over seeds; if any seed diverged (status `'diverged'` or a nan/inf loss),
       that learning rate counts as diverged. Averaging losses, not per-seed optima,
       keeps one parabola fit per width on a less noisy curve.
    2. `optimum` per width (with `k`).
    3. Widths whose optimum is `at_edge` are left out of every fit (their optimum is
       only a bound) and listed in `edge_widths`.
    4. `lr_scaling` (`p`, `log_c`, `E`, `holdout_error`, `holdout_steps`),
       `kappa` (with `delta`) and `drift_in_grid_steps` on the remaining widths;
       `grid_ratio` defaults to the median ratio of neighbouring swept learning rates.
    5. `asymptotic_penalty` (`R_inf`, `A`, `rho`) against `reference` on the widths
       both have; `reference=None` picks the spec with the lowest L* at the largest
       width where every spec has a bracketed optimum.

    A metric that cannot be computed is `None`, with the reason in `notes`. The
    result is JSON-serialisable (plain floats, `None` for missing) and its scalar
    entries form one table row per spec.

    **Returns:** `{spec: {"spec", "widths", "grid_ratio", "p", "log_c", "E",
    "holdout_error", "holdout_steps", "kappa", "delta", "drift_steps", "reference",
    "R_inf", "A", "rho", "edge_widths", "optima", "notes"}}`, where `optima` lists,
    per width, the `Optimum` fields plus `width`, `n_lrs`, `n_seeds` and `delta_loss`
    (the $\Delta L$ of `kappa`, `None` where the width is not in the kappa fit).

    **Across depth** (`axis="depth"`): the same with the rows' `depth` (number of
    blocks) in place of `width` everywhere (`p` is the slope of $\ln\eta^*$ against
    $\ln L$, R(∞) the limit in depth); the keys `widths`, `edge_widths` and each
    optimum's `width` become `depths`, `edge_depths` and `depth`. The rows of a spec
    must then share one width (and, across width, one depth where they have one).
    """
    if axis not in AXES:
        raise TransferMetricError(f"Unknown axis {axis!r}; use one of {', '.join(AXES)}.")
    losses = _losses_by_lr(rows, axis)
    if not losses:
        raise TransferMetricError("summarize got no rows; run the sweep first.")
    if reference is not None and reference not in losses:
        raise TransferMetricError(
            f"The reference spec {reference!r} is not in the rows; specs found: {sorted(losses)}."
        )
    optima: dict[str, dict[int, Optimum]] = {}
    summary: dict[str, dict[str, Any]] = {}
    for spec, by_width in sorted(losses.items()):
        optima[spec], summary[spec] = _summarize_spec(spec, by_width, k, delta, grid_ratio,
                                                      axis)
    if reference is None:
        reference = _best_spec(optima)
    for spec, entry in summary.items():
        penalty, note = _penalty(spec, reference, optima, axis)
        entry.update(penalty)
        if note:
            entry["notes"].append(note)
    return summary


def _summarize_spec(
    spec: str,
    by_width: dict[int, dict[float, list[float]]],
    k: int,
    delta: float,
    grid_ratio: float | None,
    axis: str = "width",
) -> tuple[dict[int, Optimum], dict[str, Any]]:
    notes: list[str] = []
    optima: dict[int, Optimum] = {}
    table: dict[int, dict[str, Any]] = {}  # width -> its row of "optima"
    steps: list[float] = []
    for width in sorted(by_width):
        by_lr = by_width[width]
        lrs = sorted(by_lr)
        means = [float(np.mean(by_lr[lr])) for lr in lrs]  # inf if any seed diverged
        steps.extend(np.diff(np.log(lrs)).tolist())
        try:
            opt = optimum(lrs, means, k=k)
        except TransferMetricError as error:
            notes.append(f"{axis} {width}: {error.message}")
            continue
        optima[width] = opt
        table[width] = {
            axis: width,
            "lr_star": opt.lr_star,
            "loss_star": opt.loss_star,
            "curvature": _number(opt.curvature),
            "log_lr_star": opt.log_lr_star,
            "n_points": opt.n_points,
            "at_edge": opt.at_edge,
            "n_excluded": opt.n_excluded,
            "n_lrs": len(lrs),
            "n_seeds": min(len(seeds) for seeds in by_lr.values()),
            "delta_loss": None,
        }
    if grid_ratio is None and steps:
        grid_ratio = math.exp(float(np.median(steps)))
    edge = [w for w, o in optima.items() if o.at_edge]
    if edge:
        notes.append(
            f"{axis}s {edge}: optimum at the edge of the learning-rate grid, left out of the "
            "fits; extend the grid there."
        )
    good = [w for w, o in optima.items() if not o.at_edge]
    entry: dict[str, Any] = {
        "spec": spec,
        f"{axis}s": sorted(by_width),
        "grid_ratio": _number(grid_ratio) if grid_ratio is not None else None,
        "p": None,
        "log_c": None,
        "E": None,
        "holdout_error": None,
        "holdout_steps": None,
        "kappa": None,
        "delta": float(delta),
        "drift_steps": None,
        f"edge_{axis}s": edge,
        "optima": list(table.values()),
        "notes": notes,
    }
    if len(good) >= 2:
        fit = lr_scaling(good, [optima[w].lr_star for w in good], grid_ratio=grid_ratio)
        entry.update(
            p=fit.p,
            log_c=fit.log_c,
            E=fit.residual_rms,
            holdout_error=_number(fit.holdout_error),
            holdout_steps=_number(fit.holdout_steps),
        )
        if grid_ratio is not None:
            entry["drift_steps"] = drift_in_grid_steps(
                [optima[w].lr_star for w in good], grid_ratio
            )
        fit_kappa = kappa(good, [optima[w].curvature for w in good], delta)
        entry["kappa"] = fit_kappa.kappa
        for width, delta_loss in zip(good, fit_kappa.delta_loss, strict=True):
            table[width]["delta_loss"] = delta_loss
    else:
        notes.append(f"E and kappa need 2 {axis}s with a bracketed optimum; got {len(good)}.")
    return optima, entry


def _best_spec(optima: dict[str, dict[int, Optimum]]) -> str | None:
    """The spec of lowest L* at the largest width where every spec is bracketed."""
    shared = set.intersection(
        *({w for w, o in by_width.items() if not o.at_edge} for by_width in optima.values())
    )
    if not shared:
        return None
    width = max(shared)
    return min(optima, key=lambda spec: optima[spec][width].loss_star)


def _penalty(
    spec: str, reference: str | None, optima: dict[str, dict[int, Optimum]], axis: str = "width"
) -> tuple[dict[str, Any], str | None]:
    """The R(inf) entries of `spec` against `reference`, and a note if they are missing."""
    entry: dict[str, Any] = {"reference": reference, "R_inf": None, "A": None, "rho": None}
    if reference is None:
        note = f"R(inf): no {axis} where every spec has a bracketed optimum to pick a reference."
        return entry, note if len(optima) > 1 else None
    if spec == reference:
        return entry, None
    mine, ref = optima[spec], optima[reference]
    shared = sorted(w for w in mine if w in ref and not mine[w].at_edge and not ref[w].at_edge)
    if len(shared) < 3:
        return entry, (
            f"R(inf) needs 3 {axis}s bracketed in both {spec!r} and {reference!r}; got {shared}."
        )
    try:
        fit = asymptotic_penalty(
            shared, [mine[w].loss_star for w in shared], [ref[w].loss_star for w in shared],
            axis=axis,
        )
    except TransferMetricError as error:  # an ill-conditioned extrapolation: no number
        return entry, f"{error.message} (reference {reference!r})"
    return {**entry, "R_inf": fit.r_inf, "A": fit.a, "rho": fit.rho}, None
