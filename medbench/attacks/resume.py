"""Per-chunk checkpoints of a long attack run, so a killed run resumes where it stopped.

Each finished chunk is one ``.npz`` file (written atomically) in a folder under the run's state
directory, and so is an unfinished chunk's state after each of its attacks (``<chunk>.partial``, removed
when the chunk is done); ``meta.json`` holds what the chunks depend on (configuration, subset, chunk
size). A folder whose ``meta.json`` differs is stale and is cleared, never mixed into a result.
"""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path
from typing import Any

import numpy as np


class ChunkStore:
    """Load and save per-chunk arrays under ``folder`` (no-op when ``folder`` is None)."""

    def __init__(self, folder: Path | None, meta: dict[str, Any]):
        self.folder = folder
        if folder is None:
            return
        meta_path = folder / "meta.json"
        text = json.dumps(meta, sort_keys=True)
        if meta_path.is_file() and meta_path.read_text() != text:
            warnings.warn(f"{folder} holds partial attack results of a different configuration; starting over.")
            shutil.rmtree(folder)
        folder.mkdir(parents=True, exist_ok=True)
        meta_path.write_text(text)

    def _path(self, name: str) -> Path:
        assert self.folder is not None
        return self.folder / f"{name}.npz"

    def get(self, name: str) -> dict[str, np.ndarray] | None:
        if self.folder is None or not self._path(name).is_file():
            return None
        with np.load(self._path(name), allow_pickle=False) as npz:
            return {k: npz[k] for k in npz.files}

    def put(self, name: str, **arrays: np.ndarray) -> None:
        if self.folder is None:
            return
        tmp = self.folder / f"{name}.tmp.npz"
        np.savez(tmp, **arrays)
        tmp.replace(self._path(name))

    def remove(self, name: str) -> None:
        if self.folder is not None:
            self._path(name).unlink(missing_ok=True)
