"""The two-step interface that SAM and its variants share, so a training loop treats them alike.

Per batch: ``loss(w).backward(); opt.first_step(); loss(w + e).backward(); opt.second_step()``.
``first_step`` keeps the gradient ``g`` at ``w`` and moves the weights to ``w + e``
(:meth:`SharpnessAware.perturbation`); ``second_step`` moves them back to ``w`` and hands the
gradients at ``w`` and at ``w + e`` to :meth:`SharpnessAware.update`, which steps the base
optimizer.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from pydantic import BaseModel, ConfigDict

__all__ = ["OptimizerSettings", "SharpnessAware", "global_norm"]

NORM_EPS = 1e-12  # keeps a zero gradient from dividing by zero


class OptimizerSettings(BaseModel):
    """Hyper-parameters of one optimizer: unknown names, NaN and infinity are refused."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


def global_norm(tensors: list[torch.Tensor]) -> torch.Tensor:
    """The L2 norm of all ``tensors`` taken as one vector (0 for an empty list)."""
    if not tensors:
        return torch.tensor(0.0)
    return torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(t) for t in tensors]))


class SharpnessAware:
    """A sharpness-aware update around ``base``, a ``torch.optim.Optimizer`` over the same params.

    ``settings`` are keyword arguments checked by the class's ``Settings`` model (pydantic;
    a bad value raises ``pydantic.ValidationError``, a ``ValueError``). Parameters that have no
    gradient at ``w`` are not perturbed.
    """

    Settings: ClassVar[type[OptimizerSettings]] = OptimizerSettings

    def __init__(self, params, base: torch.optim.Optimizer, **settings):
        self.settings = self.Settings(**settings)
        self.params = [p for p in params if p.requires_grad]
        self.base = base
        self._moved: list[torch.nn.Parameter] = []
        self._clean: list[torch.Tensor] = []
        self._eps: list[torch.Tensor] = []

    def perturbation(self, params: list[torch.Tensor],
                     grads: list[torch.Tensor]) -> list[torch.Tensor]:
        """The ascent step ``e`` for each parameter, given the gradients at ``w``."""
        raise NotImplementedError

    def update(self, params: list[torch.nn.Parameter], clean: list[torch.Tensor],
               perturbed: list[torch.Tensor]) -> None:
        """Step the base optimizer from ``w`` given the gradients at ``w`` and at ``w + e``."""
        raise NotImplementedError

    @torch.no_grad()
    def first_step(self) -> None:
        self._moved = [p for p in self.params if p.grad is not None]
        self._clean = [p.grad for p in self._moved]
        self._eps = self.perturbation(self._moved, self._clean)
        for p, e in zip(self._moved, self._eps):
            p.add_(e)
        self.zero_grad()

    @torch.no_grad()
    def second_step(self) -> None:
        for p, e in zip(self._moved, self._eps):
            p.sub_(e)
        perturbed = [p.grad if p.grad is not None else torch.zeros_like(p) for p in self._moved]
        self.update(self._moved, self._clean, perturbed)
        self.zero_grad()
        self._moved, self._clean, self._eps = [], [], []

    def zero_grad(self) -> None:
        self.base.zero_grad(set_to_none=True)
