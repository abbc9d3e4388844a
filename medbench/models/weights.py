"""Loading weights: safetensors only, strict, with errors that name the file and the mismatch."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import torch
from torch import nn

from ..errors import MedbenchError


class WeightsError(MedbenchError):
    """Weights that are not safetensors, corrupt, or do not fit the architecture."""


PICKLE_MAGIC = (b"\x80\x02", b"\x80\x03", b"\x80\x04", b"\x80\x05", b"PK\x03\x04")  # pickle / torch zip


def sha256sum(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def read_safetensors(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read a safetensors file; refuse anything else (pickles, torch zips, HTML) without executing it."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"Weights file {path} does not exist{' (it is a folder)' if path.is_dir() else ''}. "
                           "Fix: check the path (relative paths start from the current folder).")
    with open(path, "rb") as f:
        head = f.read(16)
    if head.startswith(PICKLE_MAGIC):
        raise WeightsError(
            f"{path} is a pickle / torch.save file, not safetensors. medbench never unpickles files. "
            "Fix: convert it once on a trusted machine with "
            "`safetensors.torch.save_file(torch.load(f, weights_only=True), 'model.safetensors')`."
        )
    if head.lstrip()[:1] == b"<":
        raise WeightsError(f"{path} looks like an HTML page, not safetensors weights (a failed download?).")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise WeightsError(f"{path} is not a valid safetensors file ({exc}). It may be truncated or corrupt.") from None


def load_state_strict(model: nn.Module, state: dict[str, torch.Tensor], source: str = "weights") -> nn.Module:
    """``load_state_dict(strict=True)`` with a readable report of missing, unexpected and mis-shaped keys."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = [f"{k}: file {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
              for k in sorted(set(own) & set(state)) if own[k].shape != state[k].shape]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"missing {len(missing)} key(s) (e.g. {', '.join(missing[:3])})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected key(s) (e.g. {', '.join(unexpected[:3])})")
        if shapes:
            parts.append(f"{len(shapes)} shape mismatch(es) (e.g. {'; '.join(shapes[:3])})")
        raise WeightsError(
            f"{source} do not fit the architecture: {'; '.join(parts)}. "
            "Fix: check the architecture name and its kwargs (width, classes, channels) against the training run."
        )
    model.load_state_dict(state, strict=True)
    return model


def load_weights(model: nn.Module, path: str | os.PathLike) -> nn.Module:
    """Load a safetensors file into ``model`` strictly."""
    return load_state_strict(model, read_safetensors(path), source=str(path))


def save_weights(model: nn.Module, path: str | os.PathLike) -> str:
    """Save ``model``'s state dict as safetensors (contiguous CPU tensors); return the file's sha256."""
    from safetensors.torch import save_file

    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    save_file(state, str(path))
    return sha256sum(path)
