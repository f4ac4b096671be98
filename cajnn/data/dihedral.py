"""The 8 dihedral transforms of an image (rotation by 0/90/180/270 degrees, with and without a
horizontal flip) and their inverses.

Training augments with them (paper IV-A) and the self-ensemble averages over them at inference
(IV-B); both import them from here, so inference does not depend on the training package.
"""

from __future__ import annotations

import torch

__all__ = ["DIHEDRAL", "dihedral", "dihedral_inverse"]

DIHEDRAL = 8  # how many there are: k in 0..7


def dihedral(x: torch.Tensor, k: int) -> torch.Tensor:
    """Dihedral transform k in 0..7 of an NCHW tensor: k % 4 quarter turns, flip if k >= 4."""
    if k >= 4:
        x = torch.flip(x, dims=(-1,))
    return torch.rot90(x, k % 4, dims=(-2, -1))


def dihedral_inverse(x: torch.Tensor, k: int) -> torch.Tensor:
    """Undo :func:`dihedral` (used by the self-ensemble)."""
    x = torch.rot90(x, -(k % 4), dims=(-2, -1))
    if k >= 4:
        x = torch.flip(x, dims=(-1,))
    return x
