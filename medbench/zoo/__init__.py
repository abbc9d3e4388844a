"""The model zoo: the registry of typed entries, weight sources with sha256 checks, and ``load_model``."""

from .loader import build_model, download, load_entry_model, load_model
from .registry import (ModelList, RegistryError, UnknownModelError, clear_cache, entry_folder, entry_row, get_entry,
                       list_models, load_registry, models_frame, zoo_root)
from .sources import WeightsHashMismatchError, WeightsUnavailableError, fetch_weights

__all__ = [
    "ModelList", "RegistryError", "UnknownModelError", "WeightsHashMismatchError", "WeightsUnavailableError",
    "build_model", "clear_cache", "download", "entry_folder", "entry_row", "fetch_weights", "get_entry",
    "list_models", "load_entry_model", "load_model", "load_registry", "models_frame", "zoo_root",
]
