"""Helpers shared by the 2D and 3D corruption operations: float/uint8 conversion, seeding, area resizing.

Every operation works on a batch of uint8 images (``N x C x H x W`` or ``N x C x D x H x W``) and
computes in float64, so that an image's output never depends on the batch it was processed in
(float32 kernels may sum in a batch-dependent order, which flips values lying on a rounding edge).
"""

from __future__ import annotations

import zlib
from functools import lru_cache
from typing import Sequence

import numpy as np
import torch

# Shifts the rounding edge away from the exact halves that averages of integers produce, so
# that a last-bit difference in float64 arithmetic can never flip a pixel.
_ROUND_EPS = 1e-6


def to_unit(x_u8: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] -> float64 [0, 1]."""
    return x_u8.to(torch.float64) / 255.0


def quantize(x: torch.Tensor) -> torch.Tensor:
    """float [0, 1] (clipped) -> uint8, rounding to the nearest level."""
    return torch.floor(x.clamp(0.0, 1.0) * 255.0 + (0.5 + _ROUND_EPS)).to(torch.uint8)


def truncate(x: torch.Tensor) -> torch.Tensor:
    """float [0, 1] (clipped) -> uint8, truncating as MedMNIST-C does (``(np.clip(x, 0, 1) * 255).astype(np.uint8)``).

    ``(v / 255) * 255`` is exactly ``v`` in float64 for every level, so an identity stays the identity.
    """
    return (x.clamp(0.0, 1.0) * 255.0).to(torch.uint8)


def pil_luminance(rgb: torch.Tensor) -> torch.Tensor:
    """Pillow's ``convert('L')`` of uint8 ``N x 3 x H x W`` (ITU-R 601-2 in 16-bit fixed point) -> ``N x 1 x H x W``."""
    v = rgb.to(torch.int32)
    return ((v[:, 0:1] * 19595 + v[:, 1:2] * 38470 + v[:, 2:3] * 7471 + 0x8000) >> 16).to(torch.uint8)


def stable_id(name: str) -> int:
    """A stable 32-bit integer for a name (Python's hash() is salted per process)."""
    return zlib.crc32(name.encode("utf-8"))


def image_rngs(seed: int, dataset: str, corruption: str, severity: int, indices: Sequence[int]) -> list[np.random.Generator]:
    """One independent generator per image, seeded only by (seed, dataset, corruption, severity, index)."""
    key = (stable_id(dataset), stable_id(corruption), int(severity))
    return [np.random.Generator(np.random.PCG64(np.random.SeedSequence(int(seed), spawn_key=key + (int(i),))))
            for i in indices]


@lru_cache(maxsize=64)
def area_matrix(in_size: int, out_size: int) -> torch.Tensor:
    """Exact area-averaging weights (out x in) for resizing by any factor, rows summing to one."""
    edges_out = np.arange(out_size + 1) * in_size / out_size
    mat = np.zeros((out_size, in_size))
    for o in range(out_size):
        lo, hi = edges_out[o], edges_out[o + 1]
        for i in range(int(np.floor(lo)), min(int(np.ceil(hi)), in_size)):
            mat[o, i] = max(0.0, min(hi, i + 1) - max(lo, i))
    mat /= mat.sum(1, keepdims=True)
    return torch.from_numpy(mat)


def area_resize(x: torch.Tensor, out_size: int) -> torch.Tensor:
    """Area-average resize of the last two dimensions of a float tensor (square images)."""
    if x.shape[-1] == out_size and x.shape[-2] == out_size:
        return x
    mh = area_matrix(x.shape[-2], out_size).to(x.dtype)
    mw = area_matrix(x.shape[-1], out_size).to(x.dtype)
    return mh @ x @ mw.T
