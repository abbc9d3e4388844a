"""Where medbench reads and writes: the one place that resolves data and cache locations.

Order for the data root: an explicit argument, then ``MEDBENCH_DATA``, then medmnist's default
(``~/.medmnist``). Nothing is ever resolved against the current working directory by accident.
"""

from __future__ import annotations

import os
from pathlib import Path

ENV_DATA = "MEDBENCH_DATA"
ENV_CACHE = "MEDBENCH_CACHE"


def medmnist_default_root() -> Path:
    """medmnist's own default download folder (``~/.medmnist``), without importing medmnist."""
    return Path(os.path.expanduser("~/.medmnist"))


def data_root(root: str | os.PathLike | None = None) -> Path:
    """Resolve the MedMNIST data root: ``root`` argument, then ``$MEDBENCH_DATA``, then ``~/.medmnist``."""
    if root is not None:
        return Path(root).expanduser().resolve()
    env = os.environ.get(ENV_DATA)
    if env:
        return Path(env).expanduser().resolve()
    return medmnist_default_root()


def cache_root(root: str | os.PathLike | None = None) -> Path:
    """Resolve medbench's own cache folder (derived data such as state of resumable runs).

    ``root`` argument, then ``$MEDBENCH_CACHE``, then ``$XDG_CACHE_HOME/medbench`` or ``~/.cache/medbench``.
    """
    if root is not None:
        return Path(root).expanduser().resolve()
    env = os.environ.get(ENV_CACHE)
    if env:
        return Path(env).expanduser().resolve()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return (base / "medbench").resolve()
