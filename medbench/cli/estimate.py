"""An up-front estimate of an ``evaluate`` run's duration, from the committed full-protocol results.

Every committed result records its wall time per threat (``provenance.wall_time_per_threat_s``); the
reference zoo's results on the same dataset and size give a typical duration and a range. Robust
models take longer (more points survive into the expensive attacks), bigger models proportionally so.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path

from ..paths import leaderboard_root

RESULTS = leaderboard_root() / "results"


def fmt_duration(s: float) -> str:
    """Seconds as "40 s", "12 min" or "1.5 h"."""
    if s < 90:
        return f"{s:.0f} s"
    if s < 5400:
        return f"{s / 60:.0f} min"
    return f"{s / 3600:.1f} h"


def measured_times(dataset: str, size: int, root: Path = RESULTS) -> list[dict[str, float]]:
    """Wall time per threat of every committed result for ``dataset`` at ``size`` (a reused section counts
    with the time it took where it was computed)."""
    out = []
    for path in sorted((root / dataset).glob("*.json")):
        try:
            doc = json.loads(path.read_text())
            if int(doc.get("size", 28)) == size:
                prov = doc["provenance"]
                times = {k: float(v) for k, v in prov["wall_time_per_threat_s"].items()}
                # a section carried over from an earlier result (provenance.reused) cost ~0 s here: count
                # what it cost when it was computed
                for threat, rec in (prov.get("reused") or {}).items():
                    if rec.get("original_wall_time_s") is not None:
                        times[threat] = float(rec["original_wall_time_s"])
                out.append(times)
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return out


def estimate_text(dataset: str, size: int, threats: list[str], *, checks: bool = True,
                  root: Path = RESULTS) -> str | None:
    """A one-line estimate (median and range over the reference zoo), or None without measurements."""
    runs = measured_times(dataset, size, root)
    wanted = [*(["admission"] if checks else []), *threats]
    totals = [sum(r.get(t, 0.0) for t in wanted) for r in runs if all(t in r for t in threats)]
    if not totals:
        return None
    parts = []
    for t in threats:
        vals = [r[t] for r in runs if t in r]
        if vals and statistics.median(vals) >= 1:
            parts.append(f"{t} ~{fmt_duration(statistics.median(vals))}")
    detail = f" ({', '.join(parts)})" if parts else ""
    return (f"expected duration: ~{fmt_duration(statistics.median(totals))}{detail}, {fmt_duration(min(totals))} to "
            f"{fmt_duration(max(totals))} for the {len(totals)} reference models of {dataset} at {size} px on one CPU "
            "thread; robust and larger models take longer.")
