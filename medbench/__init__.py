"""medbench: a robustness benchmark and model zoo for medical image classifiers on MedMNIST."""

from __future__ import annotations

from importlib import import_module
from typing import Any

from .data import DATASETS, DatasetSpec, dataset_names, get_spec, load_dataset
from .evaluate import benchmark, medbench_version
from .protocol import load_protocol
from .schema import EvaluationResult

__version__ = medbench_version()

# Zoo functions are imported lazily so that ``import medbench`` stays light.
_LAZY = {"load_model": "medbench.zoo", "list_models": "medbench.zoo", "get_entry": "medbench.zoo"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'medbench' has no attribute {name!r}")


__all__ = [
    "DATASETS", "DatasetSpec", "EvaluationResult", "benchmark", "dataset_names", "get_entry",
    "get_spec", "list_models", "load_dataset", "load_model", "load_protocol",
]
