"""Muon's width rule (reference/theory.md §11; docs/theory.md "Muon"), in exact arithmetic.

Under `optimizer muon` the hidden matrices take Muon's orthogonalised update and every
other parameter (embeddings, the readout, vectors, constant-role leaves) takes Adam with
its own rules. This module holds the few facts the theory needs about the Muon part;
nothing here imports JAX.

The spectral condition (Yang, Simon & Bernstein, arXiv 2310.17813): a weight of shape
`fan_out x fan_in` learns features stably when `||dW||_* ~ sqrt(fan_out / fan_in)`.
Muon's update `O` has every singular value about 1 (`||O||_* ~ 1`) whatever the
gradient's scale; the compiled chain multiplies it by the static shape factor
`sqrt(fan_out / fan_in)` (paramspec._optax._muon), so `||dW||_* = n^(-a) lr n^(-c)
sqrt(fan_out/fan_in)` and the condition asks `a + c = 0` for a hidden matrix: its
learning rate is width-independent when `a = 0`.

In the per-entry language of §4 the same update has entries of size
`sqrt(rank) / sqrt(fan_in fan_out)`: `n^(-1)` for a rank-k (one batch, aligned) update,
`n^(-1/2)` for a full-rank one (momentum over many steps, no alignment). So its
per-entry exponent is `c~ = c + A` with A the alignment, and the hidden term
`a + c~ - alpha` is `a + c` at every alignment: the spectral form, alignment-free.
"""

from __future__ import annotations

from fractions import Fraction

__all__ = ["MUON", "MuonRule"]


class MuonRule:
    """Which blocks Muon orthogonalises, and how that changes c~, lr auto and eps auto."""

    optimizer = "muon"
    # Only hidden matrices (both fans grow): embeddings and the readout keep Adam, as in
    # Jordan et al. 2024 and Moonlight (arXiv 2502.16982).
    roles = ("hidden",)

    def applies(self, optimizer: str, role: str) -> bool:
        return optimizer == self.optimizer and role in self.roles

    def entry_step(self, c: Fraction, alignment: Fraction) -> Fraction:
        """Per-entry exponent of the orthogonalised update: `c + A` (module docstring)."""
        return c + alignment

    def lr_words(self, a: Fraction, k: Fraction) -> str:
        return (f"Muon (spectral condition): ||dW||_* = n^-(a+c) * sqrt(fan_out/fan_in) must "
                f"stay ~ sqrt(fan_out/fan_in), at every alignment, so a + c >= {k} gives "
                f"c >= {k - a}")

    def eps_exponent(self, g: Fraction) -> Fraction:
        """Muon's epsilon guards `m / (||m||_F + eps)`; a hidden gradient with entries
        `n^(-g)` has `||G||_F ~ n^(1-g)`, so eps tracks it with `e = g - 1`."""
        return g - 1


MUON = MuonRule()
