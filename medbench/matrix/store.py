"""The content-addressed cell store: ``<store>/cells/<id[:2]>/<id>.json``, written once.

A cell is written to a temporary file and then hard-linked to its final name, which fails when the
name exists: the first writer wins and a finished cell is never overwritten, so two workers that
compute the same cell (a retried task, two runs sharing a store) leave one file, written once.
Every write appends a line to ``journal.jsonl`` (id, kind, model, pid). Partial work of long cells
(per-chunk attack checkpoints) lives under ``partial/<id>/`` until the cell is stored.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import shutil
import socket
from pathlib import Path
from typing import Any

from ..errors import MedbenchError


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

    def get(self, cell_id: str) -> dict[str, Any] | None:
        """The stored payload of ``cell_id``, or None."""
        path = self.path(cell_id)
        try:
            payload = json.loads(path.read_text())
        except FileNotFoundError:
            return None
        except json.JSONDecodeError as exc:  # cannot happen with link-based writes; say what to do if it does
            raise MedbenchError(f"The matrix store holds an unreadable cell {path} ({exc}). Fix: delete that file; "
                                "the next run recomputes the cell.") from None
        if payload.get("id") != cell_id:
            raise MedbenchError(f"The matrix store's cell {path} holds id {payload.get('id')!r}. Fix: delete the "
                                "file; the next run recomputes the cell.")
        return payload

    def put(self, payload: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        """Store ``payload`` unless its cell exists: (the stored payload, whether this call wrote it)."""
        cell_id = payload["id"]
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
        with open(self.journal, "a") as f:  # one write of one short line: appends do not interleave
            f.write(line)

    def journal_entries(self) -> list[dict[str, Any]]:
        if not self.journal.is_file():
            return []
        return [json.loads(line) for line in self.journal.read_text().splitlines() if line.strip()]

    def cell_ids(self) -> list[str]:
        return sorted(p.stem for p in (self.root / "cells").glob("*/*.json"))
