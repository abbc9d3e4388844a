"""WSAM: Yue, Jiang, Ye, Gao, Liu, Zhang, "Sharpness-Aware Minimization Revisited: Weighted
Sharpness as a Regularization Term", KDD 2023 (arXiv:2305.15817)."""

from __future__ import annotations

from typing import Annotated

import torch
from pydantic import Field

from .sam import SAM, SAMSettings

__all__ = ["WSAM", "WSAMSettings"]


class WSAMSettings(SAMSettings):
    gamma: Annotated[float, Field(ge=0, lt=1)] = 0.9  # sharpness weight gamma / (1 - gamma) = 9


class WSAM(SAM):
    """Weighted SAM: minimises ``L(w) + gamma / (1 - gamma) * (L(w + e) - L(w))`` with SAM's ascent
    step ``e``. The update is the paper's decoupled one: the base optimizer steps with the clean
    gradient ``g``, then each parameter moves by ``-lr * gamma / (1 - gamma) * (g_p - g)`` (``lr``
    its group's current learning rate, ``g_p`` the gradient at ``w + e``).

    Defaults ``rho = 0.05``, ``gamma = 0.9``: those of the authors' implementation (atorch's
    ``WeightedSAM``), which also makes the decoupled update its default.
    """

    Settings = WSAMSettings

    def update(self, params, clean, perturbed):
        weight = self.settings.gamma / (1 - self.settings.gamma)
        lr = {id(p): group["lr"] for group in self.base.param_groups for p in group["params"]}
        sharpness = [gp - g for g, gp in zip(clean, perturbed)]
        for p, g in zip(params, clean):
            p.grad = g
        self.base.step()
        with torch.no_grad():
            for p, s in zip(params, sharpness):
                p.add_(s, alpha=-lr[id(p)] * weight)
