"""Batched inference on uint8 image tensors, shared by every part of the harness."""

from __future__ import annotations

import torch
from torch import nn
from tqdm.auto import tqdm


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def default_batch_size(input_shape: tuple[int, ...], device: torch.device | str = "cpu") -> int:
    """A batch size that keeps one batch of float inputs around 25 MB (CPU) or 400 MB (GPU)."""
    budget = (400 if torch.device(device).type == "cuda" else 25) * 2**20
    per_item = 4 * int(torch.tensor(input_shape).prod())
    return int(max(8, min(1024, budget // per_item)))


def to_float(images_u8: torch.Tensor, device: torch.device | str) -> torch.Tensor:
    """uint8 [0, 255] to float32 [0, 1] on ``device`` (the model contract)."""
    return images_u8.to(device, non_blocking=True).float().div_(255.0)


class TwoLogits(nn.Module):
    """Wraps a single-logit binary model as two logits ``[0, z]`` (softmax then equals sigmoid(z))."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.model(x)
        return torch.cat([torch.zeros_like(z), z], dim=1)


class NonFiniteCounter(nn.Module):
    """Passes ``model``'s outputs through unchanged (gradients included) and counts, over every call, the
    output rows that are not finite (NaN or inf): what an attack saw that the result must not hide."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        self.count = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.model(x)
        self.count += int((~torch.isfinite(out.detach()).flatten(1).all(1)).sum())
        return out


@torch.inference_mode()
def predict_logits(
    model: nn.Module,
    images_u8: torch.Tensor,
    *,
    batch_size: int,
    device: torch.device | str,
    progress: bool = True,
    desc: str = "inference",
) -> torch.Tensor:
    """Logits (float32, CPU) of ``model`` on uint8 images, converting to [0, 1] floats per batch."""
    outs = []
    n = images_u8.shape[0]
    with tqdm(total=n, desc=desc, unit="img", disable=not progress, leave=False) as bar:
        for start in range(0, n, batch_size):
            batch = to_float(images_u8[start:start + batch_size], device)
            outs.append(model(batch).float().cpu())
            bar.update(batch.shape[0])
    return torch.cat(outs) if outs else torch.empty(0)
