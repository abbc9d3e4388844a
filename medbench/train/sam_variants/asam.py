"""ASAM: Kwon, Kim, Park, Choi, "ASAM: Adaptive Sharpness-Aware Minimization for Scale-Invariant
Learning of Deep Neural Networks", ICML 2021 (arXiv:2102.11600)."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from .base import NORM_EPS, global_norm
from .sam import SAM, SAMSettings

__all__ = ["ASAM", "ASAMSettings"]


class ASAMSettings(SAMSettings):
    rho: Annotated[float, Field(gt=0)] = 0.5  # the paper's CIFAR-10 value (SGD; SAM there: 0.05)
    eta: Annotated[float, Field(ge=0)] = 0.01  # the paper's (and the official code's) eta


class ASAM(SAM):
    """Adaptive SAM: the ascent step maximises over the ball ``||T_w^-1 e|| <= rho`` with the
    element-wise operator ``T_w = |w| + eta``, which gives ``e = rho * T_w^2 g / ||T_w g||``; the
    base optimizer then descends along the gradient at ``w + e`` (as SAM).

    Defaults ``rho = 0.5``, ``eta = 0.01``: Kwon et al.'s CIFAR-10 setting with SGD (their CIFAR-100
    runs use rho = 1.0). ``T_w`` applies to every parameter, the paper's element-wise
    operator; the authors' code leaves parameters not named ``weight`` (biases) unscaled.
    """

    Settings = ASAMSettings

    def perturbation(self, params, grads):
        t_w = [p.abs() + self.settings.eta for p in params]
        scaled = [t * g for t, g in zip(t_w, grads)]
        scale = self.settings.rho / (global_norm(scaled) + NORM_EPS)
        return [t * s * scale for t, s in zip(t_w, scaled)]
