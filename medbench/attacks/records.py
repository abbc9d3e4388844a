"""Where verified attack records live: ``<root>/attacks/<dataset>/<model_id>--<threat>--<sha12>.json``.

One JSON file per verified ``.npz`` (a :class:`~medbench.schema.VerifiedAttack`), named after the threat
and the first 12 hex digits of the file's sha256, so the same file verified twice overwrites its own
record and never counts twice. Unreadable or invalid record files are returned as problems, never raised.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from pydantic import ValidationError

from ..schema import VerifiedAttack

__all__ = ["RecordKey", "Records", "load_records", "read_record", "record_path", "threat_slug", "write_record"]

RecordKey = tuple[str, str, int, str]  # (dataset, model_id, size, threat)


class Records(dict[RecordKey, list[VerifiedAttack]]):
    """Records grouped by (dataset, model_id, size, threat); ``problems`` lists the files that were skipped."""

    def __init__(self) -> None:
        super().__init__()
        self.problems: list[str] = []


def threat_slug(threat: str) -> str:
    """A threat label as a file-name part: ``Linf-2/255`` -> ``Linf-2_255``."""
    return re.sub(r"[^A-Za-z0-9.-]", "_", threat)


def record_path(root: str | os.PathLike, rec: VerifiedAttack) -> Path:
    """The record file of ``rec`` under the leaderboard folder ``root``."""
    name = f"{threat_slug(rec.model_id)}--{threat_slug(rec.threat)}--{rec.file_sha256[:12]}.json"
    return Path(root) / "attacks" / rec.dataset / name  # one folder per dataset: the site reads it with the results


def write_record(root: str | os.PathLike, rec: VerifiedAttack) -> Path:
    """Write ``rec`` (atomically: a temporary file renamed into place) and return its path."""
    path = record_path(root, rec)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(rec.model_dump(mode="json"), indent=1) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path


def read_record(path: Path, raw: bytes | None = None) -> tuple[VerifiedAttack | None, str | None]:
    """The record in ``path`` (its bytes ``raw`` when already read), or None and why it cannot be used."""
    where = f"attacks/{path.parent.name}/{path.name}"
    try:
        rec = VerifiedAttack.model_validate_json(path.read_bytes() if raw is None else raw)
    except (OSError, ValidationError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return None, (f"{where}: not a valid attack record ({first}); re-run `medbench submission validate` on "
                      "its submission or delete it")
    if rec.dataset != path.parent.name:
        return None, f"{where}: records dataset {rec.dataset}, not its folder's; move it to attacks/{rec.dataset}/"
    return rec, None


def load_records(root: str | os.PathLike) -> Records:
    """Every record under ``<root>/attacks/``, grouped by (dataset, model_id, size, threat); files that are
    not valid records, or sit in another record's place, are skipped and named in ``.problems``."""
    folder = Path(root) / "attacks"
    records = Records()
    problems = records.problems
    for path in sorted(folder.glob("*/*.json")):
        rel = path.relative_to(folder).as_posix()
        rec, problem = read_record(path)
        if rec is None:
            problems.append(problem)
            continue
        if record_path(root, rec) != path:
            problems.append(f"attacks/{rel}: its content belongs in "
                            f"{record_path(root, rec).relative_to(root).as_posix()}; move it there")
            continue
        records.setdefault((rec.dataset, rec.model_id, rec.size, rec.threat), []).append(rec)
    return records
