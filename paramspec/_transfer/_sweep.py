"""The training loop of a learning-rate sweep: tiny reference models, resumable results.

`sweep` trains every (spec, width, lr, embedding-lr multiplier, seed) of a grid on one
of two reference tasks and appends each finished run's final row to `DIR/results.csv`
(`ResultsFile`: one atomic append per run, so a killed sweep resumes where it stopped):

- `"mlp"`: `paramspec.models.mlp` regressing a fixed random *teacher* (a tanh MLP of
  width 64 on Gaussian inputs; targets scaled to unit variance), fresh batches each
  step, mean squared error on a fixed held-out batch.
- `"transformer"`: `paramspec.models.transformer` as a character model of the shipped
  corpus (`_transfer._data`), cross-entropy on a fixed batch of the validation split.

Each run is one `jax.lax.scan` over its steps, compiled once per (spec, width) and
reused for every learning rate, multiplier and seed (they are traced arguments).
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .._errors import SpecError
from ._results import ResultsFile, run_key

__all__ = ["MODELS", "SweepError", "SweepReport", "Task", "make_task", "spec_label", "sweep"]

MODELS = ("mlp", "transformer")

# The MLP teacher task: fixed sizes, so the loss at every width measures the same thing.
_MLP_IN, _MLP_OUT, _TEACHER_WIDTH = 16, 8, 64
# The transformer task: the default char vocabulary of `_data` and short windows.
_SEQ_LEN, _TF_DEPTH, _HEAD_DIM = 32, 2, 16
_EVAL_SEED = 10_000  # the seed of the fixed evaluation batch (never a training seed)


class SweepError(SpecError, ValueError):
    """A sweep's arguments are invalid."""


@dataclass(frozen=True)
class Task:
    """A reference task: how to build the model, draw a run's data and score it."""

    name: str
    make_model: Callable[[int, Any], Any]
    loss: Callable[[Any, Any], Any]  # loss(model, batch) -> scalar
    train_data: Callable[[int, int], Any]  # (seed, steps) -> batches stacked on axis 0
    eval_batch: Any
    batch_size: int


@dataclass(frozen=True)
class SweepReport:
    """What `sweep` did: runs trained now, runs skipped as already done, the file."""

    ran: int
    skipped: int
    results: Path


def _mse(model: Any, batch: Any) -> Any:
    import jax
    import jax.numpy as jnp

    x, y = batch
    return jnp.mean((jax.vmap(model)(x) - y) ** 2)


def _cross_entropy(model: Any, batch: Any) -> Any:
    import jax
    import optax

    x, y = batch
    return optax.softmax_cross_entropy_with_integer_labels(jax.vmap(model)(x), y).mean()


def _mlp_task(batch_size: int) -> Task:
    import functools

    import jax
    import jax.numpy as jnp

    from ..models import mlp

    k1, k2, k3 = jax.random.split(jax.random.key(1234), 3)
    w1 = jax.random.normal(k1, (_MLP_IN, _TEACHER_WIDTH)) / math.sqrt(_MLP_IN)
    w2 = jax.random.normal(k2, (_TEACHER_WIDTH, _MLP_OUT)) / math.sqrt(_TEACHER_WIDTH)

    def teacher(x: Any) -> Any:
        return jnp.tanh(2.0 * x @ w1) @ w2

    scale = float(jnp.std(teacher(jax.random.normal(k3, (4096, _MLP_IN)))))

    def draw(key: Any, n: int) -> tuple[Any, Any]:
        x = jax.random.normal(key, (n, _MLP_IN))
        return x, teacher(x) / scale

    def train_data(seed: int, steps: int) -> Any:
        keys = jax.random.split(jax.random.fold_in(jax.random.key(seed), 1), steps)
        return jax.vmap(lambda k: draw(k, batch_size))(keys)

    return Task(
        "mlp",
        functools.partial(mlp, in_size=_MLP_IN, out_size=_MLP_OUT, depth=2),
        _mse,
        train_data,
        draw(jax.random.key(_EVAL_SEED), 1024),
        batch_size,
    )


def _transformer_task(batch_size: int) -> Task:
    import functools

    from ..models import transformer
    from ._data import DEFAULT_VOCAB_SIZE, batches

    def stacked(seed: int, n: int, size: int, split: str) -> tuple[np.ndarray, np.ndarray]:
        pairs = list(batches(seed, _SEQ_LEN, size, split, num_batches=n))  # type: ignore[arg-type]
        return np.stack([x for x, _ in pairs]), np.stack([y for _, y in pairs])

    def train_data(seed: int, steps: int) -> Any:
        return stacked(seed, steps, batch_size, "train")

    x, y = stacked(_EVAL_SEED, 1, 64, "val")
    return Task(
        "transformer",
        functools.partial(
            transformer,
            vocab=DEFAULT_VOCAB_SIZE,
            seq_len=_SEQ_LEN,
            depth=_TF_DEPTH,
            head_dim=_HEAD_DIM,
        ),
        _cross_entropy,
        train_data,
        (x[0], y[0]),
        batch_size,
    )


@functools.lru_cache(maxsize=4)
def make_task(model: str, *, batch_size: int | None = None) -> Task:
    """The reference task `"mlp"` or `"transformer"` (see the module docstring); cached."""
    if model == "mlp":
        return _mlp_task(batch_size or 64)
    if model == "transformer":
        return _transformer_task(batch_size or 16)
    raise SweepError(f"Unknown model {model!r}; use one of {', '.join(MODELS)}.")


def spec_label(spec: str, embed_lr_mult: float = 1.0) -> str:
    """The `spec` column of a run: the spec's name (a file's stem), plus `*embX` when
    the embedding learning rate is multiplied, so `summarize` keeps them apart."""
    name = Path(spec).stem if spec.endswith(".pspec") else spec
    return name if embed_lr_mult == 1.0 else f"{name}*emb{embed_lr_mult:g}"


class _Trainer:
    """One compiled training program per (spec, width), reused across lr/mult/seed."""

    def __init__(self, task: Task, spec: str, width: int, base_width: int | None,
                 optimizer: str | None = None) -> None:
        import equinox as eqx
        import jax
        import jax.numpy as jnp

        from .._compile import compile as compile_spec
        from .._equinox._build import parameter_blocks
        from .._equinox._roles import map_parameters

        self.task, self.width = task, width
        self.compiled = compile_spec(spec, width=width, base_width=base_width,
                                     optimizer=optimizer)
        template = self.compiled.init(task.make_model, jax.random.key(0))
        # The learning rate is applied *after* c.optimizer (built with learning_rate=1):
        # its last stage is the linear `-learning_rate * u`, so `lr * update(1)` is exactly
        # the update at `lr`, and one compiled program then serves the whole lr grid (with
        # lr baked in as a Python float, every grid point would recompile).
        self.opt = self.compiled.optimizer(template, learning_rate=1.0)
        # --embed-lr-mult: the per-leaf learning rate of parameters in blocks of role
        # `input`, scaled after the optimizer. Exact for the same reason (the lr enters
        # linearly, decoupled weight decay included), and it leaves the spec, the init
        # and the other blocks alone, so `spec` and `spec*embX` differ in that knob only.
        blocks = parameter_blocks(template)
        roles = {block.name: block.role for block in self.compiled.blocks}
        self.is_input = map_parameters(
            lambda info: roles.get(blocks[info.path]) == "input", template
        )
        opt, loss, is_input = self.opt, task.loss, self.is_input

        @eqx.filter_jit
        def train(model: Any, lr: Any, mult: Any, data: Any, eval_batch: Any) -> Any:
            params, static = eqx.partition(model, eqx.is_inexact_array)

            def step(carry: Any, batch: Any) -> tuple[Any, None]:
                params, state = carry
                grads = eqx.filter_grad(loss)(eqx.combine(params, static), batch)
                updates, state = opt.update(grads, state, params)
                updates = jax.tree.map(
                    lambda u, emb: u * lr * jnp.where(emb, mult, 1.0), updates, is_input
                )
                return (eqx.apply_updates(params, updates), state), None

            (params, _), _ = jax.lax.scan(step, (params, opt.init(params)), data)
            return loss(eqx.combine(params, static), eval_batch)

        self._train = train

    def run(self, lr: float, embed_lr_mult: float, seed: int, steps: int) -> float:
        import jax
        import jax.numpy as jnp

        model = self.compiled.init(self.task.make_model, jax.random.key(seed))
        data = self.task.train_data(seed, steps)
        lr_, mult = jnp.asarray(lr, jnp.float32), jnp.asarray(embed_lr_mult, jnp.float32)
        return float(self._train(model, lr_, mult, data, self.task.eval_batch))


# Compiled trainers of recent (task, spec, width): a resumed sweep, or a second sweep in
# the same process, reuses their compiled program instead of compiling again.
_TRAINERS: dict[tuple[Any, ...], _Trainer] = {}
_MAX_TRAINERS = 4


def _trainer(task: Task, spec: str, width: int, base_width: int | None,
             optimizer: str | None = None) -> _Trainer:
    path = Path(spec)
    source = path.read_text(encoding="utf-8") if spec.endswith(".pspec") and path.is_file() else ""
    key = (id(task), spec, source, width, base_width, optimizer)
    if key not in _TRAINERS:
        while len(_TRAINERS) >= _MAX_TRAINERS:
            _TRAINERS.pop(next(iter(_TRAINERS)))
        _TRAINERS[key] = _Trainer(task, spec, width, base_width, optimizer)
    return _TRAINERS[key]


def _check_grid(name: str, values: Sequence[Any], kind: type, positive: bool = True) -> None:
    if not values:
        raise SweepError(f"`{name}` is empty; give at least one value.")
    for v in values:
        ok = isinstance(v, kind) and not isinstance(v, bool) and math.isfinite(v)
        if not ok or (positive and not v > 0):
            raise SweepError(
                f"`{name}` must be {'positive ' if positive else ''}{kind.__name__}s; got {v!r}."
            )
    if len(set(values)) != len(values):
        raise SweepError(f"`{name}` has duplicates: {list(values)}.")


def sweep(
    specs: Iterable[str],
    *,
    model: str,
    widths: Sequence[int],
    lrs: Sequence[float],
    out: str | Path,
    embed_lr_mults: Sequence[float] = (1.0,),
    seeds: Sequence[int] = (0, 1),
    steps: int = 100,
    base_width: int | None = None,
    batch_size: int | None = None,
    progress: bool = True,
    on_run: Callable[[dict[str, Any]], None] | None = None,
    optimizer: str | None = None,
) -> SweepReport:
    """Train the grid and append each finished run's final row to `out/results.csv`.

    Runs whose key (`run_key(label, model, width, lr, embed_lr_mult, seed, steps=steps)`)
    already has a final row in the file are skipped, so rerunning a killed sweep
    finishes it. A run whose final loss is nan or inf is recorded as `diverged`.
    `on_run(row)` is called after each row is written (a hook for progress or tests).
    `optimizer` overrides the specs' own (default: each spec's, else adam); when given,
    the `spec` column reads `name@optimizer`, so runs of two optimizers stay apart.
    The results file is validated before anything runs: a foreign or corrupt file is a
    `ResultsFileError` and is left byte-for-byte unchanged.

    ```python
    import tempfile
    report = sweep(["mup"], model="mlp", widths=[16, 32], lrs=[1e-2], seeds=[0],
                   steps=2, out=tempfile.mkdtemp(), progress=False)
    assert report.ran == 2 and report.skipped == 0
    ```
    """
    specs = list(specs)
    if not specs:
        raise SweepError("No specs given; name at least one, e.g. `mup`.")
    if model not in MODELS:
        raise SweepError(f"Unknown model {model!r}; use one of {', '.join(MODELS)}.")
    _check_grid("widths", list(widths), int)
    _check_grid("lrs", [float(x) for x in lrs], float)
    _check_grid("embed_lr_mults", [float(x) for x in embed_lr_mults], float)
    _check_grid("seeds", list(seeds), int, positive=False)
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise SweepError(f"`steps` must be an int >= 1; got {steps!r}.")
    if any(s < 0 for s in seeds):
        raise SweepError(f"`seeds` must be ints >= 0; got {list(seeds)}.")
    results = ResultsFile(Path(out) / "results.csv")
    done = results.done_keys()  # validates the file first; raises on a foreign one

    grid = [
        (spec, width, float(lr), float(mult), seed)
        for spec in specs
        for width in widths
        for mult in embed_lr_mults
        for lr in lrs
        for seed in seeds
    ]

    def key_of(spec: str, width: int, lr: float, mult: float, seed: int) -> str:
        return run_key(label_of(spec, mult), model, width, lr, mult, seed, steps=steps)

    def label_of(spec: str, mult: float) -> str:
        label = spec_label(spec, mult)
        return label if optimizer is None else f"{label}@{optimizer}"

    todo = [run for run in grid if key_of(*run) not in done]
    skipped = len(grid) - len(todo)
    if not todo:
        return SweepReport(0, skipped, results.path)

    from .._compile import compile as compile_spec

    for spec in dict.fromkeys(s for s, *_ in todo):  # fail early on a bad spec
        compile_spec(spec, width=max(widths), base_width=base_width, optimizer=optimizer)

    task = make_task(model, batch_size=batch_size)
    with _progress(progress, len(grid), skipped) as advance:
        for spec, width, lr, mult, seed in todo:
            label = label_of(spec, mult)
            advance(f"{label} w{width} lr {lr:.3g} s{seed}", 0)
            start = time.perf_counter()
            trainer = _trainer(task, spec, width, base_width, optimizer)
            loss = trainer.run(lr, mult, seed, steps)
            row = {
                "key": key_of(spec, width, lr, mult, seed),
                "spec": label,
                "model": model,
                "width": width,
                "lr": lr,
                "embed_lr_mult": mult,
                "seed": seed,
                "step": steps,
                "loss": loss,
                "status": "ok" if math.isfinite(loss) else "diverged",
                "wall_s": time.perf_counter() - start,
            }
            results.append([row])
            advance(f"{label} w{width} lr {lr:.3g} s{seed}", 1)
            if on_run is not None:
                on_run(row)
    return SweepReport(len(todo), skipped, results.path)


class _progress:
    """A rich progress bar (on stderr) or nothing; `advance(description, n)`."""

    def __init__(self, enabled: bool, total: int, completed: int) -> None:
        self.enabled, self.total, self.completed = enabled, total, completed

    def __enter__(self) -> Callable[[str, int], None]:
        if not self.enabled:
            return lambda description, n: None
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.bar = Progress(
            TextColumn("{task.description:<36}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=Console(stderr=True),
        )
        self.bar.start()
        task = self.bar.add_task("sweep", total=self.total, completed=self.completed)
        return lambda description, n: self.bar.update(task, description=description, advance=n)

    def __exit__(self, *exc: Any) -> None:
        if self.enabled:
            self.bar.stop()
