"""Where medbench reads and writes: the one place that resolves data and cache locations.

Order for the data root: an explicit argument, then ``MEDBENCH_DATA``, then medmnist's default
(``~/.medmnist``). A relative path in one of the folder variables (``ENV_FOLDERS``) is made absolute
once, against the working directory of the moment medbench is imported, and written back to the
environment: a later ``chdir`` (a test, a subprocess started elsewhere) keeps the same folder.
"""

from __future__ import annotations

import os
from pathlib import Path

ENV_DATA = "MEDBENCH_DATA"
ENV_CACHE = "MEDBENCH_CACHE"
ENV_LEADERBOARD = "MEDBENCH_LEADERBOARD"
ENV_ZOO = "MEDBENCH_ZOO"
ENV_FOLDERS = (ENV_DATA, ENV_CACHE, ENV_LEADERBOARD, ENV_ZOO)
PACKAGE = Path(__file__).resolve().parent  # the medbench package folder


def env_folder(name: str) -> Path | None:
    """The folder that environment variable ``name`` names, None when unset or empty.

    A relative value is resolved against the current directory and written back, absolute, to
    ``os.environ``, so it is resolved once: later reads (and child processes) see the same folder.
    """
    raw = os.environ.get(name)
    if not raw:
        return None
    path = Path(raw).expanduser()
    if not path.is_absolute():
        path = Path(os.path.abspath(path))
        os.environ[name] = str(path)
    return path.resolve()


def normalise_environment() -> None:
    """Make every relative folder variable of ``ENV_FOLDERS`` absolute (see :func:`env_folder`)."""
    for name in ENV_FOLDERS:
        env_folder(name)


def medmnist_default_root() -> Path:
    """medmnist's own default download folder (``~/.medmnist``), without importing medmnist."""
    return Path(os.path.expanduser("~/.medmnist"))


def data_root(root: str | os.PathLike | None = None) -> Path:
    """Resolve the MedMNIST data root: ``root`` argument, then ``$MEDBENCH_DATA``, then ``~/.medmnist``."""
    if root is not None:
        return Path(root).expanduser().resolve()
    return env_folder(ENV_DATA) or medmnist_default_root()


def cache_root(root: str | os.PathLike | None = None) -> Path:
    """Resolve medbench's own cache folder (derived data such as state of resumable runs).

    ``root`` argument, then ``$MEDBENCH_CACHE``, then ``$XDG_CACHE_HOME/medbench`` or ``~/.cache/medbench``.
    """
    if root is not None:
        return Path(root).expanduser().resolve()
    env = env_folder(ENV_CACHE)
    if env:
        return env
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return (base / "medbench").resolve()


def leaderboard_root() -> Path:
    """The leaderboard folder (``results/``, ``studies/``, ``lite/``, ``literature.yaml``).

    ``$MEDBENCH_LEADERBOARD``, else the source checkout's ``leaderboard/`` beside the package. An
    installed wheel ships no results: there the folder may not exist, and each reader says so when it
    needs it (the site build takes ``--results`` and friends explicitly).
    """
    return env_folder(ENV_LEADERBOARD) or PACKAGE.parent / "leaderboard"


def source_checkout() -> Path | None:
    """The source checkout medbench runs from (``pyproject.toml`` beside the package), None for a wheel."""
    root = PACKAGE.parent
    return root if (root / "pyproject.toml").is_file() else None


normalise_environment()  # at import: before any caller can change the working directory
