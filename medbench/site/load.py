"""Reading the registry (``model_zoo/``), the harness's results (``leaderboard/results/``) and the
published numbers shown beside them (``leaderboard/literature.yaml``).

Nothing here raises on one bad file: every problem becomes a line in ``problems`` (shown by the
build command), so a partial or half-written results folder still builds a site.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import ValidationError

from ..data import DATASETS
from ..safe_yaml import YamlError, load_yaml_text
from ..schema.entry import EntryError, ModelEntry, parse_entry
from ..schema.literature import LiteratureError, PublishedResult, parse_literature
from ..attacks.records import read_record
from ..schema.attack_record import VerifiedAttack
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
    literature: list[PublishedResult] = field(default_factory=list)  # reported numbers, never ranked
    # (dataset, id) -> verified attack records (``<leaderboard>/attacks/<dataset>/*.json``): the best-known column
    records: dict[tuple[str, str], list[VerifiedAttack]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


def add_entry(path: Path, raw: bytes | None, inputs: Inputs, value=None):
    """Parse one registry file (its bytes ``raw`` when already read; ``value``: its YAML value when an earlier
    build parsed the same bytes) into ``inputs``, or report it. Returns the YAML value (None: not YAML)."""
    where = f"{path.parent.name}/{path.name}"
    try:
        if value is None:
            raw = path.read_bytes() if raw is None else raw
            value = load_yaml_text(raw.decode("utf-8"), where="not valid YAML")
        entry = parse_entry(value, str(path))
    except (EntryError, YamlError, OSError, UnicodeDecodeError) as exc:
        inputs.problems.append(f"registry {where}: skipped: {str(exc).splitlines()[0]}")
        return value
    if entry.dataset != path.parent.name or entry.id != path.stem:
        inputs.problems.append(f"registry {where}: skipped: id/dataset ({entry.id}, {entry.dataset}) "
                               "do not match the file's name and folder")
    else:
        inputs.entries[(entry.dataset, entry.id)] = entry
    return value


def add_result(path: Path, raw: bytes | None, sha256: str | None, inputs: Inputs) -> None:
    """Parse one result file (its bytes ``raw`` and their ``sha256`` when known) into ``inputs``, or report it."""
    where = f"{path.parent.name}/{path.name}"
    try:
        raw = path.read_bytes() if raw is None else raw
        result = EvaluationResult.model_validate_json(raw)
    except (ValidationError, OSError, ValueError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        inputs.problems.append(f"results {where}: skipped: not an EvaluationResult ({first})")
        return
    model_id = result.model_id or path.stem
    if result.dataset != path.parent.name or model_id != path.stem or result.dataset not in DATASETS:
        inputs.problems.append(f"results {where}: skipped: records ({model_id}, {result.dataset}), "
                               "which does not match the file's name and folder")
        return
    inputs.results[(result.dataset, model_id)] = LoadedResult(result, path, sha256 or hashlib.sha256(raw).hexdigest())


def add_attack_record(path: Path, raw: bytes | None, inputs: Inputs) -> None:
    """Parse one verified attack record (``medbench submission validate``) into ``inputs``, or report it."""
    rec, problem = read_record(path, raw)
    if rec is None:
        inputs.problems.append(problem + " (skipped)")
    else:
        inputs.records.setdefault((rec.dataset, rec.model_id), []).append(rec)


def load_literature(path: Path, inputs: Inputs) -> None:
    """The published numbers of ``path``; a file that does not validate is skipped whole, with its problems."""
    try:
        inputs.literature = parse_literature(load_yaml_text(path.read_text(encoding="utf-8"), where=path.name),
                                             str(path))
    except (LiteratureError, YamlError, OSError, UnicodeDecodeError) as exc:
        inputs.problems.append(f"literature {path.name}: skipped (no reported rows): {exc}")


def load_inputs(registry: Path, results: Path, literature: Path | None = None) -> Inputs:
    """Everything the site is built from; ``literature`` is optional (a missing file means no reported rows)."""
    inputs = Inputs()
    if literature is not None and Path(literature).is_file():
        load_literature(Path(literature), inputs)
    if Path(registry).is_dir():
        for path in sorted(Path(registry).glob("*/*.yaml")):
            add_entry(path, None, inputs)
    else:
        inputs.problems.append(f"registry folder {registry} does not exist: no entries")
    if Path(results).is_dir():
        for path in sorted(Path(results).glob("*/*.json")):
            add_result(path, None, None, inputs)
    else:
        inputs.problems.append(f"results folder {results} does not exist: no results")
    return inputs
