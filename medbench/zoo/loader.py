"""``load_model``: entry -> architecture -> verified weights -> strict load -> model in eval mode."""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from ..models.architectures import (ArchitectureKwargsError, UnknownArchitectureError, build_architecture, count_parameters,
                             estimate_parameters)
from ..data import get_spec
from ..schema.entry import EntryError, ModelEntry
from ..models.weights import WeightsError, load_state_strict, read_safetensors
from .registry import entry_folder, get_entry
from .sources import fetch_weights


def _builder_args(entry: ModelEntry) -> dict:
    spec = get_spec(entry.dataset)
    pre = entry.preprocessing
    mean = pre.mean[0] if len(pre.mean) == 1 else pre.mean
    std = pre.std[0] if len(pre.std) == 1 else pre.std
    return dict(in_channels=spec.n_channels, num_classes=spec.num_classes, mean=mean, std=std,
                **entry.architecture_kwargs)


def estimate_model_parameters(entry: ModelEntry) -> int:
    """The entry's parameter count from a build on the meta device (nothing allocated)."""
    return estimate_parameters(entry.architecture, **_builder_args(entry))


def build_model(entry: ModelEntry) -> nn.Module:
    """The entry's architecture with its preprocessing inside, randomly initialised."""
    try:
        return build_architecture(entry.architecture, **_builder_args(entry))
    except UnknownArchitectureError as exc:
        raise UnknownArchitectureError(f"{entry.id} ({entry.dataset}) needs architecture {entry.architecture!r}: "
                                       f"{exc}") from None
    except ArchitectureKwargsError as exc:
        raise EntryError(f"{entry.id} ({entry.dataset}): {exc}. Fix the entry's architecture_kwargs.") from None
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


def declared_normalisation(model: nn.Module) -> dict[str, torch.Tensor]:
    """The ``Normalize`` buffers of a freshly built model (the entry's preprocessing), by state-dict key."""
    from ..models.architectures import Normalize

    return {f"{prefix}.{name}" if prefix else name: buf.detach().clone()
            for prefix, mod in model.named_modules() if isinstance(mod, Normalize)
            for name, buf in mod.named_buffers(recurse=False)}


def normalisation_mismatch(declared: dict[str, torch.Tensor], state: dict[str, torch.Tensor]) -> str | None:
    """Why the weights' normalisation differs from the entry's preprocessing (None when they agree).

    Loading a state dict overwrites the Normalize buffers: without this check an entry could show a
    normalisation the model does not use.
    """
    if not declared:
        return "the architecture has no Normalize layer, so its preprocessing cannot be checked"
    diffs = []
    for key, want in declared.items():
        got = state.get(key)
        if got is None or got.shape != want.shape:
            continue  # reported by the strict load
        if not torch.allclose(got.float(), want, rtol=1e-5, atol=1e-7):
            field = "preprocessing." + key.rsplit(".", 1)[-1]
            diffs.append(f"the weights' {key} is {_values(got)} but the entry's {field} is {_values(want)}")
    return "; ".join(diffs) or None


def _values(t: torch.Tensor) -> str:
    flat = t.flatten().tolist()
    return "[" + ", ".join(f"{v:.6g}" for v in (flat if len(set(flat)) > 1 else flat[:1])) + "]"


def load_entry_model(entry: ModelEntry, *, folder: str | os.PathLike | None = None,
                     device: str | torch.device = "cpu") -> nn.Module:
    """Build ``entry``'s model, load its verified weights strictly, return it on ``device`` in eval mode.

    ``folder`` is where bundled weights live (for entries outside the registry, e.g. submissions).
    An ONNX entry's graph is checked (:mod:`medbench.models.onnx_graph`) before onnx2torch converts it.
    """
    if entry.is_onnx:
        return load_onnx_entry(entry, folder=folder).to(torch.device(device)).eval()
    model = build_model(entry)
    check_parameter_count(model, entry)
    path = fetch_weights(entry.weights, folder=Path(folder) if folder is not None else None,
                         label=f"{entry.id} ({entry.dataset})")
    declared = declared_normalisation(model)
    state = read_safetensors(path)
    if (why := normalisation_mismatch(declared, state)) is not None:
        raise WeightsError(f"{entry.id} ({entry.dataset}): {why}. Fix the entry's preprocessing to the values the "
                           "model was trained with.")
    load_state_strict(model, state, source=str(path))
    return model.to(torch.device(device)).eval()


def load_onnx_entry(entry: ModelEntry, *, folder: str | os.PathLike | None = None) -> nn.Module:
    """The verified ``.onnx`` file of ``entry``, checked, converted and its parameter count compared; eval mode."""
    from ..models.onnx_convert import load_onnx_model

    path = fetch_weights(entry.weights, folder=Path(folder) if folder is not None else None,
                         label=f"{entry.id} ({entry.dataset})")
    spec = get_spec(entry.dataset)
    model, summary = load_onnx_model(path, spec.input_shape(entry.size), spec.num_classes)
    if summary.num_parameters != entry.weights.num_parameters:
        raise WeightsError(f"{entry.id} ({entry.dataset}): the ONNX graph has {summary.num_parameters} parameters "
                           f"but the entry says {entry.weights.num_parameters}. Fix weights.num_parameters.")
    return model


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
