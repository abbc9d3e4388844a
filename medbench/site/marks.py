"""What the site says about a number beyond its value: chance level, "at chance" marks, the top tie
group of a board, and the corruption errors (BE/rBE) that may be shown.

A number is "at chance" when its 95% interval contains chance, and "below chance" when the whole
interval lies below it (worse than a constant classifier: a red flag); a leader with either mark is
never called best or rank 1 without it.
"""

from __future__ import annotations

import functools
import math
import re
from dataclasses import dataclass

from ..data import DATASETS


def chance_level(dataset: str) -> float:
    """Balanced accuracy of a constant or random classifier: 0.5 for binary and multi-label, 1/C otherwise."""
    spec = DATASETS[dataset]
    return 0.5 if spec.is_multilabel else 1.0 / spec.num_classes


def chance_status(value: float | None, low: float | None, high: float | None, chance: float) -> str | None:
    """"below" when the 95% interval of ``value`` lies wholly below chance, "at" when it contains chance,
    None when it lies above (or there is no value); without an interval, the value itself is used."""
    if value is None or value != value:
        return None
    lo = low if low is not None and low == low else value
    hi = high if high is not None and high == high else value
    if hi < chance - 1e-12:
        return "below"
    return "at" if lo <= chance + 1e-12 else None


def headline(row, track) -> tuple[float | None, float | None, float | None]:
    """(value, low, high) of the number the track ranks by."""
    if track.rank_by == "clean":
        return (row.clean_ba, *row.clean_ci())
    return row.robust(track.rank_by)


@dataclass
class Top:
    """The rank-1 tie group of a board's primary table (standard protocol, smallest size)."""

    track: object
    rows: list  # every member of tie group 0, best first
    value: float | None
    low: float | None
    high: float | None
    chance: str | None  # chance_status of the leader's number: "at", "below" or None


def top_group(board) -> Top | None:
    for t in board.tracks:
        if not t.standard:
            continue
        first = [r for r in t.rows if r.ranked and r.group == 0]
        if not first:
            return None
        v, lo, hi = headline(first[0], t)
        return Top(t, first, v, lo, hi, chance_status(v, lo, hi, chance_level(board.dataset)))
    return None


def corruption_errors(cor) -> dict:
    """BE and rBE where the record marks them defined (protocol 2+ lists each corruption's in ``relative_errors``,
    None with the reason where undefined); nothing for older records, whose rBE can explode."""
    out = {"be": None, "rbe": None, "per_corruption": {}, "undefined": {}}
    per = getattr(cor, "relative_errors", None) if cor is not None else None
    if not per:
        return out

    def ok(x):
        return x if isinstance(x, (int, float)) and math.isfinite(x) else None

    out["be"], out["rbe"] = ok(getattr(cor, "be", None)), ok(getattr(cor, "rbe", None))
    for r in per:
        out["per_corruption"][r.corruption] = (ok(r.be), ok(r.rbe))
        if r.undefined:
            out["undefined"][r.corruption] = r.undefined
    return out


_THREAT = re.compile(r"\b(Linf|L2)[- ](\d[\d./]*)")


@functools.lru_cache(maxsize=4096)  # (a few distinct texts, on every row of every page)
def threat_label(text) -> str:
    """One spelling of threats on every page: "Linf-2/255" -> "L∞ 2/255", "L2-0.25" -> "L2 0.25"."""
    text = _THREAT.sub(lambda m: ("L∞" if m.group(1) == "Linf" else "L2") + " " + m.group(2), str(text))
    return re.sub(r"\bLinf\b", "L∞", text)
