"""``load_model``: entry -> architecture -> verified weights -> strict load -> model in eval mode."""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from ..architectures import UnknownArchitectureError, build_architecture, count_parameters
from ..data import get_spec
from ..schema.entry import EntryError, ModelEntry
from ..weights import WeightsError, load_weights
from .registry import entry_folder, get_entry
from .sources import fetch_weights


def build_model(entry: ModelEntry) -> nn.Module:
    """The entry's architecture with its preprocessing inside, randomly initialised."""
    spec = get_spec(entry.dataset)
    pre = entry.preprocessing
    mean = pre.mean[0] if len(pre.mean) == 1 else pre.mean
    std = pre.std[0] if len(pre.std) == 1 else pre.std
    try:
        return build_architecture(entry.architecture, in_channels=spec.n_channels, num_classes=spec.num_classes,
                                  mean=mean, std=std, **entry.architecture_kwargs)
    except UnknownArchitectureError as exc:
        raise UnknownArchitectureError(f"{entry.id} ({entry.dataset}) needs architecture {entry.architecture!r}: "
                                       f"{exc}") from None
    except TypeError as exc:
        raise EntryError(f"{entry.id} ({entry.dataset}): architecture_kwargs {entry.architecture_kwargs} do not fit "
                         f"builder {entry.architecture!r} ({exc}). Fix the entry's architecture_kwargs.") from None


def check_parameter_count(model: nn.Module, entry: ModelEntry) -> None:
    n = count_parameters(model)
    if n != entry.weights.num_parameters:
        raise WeightsError(
            f"{entry.id} ({entry.dataset}): the built {entry.architecture} has {n} parameters but the entry says "
            f"{entry.weights.num_parameters}. Fix architecture_kwargs or weights.num_parameters in the entry."
        )


def load_entry_model(entry: ModelEntry, *, folder: str | os.PathLike | None = None,
                     device: str | torch.device = "cpu") -> nn.Module:
    """Build ``entry``'s model, load its verified weights strictly, return it on ``device`` in eval mode.

    ``folder`` is where bundled weights live (for entries outside the registry, e.g. submissions).
    """
    model = build_model(entry)
    check_parameter_count(model, entry)
    path = fetch_weights(entry.weights, folder=Path(folder) if folder is not None else None,
                         label=f"{entry.id} ({entry.dataset})")
    load_weights(model, path)
    return model.to(torch.device(device)).eval()


def load_model(model_id: str, dataset: str, *, device: str | torch.device = "cpu") -> nn.Module:
    """Load zoo model ``model_id`` trained on ``dataset``: inputs in [0, 1], logits out, eval mode.

    >>> model = medbench.load_model("Baseline_SmallCNN_ERM", dataset="breastmnist")
    """
    entry = get_entry(model_id, dataset)
    model = load_entry_model(entry, folder=entry_folder(entry), device=device)
    model.model_id = entry.id  # benchmark(model, ...) titles its tables and figures with it
    return model


def download(model_id: str, dataset: str) -> Path:
    """Fetch and verify ``model_id``'s weights (warming the cache); return the local path."""
    entry = get_entry(model_id, dataset)
    return fetch_weights(entry.weights, folder=entry_folder(entry), label=f"{entry.id} ({entry.dataset})")
