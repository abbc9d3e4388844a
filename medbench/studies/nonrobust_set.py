"""Ilyas et al.'s D_rand: every image moved by targeted PGD toward a random label, and relabelled with it.

A standard model's nonrobust features are what targeted PGD changes within a small Linf ball. Each
source image x (label y) gets a target t drawn uniformly from the classes (so the image's robust
features, which follow y, are independent of t) and becomes ``argmin CE(f(x'), t)`` over
``||x' - x||_inf <= eps``. The perturbed images are stored as uint8 like every MedMNIST image (the
perturbation is rounded to whole grey levels and kept inside the ball), and an image is *kept* only
when the standard model classifies the stored uint8 image as t.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..data import Split
from ..errors import ChecksumMismatchError
from ..inference import to_float
from ..metrics import stratified_indices
from ..train.adversarial import pgd_linf

FORMAT_VERSION = 1
STREAMS = {"train": 0, "val": 1}  # independent target streams per split
_ARRAYS = ("images", "labels", "targets", "clean_pred", "pred", "index")


@dataclass
class NonrobustSet:
    """The perturbed copies of (a subset of) one split, with what the standard model made of them."""

    images: torch.Tensor  # uint8, N x C x H x W: every source image after the targeted attack
    labels: np.ndarray  # the original labels y
    targets: np.ndarray  # the random targets t (the new labels)
    clean_pred: np.ndarray  # the standard model on the original images
    pred: np.ndarray  # the standard model on the stored (uint8) perturbed images
    index: np.ndarray  # positions in the source split

    @property
    def kept(self) -> np.ndarray:
        """The images the standard model classifies as their target (the training set)."""
        return self.pred == self.targets

    @property
    def needed_flip(self) -> np.ndarray:
        """Images whose target differs from the standard model's clean prediction (PGD had to move them)."""
        return self.targets != self.clean_pred

    def kept_split(self, template: Split, path: Path, md5: str) -> Split:
        """The kept images relabelled with their targets, as a :class:`Split` for ``medbench.train``."""
        keep = torch.as_tensor(self.kept)
        return Split(template.spec, template.split, template.size, self.images[keep].clone(),
                     self.targets[self.kept].astype(np.int64), path, md5)


def random_targets(n: int, num_classes: int, seed: int, split: str) -> np.ndarray:
    """Uniform random targets, one seeded stream per (seed, split)."""
    return np.random.default_rng([seed, STREAMS[split]]).integers(0, num_classes, size=n).astype(np.int64)


def radius_levels(eps: float) -> int:
    """The Linf radius in whole grey levels (what a uint8 image can hold)."""
    return int(math.floor(eps * 255 + 1e-6))


def targeted_pgd_u8(model: nn.Module, images: torch.Tensor, targets: np.ndarray, *, eps: float, steps: int,
                    step_size: float, batch_size: int = 256) -> tuple[torch.Tensor, np.ndarray]:
    """Targeted Linf PGD (no random start, as Ilyas et al.) on uint8 images; the perturbation is rounded
    to grey levels and clipped to the ball. Returns the uint8 images and the model's predictions on them."""
    r = radius_levels(eps)
    out, preds = [], []
    model.eval()
    for start in range(0, len(images), batch_size):
        u8 = images[start:start + batch_size]
        t = torch.as_tensor(targets[start:start + batch_size])
        x = to_float(u8, "cpu")
        if r > 0 and steps > 0:
            x_adv = pgd_linf(model, x, lambda z: -F.cross_entropy(z, t), eps=eps, steps=steps, step_size=step_size,
                             random_start="none")
            delta = torch.round((x_adv - x) * 255).clamp_(-r, r).to(torch.int16)
            u8 = (u8.to(torch.int16) + delta).clamp_(0, 255).to(torch.uint8)
        with torch.no_grad():
            preds.append(model(to_float(u8, "cpu")).argmax(1).numpy())
        out.append(u8)
    return torch.cat(out), np.concatenate(preds).astype(np.int64)


def build_set(model: nn.Module, split: Split, *, eps: float, steps: int, step_size: float, seed: int,
              max_n: int | None = None, batch_size: int = 256) -> NonrobustSet:
    """D_rand of ``split`` (or of a stratified subset of ``max_n`` images, seed ``seed``) for ``model``."""
    labels = np.asarray(split.labels).reshape(-1)
    index = np.arange(len(labels)) if max_n is None else stratified_indices(labels, max_n, seed=seed)
    images = split.images[torch.as_tensor(index)]
    targets = random_targets(len(labels), split.spec.num_classes, seed, split.split)[index]
    with torch.no_grad():
        clean_pred = np.concatenate([model(to_float(images[s:s + batch_size], "cpu")).argmax(1).numpy()
                                     for s in range(0, len(images), batch_size)]).astype(np.int64)
    perturbed, pred = targeted_pgd_u8(model, images, targets, eps=eps, steps=steps, step_size=step_size,
                                      batch_size=batch_size)
    return NonrobustSet(images=perturbed, labels=labels[index].astype(np.int64), targets=targets,
                        clean_pred=clean_pred, pred=pred, index=index.astype(np.int64))


def cache_key(ident: dict) -> str:
    return hashlib.sha256(json.dumps({"format": FORMAT_VERSION, **ident}, sort_keys=True).encode()).hexdigest()[:20]


def save_arrays(path: Path, arrays: dict[str, np.ndarray]) -> str:
    """Write ``arrays`` as an uncompressed npz (no pickles) with a sha256 sidecar; return the sha256."""
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    data = buf.getvalue()
    digest = hashlib.sha256(data).hexdigest()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(data)
    tmp.replace(path)
    path.with_suffix(".sha256").write_text(digest + "\n")
    return digest


def load_arrays(path: Path) -> tuple[dict[str, np.ndarray], str] | None:
    """The arrays cached at ``path`` and their sha256, or None when absent; a file that fails its sha256
    sidecar is refused (it was changed after it was written)."""
    side = path.with_suffix(".sha256")
    if not path.is_file() or not side.is_file():
        return None
    data = path.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if digest != side.read_text().strip():
        raise ChecksumMismatchError(f"{path} has sha256 {digest}, its sidecar says {side.read_text().strip()}. "
                                    "Fix: delete both files; the study rebuilds them.")
    with np.load(io.BytesIO(data), allow_pickle=False) as z:
        return {k: z[k].copy() for k in z.files}, digest


def save_set(s: NonrobustSet, path: Path) -> str:
    """Write the set (see :func:`save_arrays`); return its sha256."""
    return save_arrays(path, {k: (getattr(s, k).numpy() if k == "images" else getattr(s, k)) for k in _ARRAYS})


def load_set(path: Path) -> tuple[NonrobustSet, str] | None:
    """The cached set at ``path`` and its sha256, or None when absent."""
    loaded = load_arrays(path)
    if loaded is None:
        return None
    arrays, digest = loaded
    arrays = {k: arrays[k] for k in _ARRAYS}
    arrays["images"] = torch.from_numpy(arrays["images"])
    return NonrobustSet(**arrays), digest
