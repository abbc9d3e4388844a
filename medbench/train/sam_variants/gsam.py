"""GSAM: Zhuang, Gong, Yuan, Cui, Adam, Dvornek, Tatikonda, Duncan, Liu, "Surrogate Gap Minimization
Improves Sharpness-Aware Training", ICLR 2022 (arXiv:2203.08065)."""

from __future__ import annotations

from typing import Annotated

import torch
from pydantic import Field

from .base import NORM_EPS
from .sam import SAM, SAMSettings

__all__ = ["GSAM", "GSAMSettings"]


class GSAMSettings(SAMSettings):
    alpha: Annotated[float, Field(ge=0)] = 0.2  # weight of the ascent on the surrogate gap


class GSAM(SAM):
    """Surrogate-gap guided SAM: the ascent step is SAM's; the clean gradient ``g`` is split into
    its part along the perturbed gradient ``g_p`` and the orthogonal rest
    ``g_orth = g - (<g, g_p> / ||g_p||^2) g_p``, and the base optimizer descends along
    ``g_p - alpha * g_orth`` (minimises the perturbed loss, and ascends on the surrogate gap only
    orthogonally to it).

    Defaults ``rho = 0.05`` (SAM's) and ``alpha = 0.2`` (the authors' PyTorch example,
    juntang-zhuang/GSAM ``example/train.py``; the paper tunes it per task). ``rho`` stays constant: the
    paper's schedule that decays ``rho_t`` with the learning rate is not applied.
    """

    Settings = GSAMSettings

    def update(self, params, clean, perturbed):
        inner = sum(torch.sum(g * gp) for g, gp in zip(clean, perturbed))
        gp_sq = sum(torch.sum(gp * gp) for gp in perturbed)
        along = inner / (gp_sq + NORM_EPS)
        for p, g, gp in zip(params, clean, perturbed):
            p.grad = gp - self.settings.alpha * (g - along * gp)
        self.base.step()
