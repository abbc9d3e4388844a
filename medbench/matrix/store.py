"""The content-addressed cell store: ``<store>/cells/<id[:2]>/<id>.json``, written once, checksummed.

A cell is written to a temporary file and then hard-linked to its final name, which fails when the
name exists: the first writer wins and a finished cell is never overwritten. Each cell carries the
sha256 of its own content, so an edited, truncated or foreign file is reported (with every other bad
cell of the run), never used. A worker computes a cell while holding ``locks/<id>.lock`` (``flock``,
released by the kernel if the worker dies), so two runs sharing a store never compute one cell twice
nor delete each other's partial work (per-chunk attack checkpoints under ``partial/<id>/``). Every
write appends a line to ``journal.jsonl``; the journal is a log for people, and failing to append to
it is a warning, not a lost cell.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import fcntl
import hashlib
import json
import os
import shutil
import socket
import warnings
from pathlib import Path
from typing import Any, Iterator

from ..errors import MedbenchError

CHECKSUM = "sha256"  # the payload key holding the checksum of the rest of the payload


class DamagedCellError(MedbenchError):
    """Stored cells that cannot be trusted: ``problems`` maps each cell id to what is wrong with it."""

    def __init__(self, store: "Store", problems: dict[str, str]):
        self.problems = problems
        lines = "\n".join(f"  - {store.path(cid)}: {why}" for cid, why in sorted(problems.items()))
        super().__init__(f"The matrix store {store.root} holds {len(problems)} damaged or tampered cell(s):\n{lines}\n"
                         "Fix: run again with --recompute-damaged (Python: recompute_damaged=True) to set them "
                         "aside and compute them again, or delete those files.")


def checksum(payload: dict[str, Any]) -> str:
    """sha256 of the payload without its checksum, serialised as the store writes it (key order kept)."""
    body = {k: v for k, v in payload.items() if k != CHECKSUM}
    return hashlib.sha256(json.dumps(body, separators=(",", ":")).encode()).hexdigest()


class Store:
    """Cells by id under ``root``."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root).expanduser().resolve()

    def path(self, cell_id: str) -> Path:
        return self.root / "cells" / cell_id[:2] / f"{cell_id}.json"

    def partial_dir(self, cell_id: str) -> Path:
        return self.root / "partial" / cell_id

    @property
    def journal(self) -> Path:
        return self.root / "journal.jsonl"

    def problem(self, cell_id: str) -> str | None:
        """What is wrong with the stored file of ``cell_id`` (None: absent or sound)."""
        try:
            self._read(cell_id)
        except DamagedCellError as exc:
            return exc.problems[cell_id]
        return None

    def _read(self, cell_id: str) -> dict[str, Any] | None:
        path = self.path(cell_id)
        try:
            payload = json.loads(path.read_bytes())
        except FileNotFoundError:
            return None
        except (ValueError, UnicodeDecodeError) as exc:
            raise DamagedCellError(self, {cell_id: f"not JSON ({exc})"}) from None
        if not isinstance(payload, dict):
            raise DamagedCellError(self, {cell_id: f"holds a JSON {type(payload).__name__}, not a cell"})
        if payload.get("id") != cell_id:
            raise DamagedCellError(self, {cell_id: f"holds the cell {payload.get('id')!r}"})
        if CHECKSUM not in payload:
            raise DamagedCellError(self, {cell_id: "has no checksum (written by an older medbench, or edited)"})
        if payload[CHECKSUM] != checksum(payload):
            raise DamagedCellError(self, {cell_id: "its content does not match its checksum (edited or corrupted)"})
        return payload

    def get(self, cell_id: str) -> dict[str, Any] | None:
        """The stored payload of ``cell_id`` (checksum verified), or None when absent; a damaged cell raises
        :class:`DamagedCellError`."""
        return self._read(cell_id)

    def scan(self, cell_ids) -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
        """(sound stored payloads, problems of damaged ones) for ``cell_ids``: every bad cell at once."""
        found, problems = {}, {}
        for cid in cell_ids:
            try:
                payload = self._read(cid)
            except DamagedCellError as exc:
                problems.update(exc.problems)
                continue
            if payload is not None:
                found[cid] = payload
        return found, problems

    def set_aside(self, cell_id: str) -> Path:
        """Move a damaged cell out of the way (``<id>.json.damaged-<time>``), so it is computed again."""
        path = self.path(cell_id)
        stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%S%f")
        aside = path.with_name(f"{path.name}.damaged-{stamp}")
        path.replace(aside)
        return aside

    @contextlib.contextmanager
    def computing(self, cell_id: str) -> Iterator[None]:
        """Hold ``cell_id``'s lock: another process (another run on this store) waits until it is released,
        then finds the cell stored. The kernel releases it when the holder dies."""
        locks = self.root / "locks"
        locks.mkdir(parents=True, exist_ok=True)
        with open(locks / f"{cell_id}.lock", "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def put(self, payload: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        """Store ``payload`` (its checksum added) unless its cell exists: (the stored payload, whether this call
        wrote it)."""
        cell_id = payload["id"]
        payload = {k: v for k, v in payload.items() if k != CHECKSUM}
        payload[CHECKSUM] = checksum(payload)
        final = self.path(cell_id)
        if final.is_file():
            return self.get(cell_id), False
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = final.with_name(f"{final.name}.{socket.gethostname()}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(payload, separators=(",", ":")))  # key order kept: it is the result's order
        try:
            os.link(tmp, final)
            written = True
        except FileExistsError:
            written = False
        finally:
            tmp.unlink(missing_ok=True)
        if not written:
            return self.get(cell_id), False
        self._log(payload)
        shutil.rmtree(self.partial_dir(cell_id), ignore_errors=True)
        return payload, True

    def _log(self, payload: dict[str, Any]) -> None:
        line = json.dumps({"id": payload["id"], "kind": payload["kind"], "model_id": payload["model_id"],
                           "dataset": payload["dataset"], "reused": payload.get("reused") is not None,
                           "host": socket.gethostname(), "pid": os.getpid(),
                           "at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}) + "\n"
        try:
            with open(self.journal, "a") as f:  # one write of one short line: appends do not interleave
                f.write(line)
        except OSError as exc:  # the cell is stored; only the log line is lost
            warnings.warn(f"could not append to the matrix journal {self.journal} ({exc}); the cell {payload['id']} "
                          "is stored all the same", stacklevel=2)

    def journal_entries(self) -> list[dict[str, Any]]:
        if not self.journal.is_file():
            return []
        return [json.loads(line) for line in self.journal.read_text().splitlines() if line.strip()]

    def cell_ids(self) -> list[str]:
        return sorted(p.stem for p in (self.root / "cells").glob("*/*.json"))
