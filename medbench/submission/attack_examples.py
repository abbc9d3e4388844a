"""Per-example checks of a submitted attack: inside the threat's ball, and misclassified deterministically.

Tolerance: :data:`TOLERANCE` (1e-5, absolute, in [0, 1] pixel units) on the norm bound, distances computed
in float64 from the float32 (or uint8 / 255) submitted images. It absorbs float32 rounding of
``x + delta`` and of an L2 projection (about 1e-7 per pixel), and is 0.0026 of a grey level, so it buys
no attack strength. It does not allow rounding to the uint8 grid: a clean image is on the grid and the
protocol's Linf budgets are whole grey levels (2/255, 4/255), so a quantised Linf example needs no slack,
and the protocol does not require quantised examples (AutoAttack's own are not), so none is required here.

A prediction counts only when it is the same in three passes: the submitted examples in batches, the
same batches again, and each example alone (another batch composition): a model whose output depends on
the batch, or on chance, gains no break from it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

__all__ = ["TOLERANCE", "ExampleVerdicts", "check_examples", "distances", "stable_predictions"]

TOLERANCE = 1e-5
OUTSIDE = "outside the {norm} ball (eps {eps:.6g} + tolerance {tol:g})"
UNSTABLE = "prediction depends on the batch or the pass"
CORRECT = "correctly classified"


@dataclass(frozen=True)
class ExampleVerdicts:
    """What each submitted example proved: distance, prediction, and why it does not count (None: a break)."""

    distance: np.ndarray  # float64 (k,)
    predicted: np.ndarray  # int64 (k,), the first pass's class
    refused: list[str | None]


def distances(x_adv: np.ndarray, x_clean: np.ndarray, norm: str) -> np.ndarray:
    """Per-example ||x_adv - x_clean|| (Linf or L2), in float64."""
    delta = (x_adv.astype(np.float64) - x_clean.astype(np.float64)).reshape(len(x_adv), -1)
    return np.abs(delta).max(1) if norm == "Linf" else np.sqrt((delta * delta).sum(1))


@torch.no_grad()
def _predict(model: nn.Module, x: torch.Tensor, batch_size: int, device) -> np.ndarray:
    out = [model(x[s:s + batch_size].to(device)).float().argmax(1).cpu() for s in range(0, len(x), batch_size)]
    return torch.cat(out).numpy().astype(np.int64)


def stable_predictions(model: nn.Module, images: np.ndarray, *, device="cpu", batch_size: int = 64
                       ) -> tuple[np.ndarray, np.ndarray]:
    """The model's classes on ``images`` (float32 in [0, 1]) and whether every pass agreed on each."""
    model.eval()
    x = torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32))
    first = _predict(model, x, batch_size, device)
    again = _predict(model, x, batch_size, device)
    alone = _predict(model, x, 1, device)
    return first, (first == again) & (first == alone)


def check_examples(model: nn.Module, x_adv: np.ndarray, x_clean: np.ndarray, labels: np.ndarray, *, norm: str,
                   eps: float, device="cpu", tolerance: float = TOLERANCE) -> ExampleVerdicts:
    """Verdicts for each submitted example against its clean image and test label."""
    dist = distances(x_adv, x_clean, norm)
    predicted, stable = stable_predictions(model, x_adv, device=device)
    outside = OUTSIDE.format(norm=norm, eps=eps, tol=tolerance)
    refused = [outside if d > eps + tolerance else UNSTABLE if not ok else CORRECT if p == y else None
               for d, ok, p, y in zip(dist, stable, predicted, labels)]
    return ExampleVerdicts(distance=dist, predicted=predicted, refused=refused)
