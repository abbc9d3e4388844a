"""The medbench 3D corruption suite, batched on ``N x C x D x H x W`` uint8 volumes.

Same rules as the 2D operations: float64 arithmetic, rounding to uint8, one random generator per
volume. Intensity operations act voxel-wise (brightness and gamma) or around each volume's mean
(contrast); the spatial ones (Gaussian blur, downsample-upsample) are volumetric.
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from .common import quantize, to_unit

Op = Callable[[torch.Tensor, dict, list], torch.Tensor]
OPS_3D: dict[str, Op] = {}


def op(name: str):
    def deco(fn: Op) -> Op:
        OPS_3D[name] = fn
        return fn
    return deco


@op("gaussian_noise")
def gaussian_noise(x: torch.Tensor, p: dict, rngs: list) -> torch.Tensor:
    """Additive Gaussian noise on every voxel, ``sigma`` in [0, 1] units."""
    noise = torch.from_numpy(np.stack([g.standard_normal(tuple(x.shape[1:])) for g in rngs]))
    return quantize(to_unit(x) + p["sigma"] * noise)


@op("impulse_noise")
def impulse_noise(x: torch.Tensor, p: dict, rngs: list) -> torch.Tensor:
    """Salt and pepper on a fraction ``amount`` of the voxels."""
    u = torch.from_numpy(np.stack([g.random((2,) + tuple(x.shape[1:])) for g in rngs]))
    flip = u[:, 0] < p["amount"]
    salt = u[:, 1] < 0.5
    v = to_unit(x)
    return quantize(torch.where(flip & salt, 1.0, torch.where(flip & ~salt, 0.0, v)))


@op("gaussian_blur")
def gaussian_blur(x: torch.Tensor, p: dict, rngs: list) -> torch.Tensor:
    """Separable volumetric Gaussian blur (``sigma`` in voxels, radius ceil(3 sigma)), reflect border."""
    sigma = float(p["sigma"])
    if sigma <= 0:
        return x.clone()
    n, c, d, h, w = x.shape
    r = min(int(math.ceil(3 * sigma)), min(d, h, w) - 1)
    t = torch.arange(-r, r + 1, dtype=torch.float64)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    k = k / k.sum()
    v = to_unit(x).reshape(n * c, 1, d, h, w)
    v = F.pad(v, (r,) * 6, mode="reflect")
    v = F.conv3d(v, k.view(1, 1, -1, 1, 1))
    v = F.conv3d(v, k.view(1, 1, 1, -1, 1))
    v = F.conv3d(v, k.view(1, 1, 1, 1, -1))
    return quantize(v.reshape(n, c, d, h, w))


@op("brightness")
def brightness(x: torch.Tensor, p: dict, rngs: list) -> torch.Tensor:
    """Add ``shift`` (in [0, 1] units) to every voxel."""
    return quantize(to_unit(x) + p["shift"])


@op("contrast")
def contrast(x: torch.Tensor, p: dict, rngs: list) -> torch.Tensor:
    """Scale deviations from each volume's mean by ``factor``."""
    v = to_unit(x)
    mean = v.mean(dim=tuple(range(1, v.ndim)), keepdim=True)
    return quantize(mean + p["factor"] * (v - mean))


@op("gamma")
def gamma(x: torch.Tensor, p: dict, rngs: list) -> torch.Tensor:
    """v -> v ** gamma on [0, 1] intensities."""
    return quantize(to_unit(x) ** p["gamma"])


@op("downsample_upsample")
def downsample_upsample(x: torch.Tensor, p: dict, rngs: list) -> torch.Tensor:
    """Area-downsample each axis by ``factor``, then trilinearly upsample back (loss of resolution)."""
    d, h, w = x.shape[-3:]
    small = tuple(max(1, int(round(s * p["factor"]))) for s in (d, h, w))
    if small == (d, h, w):
        return x.clone()
    v = F.interpolate(to_unit(x), size=small, mode="area")
    return quantize(F.interpolate(v, size=(d, h, w), mode="trilinear", align_corners=False))
