"""Cells of the evaluation matrix: what a cell is, its id, and the code version it is keyed on.

A cell is one unit of work on one model, dataset and size: ``admission`` (the admission checks on
the evaluation subset), ``clean`` (clean metrics and the admission checks on the clean pass), or one
further threat (``corruptions``, ``Linf``, ``L2``, ``curves``). Its id is the sha256 of its key,
which holds everything its numbers depend on:

- the model: weights sha256, architecture, its arguments and preprocessing (what builds the module);
- the data: dataset, size, the test file's MD5; the seed;
- the protocol: version and sha256 of its document;
- the run: device type (cpu / cuda) and batch size (the attacks' chunking depends on it);
- the code version: the medbench version, the sha256 of the medbench source files that compute
  that kind of cell (:data:`SOURCES`, including the protocol data files), torch's version and the
  versions of the numeric libraries (numpy, scikit-learn, pyautoattack, ...);
- the ids of the cells it reads (``depends``): the model's clean cell for every threat, and for
  corruptions the pinned reference model's clean and corruption cells (BE / rBE), or ``self`` when
  the model is that reference.

Editing a file outside a kind's sources (the site, the CLI, this runner's scheduling) leaves its
cells valid; editing one inside gives new ids, so the cells are recomputed.
"""

from __future__ import annotations

import functools
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CELL_FORMAT = 1
KINDS = ("admission", "clean", "corruptions", "Linf", "L2", "curves")
ATTACK_KINDS = ("Linf", "L2", "curves")

# medbench source files (relative to the package; a trailing "/" is a whole folder) whose code
# computes each kind of cell. Shared: model building and loading, data, metrics, inference, the
# checks, the protocol files, the result schema, calibration (protocol 4+), and this package's cell computation.
COMMON_SOURCES = (
    "evaluate.py", "engine.py", "inference.py", "metrics.py", "data.py", "models/", "checks.py",
    "protocol.py", "paths.py", "download.py", "safe_yaml.py", "zoo/", "schema/", "protocols/", "calibration/",
    "matrix/compute.py", "matrix/assemble.py",
)
SOURCES: dict[str, tuple[str, ...]] = {
    "admission": COMMON_SOURCES + ("attacks/",),  # runs on the attacks' evaluation subset and chunk size
    "clean": COMMON_SOURCES + ("attacks/",),  # its admission re-predicts the subset in the attacks' batches
    "corruptions": COMMON_SOURCES + ("corruptions/",),
    "Linf": COMMON_SOURCES + ("attacks/", "reuse.py"),
    "L2": COMMON_SOURCES + ("attacks/", "reuse.py"),
    "curves": COMMON_SOURCES + ("attacks/", "reuse.py"),
}


def package_root() -> Path:
    return Path(__file__).resolve().parents[1]


def source_files(kind: str) -> list[Path]:
    """The files whose bytes make up ``kind``'s code version (sorted, without caches)."""
    root = package_root()
    out: set[Path] = set()
    for item in SOURCES[kind]:
        path = root / item
        if item.endswith("/"):
            out.update(p for p in path.rglob("*") if p.is_file() and "__pycache__" not in p.parts
                       and p.suffix not in (".pyc", ".tmp"))
        else:
            out.add(path)
    return sorted(out)


@functools.lru_cache(maxsize=None)
def sources_sha256(kind: str) -> str:
    h = hashlib.sha256()
    root = package_root()
    for path in source_files(kind):
        h.update(path.relative_to(root).as_posix().encode() + b"\0")
        h.update(path.read_bytes() + b"\0")
    return h.hexdigest()


def code_version(kind: str) -> dict[str, Any]:
    """What a ``kind`` cell's code is: medbench version, sources sha256, torch and library versions."""
    import torch

    from ..engine import library_versions, medbench_version

    return {"medbench": medbench_version(), "sources_sha256": sources_sha256(kind), "torch": torch.__version__,
            "libraries": dict(library_versions())}


def model_identity(entry) -> dict[str, Any]:
    """What builds the module from a registry entry: weights, architecture, its arguments, preprocessing."""
    return {"weights_sha256": entry.weights.sha256, "architecture": entry.architecture,
            "architecture_kwargs": entry.architecture_kwargs,
            "preprocessing": {"mean": list(entry.preprocessing.mean), "std": list(entry.preprocessing.std)}}


def cell_id(key: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(key, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


@dataclass
class Job:
    """One cell to compute, with everything a worker needs (plain data: it travels to other processes)."""

    id: str
    kind: str
    key: dict[str, Any]
    model_id: str
    dataset: str
    size: int
    seed: int
    device: str
    batch_size: int
    data_root: str
    protocol_version: str
    store: str
    protocol_data: dict | None = None  # a derived ('+custom') protocol's document; None: the standard version
    threads: int = 1
    depends: dict[str, str] = field(default_factory=dict)  # role -> cell id ("clean", "ref_clean", "ref_corruptions")
    reuse: str | None = None  # an earlier result whose section may be carried over (attack kinds only)
    inputs: dict[str, dict] = field(default_factory=dict)  # role -> that cell's payload, filled before submission


def make_key(kind: str, entry, *, dataset: str, size: int, data_md5: str, seed: int, protocol, device: str,
             batch_size: int, depends: dict[str, str], reference: str | None = None) -> dict[str, Any]:
    """The key of a ``kind`` cell of registry ``entry`` (``reference``: corruptions only; "self", a model
    id or "none")."""
    import torch

    key = {
        "format": CELL_FORMAT, "kind": kind, "model": model_identity(entry), "dataset": dataset, "size": size,
        "data_md5": data_md5, "seed": seed, "protocol": {"version": protocol.version, "sha256": protocol.sha256()},
        "device": torch.device(device).type, "batch_size": batch_size, "code": code_version(kind),
        "depends": dict(sorted(depends.items())),
    }
    if kind == "corruptions":
        key["reference"] = reference
    return key
