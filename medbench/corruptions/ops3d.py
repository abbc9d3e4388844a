"""The medbench 3D corruption suite, batched on ``N x C x D x H x W`` uint8 volumes.

Same rules as the 2D operations: float64 arithmetic, rounding to uint8, one random generator per
volume. Intensity operations act voxel-wise (brightness and gamma) or around each volume's mean
(contrast); the spatial ones (Gaussian blur, downsample-upsample) are volumetric.

MedMNIST's 3D datasets come in two kinds (``registry.SUITES_3D``), and each gets a suite of ten:
- intensity volumes (organ, nodule, fracture: CT; synapse: electron microscopy) get noise, blur,
  resolution loss and the five intensity changes (brightness and contrast up/down, gamma up/down);
- binary masks (adrenal: segmentation masks; vessel: voxelised vessel meshes; both hold only 0 and
  255) cannot be changed by gamma (0 and 1 are its fixed points) or by a contrast increase (both
  levels clip back): any monotone map that fixes 0 and 1 is the identity on a two-level volume.
  Their suite replaces gamma_up, gamma_down and contrast_up with the errors a segmentation-derived
  volume really carries: under- and over-segmentation (the surface moved inwards or outwards by
  ``depth`` voxels; a fractional layer is moved voxel by voxel at random with that probability) and
  boundary noise (each voxel of the one-voxel inner and outer boundary flipped with probability
  ``flip``, an irregular annotator's outline at an unchanged volume). brightness and contrast_down
  still act on masks (they change the background or the foreground level) and are kept.
The mask operations threshold at mid-grey (foreground = value >= 128) and write 0 or 255 into the
voxels they change; every other voxel keeps its value. Neighbourhoods are 6-connected and the
volume's border is replicated, so the edge of the field of view is never taken for a surface.
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


def _eroded(fg: torch.Tensor) -> torch.Tensor:
    """6-connected binary erosion of a bool ``N x C x D x H x W`` tensor; outside the volume repeats the border."""
    d, h, w = fg.shape[-3:]
    p = F.pad(fg.to(torch.float32), (1,) * 6, mode="replicate") > 0.5
    out = fg.clone()
    for sl in ((slice(0, d), slice(1, h + 1), slice(1, w + 1)), (slice(2, d + 2), slice(1, h + 1), slice(1, w + 1)),
               (slice(1, d + 1), slice(0, h), slice(1, w + 1)), (slice(1, d + 1), slice(2, h + 2), slice(1, w + 1)),
               (slice(1, d + 1), slice(1, h + 1), slice(0, w)), (slice(1, d + 1), slice(1, h + 1), slice(2, w + 2))):
        out &= p[(Ellipsis,) + sl]
    return out


def _uniform(x: torch.Tensor, rngs: list) -> torch.Tensor:
    return torch.from_numpy(np.stack([g.random(tuple(x.shape[1:])) for g in rngs]))


@op("boundary_shift")
def boundary_shift(x: torch.Tensor, p: dict, rngs: list) -> torch.Tensor:
    """Move the mask's surface by ``depth`` voxels: outwards (over-segmentation) if > 0, inwards if < 0.

    The first ``floor(|depth|)`` one-voxel layers of the foreground (inwards) or background
    (outwards) are flipped whole; each voxel of the next layer flips with probability ``frac(|depth|)``.
    """
    depth = float(p["depth"])
    if depth == 0:
        return x.clone()
    fg = x >= 128
    region = ~fg if depth > 0 else fg  # the set that loses its outer layers
    whole, frac = int(math.floor(abs(depth))), abs(depth) - math.floor(abs(depth))
    flip = torch.zeros_like(fg)
    for _ in range(whole):
        inner = _eroded(region)
        flip |= region & ~inner
        region = inner
    if frac > 1e-9:
        flip |= region & ~_eroded(region) & (_uniform(x, rngs) < frac)
    return torch.where(flip, torch.tensor(255 if depth > 0 else 0, dtype=torch.uint8), x)


@op("boundary_noise")
def boundary_noise(x: torch.Tensor, p: dict, rngs: list) -> torch.Tensor:
    """Flip each voxel of the mask's one-voxel inner and outer boundary with probability ``flip``."""
    q = float(p["flip"])
    if q <= 0:
        return x.clone()
    fg = x >= 128
    inner = fg & ~_eroded(fg)
    outer = ~fg & ~_eroded(~fg)
    hit = _uniform(x, rngs) < q
    x = torch.where(inner & hit, torch.tensor(0, dtype=torch.uint8), x)
    return torch.where(outer & hit, torch.tensor(255, dtype=torch.uint8), x)
