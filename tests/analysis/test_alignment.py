"""The alignment metric of theory.md §4: 1/2 for independent, 1 for aligned factors."""

from __future__ import annotations

import math

import numpy as np
import pytest

from paramspec._analysis._alignment import AlignmentInputError, alignment, alignments

FAN_INS = (256, 1024, 4096)
FAN_OUT, BATCH = 64, 16


@pytest.mark.parametrize("fan_in", FAN_INS)
def test_independent_is_one_half(fan_in):
    rng = np.random.default_rng(fan_in)
    w = rng.standard_normal((FAN_OUT, fan_in))
    z = rng.standard_normal((BATCH, fan_in))
    assert abs(alignment(w, z) - 0.5) < 0.05


@pytest.mark.parametrize("fan_in", FAN_INS)
def test_rank_one_aligned_is_one(fan_in):
    rng = np.random.default_rng(fan_in + 1)
    u, v = rng.standard_normal(FAN_OUT), rng.standard_normal(fan_in)
    z = rng.standard_normal((BATCH, 1)) * v  # every example along v
    assert abs(alignment(np.outer(u, v), z) - 1.0) < 0.05
    # ... and 1/2 again for inputs independent of v
    assert abs(alignment(np.outer(u, v), rng.standard_normal((BATCH, fan_in))) - 0.5) < 0.05


@pytest.mark.parametrize("fan_in", FAN_INS)
def test_batch_gradient_alignment_follows_the_batch_size(fan_in):
    """dW = D^T Z / B from a batch of B inputs, measured on Z: 1 - log(B) / (2 log f).

    Each output sums f aligned products from its own example (~ f / B) and B - 1 random
    ones; rms(dW) ~ 1 / sqrt(B). An in-between value, so the metric is not two-valued.
    """
    rng = np.random.default_rng(fan_in + 2)
    b = 4
    z = rng.standard_normal((b, fan_in))
    delta = rng.standard_normal((b, FAN_OUT))
    expected = 1 - math.log(b) / (2 * math.log(fan_in))
    assert abs(alignment(delta.T @ z / b, z) - expected) < 0.05


def test_alignments_of_a_training_step():
    rng = np.random.default_rng(7)
    fan_in = 1024
    w0 = rng.standard_normal((FAN_OUT, fan_in)) / math.sqrt(fan_in)
    v = rng.standard_normal(fan_in)
    z0 = rng.standard_normal((BATCH, 1)) * v
    w1 = w0 + 0.01 * np.outer(rng.standard_normal(FAN_OUT), v)  # a step along the inputs
    z1 = z0 + 0.1 * rng.standard_normal((BATCH, fan_in))  # inputs move independently
    got = alignments(w0, w1, z0, z1)
    assert abs(got["alpha"] - 1.0) < 0.05
    assert abs(got["omega"] - 0.5) < 0.05
    assert abs(got["u"] - 0.5) < 0.05
    z2 = z0 * 1.1  # inputs move along themselves: the update's change is aligned too
    assert abs(alignments(w0, w1, z0, z2)["u"] - 1.0) < 0.05


def test_scale_invariance_and_single_vectors():
    rng = np.random.default_rng(3)
    w, z = rng.standard_normal((8, 256)), rng.standard_normal(256)
    assert math.isclose(alignment(3.0 * w, 0.5 * z), alignment(w, z), rel_tol=1e-12)
    assert math.isclose(alignment(w, z), alignment(w, z[None, :]), rel_tol=1e-12)


def test_jax_arrays_are_accepted():
    jnp = pytest.importorskip("jax.numpy")
    w, z = jnp.ones((4, 16)), jnp.ones((2, 16))
    assert math.isclose(alignment(w, z), 1.0, rel_tol=1e-12)


def test_bad_inputs_say_what_to_do():
    with pytest.raises(AlignmentInputError, match=r"must be a matrix of shape \(fan_out, fan_in\)"):
        alignment(np.ones(4), np.ones(4))
    with pytest.raises(AlignmentInputError, match="fan_in = 4"):
        alignment(np.ones((2, 4)), np.ones(5))
    with pytest.raises(AlignmentInputError, match="log\\(fan_in\\) is 0"):
        alignment(np.ones((2, 1)), np.ones(1))
    with pytest.raises(AlignmentInputError, match="`W1 - W0` is all zeros"):
        alignments(np.ones((2, 4)), np.ones((2, 4)), np.ones(4), 2 * np.ones(4))
    with pytest.raises(AlignmentInputError, match="differ in shape"):
        alignments(np.ones((2, 4)), np.ones((3, 4)), np.ones(4), np.ones(4))
    with pytest.raises(AlignmentInputError, match="NaN or inf"):
        alignment(np.full((2, 4), np.nan), np.ones(4))
    assert issubclass(AlignmentInputError, ValueError)
