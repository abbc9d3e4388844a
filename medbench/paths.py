"""Where medbench reads and writes: the one place that resolves data and cache locations.

Order for the data root: an explicit argument, then ``MEDBENCH_DATA``, then medmnist's default
(``~/.medmnist``). Nothing is ever resolved against the current working directory by accident.
"""

from __future__ import annotations

import os
from pathlib import Path

ENV_DATA = "MEDBENCH_DATA"
ENV_CACHE = "MEDBENCH_CACHE"
PACKAGE = Path(__file__).resolve().parent  # the medbench package folder


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


ENV_LEADERBOARD = "MEDBENCH_LEADERBOARD"


def leaderboard_root() -> Path:
    """The leaderboard folder (``results/``, ``studies/``, ``lite/``, ``literature.yaml``).

    ``$MEDBENCH_LEADERBOARD``, else the source checkout's ``leaderboard/`` beside the package. An
    installed wheel ships no results: there the folder may not exist, and each reader says so when it
    needs it (the site build takes ``--results`` and friends explicitly).
    """
    env = os.environ.get(ENV_LEADERBOARD)
    if env:
        return Path(env).expanduser().resolve()
    return PACKAGE.parent / "leaderboard"


def source_checkout() -> Path | None:
    """The source checkout medbench runs from (``pyproject.toml`` beside the package), None for a wheel."""
    root = PACKAGE.parent
    return root if (root / "pyproject.toml").is_file() else None
