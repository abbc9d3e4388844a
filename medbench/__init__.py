"""medbench: a robustness benchmark and model zoo for medical image classifiers on MedMNIST."""

from __future__ import annotations

from importlib import import_module
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from . import paths as _paths  # noqa: F401  (makes relative MEDBENCH_* folders absolute, once)

try:
    __version__ = version("medbench")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0+unknown"

# Everything is imported on first use so that ``import medbench`` (and every ``medbench ... --help``)
# stays light: torch, medmnist, pandas and sklearn load only when a function that needs them runs.
_LAZY = {
    "DATASETS": "medbench.data", "DatasetSpec": "medbench.data", "dataset_names": "medbench.data",
    "get_spec": "medbench.data", "load_dataset": "medbench.data", "data_loader": "medbench.data",
    "benchmark": "medbench.evaluate", "medbench_version": "medbench.evaluate",
    "load_protocol": "medbench.protocol",
    "EvaluationResult": "medbench.schema",
    "load_model": "medbench.zoo", "list_models": "medbench.zoo", "get_entry": "medbench.zoo",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(import_module(_LAZY[name]), name)
        globals()[name] = value  # later look-ups skip __getattr__
        return value
    if not name.startswith("_"):  # submodules (medbench.errors, medbench.attacks, ...) as attributes, as before
        try:
            return import_module(f"medbench.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"medbench.{name}":
                raise
    raise AttributeError(f"module 'medbench' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "DATASETS", "DatasetSpec", "EvaluationResult", "benchmark", "data_loader", "dataset_names", "get_entry",
    "get_spec", "list_models", "load_dataset", "load_model", "load_protocol",
]
