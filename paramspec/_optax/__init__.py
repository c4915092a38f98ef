"""The Optax backend: Adam-atan2, per-leaf Adam epsilon and the compiled optimizer chain."""

from ._adam_eps import scale_by_adam_per_leaf_eps as scale_by_adam_per_leaf_eps
from ._atan2 import ScaleByAdamAtan2State as ScaleByAdamAtan2State
from ._atan2 import adam_atan2 as adam_atan2
from ._atan2 import scale_by_adam_atan2 as scale_by_adam_atan2
from ._chain import KINDS as KINDS
from ._chain import PER_LEAF_ARGS as PER_LEAF_ARGS
from ._chain import OptimizerConfigError as OptimizerConfigError
from ._chain import OptimizerTypeError as OptimizerTypeError
from ._chain import build_optimizer as build_optimizer
