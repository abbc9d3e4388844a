"""What an incremental build remembers: the inputs it read and the outputs it wrote.

The state lives in the output folder (``STATE``) but is not part of the site: it holds absolute
paths and file times, so it differs between machines and is never published or committed. Every
input is identified by its sha256; the stat data only lets a rebuild skip re-hashing a file whose
size and modification time are unchanged (files modified less than ``SETTLE_S`` before a scan are
always re-hashed, since file times are coarser than the time between two writes). An output counts
as present only when its size and modification time are those recorded when it was written, so a
file edited, deleted or checked out by hand is rendered again.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

STATE = ".medbench-build.json"
STATE_VERSION = 1
SETTLE_S = 2.0


@dataclass(frozen=True)
class InputFile:
    path: Path
    sha256: str


def digest(*parts) -> str:
    """sha256 of a JSON-serialisable value (a build key)."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, ensure_ascii=True, default=str).encode()).hexdigest()


def code_key(leaderboard_dir: Path) -> str:
    """A key of everything besides the inputs that decides the bytes of the site: medbench's own source,
    the templates and static files, and the versions of the libraries that render or parse."""
    h = hashlib.sha256()
    package = Path(__file__).resolve().parents[1]
    files = sorted(package.rglob("*.py")) + sorted(package.glob("protocols/*"))
    files += sorted(p for sub in ("templates", "static") for p in (leaderboard_dir / sub).rglob("*") if p.is_file())
    for p in files:
        h.update(p.name.encode() + b"\0" + p.read_bytes() + b"\0")
    for dist in ("jinja2", "markupsafe", "pydantic", "pydantic_core", "numpy", "medmnist", "pyyaml"):
        try:
            h.update(f"{dist}={metadata.version(dist)}\0".encode())
        except metadata.PackageNotFoundError:
            h.update(f"{dist}=none\0".encode())
    h.update(f"state {STATE_VERSION}".encode())
    return h.hexdigest()


def read_state(out: Path) -> dict:
    """The previous build's state, or an empty one when there is none (or it cannot be read)."""
    try:
        state = json.loads((out / STATE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return state if isinstance(state, dict) and state.get("version") == STATE_VERSION else {}


def write_state(out: Path, state: dict) -> None:
    tmp = out / (STATE + ".tmp")
    tmp.write_text(json.dumps({"version": STATE_VERSION, **state}, separators=(",", ":")), encoding="utf-8")
    tmp.replace(out / STATE)


def forget_state(out: Path) -> None:
    """Drop the state before writing: a build that stops half-way leaves none, so the next one is full."""
    try:
        (out / STATE).unlink()
    except FileNotFoundError:
        pass


class Hasher:
    """sha256 of input files, re-using the previous build's value when size and mtime are unchanged."""

    def __init__(self, previous: dict[str, list] | None, threads: int = 1):
        self.previous = previous or {}
        self.seen: dict[str, list] = {}
        self.threads = max(1, threads)
        self.settled_ns = time.time_ns() - int(SETTLE_S * 1e9)

    def files(self, paths: list[Path]) -> list[InputFile]:
        if self.threads > 1 and len(paths) > 64:
            with ThreadPoolExecutor(self.threads) as pool:  # hashlib and reads release the GIL
                return list(pool.map(self.file, paths, chunksize=64))
        return [self.file(p) for p in paths]

    def file(self, path: Path) -> InputFile:
        key = str(path.absolute())
        try:
            st = os.stat(path)
        except OSError:
            return InputFile(path, "")  # unreadable: the loader reports it
        old = self.previous.get(key)
        if old and old[0] == st.st_size and old[1] == st.st_mtime_ns and old[1] < self.settled_ns:
            sha = old[2]
        else:
            try:
                sha = hashlib.sha256(path.read_bytes()).hexdigest()
            except OSError:
                return InputFile(path, "")
        self.seen[key] = [st.st_size, st.st_mtime_ns, sha]
        return InputFile(path, sha)


def stat_of(path: Path) -> list[int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return [st.st_size, st.st_mtime_ns]


def outputs_intact(out: Path, outputs: dict[str, list]) -> bool:
    """Whether every recorded output is still there, untouched since it was written."""
    return all(stat_of(out / rel) == rec for rel, rec in outputs.items())
