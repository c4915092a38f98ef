"""The analysis layer: check a spec, explain its exponents, prove two specs equivalent.

Pure functions over the theory core (`paramspec._theory`) that return plain data
(with `to_dict()` for JSON) plus renderers; nothing here imports JAX.
"""

from ._absorb import AbsorbedLayer as AbsorbedLayer
from ._absorb import absorb as absorb
from ._absorb import absorb_layer as absorb_layer
from ._absorb import render_absorbed as render_absorbed
from ._alignment import AlignmentInputError as AlignmentInputError
from ._alignment import alignment as alignment
from ._alignment import alignments as alignments
from ._check import CaseCheck as CaseCheck
from ._check import CheckReport as CheckReport
from ._check import LayerCheck as LayerCheck
from ._check import check as check
from ._check import render_check as render_check
from ._check import to_text as to_text
from ._equiv import EquivReport as EquivReport
from ._equiv import equivalent as equivalent
from ._equiv import render_equiv as render_equiv
from ._explain import explain as explain
