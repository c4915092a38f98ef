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

**Depth** (`depths=`): a second scaling axis. Each (spec, width, depth) compiles the
spec with `depth=`, `base_depth=` and builds the model with `make_model(width, key,
depth=depth)` (the reference transformer's number of blocks); the rows gain a `depth`
column (`_results.DEPTH_COLUMNS`) and the run key `depth=` and `base_depth=` parts.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .._errors import SpecError
from ._results import ResultsFile, run_key

__all__ = [
    "ENGINES",
    "MODELS",
    "SweepError",
    "SweepReport",
    "Task",
    "make_task",
    "spec_fingerprint",
    "spec_label",
    "sweep",
    "user_task",
]

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


def _mlp_task(batch_size: int, teacher_width: int = _TEACHER_WIDTH,
              name: str = "mlp") -> Task:
    """The MLP teacher task (`teacher_width`: the fixed random teacher's hidden width;
    benchmarks/transfer/drift.py varies it)."""
    import functools

    import jax
    import jax.numpy as jnp

    from ..models import mlp

    k1, k2, k3 = jax.random.split(jax.random.key(1234), 3)
    w1 = jax.random.normal(k1, (_MLP_IN, teacher_width)) / math.sqrt(_MLP_IN)
    w2 = jax.random.normal(k2, (teacher_width, _MLP_OUT)) / math.sqrt(teacher_width)

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
        name,
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


def _default_loss(model: Any, x: Any, y: Any) -> Any:
    """Cross-entropy of `vmap(model)(x)` against integer labels `y`, else mean squared error."""
    import jax
    import jax.numpy as jnp
    import optax

    out = jax.vmap(model)(x)
    if jnp.issubdtype(jnp.asarray(y).dtype, jnp.integer):
        return optax.softmax_cross_entropy_with_integer_labels(out, y).mean()
    return jnp.mean((out - y) ** 2)


def user_task(
    make_model: Callable[[int, Any], Any],
    make_batch: Callable[[Any, int], Any],
    loss: Callable[[Any, Any, Any], Any] | None = None,
    *,
    batch_size: int = 32,
    eval_batch_size: int = 256,
    name: str | None = None,
) -> Task:
    """A `Task` of your own model: `make_model(width, key)` builds it (an Equinox
    module), `make_batch(key, batch_size) -> (x, y)` draws a batch (JAX or numpy
    arrays), `loss(model, x, y)` scores it (default `_default_loss`).

    Run `seed` trains on `make_batch(k_t, batch_size)` for the keys
    `k_t = jax.random.split(fold_in(key(seed), 1), steps)` (drawn before training, so
    `make_batch` may be plain numpy), and every run is scored on the same held-out
    batch `make_batch(key(10_000), eval_batch_size)`.
    """
    import jax
    import numpy as np

    loss_fn = _default_loss if loss is None else loss
    if not callable(make_model) or not callable(make_batch) or not callable(loss_fn):
        raise SweepError(
            "A user model needs callables `make_model(width, key)`, "
            "`make_batch(key, batch_size) -> (x, y)` and optionally `loss(model, x, y)`."
        )

    def batch(key: Any, size: int) -> tuple[Any, Any]:
        drawn = make_batch(key, size)
        if not (isinstance(drawn, tuple | list) and len(drawn) == 2):
            raise SweepError(
                f"make_batch(key, {size}) must return a pair (x, y); got {type(drawn).__name__}."
            )
        return np.asarray(drawn[0]), np.asarray(drawn[1])

    def train_data(seed: int, steps: int) -> Any:
        keys = jax.random.split(jax.random.fold_in(jax.random.key(seed), 1), steps)
        pairs = [batch(k, batch_size) for k in keys]
        return np.stack([x for x, _ in pairs]), np.stack([y for _, y in pairs])

    return Task(
        name or getattr(make_model, "__name__", "user"),
        make_model,
        lambda model, xy: loss_fn(model, *xy),
        train_data,
        batch(jax.random.key(_EVAL_SEED), eval_batch_size),
        batch_size,
    )


def _model_source(
    model: Any,
    make_batch: Callable[..., Any] | None,
    loss: Callable[..., Any] | None,
    roles: Any,
    layouts: Any,
    tied: Any,
    branches: Any = None,
) -> tuple[str, Callable[[int | None], Task], Any, Any, Any, Any]:
    """(label for the `model` column, batch_size -> Task, roles, layouts, tied, branches)
    of `model`."""
    if isinstance(model, Task):
        return model.name, lambda batch_size: model, roles, layouts, tied, branches
    if isinstance(model, str) and model in MODELS:
        return (model, lambda batch_size: make_task(model, batch_size=batch_size), roles,
                layouts, tied, branches)
    if isinstance(model, str) and ":" in model:
        from .._usermodel import load_model

        user = load_model(model)
        make_batch = make_batch or user.companion("make_batch")
        loss = loss or user.companion("loss")
        roles = roles if roles is not None else user.companion("ROLES")
        layouts = layouts if layouts is not None else user.companion("LAYOUTS")
        tied = tied if tied is not None else user.companion("TIED")
        branches = branches if branches is not None else user.companion("BRANCHES")
        if make_batch is None:
            raise SweepError(
                f"--model {model}: the file defines no `make_batch(key, batch_size) -> (x, y)`; "
                "a sweep needs data. Add that function next to the model factory."
            )
        name = model.rpartition(":")[2]
        factory = user.make_model
    elif callable(model):
        if make_batch is None:
            raise SweepError(
                "sweep(model=make_model, ...) needs `make_batch(key, batch_size) -> (x, y)` "
                "(and optionally `loss(model, x, y)`)."
            )
        name, factory = getattr(model, "__name__", "user"), model
    else:
        raise SweepError(
            f"Unknown model {model!r}; use one of {', '.join(MODELS)}, FILE.py:FUNC, or a "
            "function make_model(width, key) with make_batch=."
        )
    batch_fn = make_batch

    def resolve(batch_size: int | None) -> Task:
        return user_task(factory, batch_fn, loss, batch_size=batch_size or 32, name=name)

    return name, resolve, roles, layouts, tied, branches


def spec_label(spec: str, embed_lr_mult: float = 1.0) -> str:
    """The `spec` column of a run: the spec's name (a file's stem), plus `*embX` when
    the embedding learning rate is multiplied, so `summarize` keeps them apart."""
    name = Path(spec).stem if spec.endswith(".pspec") else spec
    return name if embed_lr_mult == 1.0 else f"{name}*emb{embed_lr_mult:g}"


def spec_fingerprint(spec: str, base_width: int | None = None) -> str:
    """12 hex digits of the SHA-256 of the spec's canonical text (`extends` merged,
    rendered by `paramspec fmt`'s renderer, so comments and layout do not count) and of
    the sweep's `base_width` when one overrides the spec's: the `pspec=` part of a run's
    key, which tells results of an edited spec (or another base width) apart."""
    from .._library import load
    from .._render import render

    text = render(load(spec))
    if base_width is not None:
        text += f"\n# compiled with base_width {base_width}\n"
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]


_FINGERPRINT = "pspec="  # the key part `pspec=<spec_fingerprint>` (see `sweep`)


def _unfingerprinted(key: str) -> tuple[str, str | None]:
    """(`key` without its `pspec=<fingerprint>` part, the fingerprint or None)."""
    parts = key.split("/")
    prints = [p for p in parts if p.startswith(_FINGERPRINT)]
    rest = "/".join(p for p in parts if not p.startswith(_FINGERPRINT))
    return rest, (prints[0][len(_FINGERPRINT):] if prints else None)


def _refuse_stale(path: Path, done: set[str], wanted: Mapping[str, str]) -> None:
    """Raise if a finished run in the file is one of `wanted` (key -> spec label) but
    recorded with another spec fingerprint, or none (a file written before keys had
    one): resuming would silently mix results of two texts of the spec."""
    recorded = dict(_unfingerprinted(key) for key in done)
    stale = []  # (label, key without fingerprint, recorded fingerprint, current one)
    for key, label in wanted.items():
        base, fingerprint = _unfingerprinted(key)
        if base in recorded and recorded[base] != fingerprint:
            stale.append((label, base, recorded[base], fingerprint))
    if not stale:
        return
    label, base, old, new = stale[0]
    why = (f"with another text of `{label}` or another base width (spec fingerprint {old}, "
           f"now {new}): the spec or `base_width` changed since they ran" if old is not None else
           "before paramspec recorded the spec's fingerprint in the key, so whether "
           f"`{label}` changed since cannot be checked")
    labels = ", ".join(f"`{name}`" for name in dict.fromkeys(s[0] for s in stale))
    raise SweepError(
        f"{path}: {len(stale)} finished run(s) of this sweep ({labels}; e.g. {base}) were "
        f"trained {why}. Resuming would mix old and new results, so nothing was run. Sweep "
        "into a new `--out` directory (or move results.csv aside) to rerun them with the "
        "current spec; the file is unchanged and `transfer-metrics` still reads it."
    )


class _Setup:
    """What both engines share for one (task, spec, width): the compiled spec, the
    optimizer at learning rate 1, and the mask of the embedding (`input`-role) leaves."""

    def __init__(self, task: Task, spec: str, width: int, options: _Options) -> None:
        from .._compile import compile as compile_spec
        from .._equinox._build import parameter_blocks
        from .._equinox._roles import map_parameters

        self.task, self.width, self.options = task, width, options
        self._inits: dict[int, Any] = {}
        self.compiled = compile_spec(spec, width=width, base_width=options.base_width,
                                     optimizer=options.optimizer, **options.depth_args())
        template = self.init(0)
        # The learning rate is applied *after* c.optimizer (built with learning_rate=1):
        # its last stage is the linear `-learning_rate * u`, so `lr * update(1)` is exactly
        # the update at `lr` (decoupled weight decay included, since optax scales it by
        # the learning rate too), and one compiled program then serves the whole lr grid
        # (with lr baked in as a Python float, every grid point would recompile).
        self.opt = self.compiled.optimizer(
            template, learning_rate=1.0, weight_decay=options.weight_decay
        )
        # --embed-lr-mult: the per-leaf learning rate of parameters in blocks of role
        # `input`, scaled after the optimizer. Exact for the same reason (the lr enters
        # linearly, decoupled weight decay included), and it leaves the spec, the init
        # and the other blocks alone, so `spec` and `spec*embX` differ in that knob only.
        blocks = parameter_blocks(template)
        roles = {block.name: block.role for block in self.compiled.blocks}
        self.is_input = map_parameters(
            lambda info: roles.get(blocks[info.path]) == "input", template
        )

    def init(self, seed: int) -> Any:
        """The run's model at initialisation: `compiled.init` with `key(seed)` (kept per
        seed: models are immutable, and `init` traces the user's factory, which is slow)."""
        import jax

        if seed not in self._inits:
            self._inits[seed] = self._init(jax.random.key(seed))
        return self._inits[seed]

    def _init(self, key: Any) -> Any:
        make_model = self.task.make_model
        if self.options.depth is not None:  # a depth sweep: the factory takes `depth=`
            make_model = functools.partial(make_model, depth=self.options.depth)
        return self.compiled.init(
            make_model,
            key,
            roles=self.options.roles,
            layouts=self.options.layouts,
            tied=self.options.tied,
            **({} if self.options.branches is None else {"branches": self.options.branches}),
        )

    def step_fn(self) -> Callable[..., Any]:
        """`step(params, state, lr, mult, batch, static) -> (params, state)`: one update."""
        import equinox as eqx
        import jax
        import jax.numpy as jnp

        opt, loss, is_input = self.opt, self.task.loss, self.is_input

        def step(params: Any, state: Any, lr: Any, mult: Any, batch: Any, static: Any) -> Any:
            grads = eqx.filter_grad(loss)(eqx.combine(params, static), batch)
            updates, state = opt.update(grads, state, params)
            updates = jax.tree.map(
                lambda u, emb: u * lr * jnp.where(emb, mult, 1.0), updates, is_input
            )
            return eqx.apply_updates(params, updates), state

        return step


class _Trainer:
    """The sequential engine: one compiled `lax.scan` per (spec, width), one run per call."""

    def __init__(self, setup: _Setup) -> None:
        import equinox as eqx
        import jax

        from .._equinox._jit import local_jit

        self.setup = setup
        opt, loss, step = setup.opt, setup.task.loss, setup.step_fn()

        # `local_jit`, not `eqx.filter_jit`: a trainer evicted from `_TRAINERS` must free
        # its compiled program (paramspec/_equinox/_jit.py).
        @local_jit
        def train(model: Any, lr: Any, mult: Any, data: Any, eval_batch: Any) -> Any:
            params, static = eqx.partition(model, eqx.is_inexact_array)

            def body(carry: Any, batch: Any) -> tuple[Any, None]:
                return step(*carry, lr, mult, batch, static), None

            (params, _), _ = jax.lax.scan(body, (params, opt.init(params)), data)
            return loss(eqx.combine(params, static), eval_batch)

        self._train = train

    @property
    def is_input(self) -> Any:
        return self.setup.is_input

    def run(self, lr: float, embed_lr_mult: float, seed: int, steps: int) -> float:
        import jax.numpy as jnp

        task = self.setup.task
        model = self.setup.init(seed)
        data = task.train_data(seed, steps)
        lr_, mult = jnp.asarray(lr, jnp.float32), jnp.asarray(embed_lr_mult, jnp.float32)
        return float(self._train(model, lr_, mult, data, task.eval_batch))


@dataclass(frozen=True)
class _Options:
    """Settings of a sweep that every run of it shares (part of the compiled program)."""

    base_width: int | None = None
    weight_decay: float = 0.0
    roles: Any = None  # Mapping[str, str] | None, forwarded to `Compiled.init`
    layouts: Any = None  # Mapping[str, Layout] | None, forwarded to `Compiled.init`
    tied: Any = None  # Mapping[str, str] | None, forwarded to `Compiled.init`
    optimizer: str | None = None  # overrides the spec's own
    depth: int | None = None  # a depth sweep's depth: the model's and the compile's
    base_depth: int | None = None
    compile_depth: int | None = None  # `sweep(depth=)`: the compile's only (model as built)
    branches: Any = None  # Sequence[str] | None, forwarded to `Compiled.init`

    def cache_key(self) -> tuple[Any, ...]:
        return (self.base_width, self.weight_decay, repr(self.roles), repr(self.layouts),
                repr(self.tied), self.optimizer, self.depth, self.base_depth,
                self.compile_depth, repr(self.branches))

    def depth_args(self) -> dict[str, Any]:
        """`compile`'s depth arguments: a depth sweep's depth and base depth, else the
        fixed `depth=` (base depth the spec's own), else none."""
        if self.depth is not None:
            return {"depth": self.depth, "base_depth": self.base_depth}
        return {} if self.compile_depth is None else {"depth": self.compile_depth}


# Compiled trainers of recent (task, spec, width, engine): a resumed sweep, or a second
# sweep in the same process, reuses their compiled program instead of compiling again.
_TRAINERS: dict[tuple[Any, ...], Any] = {}
_MAX_TRAINERS = 4


def _cached(task: Task, spec: str, width: int, options: _Options, engine: str) -> Any:
    path = Path(spec)
    source = path.read_text(encoding="utf-8") if spec.endswith(".pspec") and path.is_file() else ""
    key = (id(task), spec, source, width, options.cache_key(), engine)
    if key not in _TRAINERS:
        while len(_TRAINERS) >= _MAX_TRAINERS:
            _TRAINERS.pop(next(iter(_TRAINERS)))
        setup = _Setup(task, spec, width, options)
        if engine == "sequential":
            _TRAINERS[key] = _Trainer(setup)
        else:
            from ._vectorised import VectorTrainer

            _TRAINERS[key] = VectorTrainer(setup)
    return _TRAINERS[key]


def _trainer(
    task: Task, spec: str, width: int, base_width: int | None, weight_decay: float = 0.0
) -> _Trainer:
    """The sequential engine's trainer of (task, spec, width) (cached)."""
    return _cached(task, spec, width, _Options(base_width, weight_decay), "sequential")


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


ENGINES = ("vectorised", "sequential")


def sweep(
    specs: Iterable[str],
    *,
    model: str | Task | Callable[[int, Any], Any] = "mlp",
    widths: Sequence[int],
    lrs: Sequence[float],
    out: str | Path,
    make_batch: Callable[[Any, int], Any] | None = None,
    loss: Callable[..., Any] | None = None,
    embed_lr_mults: Sequence[float] = (1.0,),
    seeds: Sequence[int] = (0, 1),
    steps: int = 100,
    base_width: int | None = None,
    batch_size: int | None = None,
    weight_decay: float = 0.0,
    roles: Mapping[str, str] | None = None,
    layouts: Mapping[str, Any] | None = None,
    engine: str = "vectorised",
    chunk_size: int | None = None,
    progress: bool = True,
    on_run: Callable[[dict[str, Any]], None] | None = None,
    tied: Mapping[str, str] | None = None,
    optimizer: str | None = None,
    depth: int | None = None,
    depths: Sequence[int] | None = None,
    base_depth: int | None = None,
    branches: Sequence[str] | None = None,
) -> SweepReport:
    """Train the grid and append each finished run's final row to `out/results.csv`.

    `model` is a reference task (`"mlp"`, `"transformer"`), a `"FILE.py:FUNC"`
    reference (its file's `make_batch`, `loss`, `LAYOUTS`, `ROLES` are used where
    present), a `Task`, or your own factory `make_model(width, key)` together with
    `make_batch(key, batch_size) -> (x, y)` and optionally `loss(model, x, y)`
    (default: cross-entropy on integer `y`, mean squared error otherwise); see
    `user_task`.

    Runs whose key (`run_key(label, model, width, lr, embed_lr_mult, seed, steps=steps,
    pspec=spec_fingerprint(spec))`, plus `wd=` when `weight_decay` is set) already has a
    final row in the file are skipped, so rerunning a killed sweep finishes it. If the
    file has a finished run of the grid recorded with another spec fingerprint (the
    spec's text changed since) or none (a file from before fingerprints), the sweep
    stops with a `SweepError` before running anything, rather than mix the two. A run whose final loss is nan or
    inf is recorded as `diverged`. `on_run(row)` is called after each row is written
    (a hook for progress or tests). The results file is validated before anything
    runs: a foreign or corrupt file is a `ResultsFileError` and is left byte-for-byte
    unchanged.

    `engine="vectorised"` (the default) trains every learning rate, multiplier and
    seed of one (spec, width) as one compiled program, `chunk_size` runs at a time
    (default: as many as fit a quarter of the memory; see `_vectorised`), spread over
    all devices; `engine="sequential"` trains one run per call (the reference).
    Both give the same losses to float tolerance.

    `optimizer` overrides the specs' own (default: each spec's, else adam); when given,
    the `spec` column reads `name@optimizer`, so runs of two optimizers stay apart.

    `depth` compiles every spec at that depth, so `m = depth / base_depth` (the spec's
    `base_depth`, else 1) sets the depth factors of a spec that has them (e.g.
    CompleteP's residual-branch multiplier); it does not change the model (give the
    model that depth yourself). Default: the spec's base depth (m = 1). When given,
    the run key gains `depth=`.

    `depths` (not with `depth`) makes depth a scaling axis too: every width is trained
    at every depth, the spec compiled with `depth=`, `base_depth=` (default: the spec's
    own `base_depth`, else the smallest depth) and the model built by `make_model(width,
    key, depth=depth)`. The results file then has a `depth` column and the run key
    `base_depth=` and `depth=` parts (a width-only file cannot take depth rows: use a
    new `out`). `branches` names the residual branches' output projections of your own
    model for a depth spec (`c.init(branches=)`, docs/models.md "Depth"; a
    `FILE.py:FUNC` model's `BRANCHES` list by default).

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
    if engine not in ENGINES:
        raise SweepError(f"Unknown engine {engine!r}; use one of {', '.join(ENGINES)}.")
    if chunk_size is not None and (
        isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1
    ):
        raise SweepError(f"`chunk_size` must be None or an int >= 1; got {chunk_size!r}.")
    _check_grid("widths", list(widths), int)
    _check_grid("lrs", [float(x) for x in lrs], float)
    _check_grid("embed_lr_mults", [float(x) for x in embed_lr_mults], float)
    _check_grid("seeds", list(seeds), int, positive=False)
    if depths is not None:
        _check_grid("depths", list(depths), int)
        if base_depth is None:
            base_depth = _spec_base_depth(specs, min(depths))
    if base_depth is not None and (depths is None or isinstance(base_depth, bool)
                                   or not isinstance(base_depth, int) or base_depth < 1):
        raise SweepError(
            f"`base_depth` must be an int >= 1 and needs `depths`; got base_depth="
            f"{base_depth!r}, depths={depths!r}."
        )
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise SweepError(f"`steps` must be an int >= 1; got {steps!r}.")
    if any(s < 0 for s in seeds):
        raise SweepError(f"`seeds` must be ints >= 0; got {list(seeds)}.")
    if batch_size is not None and (
        isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1
    ):
        raise SweepError(f"`batch_size` must be None or an int >= 1; got {batch_size!r}.")
    if not (isinstance(weight_decay, int | float) and 0 <= weight_decay < math.inf):
        raise SweepError(f"`weight_decay` must be a number >= 0; got {weight_decay!r}.")
    label, resolve, roles, layouts, tied, branches = _model_source(
        model, make_batch, loss, roles, layouts, tied, branches)
    results = ResultsFile(Path(out) / "results.csv")
    done = results.done_keys()  # validates the file first; raises on a foreign one
    fingerprints = {spec: spec_fingerprint(spec, base_width) for spec in dict.fromkeys(specs)}

    # A run: (spec, width, lr, mult, seed, depth), depth None in a width-only sweep.
    grid = [
        (spec, width, float(lr), float(mult), seed, depth)
        for spec in specs
        for width in widths
        for depth in (depths if depths is not None else [None])
        for mult in embed_lr_mults
        for lr in lrs
        for seed in seeds
    ]
    if depth is not None and (isinstance(depth, bool) or not isinstance(depth, int) or depth < 1):
        raise SweepError(f"`depth` must be None or an int >= 1; got {depth!r}.")
    if depth is not None and depths is not None:
        raise SweepError("Give `depth` (compile every spec at one depth) or `depths` (depth "
                         f"as a scaling axis), not both; got depth={depth!r}, depths={depths!r}.")
    extra = {"steps": steps, **({"wd": float(weight_decay)} if weight_decay else {}),
             **({"depth": depth} if depth is not None else {})}

    def key_of(
        spec: str, width: int, lr: float, mult: float, seed: int, depth: int | None = None
    ) -> str:
        more = extra if depth is None else {**extra, "depth": depth, "base_depth": base_depth}
        return run_key(label_of(spec, mult), label, width, lr, mult, seed, **more,
                       pspec=fingerprints[spec])

    def label_of(spec: str, mult: float) -> str:
        name = spec_label(spec, mult)
        return name if optimizer is None else f"{name}@{optimizer}"

    _refuse_stale(results.path, done, {key_of(*run): label_of(run[0], run[3]) for run in grid})
    todo = [run for run in grid if key_of(*run) not in done]
    skipped = len(grid) - len(todo)
    if not todo:
        return SweepReport(0, skipped, results.path)

    from .._compile import compile as compile_spec

    deepest = ({"depth": max(depths), "base_depth": base_depth} if depths is not None
               else {} if depth is None else {"depth": depth})
    for spec in dict.fromkeys(s for s, *_ in todo):  # fail early on a bad spec
        compile_spec(spec, width=max(widths), base_width=base_width, optimizer=optimizer,
                     **deepest)

    task = resolve(batch_size)
    options = _Options(base_width, float(weight_decay), roles, layouts, tied, optimizer,
                       base_depth=base_depth, compile_depth=depth, branches=branches)

    def at(depth: int | None) -> _Options:
        return options if depth is None else dataclasses.replace(options, depth=depth)

    def row_of(run: tuple[Any, ...], loss_value: float, wall_s: float) -> dict[str, Any]:
        spec, width, lr, mult, seed, depth = run
        return {
            "key": key_of(*run),
            "spec": label_of(spec, mult),
            "model": label,
            "width": width,
            **({} if depth is None else {"depth": depth}),
            "lr": lr,
            "embed_lr_mult": mult,
            "seed": seed,
            "step": steps,
            "loss": loss_value,
            "status": "ok" if math.isfinite(loss_value) else "diverged",
            "wall_s": wall_s,
        }

    def write(rows: list[dict[str, Any]], advance: Callable[..., None]) -> None:
        if primary:  # with several processes (jax.distributed), process 0 writes
            results.append(rows)  # one write: the chunk's runs are done together
        for row in rows:
            at_depth = f" d{row['depth']}" if "depth" in row else ""
            advance(f"{row['spec']} w{row['width']}{at_depth} lr {row['lr']:.3g} "
                    f"s{row['seed']}", 1)
            if on_run is not None:
                on_run(row)

    primary = engine == "sequential" or _process_index() == 0
    with _progress(progress and primary, len(grid), skipped, steps) as bar:
        if engine == "sequential":
            for run in todo:
                spec, width, lr, mult, seed, depth = run
                at_depth = "" if depth is None else f" d{depth}"
                bar.advance(f"{label_of(spec, mult)} w{width}{at_depth} lr {lr:.3g} s{seed}", 0)
                bar.steps(0)
                start = time.perf_counter()
                trainer = _cached(task, spec, width, at(depth), "sequential")
                value = trainer.run(lr, mult, seed, steps)
                bar.steps(steps)
                write([row_of(run, value, time.perf_counter() - start)], bar.advance)
        else:
            # One program per (spec, width, depth); the engine sees (spec, width, lr,
            # mult, seed) runs, and the group's depth is added back to each row.
            groups: dict[tuple[str, int, int | None], list[tuple[Any, ...]]] = {}
            for run in todo:
                groups.setdefault((run[0], run[1], run[5]), []).append(run[:5])
            for (spec, width, depth), runs in groups.items():
                trainer = _cached(task, spec, width, at(depth), "vectorised")
                for chunk, losses, wall_s in trainer.run_chunks(
                    runs, steps, chunk_size, on_step=bar.steps, on_chunk=bar.advance
                ):
                    write([row_of((*r, depth), v, wall_s)
                           for r, v in zip(chunk, losses, strict=True)], bar.advance)
    return SweepReport(len(todo), skipped, results.path)


def _spec_base_depth(specs: Sequence[str], default: int) -> int:
    """The specs' own `base_depth` (they must agree), else `default` (the smallest depth)."""
    from .._library import load

    own = {load(spec).base_depth for spec in specs}
    own.discard(None)
    if len(own) > 1:
        raise SweepError(
            f"The specs set different base depths {sorted(own)}; pass `base_depth` "
            "(`--base-depth`) to sweep them together."
        )
    return own.pop() if own else default


def _process_index() -> int:
    import jax

    return jax.process_index()


class _Bar:
    """Callbacks of the progress display: `advance(description, runs)`, `steps(done)`."""

    def advance(self, description: str, n: int) -> None:
        pass

    def steps(self, done: int) -> None:
        pass


class _progress:
    """Two rich progress bars on stderr (runs of the sweep; steps of the runs in
    flight), or nothing."""

    def __init__(self, enabled: bool, total: int, completed: int, steps: int) -> None:
        self.enabled, self.total, self.completed, self.total_steps = (
            enabled, total, completed, steps
        )

    def __enter__(self) -> _Bar:
        if not self.enabled:
            return _Bar()
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
        runs = self.bar.add_task("sweep", total=self.total, completed=self.completed)
        steps = self.bar.add_task("  steps of the runs in flight", total=self.total_steps)
        bar = self.bar

        class Live(_Bar):
            def advance(self, description: str, n: int) -> None:
                bar.update(runs, description=description, advance=n)

            def steps(self, done: int) -> None:
                bar.update(steps, completed=done)

        return Live()

    def __exit__(self, *exc: Any) -> None:
        if self.enabled:
            self.bar.stop()
