"""PESG (Guo et al. / LibAUC) for AUC-M, and BatchNorm statistics frozen for a second forward pass.

SAM and its variants live in :mod:`medbench.train.sam_variants`.
"""

from __future__ import annotations

from contextlib import contextmanager

import torch
from torch import nn


@contextmanager
def frozen_batchnorm_stats(model: nn.Module):
    """BatchNorm layers keep their running statistics (for the SAM family's second forward pass)."""
    saved = []
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            saved.append((m, m.momentum))
            m.momentum = 0.0
    try:
        yield
    finally:
        for m, mom in saved:
            m.momentum = mom


class PESG(torch.optim.Optimizer):
    """Proximal epoch stochastic gradient (descent on primal, ascent on dual variables), as in LibAUC.

    Primal parameters: ``w <- w - lr * (g + epoch_decay * (w - w_ref) + weight_decay * w)``, with
    heavy-ball momentum; ``w_ref`` is reset by :meth:`update_reference` (each lr stage). Dual
    parameters (group flag ``dual=True``): ``alpha <- max(0, alpha + lr * g)``.
    """

    def __init__(self, primal, dual, lr: float = 0.1, momentum: float = 0.9, epoch_decay: float = 2e-3,
                 weight_decay: float = 1e-4):
        groups = [{"params": list(primal), "dual": False}, {"params": list(dual), "dual": True}]
        super().__init__(groups, dict(lr=lr, momentum=momentum, epoch_decay=epoch_decay, weight_decay=weight_decay))
        self.update_reference()

    @torch.no_grad()
    def update_reference(self) -> None:
        for group in self.param_groups:
            for p in group["params"]:
                self.state[p]["ref"] = p.detach().clone()

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            lr = group["lr"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                if group["dual"]:
                    p.add_(lr * p.grad).clamp_(min=0)
                    continue
                state = self.state[p]
                d = p.grad + group["epoch_decay"] * (p - state["ref"]) + group["weight_decay"] * p
                if group["momentum"]:
                    buf = state.get("momentum")
                    buf = d.clone() if buf is None else buf.mul_(group["momentum"]).add_(d)
                    state["momentum"] = buf
                    d = buf
                p.add_(d, alpha=-lr)
