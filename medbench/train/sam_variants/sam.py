"""SAM: Foret, Kleiner, Mobahi, Neyshabur, "Sharpness-Aware Minimization for Efficiently Improving
Generalization", ICLR 2021 (arXiv:2010.01412)."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from .base import NORM_EPS, OptimizerSettings, SharpnessAware, global_norm

__all__ = ["SAM", "SAMSettings"]


class SAMSettings(OptimizerSettings):
    rho: Annotated[float, Field(gt=0)] = 0.05  # the paper's default radius


class SAM(SharpnessAware):
    """Sharpness-Aware Minimization: ``e = rho * g / ||g||`` (one ascent step on the L2 ball of
    radius ``rho``), then the base optimizer descends along the gradient taken at ``w + e``.

    Default ``rho = 0.05`` (Foret et al.).
    """

    Settings = SAMSettings

    def perturbation(self, params, grads):
        scale = self.settings.rho / (global_norm(grads) + NORM_EPS)
        return [g * scale for g in grads]

    def update(self, params, clean, perturbed):
        for p, g in zip(params, perturbed):
            p.grad = g
        self.base.step()
