"""Reading the registry (``model_zoo/``) and the harness's results (``leaderboard/results/``).

Nothing here raises on one bad file: every problem becomes a line in ``problems`` (shown by the
build command), so a partial or half-written results folder still builds a site.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from pydantic import ValidationError

from ..data import DATASETS
from ..schema.entry import EntryError, ModelEntry, parse_entry

_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when present: ~10x faster, same result
from ..schema.result import EvaluationResult


@dataclass
class LoadedResult:
    result: EvaluationResult
    path: Path
    sha256: str  # of the JSON file as read, so a row can be traced to the exact record


@dataclass
class Inputs:
    entries: dict[tuple[str, str], ModelEntry] = field(default_factory=dict)  # (dataset, id) -> entry
    results: dict[tuple[str, str], LoadedResult] = field(default_factory=dict)  # (dataset, id) -> result
    problems: list[str] = field(default_factory=list)


def load_registry(root: Path, inputs: Inputs) -> None:
    """Every ``<root>/<dataset>/<ModelId>.yaml`` that validates; the others are reported."""
    for path in sorted(Path(root).glob("*/*.yaml")):
        where = f"{path.parent.name}/{path.name}"
        try:
            entry = parse_entry(yaml.load(path.read_text(encoding="utf-8"), Loader=_Loader), str(path))
        except (EntryError, yaml.YAMLError, OSError, UnicodeDecodeError) as exc:
            inputs.problems.append(f"registry {where}: skipped: {str(exc).splitlines()[0]}")
            continue
        if entry.dataset != path.parent.name or entry.id != path.stem:
            inputs.problems.append(f"registry {where}: skipped: id/dataset ({entry.id}, {entry.dataset}) "
                                   "do not match the file's name and folder")
            continue
        inputs.entries[(entry.dataset, entry.id)] = entry


def load_results(root: Path, inputs: Inputs) -> None:
    """Every ``<root>/<dataset>/<ModelId>.json`` that is an ``EvaluationResult``; the others are reported."""
    for path in sorted(Path(root).glob("*/*.json")):
        where = f"{path.parent.name}/{path.name}"
        try:
            raw = path.read_bytes()
            result = EvaluationResult.model_validate_json(raw)
        except (ValidationError, OSError, ValueError) as exc:
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            inputs.problems.append(f"results {where}: skipped: not an EvaluationResult ({first})")
            continue
        model_id = result.model_id or path.stem
        if result.dataset != path.parent.name or model_id != path.stem or result.dataset not in DATASETS:
            inputs.problems.append(f"results {where}: skipped: records ({model_id}, {result.dataset}), "
                                   "which does not match the file's name and folder")
            continue
        inputs.results[(result.dataset, model_id)] = LoadedResult(result, path, hashlib.sha256(raw).hexdigest())


def load_inputs(registry: Path, results: Path) -> Inputs:
    inputs = Inputs()
    if Path(registry).is_dir():
        load_registry(Path(registry), inputs)
    else:
        inputs.problems.append(f"registry folder {registry} does not exist: no entries")
    if Path(results).is_dir():
        load_results(Path(results), inputs)
    else:
        inputs.problems.append(f"results folder {results} does not exist: no results")
    return inputs
