"""What an incremental build remembers: the inputs it read and the outputs it wrote.

The state lives in the output folder (the folder ``STATE``) but is not part of the site: it holds absolute
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
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from importlib import metadata
from pathlib import Path
from typing import NamedTuple

STATE = ".medbench-build"
STATE_VERSION = 2
SETTLE_S = 2.0


class InputFile(NamedTuple):  # (a named tuple: a 1,000 x 18 site has 36,000 of them, made at every build)
    folder: str  # the folder as the build was given it (messages name files this way)
    name: str
    sha256: str | None  # "" when the file could not be read (the loader reports it); None: not hashed yet

    @property
    def path(self) -> Path:
        return Path(self.folder, self.name)

    @property
    def stem(self) -> str:
        return self.name.rsplit(".", 1)[0]


def digest(*parts) -> str:
    """A build key: sha256 (128 bits of it) of a JSON-serialisable value."""
    data = json.dumps(parts, sort_keys=True, ensure_ascii=True, default=str).encode()
    return hashlib.sha256(data).hexdigest()[:32]


def folder_listing(root: Path, name: str, suffixes: tuple[str, ...], files_only: tuple[bool, ...]
                   ) -> list[list[tuple[str, str, str]]]:
    """For each suffix, the (folder as given, absolute folder, file name) of ``root/name``'s files ending with
    it, sorted by name (none when the folder does not exist); ``files_only[i]`` leaves out what is not a file.
    One ``scandir`` per folder, without pathlib's per-file cost."""
    given = str(Path(root) / name)
    absolute = os.path.join(os.path.abspath(root), name)
    out: list[list[str]] = [[] for _ in suffixes]
    try:
        with os.scandir(absolute) as entries:
            for e in entries:
                for i, suffix in enumerate(suffixes):
                    if e.name.endswith(suffix) and (not files_only[i] or e.is_file()):
                        out[i].append(e.name)
                        break
    except OSError:
        pass
    return [[(given, absolute, n) for n in sorted(names)] for names in out]


def code_key(leaderboard_dir: Path) -> str:
    """A key of everything besides the inputs that decides the bytes of the site: medbench's own source,
    the templates and static files, and the versions of the libraries that render or parse."""
    h = hashlib.sha256()
    package = Path(__file__).resolve().parents[1]
    files = sorted(package.rglob("*.py")) + sorted(package.glob("protocols/*"))
    files += sorted(p for sub in ("templates", "static") for p in (leaderboard_dir / sub).rglob("*") if p.is_file())
    # study results that model pages and boards show (explanation maps and scores)
    files += sorted((leaderboard_dir / "studies" / "explanation-stability").glob("*.json"))
    for p in files:
        h.update(p.name.encode() + b"\0" + p.read_bytes() + b"\0")
    for dist in ("jinja2", "markupsafe", "pydantic", "pydantic_core", "numpy", "medmnist", "pyyaml"):
        try:
            h.update(f"{dist}={metadata.version(dist)}\0".encode())
        except metadata.PackageNotFoundError:
            h.update(f"{dist}=none\0".encode())
    h.update(f"state {STATE_VERSION}".encode())
    return h.hexdigest()


class StateFolder:
    """The state of the last build in ``<out>/STATE/``: ``state.json`` (code and context keys, the shared
    pages) and, per unit, ``units/<name>.json`` (its input key and file hashes, summary and outputs),
    ``units/<name>.keys.json`` (its page keys, read only when the unit is rendered) and
    ``units/<name>.csv`` (its rows of results.csv). A rebuild writes only the files of the units it
    rendered, so its cost follows what changed, not the size of the site."""

    def __init__(self, out: Path):
        self.dir = Path(out) / STATE
        self.units_dir = self.dir / "units"

    def read(self) -> tuple[dict, "UnitStates | dict"]:
        """(main state, unit states) of the last build; both empty when there is none or it is unreadable.
        A unit's state is read when it is first asked for (``UnitStates``)."""
        try:
            main = json.loads((self.dir / "state.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}, {}
        if not isinstance(main, dict) or main.get("version") != STATE_VERSION or not isinstance(main.get("units"), list):
            return {}, {}
        return main, UnitStates(self, main["units"])

    def unit(self, name: str) -> dict | None:
        """The state ``write_unit`` wrote for unit ``name``; None when it is missing or unreadable."""
        try:
            state = json.loads((self.units_dir / f"{name}.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return state if isinstance(state, dict) else None

    def keys(self, name: str) -> dict[str, str]:
        try:
            return json.loads((self.units_dir / f"{name}.keys.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}

    def chunk(self, name: str) -> str | None:
        try:
            return (self.units_dir / f"{name}.csv").read_text(encoding="utf-8")
        except OSError:
            return None

    def parsed(self, name: str, code: str) -> dict:
        """The registry files of unit ``name`` as an earlier build with the same code parsed them (YAML
        values by the sha256 of the file's bytes: ``write_parsed``); empty when there are none."""
        try:
            data = json.loads((self.units_dir / f"{name}.parsed.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return data["values"] if isinstance(data, dict) and data.get("code") == code and \
            isinstance(data.get("values"), dict) else {}

    def write_parsed(self, name: str, code: str, values: dict) -> None:
        """Remember parsed registry files (sha256 -> YAML value), those that JSON holds exactly."""
        keep = {sha: v for sha, v in values.items() if _plain(v)}
        self.units_dir.mkdir(parents=True, exist_ok=True)
        _write(self.units_dir / f"{name}.parsed.json",
               json.dumps({"code": code, "values": keep}, ensure_ascii=False, separators=(",", ":")))

    def forget(self) -> None:
        """Drop the main file before writing: a build that stops half-way leaves no usable state."""
        try:
            (self.dir / "state.json").unlink()
        except FileNotFoundError:
            pass

    def write_unit(self, name: str, state: dict, keys: dict | None = None, chunk: str | None = None) -> None:
        self.units_dir.mkdir(parents=True, exist_ok=True)
        _write(self.units_dir / f"{name}.json", json.dumps(state, separators=(",", ":")))
        if keys is not None:
            _write(self.units_dir / f"{name}.keys.json", json.dumps(keys, separators=(",", ":")))
        if chunk is not None:
            _write(self.units_dir / f"{name}.csv", chunk)

    def write(self, main: dict) -> None:
        """The main file, last; unit files of units that are gone are removed."""
        names = set(main["units"])
        for p in self.units_dir.glob("*") if self.units_dir.is_dir() else []:
            if p.name.split(".")[0] not in names:
                p.unlink()
        _write(self.dir / "state.json", json.dumps({"version": STATE_VERSION, **main}, separators=(",", ":")))


def _plain(value, depth: int = 0) -> bool:
    """Whether JSON gives ``value`` back exactly (same types): str-keyed dicts, lists, str, int, finite
    float, bool and None only (a YAML date, set, pair list or nan is parsed again instead)."""
    if depth > 64:
        return False
    if value is None or isinstance(value, (str, bool, int)):
        return True
    if isinstance(value, float):
        return value == value and value not in (float("inf"), float("-inf"))
    if type(value) is list:
        return all(_plain(v, depth + 1) for v in value)
    if type(value) is dict:
        return all(type(k) is str and _plain(v, depth + 1) for k, v in value.items())
    return False


def _write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


class UnitStates(Mapping):
    """The unit states of the last build, each read from its file when first asked for: a rebuild can start
    on the unit that changed before the others' states (18 files, ~8 MB of JSON at 1,000 x 18) are read. A
    unit whose file is missing or unreadable is not in it (the unit is built as new)."""

    def __init__(self, store: StateFolder, names: list):
        self._store, self._names = store, [n for n in names if isinstance(n, str)]
        self._read: dict[str, dict | None] = {}

    def __getitem__(self, name: str) -> dict:
        if name not in self._read:
            self._read[name] = self._store.unit(name) if name in self._names else None
        state = self._read[name]
        if state is None:
            raise KeyError(name)
        return state

    def __iter__(self):
        return iter([n for n in self._names if self.get(n) is not None])

    def __len__(self) -> int:
        return len(list(iter(self)))


class Hasher:
    """sha256 of input files, re-using the previous build's value when size and mtime are unchanged."""

    def __init__(self, threads: int = 1):
        self.seen: dict[str, list] = {}
        self.threads = max(1, threads)
        self.settled_ns = time.time_ns() - int(SETTLE_S * 1e9)

    def files(self, found: list[tuple[str, str, str]], previous: dict[str, list]) -> list[InputFile]:
        """``found``: (folder as given, absolute folder, name) as ``folder_listing`` gives them; a file whose
        size and mtime are those the last build recorded (``previous``, by absolute path) keeps its sha256,
        the others are hashed."""
        seen, settled, stat, sep = self.seen, self.settled_ns, os.stat, os.sep
        known: list[InputFile | None] = []
        for given, folder, name in found:  # (one loop, no call per file: it runs for every input file)
            key = folder + sep + name
            old = previous.get(key)
            if old:
                try:
                    st = stat(key)
                except OSError:
                    old = None
                else:
                    if old[0] == st.st_size and old[1] == st.st_mtime_ns and old[1] < settled:
                        seen[key] = old
                        known.append(InputFile(given, name, old[2]))
                        continue
            known.append(None)
        todo = [f for f, k in zip(found, known) if k is None]
        if self.threads > 1 and len(todo) > 64:
            with ThreadPoolExecutor(self.threads) as pool:  # hashlib and reads release the GIL
                hashed = iter(list(pool.map(self.hash, todo, chunksize=64)))
        else:
            hashed = iter([self.hash(f) for f in todo])
        return [k if k is not None else next(hashed) for k in known]

    def hash(self, found: tuple[str, str, str]) -> InputFile:
        given, folder, name = found
        key = folder + os.sep + name
        _, record = read_hashed(key)
        if record is None:
            return InputFile(given, name, "")
        self.seen[key] = record
        return InputFile(given, name, record[2])


def read_hashed(path) -> tuple[bytes | None, list | None]:
    """(bytes, [size, mtime_ns, sha256]) of a file, or (None, None) when it cannot be read."""
    try:
        with open(path, "rb") as f:
            st = os.fstat(f.fileno())
            data = f.read()
    except OSError:
        return None, None
    return data, [st.st_size, st.st_mtime_ns, hashlib.sha256(data).hexdigest()]


def stat_of(path) -> list[int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return [st.st_size, st.st_mtime_ns]


def outputs_intact(out: Path, outputs: dict[str, list]) -> bool:
    """Whether every recorded output is still there, untouched since it was written."""
    base = str(out) + os.sep
    return all(stat_of(base + rel) == rec for rel, rec in outputs.items())
