"""Training losses implemented here: class-weighted CE, the TRADES objective and the AUC-margin loss."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


def balanced_class_weights(labels: np.ndarray, num_classes: int) -> torch.Tensor:
    """Inverse-frequency weights ``n / (K * n_k)`` (1 for every class when the split is balanced)."""
    counts = np.bincount(np.asarray(labels).reshape(-1), minlength=num_classes).astype(np.float64)
    counts[counts == 0] = 1.0
    return torch.as_tensor(len(labels) / (num_classes * counts), dtype=torch.float32)


def trades_kl(logits_adv: torch.Tensor, logits_clean: torch.Tensor) -> torch.Tensor:
    """TRADES robustness term KL(f(x) || f(x_adv)), batch mean (Zhang et al. 2019)."""
    return F.kl_div(F.log_softmax(logits_adv, dim=1), F.softmax(logits_clean, dim=1), reduction="batchmean")


class AUCMLoss(nn.Module):
    """AUC-margin loss (Yuan et al., ICCV 2021), one-vs-rest over the classes of a softmax classifier.

    For class k with score h = softmax(logits)[:, k] and prior p_k (fraction of positives):

        (1-p) E[(h-a)^2 | y=k] + p E[(h-b)^2 | y!=k]
        + 2 alpha (p(1-p) m + E[p h 1{y!=k} - (1-p) h 1{y=k}]) - p(1-p) alpha^2

    minimised over the network and (a, b), maximised over alpha >= 0 (see :class:`PESG`). A binary
    task uses the positive class only (k = 1); multi-class averages the K one-vs-rest losses.
    """

    def __init__(self, priors: torch.Tensor, margin: float = 1.0, binary: bool | None = None):
        super().__init__()
        priors = torch.as_tensor(priors, dtype=torch.float32).clamp(1e-6, 1 - 1e-6)
        self.binary = len(priors) == 2 if binary is None else binary
        self.classes = [1] if self.binary else list(range(len(priors)))
        self.register_buffer("p", priors[self.classes].clone())
        k = len(self.classes)
        self.a = nn.Parameter(torch.zeros(k))
        self.b = nn.Parameter(torch.zeros(k))
        self.alpha = nn.Parameter(torch.zeros(k))  # dual variable: ascended, kept >= 0
        self.margin = margin

    def forward(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        scores = torch.softmax(logits, dim=1)[:, self.classes]  # N x k
        pos = (y.view(-1, 1) == torch.as_tensor(self.classes, device=y.device).view(1, -1)).float()
        neg = 1.0 - pos
        p = self.p.view(1, -1)
        loss = ((1 - p) * (scores - self.a) ** 2 * pos).mean(0) \
            + (p * (scores - self.b) ** 2 * neg).mean(0) \
            + 2 * self.alpha * (self.p * (1 - self.p) * self.margin + (p * scores * neg - (1 - p) * scores * pos).mean(0)) \
            - self.p * (1 - self.p) * self.alpha ** 2
        return loss.mean()

    def dual_parameters(self) -> list[nn.Parameter]:
        return [self.alpha]

    def primal_parameters(self) -> list[nn.Parameter]:
        return [self.a, self.b]
