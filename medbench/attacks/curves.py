"""Curve points on the evaluation subset: APGD-CE and FGSM over Linf eps, Gaussian noise over sigma.

APGD-CE is pyautoattack's ``APGDAttack`` (1 restart, fixed seed). FGSM (one signed-gradient step of
size eps on the cross-entropy, clipped to [0, 1]) is not part of pyautoattack and is written here.
Gaussian noise is drawn per example from a stream seeded by (seed, sigma index, test index), so a
point's noise does not depend on chunking or order.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from pyautoattack.autopgd_base import APGDAttack


def apgd_ce(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, *, n_iter: int, seed: int,
            device: torch.device | str) -> torch.Tensor:
    """Predictions after pyautoattack's APGD-CE (Linf, ``eps``, 1 restart) on one batch."""
    attack = APGDAttack(model, n_iter=n_iter, norm="Linf", n_restarts=1, eps=eps, seed=seed, loss="ce",
                        eot_iter=1, rho=0.75, device=device)
    x_adv = attack.perturb(x, y)
    with torch.no_grad():
        return model(x_adv).argmax(1)


def fgsm(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float) -> torch.Tensor:
    """Predictions after FGSM (Linf, one step of size ``eps`` on the cross-entropy, clipped to [0, 1])."""
    x = x.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        loss = F.cross_entropy(model(x), y, reduction="sum")
        (grad,) = torch.autograd.grad(loss, x)
    x_adv = (x.detach() + eps * grad.sign()).clamp_(0, 1)
    with torch.no_grad():
        return model(x_adv).argmax(1)


def gaussian_noise(x: torch.Tensor, sigma: float, *, seed: int, sigma_index: int,
                   example_ids: np.ndarray) -> torch.Tensor:
    """``clip(x + sigma * N(0, 1), 0, 1)`` with one seeded stream per (seed, sigma index, example id)."""
    shape = tuple(x.shape[1:])
    noise = np.stack([np.random.default_rng([seed, sigma_index, int(i)]).standard_normal(shape, dtype=np.float32)
                      for i in example_ids])
    return (x + sigma * torch.from_numpy(noise).to(x.device)).clamp_(0, 1)


def noise_predictions(model: nn.Module, x: torch.Tensor, sigma: float, *, seed: int, sigma_index: int,
                      example_ids: np.ndarray) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Predictions under Gaussian noise, and the realised Linf and L2 norms of the perturbation."""
    x_noisy = gaussian_noise(x, sigma, seed=seed, sigma_index=sigma_index, example_ids=example_ids)
    delta = (x_noisy - x).flatten(1)
    with torch.no_grad():
        pred = model(x_noisy).argmax(1)
    return pred, delta.abs().amax(1), delta.norm(dim=1)
