"""Helpers for zoo tests: tiny real models, their safetensors bytes, entries and throwaway registries."""

from __future__ import annotations

import hashlib
import tempfile
from pathlib import Path

import torch
import yaml

from medbench.models.architectures import build_architecture, count_parameters
from medbench.data import get_spec
from medbench.models.weights import save_weights

WIDTH = 4


def tiny_model(dataset: str = "breastmnist", width: int = WIDTH, seed: int = 0) -> torch.nn.Module:
    spec = get_spec(dataset)
    torch.manual_seed(seed)
    return build_architecture("smallcnn", in_channels=spec.n_channels, num_classes=spec.num_classes,
                              mean=0.5, std=0.25, width=width, dims=spec.dims).eval()


def model_bytes(model: torch.nn.Module) -> bytes:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "w.safetensors"
        save_weights(model, path)
        return path.read_bytes()


def entry_dict(model_id: str, data: bytes, sources: list[dict], *, dataset: str = "breastmnist",
               width: int = WIDTH, num_parameters: int | None = None) -> dict:
    """A valid entry for a ``smallcnn`` of ``width`` whose weights are ``data``."""
    spec = get_spec(dataset)
    if num_parameters is None:
        num_parameters = count_parameters(tiny_model(dataset, width))
    return {
        "id": model_id, "dataset": spec.name, "size": 28, "task": spec.task,
        "architecture": "smallcnn", "architecture_kwargs": {"width": width, "dims": spec.dims},
        "preprocessing": {"mean": [0.5], "std": [0.25]},
        "recipe": {"method": "erm", "epochs": 1, "optimizer": "adam", "lr": 0.001, "batch_size": 8, "seed": 0},
        "license": "Apache-2.0", "date_added": "2026-11-22",
        "weights": {"sha256": hashlib.sha256(data).hexdigest(), "size_bytes": len(data),
                    "num_parameters": num_parameters, "sources": sources},
    }


def write_entry(root: Path, entry: dict, files: dict[str, bytes] | None = None) -> Path:
    """Write ``entry`` as ``root/<dataset>/<id>.yaml`` plus bundled ``files``; return the YAML path."""
    folder = root / entry["dataset"]
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in (files or {}).items():
        (folder / name).write_bytes(data)
    path = folder / f"{entry['id']}.yaml"
    path.write_text(yaml.safe_dump(entry, sort_keys=False), encoding="utf-8")
    return path
