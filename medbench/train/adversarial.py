"""Linf PGD for adversarial training (Madry et al.), seeded from a generator so runs are deterministic."""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn


def pgd_linf(
    model: nn.Module,
    x: torch.Tensor,
    objective: Callable[[torch.Tensor], torch.Tensor],
    *,
    eps: float,
    steps: int,
    step_size: float,
    generator: torch.Generator | None = None,
    random_start: str = "uniform",
) -> torch.Tensor:
    """Maximise ``objective(model(x + delta))`` over ``||delta||_inf <= eps`` with ``x + delta`` in [0, 1].

    ``random_start``: "uniform" (Madry), "normal" (TRADES: 0.001 * N(0, 1)) or "none". The model's
    train/eval mode is left as the caller set it. Returns a detached adversarial batch.
    """
    if random_start == "uniform":
        delta = (torch.rand(x.shape, generator=generator, device=x.device) * 2 - 1) * eps
    elif random_start == "normal":
        delta = 0.001 * torch.randn(x.shape, generator=generator, device=x.device)
    else:
        delta = torch.zeros_like(x)
    delta = ((x + delta).clamp(0, 1) - x).detach()
    for _ in range(steps):
        delta.requires_grad_(True)
        loss = objective(model(x + delta))
        (grad,) = torch.autograd.grad(loss, delta)
        delta = (delta.detach() + step_size * grad.sign()).clamp(-eps, eps)
        delta = ((x + delta).clamp(0, 1) - x).detach()
    return (x + delta).detach()


def pgd_ce(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, eps: float, steps: int, step_size: float,
           generator: torch.Generator | None = None) -> torch.Tensor:
    """PGD on the (unweighted) cross-entropy of the true labels."""
    return pgd_linf(model, x, lambda logits: F.cross_entropy(logits, y), eps=eps, steps=steps,
                    step_size=step_size, generator=generator)
