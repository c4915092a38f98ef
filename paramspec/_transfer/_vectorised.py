"""The vectorised sweep engine: every run of one (spec, width) in one compiled program.

The runs of a (spec, width) -- its learning rates, embedding multipliers and seeds --
differ only in values, never in shapes: the learning rate and the multiplier are traced
scalars (they scale the update of `c.optimizer(learning_rate=1)`, which is exact: see
`_sweep._Setup`), the seed picks the initial parameters and the data. So the engine
stacks the runs on a leading *run axis* and trains them with `jax.vmap` of the
sequential engine's step, inside one `jax.lax.scan` over the steps:

- **Chunks.** At most `chunk_size` runs go through the program at once (default: as
  many as fit a quarter of the device's memory at about 8 copies of the parameters per
  run -- parameters, gradients, two Adam moments, updates and activations' slack --
  times the device count; on a CPU, as many as fit about 8 MiB, see
  `_CPU_CACHE_BYTES`). The runs are split into as few chunks as that allows, all of
  one size (a multiple of the device count; the last chunk is padded with copies of a
  real run, whose results are dropped), so the program compiles once per (spec, width).
- **Devices.** The run axis is sharded over a 1-D `jax.sharding.Mesh` of all devices
  (`jax.devices()`), the data and the evaluation batch are replicated: each device
  trains its share of the runs, and no collective is needed. With several hosts,
  start every process with `jax.distributed.initialize()` and the same arguments (the
  same `out` on a shared file system): `jax.devices()` then spans all hosts, each
  process feeds the shards of its own devices (`jax.make_array_from_callback`), the
  losses are gathered to every process and only process 0 writes the results file.
- **Progress.** The scan runs in segments of about a tenth of the steps, so the
  progress bar shows the steps of the chunk in flight; when the steps are not a
  multiple of the segment length, the last segment is shorter (a second compiled
  length, rather than masking every update). The data of all steps is placed on the
  devices once per (task, seeds, steps), for all the sweep's (spec, width) groups, and
  each step's batches are indexed there.

The data of each seed is drawn by the task exactly as the sequential engine draws it
(`task.train_data(seed, steps)`), and each run starts from `compiled.init(make_model,
key(seed))`, so both engines compute the same runs; the losses agree to float
tolerance (vmap turns matrix products into batched ones, which may sum in another
order).
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np

__all__ = ["VectorTrainer", "default_chunk_size", "use_every_cpu_core"]

_SEGMENTS = 10  # progress updates per chunk
_COPIES_PER_RUN = 8  # parameter-sized buffers one run holds (see the module docstring)
# On a CPU, a compiled scan is already compute-bound once a run's step is a few MFLOP,
# and what batching runs then costs is cache: a chunk whose working set leaves the
# caches ran slower than one run at a time (measured on a 2-core EPYC, 2 MiB L2 per
# core, 32 MiB L3; docs/performance.md#sweep-engines). So CPU chunks are capped to
# about 8 MiB of parameter-sized buffers: many runs of a small model (where batching
# wins up to 7x), few of a large one. (4 MiB gave chunks of 3 runs of a width-128 MLP,
# which measured 1.2x to 1.7x slower than chunks of 8; 24 at once was slower again.)
_CPU_CACHE_BYTES = 8 << 20
# Device-placed data of the most recent (task, seeds, steps): every (spec, width) of a
# sweep trains on the same batches, so they are drawn and placed once (`_data`). Only
# data of at most `_KEEP_BYTES` is kept after its use (a large dataset is not held in
# the device's memory once the sweep is done; it is drawn again per (spec, width)).
_DATA: dict[tuple[Any, ...], tuple[Any, Any, Any]] = {}
_KEEP_BYTES = 64 << 20


def use_every_cpu_core() -> int | None:
    """Ask JAX for one CPU device per core, so that the run axis is sharded over all of
    them; returns the device count set, or None when nothing was changed.

    Why: XLA:CPU runs a batched (vmapped) matrix product on one core, so with JAX's
    default single CPU device a chunk of runs trains on one core while the others
    idle; one device per core trains a share of the chunk on each
    (docs/performance.md#sweep-engines). The count can only be set before JAX's
    backends start, so `paramspec sweep` calls this first thing; from Python, call it
    (or `jax.config.update("jax_num_cpu_devices", N)`) right after `import jax`.
    Nothing is changed when JAX has already started, when the user chose a count
    (`JAX_NUM_CPU_DEVICES`, `jax_num_cpu_devices`, or `XLA_FLAGS`'
    `--xla_force_host_platform_device_count`), or on a single core. The other
    platforms' devices (a GPU's) are not affected.
    """
    import jax

    if "xla_force_host_platform_device_count" in os.environ.get("XLA_FLAGS", ""):
        return None
    if jax.config.jax_num_cpu_devices != -1:  # set by the user (or JAX_NUM_CPU_DEVICES)
        return None
    try:
        cores = len(os.sched_getaffinity(0))  # the cores this process may run on
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    if cores < 2:
        return None
    try:
        jax.config.update("jax_num_cpu_devices", cores)
    except RuntimeError:  # JAX's backends have started: too late to change
        return None
    return cores


def _memory_bytes() -> int:
    """Memory of one device: the accelerator's limit, or the host's RAM on CPU."""
    import jax

    device = jax.local_devices()[0]
    try:
        stats = device.memory_stats() or {}
    except Exception:  # some backends do not implement memory_stats
        stats = {}
    if stats.get("bytes_limit"):
        return int(stats["bytes_limit"])
    try:
        return int(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return 8 << 30


def default_chunk_size(param_bytes: int, devices: int) -> int:
    """Runs per chunk when `chunk_size` is not given: a quarter of one device's memory
    (on a CPU: `_CPU_CACHE_BYTES`, see below) over `_COPIES_PER_RUN` copies of the
    parameters, times the devices (at least one run per device)."""
    import jax

    budget = _memory_bytes() // 4
    if jax.devices()[0].platform == "cpu":
        budget = min(budget, _CPU_CACHE_BYTES)
    per_device = max(1, budget // max(1, _COPIES_PER_RUN * param_bytes))
    return per_device * devices


class VectorTrainer:
    """Trains chunks of runs of one (spec, width) as one compiled, sharded program."""

    def __init__(self, setup: Any) -> None:
        import equinox as eqx
        import jax
        import jax.numpy as jnp
        from jax.sharding import Mesh, NamedSharding, PartitionSpec

        self.setup = setup
        task, opt, step = setup.task, setup.opt, setup.step_fn()
        self.devices = jax.devices()
        self.mesh = Mesh(np.array(self.devices), ("runs",))
        self.by_run = NamedSharding(self.mesh, PartitionSpec("runs"))
        self.replicated = NamedSharding(self.mesh, PartitionSpec())
        template = setup.init(0)
        params, self.static = eqx.partition(template, eqx.is_inexact_array)
        self.param_bytes = sum(x.nbytes for x in jax.tree.leaves(params))
        static, loss = self.static, task.loss

        @jax.jit
        def start(params: Any) -> Any:
            return params, jax.vmap(opt.init)(params)

        def segment(carry: Any, lr: Any, mult: Any, seed_index: Any, data: Any, start: Any,
                    length: int) -> Any:
            # Steps start .. start + length - 1 of every run, the batches sliced on the
            # device from the data of all steps (placed once per `run_chunks`).
            def body(carry: Any, t: Any) -> tuple[Any, None]:
                batch = jax.tree.map(lambda d: d[t][seed_index], data)  # [runs, ...]
                return jax.vmap(lambda p, s, r, m, b: step(p, s, r, m, b, static))(
                    *carry, lr, mult, batch
                ), None

            return jax.lax.scan(body, carry, start + jnp.arange(length))[0]

        segment = jax.jit(segment, static_argnames="length")

        @jax.jit
        def evaluate(params: Any, eval_batch: Any) -> Any:
            return jax.vmap(lambda p: loss(eqx.combine(p, static), eval_batch))(params)

        self._start, self._segment, self._evaluate = start, segment, evaluate

    # ------------------------------------------------------------------ placement

    def _put(self, array: Any, sharding: Any) -> Any:
        """A global array from a host array every process holds in full."""
        import jax

        array = np.asarray(array)
        return jax.make_array_from_callback(array.shape, sharding, lambda index: array[index])

    def _gather(self, array: Any) -> np.ndarray:
        import jax

        if jax.process_count() > 1:
            from jax.experimental import multihost_utils

            return np.asarray(multihost_utils.process_allgather(array, tiled=True))
        return np.asarray(array)

    # ------------------------------------------------------------------ training

    def chunk_size(self, requested: int | None, runs: int) -> int:
        """Runs per program: at most `requested` (or the memory default), in as few
        chunks as that allows, of equal size (so the padding of the last one is
        smallest), rounded up to a multiple of the device count."""
        n = len(self.devices)
        limit = requested if requested is not None else default_chunk_size(self.param_bytes, n)
        chunks = -(-runs // max(1, limit))
        size = -(-runs // chunks)
        return -(-size // n) * n

    def run_chunks(
        self,
        runs: Sequence[tuple[Any, ...]],
        steps: int,
        chunk_size: int | None = None,
        *,
        on_step: Callable[[int], None] | None = None,
        on_chunk: Callable[[str, int], None] | None = None,
    ) -> Iterator[tuple[list[tuple[Any, ...]], list[float], float]]:
        """Train `runs` (`(spec, width, lr, mult, seed)`, one spec and width) in chunks;
        yields `(chunk, final losses, wall seconds per run)` as each chunk finishes."""
        import jax

        seeds = sorted({run[4] for run in runs})
        where = {seed: i for i, seed in enumerate(seeds)}
        # Initial parameters of each seed, drawn once for all its runs.
        trees = [self._params(seed) for seed in seeds]
        inits = [[np.asarray(x) for x in jax.tree.leaves(tree)] for tree in trees]
        data, eval_batch = self._data(tuple(seeds), steps)
        length = math.ceil(steps / min(_SEGMENTS, steps))
        # Segments of `length` steps and a shorter last one if `steps` is not a multiple
        # (a second compiled length, instead of masking every update of every step).
        bounds = [(t, min(length, steps - t)) for t in range(0, steps, length)]
        treedef = jax.tree.structure(trees[0])

        size = self.chunk_size(chunk_size, len(runs))
        for first in range(0, len(runs), size):
            chunk = list(runs[first : first + size])
            padded = chunk + [chunk[-1]] * (size - len(chunk))
            t0 = time.perf_counter()
            if on_chunk is not None:
                spec, width, lr, _, _ = chunk[0]
                on_chunk(f"{len(chunk)} runs of {spec} w{width} lr {lr:.3g}..", 0)
            index = np.array([where[run[4]] for run in padded])
            params = jax.tree.unflatten(
                treedef,
                [
                    self._put(np.stack([inits[i][leaf] for i in index]), self.by_run)
                    for leaf in range(len(inits[0]))
                ],
            )
            lr = self._put(np.array([run[2] for run in padded], np.float32), self.by_run)
            mult = self._put(np.array([run[3] for run in padded], np.float32), self.by_run)
            seed_index = self._put(index.astype(np.int32), self.by_run)
            carry = self._start(params)
            if on_step is not None:
                on_step(0)
            for start, n in bounds:
                carry = self._segment(carry, lr, mult, seed_index, data, start, length=n)
                if on_step is not None:
                    jax.block_until_ready(carry)
                    on_step(start + n)
            losses = self._gather(self._evaluate(carry[0], eval_batch))[: len(chunk)]
            wall = (time.perf_counter() - t0) / len(chunk)
            yield chunk, [float(x) for x in losses], wall

    def _data(self, seeds: tuple[int, ...], steps: int) -> tuple[Any, Any]:
        """The training data of `seeds` stacked as `[steps, seeds, ...]` (the scan walks
        the steps, each run picks its seed) and the evaluation batch, both placed on the
        devices. Kept for the next (spec, width) of the sweep (`_DATA`): the data depends
        only on the task, the seeds and the steps."""
        import jax

        task = self.setup.task
        key = (id(task), seeds, steps, tuple(self.devices))
        kept = _DATA.get(key)
        if kept is None or kept[0] is not task:
            _DATA.clear()  # one entry: the most recent
            per_seed = [task.train_data(seed, steps) for seed in seeds]
            data = jax.tree.map(lambda *d: np.stack([np.asarray(x) for x in d], axis=1),
                                *per_seed)
            kept = (task,  # held, so that `id(task)` cannot name another task meanwhile
                    jax.tree.map(lambda d: self._put(d, self.replicated), data),
                    jax.tree.map(lambda x: self._put(x, self.replicated), task.eval_batch))
            if sum(x.nbytes for x in jax.tree.leaves(kept[1:])) <= _KEEP_BYTES:
                _DATA[key] = kept
        return kept[1], kept[2]

    def _params(self, seed: int) -> Any:
        import equinox as eqx

        return eqx.filter(self.setup.init(seed), eqx.is_inexact_array)
