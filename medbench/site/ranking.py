"""Ranks and tie groups (PROTOCOL.md section 6).

Entries are sorted by a headline metric (descending). A tie group starts at its best entry (the
group's leader); each following entry joins the group while the 95% interval of the difference
between the leader and it contains 0, otherwise it starts the next group. Groups are therefore
runs of consecutive entries, and every member of a group shares the leader's rank.

The difference is a paired percentile bootstrap over the examples both entries were evaluated on
(the resamples of :func:`medbench.metrics.bootstrap_balanced_accuracy`), computed for all entries at once.
When the per-example labels are not known, the fallback is interval overlap: the entry joins the
group while its 95% interval overlaps the leader's.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..metrics import CI_LEVEL, N_BOOTSTRAP, bootstrap_balanced_accuracy, percentile_interval

PAIRED = "paired"
OVERLAP = "overlap"


@dataclass
class RankItem:
    """One entry to rank: its headline value, its interval, and (optionally) per-example predictions."""

    key: str
    value: float
    low: float | None = None
    high: float | None = None
    predictions: np.ndarray | None = None  # per example of the shared subset


@dataclass(frozen=True)
class Ranked:
    key: str
    rank: int  # competition rank of the tie group (1 + number of entries in better groups)
    group: int  # 0, 1, 2, ... in order


def _interval(diff: np.ndarray, level: float = CI_LEVEL) -> tuple[float, float]:
    interval = percentile_interval(diff, level)
    return interval.low, interval.high


def tie_groups(items: list[RankItem], *, labels: np.ndarray | None = None, num_classes: int | None = None,
               n_resamples: int = N_BOOTSTRAP, seed: int = 0) -> tuple[list[Ranked], str]:
    """Rank ``items`` (best first) into tie groups; returns the ranking and the method used.

    With ``labels`` and every item's ``predictions`` the paired bootstrap decides ("paired");
    otherwise intervals must not overlap to separate two entries ("overlap").
    """
    order = sorted(items, key=lambda it: (-it.value, it.key))
    if not order:
        return [], PAIRED if labels is not None else OVERLAP
    paired = (labels is not None and num_classes is not None
              and all(it.predictions is not None and len(it.predictions) == len(labels) for it in order))
    boot = None
    if paired:
        boot = bootstrap_balanced_accuracy(labels, np.stack([it.predictions for it in order], axis=1),
                                           num_classes, n_resamples=n_resamples, seed=seed)
    out: list[Ranked] = []
    leader, group, rank = 0, 0, 1
    for i, it in enumerate(order):
        if i > leader and not (_paired_tie(boot, leader, i) if boot is not None else _overlap(order[leader], order[i])):
            leader, group, rank = i, group + 1, i + 1
        out.append(Ranked(it.key, rank, group))
    return out, PAIRED if paired else OVERLAP


def _paired_tie(boot: np.ndarray, a: int, b: int) -> bool:
    """Paired tie: the 95% interval of entry ``a``'s minus entry ``b``'s balanced accuracy over the shared
    resamples contains 0 (a resample without some class gives NaN and drops out)."""
    lo, hi = _interval(boot[:, a] - boot[:, b])
    return bool(np.isnan(lo) or lo <= 0 <= hi)


def _overlap(x: RankItem, y: RankItem) -> bool:
    """Unpaired tie: the 95% intervals overlap (``y`` is not better than ``x`` by construction)."""
    if None in (x.low, y.low, x.high, y.high):
        return x.value == y.value
    return y.high >= x.low
