"""Calibration and selective-prediction metrics as weighted sums over examples.

Every metric is a function of per-example quantities and a (B x N) weight matrix (bootstrap counts
from :func:`medbench.metrics.bootstrap`, or one row of ones for the point estimate), so the point
estimate and each resample run the same code. What is calibrated, per task:

- binary: the last column (positive-class probability) against ``label == 1``.
- multi-class and ordinal: top-label, the largest probability against ``argmax == label``; ordinal
  (RetinaMNIST) is treated as multi-class over its classes, ignoring the order.
- multi-label: each label's sigmoid probability against that label; the value is the mean over
  labels.

Equal-mass bins follow ``np.quantile`` (linear) of the confidences, outer edges 0 and 1, bins closed
on the left (netcal's ``ECE(bins, equal_intervals=False)``). Under the bootstrap the edges are
recomputed on every resample, so each resample is scored by the same estimator as the full set.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from .. import metrics

N_BINS = 15
COVERAGE = 0.9
Binning = Literal["equal-mass", "equal-width"]
_EPS = np.finfo(np.float64).eps

__all__ = [
    "COVERAGE", "N_BINS", "Binning", "ExampleScores", "ReliabilityDiagram", "RiskCoverage", "aurc",
    "bootstrap_calibration", "brier_score", "example_scores", "expected_calibration_error",
    "negative_log_likelihood", "per_label_scores", "reliability_diagram", "risk_coverage_curve",
    "selective_accuracy", "weighted_scores", "SCORE_NAMES",
]

SCORE_NAMES = ("ece", "brier", "nll", "aurc", "accuracy_at_coverage",
               "balanced_accuracy_at_coverage")


@dataclass(frozen=True)
class ExampleScores:
    """Per-example quantities, one column per calibrated event (1, or L labels for multi-label).

    All arrays are (N x C): ``confidence`` is the calibrated probability and ``outcome`` whether
    its event happened; ``selective`` is the probability of the predicted class, ``label`` and
    ``prediction`` the true and predicted class (``n_classes`` of them) for selective prediction.
    """

    confidence: np.ndarray
    outcome: np.ndarray
    brier: np.ndarray
    nll: np.ndarray
    selective: np.ndarray
    label: np.ndarray
    prediction: np.ndarray
    n_classes: int


def example_scores(labels: np.ndarray, probs: np.ndarray, task: str) -> ExampleScores:
    """Per-example quantities of ``probs`` (N x K, softmax; sigmoid for multi-label) against
    ``labels``: (N,) class ids, or (N, L) 0/1 for the multi-label task.

    Brier is the squared error of the positive-class probability (binary, per label) or summed over
    classes (multi-class), as sklearn's ``brier_score_loss``; NLL clips probabilities to
    ``[eps, 1 - eps]`` as sklearn's ``log_loss``. Raises ValueError on mismatched shapes or a
    non-multi-label task with K < 2.
    """
    labels, probs = np.asarray(labels), np.asarray(probs, dtype=np.float64)
    if probs.ndim != 2 or len(labels) != len(probs):
        raise ValueError(f"Expected probabilities (N x K) and N labels; got {probs.shape} and "
                         f"{labels.shape}.")
    if task == metrics.MULTILABEL:
        if labels.shape != probs.shape:
            raise ValueError(f"Multi-label labels must be (N x L) like the probabilities; got "
                             f"{labels.shape}.")
        return _binary_scores(labels.astype(np.int64), probs)
    labels = labels.reshape(-1).astype(np.int64)
    if probs.shape[1] < 2:
        raise ValueError(f"Task {task!r} needs at least two probability columns; got "
                         f"{probs.shape[1]}.")
    if task == metrics.BINARY:
        return _binary_scores(labels[:, None], probs[:, -1:])
    prediction = probs.argmax(axis=1)
    onehot = np.eye(probs.shape[1])[labels]
    top = probs.max(axis=1)
    true_prob = np.clip(probs[np.arange(len(labels)), labels], _EPS, 1 - _EPS)
    return ExampleScores(confidence=top[:, None],
                         outcome=(prediction == labels).astype(float)[:, None],
                         brier=((probs - onehot) ** 2).sum(axis=1)[:, None],
                         nll=-np.log(true_prob)[:, None], selective=top[:, None],
                         label=labels[:, None], prediction=prediction[:, None],
                         n_classes=probs.shape[1])


def _binary_scores(labels: np.ndarray, positive: np.ndarray) -> ExampleScores:
    """Scores of positive-class probabilities (N x C) against 0/1 labels (N x C)."""
    clipped = np.clip(positive, _EPS, 1 - _EPS)
    nll = -np.where(labels == 1, np.log(clipped), np.log1p(-clipped))
    prediction = (positive > 0.5).astype(np.int64)
    return ExampleScores(confidence=positive, outcome=labels.astype(float),
                         brier=(positive - labels) ** 2, nll=nll,
                         selective=np.where(prediction == 1, positive, 1 - positive),
                         label=labels, prediction=prediction, n_classes=2)


# ----------------------------------------------------------------------------- weighted metrics

def _cumsum0(values: np.ndarray) -> np.ndarray:
    """Cumulative sums along rows with a leading zero column."""
    out = np.zeros((values.shape[0], values.shape[1] + 1))
    np.cumsum(values, axis=1, out=out[:, 1:])
    return out


def _expanded(sorted_values: np.ndarray, cum_w: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """Element ``positions`` (B x P, 0-based) of each row's sorted resample, i.e. of
    ``np.repeat(sorted_values, w)``, found through the cumulative weights ``cum_w`` (B x N+1)."""
    rows, n = cum_w.shape[0], len(sorted_values)
    stride = cum_w[:, -1].max() + 1
    offsets = (np.arange(rows) * stride)[:, None]
    flat = (cum_w[:, 1:] + offsets).ravel()
    found = np.searchsorted(flat, (positions + offsets).ravel(), side="right")
    found = found.reshape(positions.shape)
    return sorted_values[np.minimum(found - np.arange(rows)[:, None] * n, n - 1)]


def _equal_mass_edges(sorted_conf: np.ndarray, cum_w: np.ndarray, n_bins: int) -> np.ndarray:
    """Bin edges (B x n_bins+1): ``np.quantile`` (linear) of each resample, outer edges 0 and 1."""
    total = cum_w[:, -1:]
    q = np.linspace(0, 1, n_bins + 1)
    virtual = total * q + (1 + q * -1) - 1  # numpy's linear virtual index, in the same arithmetic
    previous = np.floor(virtual)
    gamma = virtual - previous
    low = _expanded(sorted_conf, cum_w, np.clip(previous, 0, total - 1))
    high = _expanded(sorted_conf, cum_w, np.clip(previous + 1, 0, total - 1))
    diff = high - low
    edges = np.where(gamma >= 0.5, high - diff * (1 - gamma), low + diff * gamma)  # numpy's _lerp
    edges[:, 0], edges[:, -1] = 0.0, 1.0
    return edges


def _bin_cuts(conf: np.ndarray, outcome: np.ndarray, w: np.ndarray, n_bins: int, binning: Binning):
    """Sorted cumulative sums and each row's bin boundaries (B x n_bins+1 sorted positions)."""
    conf = np.clip(conf, _EPS, 1 - _EPS)
    order = np.argsort(conf, kind="mergesort")
    conf, outcome, w = conf[order], outcome[order], w[:, order]
    cum_w, cum_o, cum_c = _cumsum0(w), _cumsum0(w * outcome), _cumsum0(w * conf)
    if binning == "equal-mass":
        edges = _equal_mass_edges(conf, cum_w, n_bins)
    elif binning == "equal-width":
        edges = np.broadcast_to(np.linspace(0, 1, n_bins + 1), (len(w), n_bins + 1))
    else:
        raise ValueError(f"Unknown binning {binning!r}; use 'equal-mass' or 'equal-width'.")
    cuts = np.searchsorted(conf, edges, side="left")  # a confidence on an edge opens the upper bin
    cuts[:, 0], cuts[:, -1] = 0, len(conf)
    return cum_w, cum_o, cum_c, cuts


def _weighted_ece(conf: np.ndarray, outcome: np.ndarray, w: np.ndarray, n_bins: int,
                  binning: Binning) -> np.ndarray:
    cum_w, cum_o, cum_c, cuts = _bin_cuts(conf, outcome, w, n_bins, binning)
    gap = np.take_along_axis(cum_o - cum_c, cuts, axis=1)
    return np.abs(np.diff(gap, axis=1)).sum(axis=1) / cum_w[:, -1]


def _tie_group_end(values_sorted: np.ndarray) -> np.ndarray:
    """For each position of a sorted array, the last position holding the same value."""
    last = np.r_[values_sorted[1:] != values_sorted[:-1], True]
    return np.flatnonzero(last)[np.cumsum(np.r_[0, last[:-1]])]


def _weighted_aurc(selective: np.ndarray, correct: np.ndarray, w: np.ndarray) -> np.ndarray:
    order = np.argsort(-selective, kind="mergesort")
    end = _tie_group_end(-selective[order])
    w = w[:, order]
    cum_w, cum_err = np.cumsum(w, axis=1), np.cumsum(w * (1 - correct[order]), axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        risk = np.where(cum_w[:, end] > 0, cum_err[:, end] / cum_w[:, end], 0.0)
    return (w * risk).sum(axis=1) / cum_w[:, -1]


def _coverage_weights(selective: np.ndarray, w: np.ndarray, coverage: float) -> np.ndarray:
    """Weights (B x N) of the most confident ``coverage`` share of each resample; the examples
    tied at the threshold share the remainder in proportion to their weight (exact coverage)."""
    order = np.argsort(-selective, kind="mergesort")
    s = -selective[order]
    starts = np.flatnonzero(np.r_[True, s[1:] != s[:-1]])
    group = np.cumsum(np.r_[0, s[1:] != s[:-1]])
    ws = w[:, order]
    group_w = np.add.reduceat(ws, starts, axis=1)
    before = np.cumsum(group_w, axis=1) - group_w
    target = coverage * ws.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        share = np.clip(np.where(group_w > 0, (target - before) / group_w, 0.0), 0.0, 1.0)
    kept = np.empty_like(ws)
    kept[:, order] = ws * share[:, group]
    return kept


def _weighted_selective(scores: ExampleScores, col: int, w: np.ndarray,
                        coverage: float) -> np.ndarray:
    """Accuracy and balanced accuracy (B x 2) on the most confident ``coverage`` share."""
    label, prediction = scores.label[:, col], scores.prediction[:, col]
    kept = _coverage_weights(scores.selective[:, col], w, coverage)
    correct = (label == prediction).astype(float)
    accuracy = (kept @ correct) / kept.sum(axis=1)
    onehot = np.eye(scores.n_classes)[label]
    support, hits = kept @ onehot, kept @ (onehot * correct[:, None])
    with np.errstate(invalid="ignore", divide="ignore"):
        recall = np.where(support > 0, hits / support, np.nan)
        balanced = np.nanmean(recall, axis=1)
    return np.stack([accuracy, balanced], axis=1)


def weighted_scores(scores: ExampleScores, w: np.ndarray, *, n_bins: int = N_BINS,
                    coverage: float = COVERAGE, binning: Binning = "equal-mass") -> np.ndarray:
    """The :data:`SCORE_NAMES` metrics (B x C x 6) for each row of ``w`` (B x N example weights) and
    each column of ``scores``; average over axis 1 for the multi-label mean."""
    per_column = []
    for col in range(scores.confidence.shape[1]):
        correct = (scores.label[:, col] == scores.prediction[:, col]).astype(float)
        total = w.sum(axis=1)
        per_column.append(np.column_stack([
            _weighted_ece(scores.confidence[:, col], scores.outcome[:, col], w, n_bins, binning),
            (w @ scores.brier[:, col]) / total,
            (w @ scores.nll[:, col]) / total,
            _weighted_aurc(scores.selective[:, col], correct, w),
            _weighted_selective(scores, col, w, coverage),
        ]))
    return np.stack(per_column, axis=1)


def _point(labels, probs, task: str, **kwargs) -> np.ndarray:
    scores = example_scores(labels, probs, task)
    return weighted_scores(scores, np.ones((1, len(scores.label))), **kwargs)[0]  # C x 6


def _mean(labels, probs, task: str, name: str, **kwargs) -> float:
    return float(_point(labels, probs, task, **kwargs)[:, SCORE_NAMES.index(name)].mean())


# ----------------------------------------------------------------------------- point estimates

def expected_calibration_error(labels: np.ndarray, probs: np.ndarray, task: str, *,
                               n_bins: int = N_BINS, binning: Binning = "equal-mass") -> float:
    """ECE: sum over bins of (bin share) x |mean outcome - mean confidence|, in [0, 1].

    Equal-mass bins by default (netcal's ``ECE(n_bins, equal_intervals=False)``); ``"equal-width"``
    bins are [k/n, (k+1)/n). Multi-label: the mean over labels. Raises ValueError on an unknown
    binning.
    """
    return _mean(labels, probs, task, "ece", n_bins=n_bins, binning=binning)


def brier_score(labels: np.ndarray, probs: np.ndarray, task: str) -> float:
    """Mean Brier score (sklearn's ``brier_score_loss``: binary in [0, 1], multi-class summed over
    classes in [0, 2]); multi-label: the mean over labels of each label's binary Brier score."""
    return _mean(labels, probs, task, "brier")


def negative_log_likelihood(labels: np.ndarray, probs: np.ndarray, task: str) -> float:
    """Mean negative log-likelihood of the true class (sklearn's ``log_loss``); multi-label: the
    mean over labels of each label's binary cross-entropy."""
    return _mean(labels, probs, task, "nll")


def aurc(labels: np.ndarray, probs: np.ndarray, task: str) -> float:
    """Area under the risk-coverage curve: the mean over examples of the error rate among the
    examples at least as confident (confidence = probability of the predicted class; ties enter
    together). Multi-label: the mean over labels."""
    return _mean(labels, probs, task, "aurc")


def selective_accuracy(labels: np.ndarray, probs: np.ndarray, task: str, *,
                       coverage: float = COVERAGE) -> tuple[float, float]:
    """(accuracy, balanced accuracy) of the most confident ``coverage`` share of the examples;
    examples tied at the threshold count with equal fractional weight. Multi-label: means over
    labels."""
    point = _point(labels, probs, task, coverage=coverage)
    return float(point[:, 4].mean()), float(point[:, 5].mean())


def per_label_scores(labels: np.ndarray, probs: np.ndarray, task: str, *, n_bins: int = N_BINS,
                     coverage: float = COVERAGE) -> dict[str, np.ndarray]:
    """Every :data:`SCORE_NAMES` metric per calibrated column: (L,) arrays for multi-label, (1,)
    otherwise."""
    point = _point(labels, probs, task, n_bins=n_bins, coverage=coverage)
    return {name: point[:, i] for i, name in enumerate(SCORE_NAMES)}


def bootstrap_calibration(labels: np.ndarray, probs: np.ndarray, task: str, *, n_bins: int = N_BINS,
                          coverage: float = COVERAGE, n_resamples: int = metrics.N_BOOTSTRAP,
                          seed: int = 0, groups: np.ndarray | None = None) -> np.ndarray:
    """The :data:`SCORE_NAMES` metrics (label means) on every resample of
    :func:`medbench.metrics.bootstrap` (B x 6), so a given ``seed`` pairs them with the other
    metrics' resamples. Equal-mass bins are recomputed on each resample.

    ``groups`` (ints 0..G-1, one per example): resample the G groups instead of the examples, each
    drawn with all its examples (e.g. a test image with its corrupted copies, which are not
    independent draws)."""
    scores = example_scores(labels, probs, task)

    def statistic(w: np.ndarray) -> np.ndarray:
        with np.errstate(invalid="ignore"):
            return weighted_scores(scores, w, n_bins=n_bins, coverage=coverage).mean(axis=1)

    if groups is None:
        return metrics.bootstrap(statistic, len(scores.label), n_resamples=n_resamples, seed=seed)
    groups = np.asarray(groups, dtype=np.int64)
    if groups.shape != (len(scores.label),) or groups.min(initial=0) < 0:
        raise ValueError("groups needs one non-negative group number per example")
    chunk = int(max(1, min(100, 2e7 // max(1, len(groups)))))  # (B x N) weights stay under ~160 MB
    return metrics.bootstrap(lambda w: statistic(w[:, groups]), int(groups.max()) + 1, n_resamples=n_resamples,
                             seed=seed, chunk=chunk)


# ----------------------------------------------------------------------------- curves

@dataclass(frozen=True)
class ReliabilityDiagram:
    """Per-bin mean ``confidence``, observed ``accuracy`` (outcome rate) and example ``count``,
    (n_bins,) each (NaN confidence and accuracy for an empty bin), and the ``edges``
    (n_bins + 1,)."""

    confidence: np.ndarray
    accuracy: np.ndarray
    count: np.ndarray
    edges: np.ndarray


def _column(scores: ExampleScores, task: str, label: int | None) -> int:
    if task == metrics.MULTILABEL:
        if label is None:
            raise ValueError("A multi-label curve is per label: pass label=<column index>.")
        if not 0 <= label < scores.confidence.shape[1]:
            raise ValueError(f"label={label} is out of range for {scores.confidence.shape[1]} "
                             "labels.")
        return label
    return 0


def reliability_diagram(labels: np.ndarray, probs: np.ndarray, task: str, *,
                        n_bins: int = N_BINS, binning: Binning = "equal-mass",
                        label: int | None = None) -> ReliabilityDiagram:
    """The bins of :func:`expected_calibration_error`. Multi-label needs ``label`` (a column index);
    raises ValueError without it."""
    scores = example_scores(labels, probs, task)
    col = _column(scores, task, label)
    conf = scores.confidence[:, col]
    ones = np.ones((1, len(conf)))
    cum_w, cum_o, cum_c, cuts = _bin_cuts(conf, scores.outcome[:, col], ones, n_bins, binning)
    count = np.diff(np.take_along_axis(cum_w, cuts, axis=1), axis=1)[0]
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_conf = np.diff(np.take_along_axis(cum_c, cuts, axis=1), axis=1)[0] / count
        accuracy = np.diff(np.take_along_axis(cum_o, cuts, axis=1), axis=1)[0] / count
    sorted_conf = np.sort(np.clip(conf, _EPS, 1 - _EPS))
    edges = (_equal_mass_edges(sorted_conf, _cumsum0(ones), n_bins)[0] if binning == "equal-mass"
             else np.linspace(0, 1, n_bins + 1))
    return ReliabilityDiagram(confidence=mean_conf, accuracy=accuracy,
                              count=count.astype(np.int64), edges=edges)


@dataclass(frozen=True)
class RiskCoverage:
    """Risk-coverage curve: at each distinct confidence threshold (most confident first), the
    share of examples kept (``coverage``), their error rate (``risk``) and the ``threshold``; (M,)
    arrays."""

    coverage: np.ndarray
    risk: np.ndarray
    threshold: np.ndarray


def risk_coverage_curve(labels: np.ndarray, probs: np.ndarray, task: str, *,
                        label: int | None = None) -> RiskCoverage:
    """The curve whose area is :func:`aurc`. Multi-label needs ``label``; raises ValueError
    without it."""
    scores = example_scores(labels, probs, task)
    col = _column(scores, task, label)
    selective = scores.selective[:, col]
    order = np.argsort(-selective, kind="mergesort")
    errors = (scores.label[order, col] != scores.prediction[order, col]).astype(float)
    ends = np.unique(_tie_group_end(-selective[order]))
    kept = ends + 1.0
    return RiskCoverage(coverage=kept / len(order), risk=np.cumsum(errors)[ends] / kept,
                        threshold=selective[order][ends])
