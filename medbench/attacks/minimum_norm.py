"""Minimum-norm curves: one minimum-norm attack run gives the whole robust-accuracy-vs-eps curve.

A point with smallest breaking norm ``d`` (0 when misclassified clean, ``inf`` when none was found) is
robust at ``eps`` iff ``d > eps`` (the ball is closed), so the curve at any eps is a count over the
norms, and the median of ``d`` over the subset (the eps at which robust accuracy crosses 50%) is a
scale-free score, with a percentile bootstrap CI from the resample engine of ``medbench.metrics``.
``compare_with_apgd`` sets the curve beside a result's APGD-CE curve points (Linf): a minimum-norm
curve above APGD's at some eps means the minimum-norm attack missed points that APGD broke.
"""

from __future__ import annotations

import numpy as np
from pydantic import Field

from .. import metrics
from ..schema import Curves, Interval
from ..schema.base import Strict

__all__ = [
    "ApgdComparison", "ApgdComparisonPoint", "MinimumNormCurve", "MinimumNormPoint", "compare_with_apgd",
    "curve_points", "eps_grid", "median_norm", "minimum_norm_curve", "norms_array", "robust_at",
]


class MinimumNormPoint(Strict):
    eps: float  # in [0, 1] units (scaled for the image size under L2)
    robust_accuracy: float
    robust_balanced_accuracy: float


class MinimumNormCurve(Strict):
    """``<name>.minnorm.json``: per-point smallest breaking norms of one attack, the curve and the median."""

    model_id: str
    dataset: str
    size: int
    norm: str  # "Linf" | "L2"
    attack: str  # e.g. "FMN"
    steps: int
    protocol_version: str
    subset_sha256: str
    indices: list[int]  # the subset's positions in the test split, in order
    labels: list[int]  # their test labels
    num_classes: int
    weights_sha256: str
    norms: list[float | None]  # per point; None: no breaking perturbation found (inf)
    curve: list[MinimumNormPoint]
    median: float | None  # median smallest breaking norm over the subset; None: inf (most points unbroken)
    median_ci: Interval
    ci_level: float
    bootstrap_resamples: int
    nonfinite_outputs: int = Field(ge=0)  # NaN / infinite output rows met by the attack
    medbench_version: str
    created_at: str  # ISO 8601 UTC


def norms_array(curve: MinimumNormCurve) -> np.ndarray:
    """The per-point norms as float64, ``inf`` where none was found."""
    return np.array([np.inf if v is None else v for v in curve.norms], dtype=np.float64)


def robust_at(norms: np.ndarray, eps: float) -> np.ndarray:
    """Per point: still robust at ``eps`` (no breaking perturbation of norm <= eps was found)."""
    return np.asarray(norms, dtype=np.float64) > eps


def curve_points(norms: np.ndarray, labels: np.ndarray, eps_values, num_classes: int) -> list[MinimumNormPoint]:
    """Robust accuracy and balanced accuracy at each eps of ``eps_values`` (sorted ascending).

    Balanced accuracy needs only correctness per point: a broken point counts as wrong for its class.
    """
    labels = np.asarray(labels).reshape(-1)
    out = []
    for eps in sorted(float(e) for e in eps_values):
        robust = robust_at(norms, eps)
        pred = np.where(robust, labels, -1)
        out.append(MinimumNormPoint(eps=eps, robust_accuracy=float(robust.mean()) if robust.size else 0.0,
                                    robust_balanced_accuracy=metrics.balanced_accuracy(labels, pred, num_classes)))
    return out


def eps_grid(norm: str, protocol, scale: float = 1.0) -> list[float]:
    """The protocol's budgets for ``norm`` and, for Linf, its APGD curve points; for L2 the threat budgets
    times 0.25, 0.5, 1, 2, 4; each times ``scale`` (sqrt(H*W/784) for L2 at other sizes, 1 for Linf)."""
    threats = [t["eps"] for t in protocol["adversarial"]["threats"].get(norm, [])]
    if norm == "Linf":
        values = [e / 255 for e in protocol["curves"]["apgd_eps_255"]] + threats
    else:
        values = [0.0] + [e * f for e in threats for f in (0.25, 0.5, 1.0, 2.0, 4.0)]
    return sorted({round(float(v) * scale, 12) for v in values})


def median_norm(norms: np.ndarray, *, n_resamples: int, seed: int, level: float) -> tuple[float, Interval]:
    """The median of ``norms`` (``inf`` allowed) and its percentile bootstrap interval (same resamples as
    ``metrics.bootstrap`` gives every other metric); infinite bounds come back as None."""
    norms = np.asarray(norms, dtype=np.float64)
    value = float(np.median(norms))
    resampled = metrics.bootstrap(lambda idx: np.median(norms[idx], axis=1), len(norms), n_resamples=n_resamples,
                                  seed=seed, draws="indices")
    alpha = (1 - level) / 2
    low, high = np.quantile(resampled, [alpha, 1 - alpha], method="inverted_cdf")  # no inf - inf interpolation
    return value, Interval(low=_finite(low), high=_finite(high))


def _finite(v: float) -> float | None:
    return float(v) if np.isfinite(v) else None


class ApgdComparisonPoint(Strict):
    eps: float
    apgd_accuracy: float
    minimum_norm_accuracy: float
    combined_accuracy: float  # a point counts as broken at eps if either attack broke it
    combined_balanced_accuracy: float
    at_or_below: bool  # minimum_norm_accuracy <= apgd_accuracy
    broken_only_by_minimum_norm: int
    broken_only_by_apgd: int  # > 0: the minimum-norm attack missed points APGD broke at this eps


class ApgdComparison(Strict):
    attack: str
    points: list[ApgdComparisonPoint]

    @property
    def consistent(self) -> bool:
        """The minimum-norm curve lies at or below APGD's at every shared eps."""
        return all(p.at_or_below for p in self.points)


def compare_with_apgd(curve: MinimumNormCurve, curves: Curves) -> ApgdComparison:
    """The minimum-norm curve beside a result's APGD-CE points (Linf, same subset) at each APGD eps."""
    if curve.norm != "Linf":
        raise ValueError(f"APGD-CE curve points are Linf; this minimum-norm curve is {curve.norm}.")
    if curves.subset.indices_sha256 != curve.subset_sha256:
        raise ValueError("The result's curves were computed on another subset (sha256 "
                         f"{curves.subset.indices_sha256[:12]}, not {curve.subset_sha256[:12]}).")
    norms, labels = norms_array(curve), np.asarray(curve.labels)
    points = []
    for p in curves.apgd_ce:
        if p.correct is None or len(p.correct) != len(norms):
            raise ValueError(f"APGD-CE point eps={p.x:g} has no per-point outcome for the {len(norms)} subset points.")
        apgd, mn = np.asarray(p.correct, dtype=bool), robust_at(norms, p.x)
        both = apgd & mn
        combined_ba = metrics.balanced_accuracy(labels, np.where(both, labels, -1), curve.num_classes)
        points.append(ApgdComparisonPoint(
            eps=p.x, apgd_accuracy=float(apgd.mean()), minimum_norm_accuracy=float(mn.mean()),
            combined_accuracy=float(both.mean()),
            combined_balanced_accuracy=combined_ba,
            at_or_below=bool(mn.mean() <= apgd.mean() + 1e-12),
            broken_only_by_minimum_norm=int((apgd & ~mn).sum()), broken_only_by_apgd=int((mn & ~apgd).sum())))
    return ApgdComparison(attack=curve.attack, points=points)


def minimum_norm_curve(run, protocol) -> MinimumNormCurve:
    """The :class:`MinimumNormCurve` of an :class:`~medbench.attacks.extra.ExtraAttackRun` of a minimum-norm
    attack over the whole subset; bootstrap settings are the protocol's ``clean`` ones."""
    from .. import __version__
    from .extra import created_at, l2_scale

    if run.output.min_norm is None:
        raise ValueError(f"{run.attack.name} is not a minimum-norm attack; use fmn or ddn.")
    if not run.attacked.all():
        raise ValueError("A minimum-norm curve needs every subset point attacked (--all-points).")
    norms = run.output.min_norm
    clean = protocol["clean"]
    median, ci = median_norm(norms, n_resamples=clean["bootstrap_resamples"], seed=clean["bootstrap_seed"],
                             level=clean["ci_level"])
    grid = eps_grid(run.norm, protocol, l2_scale(run.size) if run.norm == "L2" else 1.0)
    return MinimumNormCurve(
        model_id=run.model_id, dataset=run.dataset, size=run.size, norm=run.norm, attack=run.attack.display_name,
        steps=run.steps, protocol_version=run.protocol_version, subset_sha256=run.subset_sha256,
        indices=[int(i) for i in run.indices], labels=[int(v) for v in run.labels], num_classes=run.num_classes,
        weights_sha256=run.weights_sha256, norms=[_finite(v) for v in norms],
        curve=curve_points(norms, run.labels, grid, run.num_classes), median=_finite(median), median_ci=ci,
        ci_level=clean["ci_level"], bootstrap_resamples=clean["bootstrap_resamples"],
        nonfinite_outputs=run.output.nonfinite_outputs, medbench_version=__version__, created_at=created_at())
