"""Learning-rate transfer across widths: metrics, the sweep's results file, tables of
other tools, an offline corpus."""

from ._data import DEFAULT_VOCAB_SIZE as DEFAULT_VOCAB_SIZE
from ._data import CharVocab as CharVocab
from ._data import DataError as DataError
from ._data import batches as batches
from ._data import char_vocab as char_vocab
from ._data import corpus as corpus
from ._data import split_tokens as split_tokens
from ._metrics import Fit as Fit
from ._metrics import KappaFit as KappaFit
from ._metrics import Optimum as Optimum
from ._metrics import Penalty as Penalty
from ._metrics import TransferMetricError as TransferMetricError
from ._metrics import asymptotic_penalty as asymptotic_penalty
from ._metrics import drift_in_grid_steps as drift_in_grid_steps
from ._metrics import kappa as kappa
from ._metrics import lr_scaling as lr_scaling
from ._metrics import optimum as optimum
from ._metrics import summarize as summarize
from ._results import COLUMNS as COLUMNS
from ._results import PartialLineWarning as PartialLineWarning
from ._results import ResultsFile as ResultsFile
from ._results import ResultsFileError as ResultsFileError
from ._results import run_key as run_key
from ._table import TableError as TableError
from ._table import read_runs as read_runs
from ._table import transfer_metrics as transfer_metrics
