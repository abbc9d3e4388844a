"""Deterministic corrupted test sets, cached as uint8 ``.npz`` with a sha256 manifest.

The random stream of each image depends only on (protocol seed, dataset, corruption, severity,
image index), so the output never depends on batch size, order or device. Sets live under
``cache_root()/corruptions/<dataset>_<size>/<key>/`` (the data root may be read-only), where
``<key>`` hashes everything that determines their content: the source file's MD5, the seed, the
parameters and the code of the operations (the sha256 of the modules that implement them), so
that changing an operation regenerates its sets even when its parameters stay the same. Each
file is checked against the manifest every time it is loaded and is regenerated when it is
missing or does not match.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import importlib
import io
import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from ..data import DatasetSpec, Split
from ..errors import ChecksumMismatchError
from ..paths import cache_root
from .common import image_rngs
from .ops2d import OPS_2D
from .ops3d import OPS_3D
from .params import op_name, parameters_sha256, suite_name

FORMAT_VERSION = 3  # bump when the cache's layout changes (operation code is keyed by ops_code_sha256)
_OPS_MODULES = {False: ("medbench.corruptions.ops2d", "medbench.corruptions.common"),
                True: ("medbench.corruptions.ops3d", "medbench.corruptions.common")}


def ops_code_sha256(is_3d: bool) -> str:
    """sha256 of the source of the modules that implement a suite's operations (2D or 3D)."""
    h = hashlib.sha256()
    for name in _OPS_MODULES[bool(is_3d)]:
        h.update(Path(importlib.import_module(name).__file__).read_bytes())
    return h.hexdigest()


def corrupt(
    images: torch.Tensor,
    spec: DatasetSpec,
    corruption: str,
    severity: int,
    params: dict,
    *,
    seed: int = 0,
    indices: Sequence[int] | None = None,
    batch_size: int | None = None,
) -> torch.Tensor:
    """Corrupt uint8 ``images`` (``N x C x H x W`` or ``N x C x D x H x W``) at one severity.

    ``indices`` are the images' positions in the test split (default ``0..N-1``); image ``i``'s
    random stream is seeded by ``(seed, spec.name, corruption, severity, indices[i])`` only.
    """
    if images.dtype != torch.uint8:
        raise TypeError(f"corrupt() takes uint8 images (0..255); got {images.dtype}. Pass the Split's .images.")
    expected = 5 if spec.is_3d else 4
    if images.ndim != expected:
        raise ValueError(f"{spec.name} images must have {expected} dimensions "
                         f"({'N x C x D x H x W' if spec.is_3d else 'N x C x H x W'}); got shape {tuple(images.shape)}.")
    fn = (OPS_3D if spec.is_3d else OPS_2D)[op_name(spec, corruption)]
    idx = np.arange(len(images)) if indices is None else np.asarray(indices)
    if len(idx) != len(images):
        raise ValueError(f"indices has {len(idx)} entries for {len(images)} images.")
    if batch_size is None:  # about 4 M values per batch keeps the float64 temporaries near 32 MB
        batch_size = int(max(1, min(1024, 2 ** 22 // max(1, images[0].numel())))) if len(images) else 1
    out = torch.empty_like(images)
    for start in range(0, len(images), batch_size):
        sl = slice(start, start + batch_size)
        rngs = image_rngs(seed, spec.name, corruption, severity, idx[sl])
        out[sl] = fn(images[sl].contiguous(), params, rngs)
    return out


def _sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass
class CorruptedSets:
    """The cached corrupted test sets of one dataset and size; ``load`` verifies before returning."""

    folder: Path
    manifest: dict
    spec: DatasetSpec

    @property
    def manifest_sha256(self) -> str:
        """sha256 of the manifest's content (canonical JSON) without its ``updated_at`` time, so that two
        caches of the same files (parameters, source data, seed, code and each file's sha256) hash the same
        wherever and whenever they were built: results computed on different machines stay comparable."""
        manifest = json.loads((self.folder / "manifest.json").read_text())
        manifest.pop("updated_at", None)
        return _sha256_bytes(json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode())

    @property
    def corruptions(self) -> list[str]:
        return list(self.manifest["files"])

    def load(self, corruption: str) -> dict[int, torch.Tensor]:
        """{severity: uint8 images} of ``corruption``, after checking the file's sha256."""
        entry = self.manifest["files"].get(corruption)
        if entry is None:
            raise KeyError(f"{corruption!r} is not in {self.folder}; it holds {', '.join(self.corruptions)}.")
        data = (self.folder / entry["file"]).read_bytes()
        digest = _sha256_bytes(data)
        if digest != entry["sha256"]:
            raise ChecksumMismatchError(f"{self.folder / entry['file']} has sha256 {digest}, the manifest says "
                                f"{entry['sha256']}. Fix: call build_corrupted_sets() again (it regenerates it).")
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            return {int(k.split("_")[1]): torch.from_numpy(z[k].copy()) for k in z.files}


def cache_key(spec: DatasetSpec, size: int, data_md5: str, seed: int, params: dict) -> str:
    ident = {"format": FORMAT_VERSION, "dataset": spec.name, "size": size, "data_md5": data_md5, "seed": seed,
             "parameters_sha256": parameters_sha256(params), "ops_code_sha256": ops_code_sha256(spec.is_3d),
             "ops": {c: op_name(spec, c) for c in params}}
    return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:20]


def _file_ok(folder: Path, entry: dict | None) -> bool:
    if entry is None:
        return False
    path = folder / entry["file"]
    return path.is_file() and _sha256_bytes(path.read_bytes()) == entry["sha256"]


def build_corrupted_sets(
    spec: DatasetSpec,
    size: int,
    split: Split,
    params: dict[str, list[dict]],
    *,
    seed: int = 0,
    cache_dir: str | os.PathLike | None = None,
    progress: bool = True,
    batch_size: int | None = None,
) -> CorruptedSets:
    """Generate (or verify and reuse) the corrupted test sets for every corruption in ``params``."""
    key = cache_key(spec, size, split.md5, seed, params)
    folder = cache_root(cache_dir) / "corruptions" / f"{spec.name}_{size}" / key
    folder.mkdir(parents=True, exist_ok=True)
    mpath = folder / "manifest.json"
    manifest = json.loads(mpath.read_text()) if mpath.is_file() else {}
    files = manifest.get("files", {})
    todo = [c for c in params if not _file_ok(folder, files.get(c))]
    stale = [c for c in todo if c in files]
    if stale:
        warnings.warn(f"Corrupted sets {', '.join(stale)} in {folder} are missing or fail their sha256 check; "
                      "regenerating them.", stacklevel=2)
    if todo:
        n_sev = {c: len(params[c]) for c in todo}
        with tqdm(total=sum(n_sev.values()), desc=f"corrupting {spec.name} ({size} px)", unit="set",
                  disable=not progress, leave=False) as bar:
            for name in todo:
                arrays = {}
                for sev, p in enumerate(params[name], 1):
                    bar.set_postfix_str(f"{name} s{sev}")
                    arrays[f"severity_{sev}"] = corrupt(split.images, spec, name, sev, p, seed=seed,
                                                        batch_size=batch_size).numpy()
                    bar.update(1)
                buf = io.BytesIO()
                np.savez(buf, **arrays)
                data = buf.getvalue()
                tmp = folder / f"{name}.npz.{os.getpid()}.tmp"  # per process: parallel runs may build the same set
                tmp.write_bytes(data)
                tmp.replace(folder / f"{name}.npz")
                files[name] = {"file": f"{name}.npz", "sha256": _sha256_bytes(data), "params": params[name],
                               "shape": list(split.images.shape)}
        manifest = {
            "format": FORMAT_VERSION, "suite": suite_name(spec), "dataset": spec.name, "size": size,
            "source_file": split.path.name, "source_md5": split.md5, "seed": seed,
            "parameters_sha256": parameters_sha256(params), "ops_code_sha256": ops_code_sha256(spec.is_3d),
            "updated_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "files": {c: files[c] for c in sorted(files)},
        }
        tmp = folder / f"manifest.json.{os.getpid()}.tmp"
        tmp.write_text(json.dumps(manifest, indent=1))
        tmp.replace(mpath)
    return CorruptedSets(folder=folder, manifest=manifest, spec=spec)
