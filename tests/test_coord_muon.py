"""The coordinate check under Muon (issue 14's must-show).

After one step on a fixed batch with Muon on the hidden matrices and Adam elsewhere,
`mup` (its `auto` rates derived for Muon) keeps every layer's activation change flat in
width, while `sp-global` at one learning rate does not: its hidden matrices are flat
too (Muon's spectral rate is width-independent when a = 0, so SP's hidden layers need
no correction), but its Adam readout grows like n. The MLP at widths 64..256 in every run; the MLP and the
transformer at 64..1024 with `pytest -m slow` (numbers in docs/theory.md). At 64..256 the
transformer's logits measure -0.10 (a finite-size correction of the readout's W dz term,
which converges from below: -0.06 at 64..1024), so the transformer is checked wide only.
"""

import pytest

from paramspec import models
from paramspec._coord import coord_check
from tests import test_coord  # the same tasks as the width check under Adam

SMALL, WIDE = (64, 128, 256), (64, 128, 256, 512, 1024)


def _mlp_task():
    return (models.mlp, *test_coord._mlp_task())


_transformer_task, _slopes = test_coord._transformer_task, test_coord._slopes


@pytest.mark.parametrize("task, widths", [
    pytest.param(_mlp_task, SMALL, id="mlp"),
    pytest.param(_mlp_task, WIDE, id="mlp-wide", marks=pytest.mark.slow),
    pytest.param(_transformer_task, WIDE, id="transformer-wide", marks=pytest.mark.slow),
])
def test_mup_is_flat_under_muon_and_sp_global_is_not(task, widths):
    make, inputs, loss = task()
    mup = coord_check("mup", make, inputs, loss, widths=widths, seeds=(0,), optimizer="muon")
    print("mup", _slopes(mup))
    assert mup.passed, _slopes(mup)
    assert all(abs(layer.slope) <= 0.1 for layer in mup.layers), _slopes(mup)
    sp = coord_check("sp-global", make, inputs, loss, widths=widths, seeds=(0,),
                     optimizer="muon")
    print("sp-global", _slopes(sp))
    readout = sp.layers[-1]
    assert readout.role == "output" and readout.slope > 0.5, _slopes(sp)
