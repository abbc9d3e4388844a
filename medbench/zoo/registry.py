"""The registry: ``model_zoo/<dataset>/<ModelId>.yaml``, one validated :class:`ModelEntry` per file.

Where it lives, first match wins: ``$MEDBENCH_ZOO``; ``medbench/model_zoo`` inside an installed
wheel; ``model_zoo/`` next to the package in a source checkout (editable installs).
"""

from __future__ import annotations

import difflib
import fnmatch
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from ..data import get_spec
from ..errors import MedbenchError
from ..paths import ENV_ZOO, env_folder
from ..schema.entry import EntryError, ModelEntry, read_entry



class UnknownModelError(MedbenchError, KeyError):
    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class RegistryError(MedbenchError):
    """The registry folder is missing or holds invalid / inconsistent entries."""


def zoo_root() -> Path:
    """The registry folder: ``$MEDBENCH_ZOO``, the wheel's ``medbench/model_zoo``, or the checkout's ``model_zoo``."""
    root = env_folder(ENV_ZOO)
    if root is not None:
        if not root.is_dir():
            raise RegistryError(f"${ENV_ZOO} points to {root}, which is not a folder. Unset it or fix the path.")
        return root
    package = Path(__file__).resolve().parents[1]
    for cand in (package / "model_zoo", package.parent / "model_zoo"):
        if cand.is_dir():
            return cand
    raise RegistryError(f"No model registry found (looked in {package / 'model_zoo'} and {package.parent / 'model_zoo'}). "
                        f"Reinstall medbench, or set ${ENV_ZOO} to a folder of <dataset>/<ModelId>.yaml files.")


@dataclass(frozen=True)
class Registry:
    root: Path
    entries: tuple[ModelEntry, ...]
    paths: dict[tuple[str, str], Path]  # (dataset, id) -> YAML file


def load_registry(root: str | os.PathLike | None = None) -> Registry:
    """Read and validate every entry under ``root`` (default :func:`zoo_root`); cached per folder."""
    return _load(Path(root).resolve() if root is not None else zoo_root())


@lru_cache(maxsize=8)
def _load(root: Path) -> Registry:
    entries, paths, problems = [], {}, []
    for path in sorted(root.glob("*/*.yaml")) + sorted(root.glob("*/*.yml")):
        try:
            entry = read_entry(path)
        except EntryError as exc:
            problems.append(str(exc))
            continue
        rel = path.relative_to(root)
        if path.stem != entry.id:
            problems.append(f"{rel}: file name must be the entry id ({entry.id}.yaml)")
        if path.parent.name != entry.dataset:
            problems.append(f"{rel}: entry is for {entry.dataset!r} but sits in folder {path.parent.name!r}; "
                            f"move it to {entry.dataset}/")
        key = (entry.dataset, entry.id)
        if key in paths:
            problems.append(f"{rel}: duplicate id {entry.id!r} for {entry.dataset} (also {paths[key].relative_to(root)})")
            continue
        entries.append(entry)
        paths[key] = path
    if problems:
        raise RegistryError(f"The model registry {root} has {len(problems)} problem(s):\n" + "\n".join(problems))
    return Registry(root, tuple(entries), paths)


def clear_cache() -> None:
    """Forget cached registries (after editing YAML files in a running process)."""
    _load.cache_clear()


# ----------------------------------------------------------------------------- queries

def entry_row(entry: ModelEntry) -> dict[str, Any]:
    """A flat view of one entry: the columns of :meth:`ModelList.to_frame` and the keys of filters."""
    r, w, p = entry.recipe, entry.weights, entry.paper
    return {
        "id": entry.id, "dataset": entry.dataset, "size": entry.size, "task": entry.task,
        "architecture": entry.architecture, "method": r.method, "eps": r.eps, "norm": r.norm, "steps": r.steps,
        "epochs": r.epochs, "extra_data": r.extra_data, "num_parameters": w.num_parameters,
        "baseline": entry.is_baseline, "year": p.year if p else None, "venue": p.venue if p else None,
        "paper": p.title if p else None, "license": entry.license, "date_added": entry.date_added,
        "sources": ",".join(s.kind for s in w.sources), "size_bytes": w.size_bytes, "sha256": w.sha256,
    }


FILTER_KEYS = (
    "id", "dataset", "size", "task", "architecture", "method", "eps", "norm", "steps", "epochs", "extra_data",
    "num_parameters", "baseline", "year", "venue", "paper", "license", "date_added", "sources", "size_bytes", "sha256",
)


class ModelList(list):
    """A list of :class:`ModelEntry` with a pandas view (:meth:`to_frame`)."""

    def to_frame(self):
        import pandas as pd

        return pd.DataFrame([entry_row(e) for e in self], columns=list(FILTER_KEYS))

    @property
    def ids(self) -> list[str]:
        return [e.id for e in self]


def _matches(value: Any, wanted: Any) -> bool:
    if callable(wanted):
        return bool(wanted(value))
    if isinstance(wanted, (list, tuple, set, frozenset)):
        return value in wanted
    return value == wanted


def list_models(dataset: str | None = None, *, pattern: str | None = None, **filters: Any) -> ModelList:
    """Zoo entries, optionally for one ``dataset``, ids matching a glob ``pattern``, and column ``filters``.

    A filter value is a value, a collection of accepted values, or a predicate; keys are the
    columns of ``list_models().to_frame()``, e.g. ``list_models("breastmnist", method=["trades", "pgd-at"])``.
    """
    unknown = sorted(set(filters) - set(FILTER_KEYS))
    if unknown:
        raise ValueError(f"unknown filter(s) {', '.join(unknown)}; filter on any of: {', '.join(FILTER_KEYS)}")
    name = get_spec(dataset).name if dataset is not None else None
    out = ModelList()
    for entry in load_registry().entries:
        row = entry_row(entry)
        if name is not None and entry.dataset != name:
            continue
        if pattern is not None and not fnmatch.fnmatchcase(entry.id, pattern):
            continue
        if all(_matches(row[k], v) for k, v in filters.items()):
            out.append(entry)
    return out


def models_frame(dataset: str | None = None, **filters: Any):
    """``list_models(dataset, **filters).to_frame()``."""
    return list_models(dataset, **filters).to_frame()


def get_entry(model_id: str, dataset: str) -> ModelEntry:
    """The entry ``model_id`` for ``dataset``; a clear error with close matches otherwise."""
    name = get_spec(dataset).name
    registry = load_registry()
    for entry in registry.entries:
        if entry.id == model_id and entry.dataset == name:
            return entry
    here = [e.id for e in registry.entries if e.dataset == name]
    elsewhere = sorted(e.dataset for e in registry.entries if e.id == model_id)
    msg = f"No zoo model {model_id!r} for {name}."
    if elsewhere:
        msg += f" It exists for: {', '.join(elsewhere)}."
    close = difflib.get_close_matches(model_id, here, n=3, cutoff=0.5)
    if close:
        msg += f" Did you mean {', '.join(close)}?"
    msg += (f" Models for {name}: {', '.join(sorted(here))}." if here else f" The zoo has no models for {name} yet.")
    msg += " See `medbench zoo list`."
    raise UnknownModelError(msg)


def entry_folder(entry: ModelEntry) -> Path:
    """The registry folder of a registered entry (where its bundled weights live)."""
    registry = load_registry()
    key = (entry.dataset, entry.id)
    if key not in registry.paths:
        raise UnknownModelError(f"{entry.id} ({entry.dataset}) is not in the registry {registry.root}.")
    return registry.paths[key].parent
