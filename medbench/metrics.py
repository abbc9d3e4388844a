"""Classification metrics with MedMNIST's per-task semantics, bootstrap CIs and stratified subsets.

Semantics (PROTOCOL.md section 2), all computed from probabilities (softmax, or sigmoid for the
multi-label task):

- binary: predictions = last column > 0.5; AUC of the last column.
- multi-class / ordinal: predictions = argmax; AUC = unweighted mean of one-vs-rest AUCs.
- multi-label: per label at 0.5; accuracy, AUC and balanced accuracy averaged over labels.

Accuracy and AUC equal ``medmnist.evaluator.getACC`` / ``getAUC`` on the same probabilities.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Callable, Literal

import numpy as np
import torch

MULTILABEL = "multi-label, binary-class"
BINARY = "binary-class"
N_BOOTSTRAP = 1000
CI_LEVEL = 0.95


def probabilities(logits: np.ndarray | torch.Tensor, task: str) -> np.ndarray:
    """Logits to probabilities: sigmoid for the multi-label task, softmax otherwise."""
    t = torch.as_tensor(logits, dtype=torch.float64)
    p = torch.sigmoid(t) if task == MULTILABEL else torch.softmax(t, dim=1)
    return p.numpy()


def predictions(probs: np.ndarray, task: str) -> np.ndarray:
    """Hard predictions from probabilities: (N,) class ids, or (N, L) 0/1 for multi-label."""
    probs = np.asarray(probs)
    if task == MULTILABEL:
        return (probs > 0.5).astype(np.int64)
    if task == BINARY:
        return (probs[:, -1] > 0.5).astype(np.int64)
    return probs.argmax(axis=1).astype(np.int64)


def accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Fraction correct; for multi-label the mean over labels of per-label accuracy."""
    return float(np.mean(np.asarray(y_true) == np.asarray(y_pred)))


def per_class_recall(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> np.ndarray:
    """Recall of every class (NaN for a class absent from ``y_true``); for multi-label, per-label sensitivity."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    if y_true.ndim == 2:  # multi-label: recall of the positive class of each label
        pos = y_true.sum(axis=0)
        hit = ((y_true == 1) & (y_pred == 1)).sum(axis=0)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(pos > 0, hit / np.maximum(pos, 1), np.nan)
    support = np.bincount(y_true, minlength=num_classes)[:num_classes]
    hit = np.bincount(y_true[y_true == y_pred], minlength=num_classes)[:num_classes]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(support > 0, hit / np.maximum(support, 1), np.nan)


def balanced_accuracy(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int | None = None) -> float:
    """Mean recall over the classes present; for multi-label the mean over labels of per-label balanced accuracy."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    if y_true.ndim == 2:
        pos = y_true == 1
        tpr = (pos & (y_pred == 1)).sum(0) / np.maximum(pos.sum(0), 1)
        tnr = (~pos & (y_pred == 0)).sum(0) / np.maximum((~pos).sum(0), 1)
        # A label with a single class present contributes the recall of that class only.
        both = (pos.sum(0) > 0) & ((~pos).sum(0) > 0)
        per_label = np.where(both, (tpr + tnr) / 2, np.where(pos.sum(0) > 0, tpr, tnr))
        return float(per_label.mean())
    k = num_classes if num_classes is not None else int(max(y_true.max(), y_pred.max())) + 1
    return float(np.nanmean(per_class_recall(y_true, y_pred, k)))


def _binary_auc_weighted(y: np.ndarray, score: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Mann-Whitney AUC (ties count one half) for each row of ``weights`` (B x N example counts).

    With all weights 1 this equals ``sklearn.metrics.roc_auc_score``; with bootstrap counts it is the
    AUC of the resample, computed without materialising it. NaN where a resample lacks a class.
    """
    order = np.argsort(score, kind="mergesort")
    s_sorted = score[order]
    y_sorted = y[order].astype(bool)
    w = weights[:, order]
    starts = np.flatnonzero(np.r_[True, s_sorted[1:] != s_sorted[:-1]])  # tie groups
    pos_g = np.add.reduceat(np.where(y_sorted, w, 0.0), starts, axis=1)
    neg_g = np.add.reduceat(np.where(y_sorted, 0.0, w), starts, axis=1)
    neg_before = np.cumsum(neg_g, axis=1) - neg_g
    num = (pos_g * (neg_before + 0.5 * neg_g)).sum(axis=1)
    p, n = pos_g.sum(axis=1), neg_g.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where((p > 0) & (n > 0), num / (p * n), np.nan)


def _auc_weighted(y_true: np.ndarray, probs: np.ndarray, task: str, weights: np.ndarray) -> np.ndarray:
    if task == MULTILABEL:
        cols = [_binary_auc_weighted(y_true[:, j], probs[:, j], weights) for j in range(probs.shape[1])]
        return np.mean(cols, axis=0)
    if task == BINARY:
        return _binary_auc_weighted(y_true, probs[:, -1], weights)
    cols = [_binary_auc_weighted(y_true == k, probs[:, k], weights) for k in range(probs.shape[1])]
    return np.mean(cols, axis=0)


def auc(y_true: np.ndarray, probs: np.ndarray, task: str) -> float:
    """AUC with medmnist's semantics; NaN when a class (or a label's positive/negative) is missing."""
    y_true, probs = np.asarray(y_true), np.asarray(probs, dtype=np.float64)
    return float(_auc_weighted(y_true, probs, task, np.ones((1, len(y_true))))[0])


@dataclass(frozen=True)
class Interval:
    low: float
    high: float


def bootstrap(
    statistic: Callable[[np.ndarray], np.ndarray],
    n: int,
    *,
    n_resamples: int = N_BOOTSTRAP,
    seed: int = 0,
    chunk: int = 100,
    draws: Literal["counts", "indices"] = "counts",
) -> np.ndarray:
    """``statistic`` on ``n_resamples`` bootstrap resamples of ``n`` examples, stacked (resamples first).

    ``statistic`` takes B <= ``chunk`` resamples at a time and returns one value, or one row of
    values, per resample. It gets them as a (B x n) float64 count matrix (row b: how often each
    example is drawn in resample b), or with ``draws="indices"`` as the (B x n) drawn indices. The
    draws are one seeded stream, ``default_rng(seed).integers(0, n, (B, n))`` per chunk, so one
    ``seed`` and ``chunk`` give every caller the same resamples: paired statistics share them.
    """
    rng = np.random.default_rng(seed)
    out, done = [], 0
    while done < n_resamples:
        b = min(chunk, n_resamples - done)
        idx = rng.integers(0, n, size=(b, n))
        out.append(np.asarray(statistic(idx if draws == "indices" else _counts(idx, n))))
        done += b
    return np.concatenate(out)


def _counts(idx: np.ndarray, n: int) -> np.ndarray:
    b = len(idx)
    flat = (idx + (np.arange(b) * n)[:, None]).ravel()
    return np.bincount(flat, minlength=b * n).reshape(b, n).astype(np.float64)


def _weighted_accuracy(correct: np.ndarray, w: np.ndarray) -> np.ndarray:
    return (w @ correct) / w.sum(axis=1)


def _weighted_balanced_accuracy(y_true: np.ndarray, y_pred: np.ndarray, w: np.ndarray, k: int) -> np.ndarray:
    if y_true.ndim == 2:
        pos = (y_true == 1).astype(float)
        tp = w @ (pos * (y_pred == 1))
        tn = w @ ((1 - pos) * (y_pred == 0))
        p, n = w @ pos, w @ (1 - pos)
        with np.errstate(invalid="ignore", divide="ignore"):
            tpr, tnr = tp / p, tn / n
        per_label = np.where((p > 0) & (n > 0), (tpr + tnr) / 2, np.where(p > 0, tpr, tnr))
        return per_label.mean(axis=1)
    onehot = np.eye(k)[y_true]  # N x k
    support = w @ onehot
    hits = w @ (onehot * (y_true == y_pred)[:, None])
    with np.errstate(invalid="ignore", divide="ignore"):
        recall = np.where(support > 0, hits / support, np.nan)
    return np.nanmean(recall, axis=1)


def bootstrap_ci(
    y_true: np.ndarray,
    probs: np.ndarray,
    task: str,
    *,
    n_resamples: int = N_BOOTSTRAP,
    seed: int = 0,
    level: float = CI_LEVEL,
) -> dict[str, Interval]:
    """Percentile bootstrap CIs over test examples for accuracy, balanced accuracy and AUC.

    All three metrics use the same resamples. Resamples where AUC is undefined (a class missing)
    are dropped for AUC only.
    """
    y_true, probs = np.asarray(y_true), np.asarray(probs, dtype=np.float64)
    y_pred = predictions(probs, task)
    k = probs.shape[1]
    correct = (y_true == y_pred).astype(float)
    if correct.ndim == 2:
        correct = correct.mean(axis=1)

    def three_metrics(w: np.ndarray) -> np.ndarray:
        return np.stack([_weighted_accuracy(correct, w), _weighted_balanced_accuracy(y_true, y_pred, w, k),
                         _auc_weighted(y_true, probs, task, w)], axis=1)

    values = bootstrap(three_metrics, len(y_true), n_resamples=n_resamples, seed=seed)
    names = ("accuracy", "balanced_accuracy", "auc")
    return {name: percentile_interval(values[:, i], level) for i, name in enumerate(names)}


def bootstrap_metric_ci(
    y_true: np.ndarray,
    y_pred: np.ndarray,
    num_classes: int,
    *,
    n_resamples: int = N_BOOTSTRAP,
    seed: int = 0,
    level: float = CI_LEVEL,
) -> Interval:
    """Percentile bootstrap CI of balanced accuracy from hard predictions (e.g. predictions under attack)."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    values = bootstrap(lambda w: _weighted_balanced_accuracy(y_true, y_pred, w, num_classes), len(y_true),
                       n_resamples=n_resamples, seed=seed)
    return percentile_interval(values, level)


def paired_bootstrap_diff(
    y_true: np.ndarray,
    pred_a: np.ndarray,
    pred_b: np.ndarray,
    num_classes: int,
    *,
    n_resamples: int = N_BOOTSTRAP,
    seed: int = 0,
    level: float = CI_LEVEL,
) -> Interval:
    """Paired percentile bootstrap CI of balanced accuracy(a) - balanced accuracy(b) on the same examples.

    Used for tie groups: two entries whose interval contains 0 are not distinguishable.
    """
    y_true, pred_a, pred_b = np.asarray(y_true), np.asarray(pred_a), np.asarray(pred_b)

    def difference(w: np.ndarray) -> np.ndarray:
        return (_weighted_balanced_accuracy(y_true, pred_a, w, num_classes)
                - _weighted_balanced_accuracy(y_true, pred_b, w, num_classes))

    return percentile_interval(bootstrap(difference, len(y_true), n_resamples=n_resamples, seed=seed), level)


def permutation_test_balanced_accuracy(
    y_true: np.ndarray,
    y_pred: np.ndarray,
    num_classes: int,
    *,
    n_permutations: int = 10_000,
    seed: int = 0,
) -> tuple[float, float]:
    """One-sided permutation test of balanced accuracy against "predictions independent of the labels".

    The labels are shuffled against the fixed predictions (class frequencies and prediction frequencies
    stay as they are), so the null distribution is exactly that of BA under independence, centred on
    chance (1/K) whatever the class balance. Returns ``(p_value, null_mean)`` with
    ``p = (1 + #{BA_perm >= BA_obs}) / (1 + n_permutations)``.
    """
    y_true, y_pred = np.asarray(y_true).reshape(-1), np.asarray(y_pred).reshape(-1)
    observed = balanced_accuracy(y_true, y_pred, num_classes)
    support = np.bincount(y_true, minlength=num_classes)[:num_classes].astype(np.float64)
    present = support > 0
    rng = np.random.default_rng(seed)
    hits_ge, total, done = 0, 0.0, 0
    while done < n_permutations:
        b = min(500, n_permutations - done)
        perm = np.argsort(rng.random((b, len(y_true))), axis=1)
        y_perm = y_true[perm]  # b x n
        correct = y_perm == y_pred[None, :]
        hits = np.stack([(correct & (y_perm == k)).sum(1) for k in range(num_classes)], axis=1)
        ba = (hits[:, present] / support[present]).mean(1)
        hits_ge += int((ba >= observed - 1e-12).sum())
        total += float(ba.sum())
        done += b
    return (1 + hits_ge) / (1 + n_permutations), total / n_permutations


def permutation_test_auc(
    y_true: np.ndarray,
    probs: np.ndarray,
    task: str,
    *,
    n_permutations: int = 10_000,
    seed: int = 0,
) -> tuple[float, float]:
    """One-sided permutation test of AUC (binary; mean one-vs-rest otherwise) against "scores independent
    of the labels" (expected AUC 0.5). The labels are shuffled against the fixed scores; each AUC comes
    from the rank sums (Mann-Whitney, ties counted one half, as :func:`auc`). For a binary task this is
    the Mann-Whitney U test. Returns ``(p_value, null_mean)``.
    """
    from scipy.stats import rankdata

    y_true, probs = np.asarray(y_true).reshape(-1), np.asarray(probs, dtype=np.float64)
    observed = auc(y_true, probs, task)
    classes = [probs.shape[1] - 1] if task == BINARY else list(range(probs.shape[1]))
    ranks = [rankdata(probs[:, k]) for k in classes]
    n_pos = [int((y_true == k).sum()) for k in classes]
    n = len(y_true)
    rng = np.random.default_rng(seed)
    hits_ge, total, done = 0, 0.0, 0
    while done < n_permutations:
        b = min(500, n_permutations - done)
        y_perm = y_true[np.argsort(rng.random((b, n)), axis=1)]
        vals = []
        for k, r, p in zip(classes, ranks, n_pos):
            if p == 0 or p == n:
                continue
            rank_sum = ((y_perm == k) * r[None, :]).sum(1)
            vals.append((rank_sum - p * (p + 1) / 2) / (p * (n - p)))
        a = np.mean(vals, axis=0)
        hits_ge += int((a >= observed - 1e-12).sum())
        total += float(a.sum())
        done += b
    return (1 + hits_ge) / (1 + n_permutations), total / n_permutations


@dataclass(frozen=True)
class PairedBootstrap:
    """Bootstrap of two models' mean balanced accuracy on the same examples (same resamples for both)."""

    a: Interval  # CI of model a's mean BA
    b: Interval
    diff: Interval  # CI of mean BA(a) - mean BA(b)
    p_a_not_greater: float  # one-sided: (1 + #{diff* <= 0}) / (1 + B)
    p_a_not_less: float  # one-sided: (1 + #{diff* >= 0}) / (1 + B)

    @property
    def p_two_sided(self) -> float:
        return min(1.0, 2 * min(self.p_a_not_greater, self.p_a_not_less))


def paired_bootstrap_mean_ba(
    y_true: np.ndarray,
    preds_a: np.ndarray,
    preds_b: np.ndarray,
    num_classes: int,
    *,
    n_resamples: int = N_BOOTSTRAP,
    seed: int = 0,
    level: float = CI_LEVEL,
) -> PairedBootstrap:
    """Paired percentile bootstrap over examples of mean BA(a), mean BA(b) and their difference.

    ``preds_a`` / ``preds_b``: (conditions x N) hard predictions of two models on the same N examples
    under each condition (e.g. every corruption cell), or (N,) for one condition. Each resample draws
    the examples once and applies them to every condition of both models; a model's value is the
    unweighted mean BA over the conditions.
    """
    y_true = np.asarray(y_true).reshape(-1)
    preds_a, preds_b = np.atleast_2d(preds_a), np.atleast_2d(preds_b)

    def mean_ba(w: np.ndarray, preds: np.ndarray) -> np.ndarray:
        return np.mean([_weighted_balanced_accuracy(y_true, p, w, num_classes) for p in preds], axis=0)

    both = bootstrap(lambda w: np.stack([mean_ba(w, preds_a), mean_ba(w, preds_b)], axis=1), len(y_true),
                     n_resamples=n_resamples, seed=seed)
    a, b = both[:, 0], both[:, 1]
    d = (a - b)[~np.isnan(a - b)]
    return PairedBootstrap(a=percentile_interval(a, level), b=percentile_interval(b, level),
                           diff=percentile_interval(d, level),
                           p_a_not_greater=float((1 + (d <= 0).sum()) / (1 + len(d))),
                           p_a_not_less=float((1 + (d >= 0).sum()) / (1 + len(d))))


def bootstrap_balanced_accuracy(labels: np.ndarray, predictions: np.ndarray, num_classes: int, *,
                                n_resamples: int = N_BOOTSTRAP, seed: int = 0) -> np.ndarray:
    """Balanced accuracy of every column of ``predictions`` (n x M) on every bootstrap resample (B x M).

    Uses the resamples of :func:`bootstrap` (as ``paired_bootstrap_diff`` does), so differences of two
    columns reproduce its paired distribution exactly (the site's rank tie groups).
    """
    labels = np.asarray(labels, dtype=np.int64)
    predictions = np.asarray(predictions, dtype=np.int64)
    with one_blas_thread():
        return _bootstrap_ba(labels, predictions, num_classes, n_resamples, seed)


def one_blas_thread():
    """A context with one BLAS thread. Small float32 products run fastest so (several threads on a busy machine
    were ~10x slower), and float64 sums then come out the same whatever the machine's thread count."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - scikit-learn brings it
        return contextlib.nullcontext()
    return threadpool_limits(1, user_api="blas")


def _bootstrap_ba(labels: np.ndarray, predictions: np.ndarray, num_classes: int, n_resamples: int,
                  seed: int) -> np.ndarray:
    hit = (predictions == labels[:, None]).astype(np.float32)  # n x M
    members = [idx for idx in (np.flatnonzero(labels == c) for c in range(num_classes)) if idx.size]

    def every_column(w: np.ndarray) -> np.ndarray:
        w = w.astype(np.float32)  # counts and sums stay exact integers (< 2**24)
        total = np.zeros((len(w), hit.shape[1]))
        present = np.zeros((len(w), 1))
        for idx in members:  # classes partition the examples: one (B x n_c) @ (n_c x M) product each
            support = w[:, idx].sum(axis=1, keepdims=True)
            hits = w[:, idx] @ hit[idx]
            with np.errstate(invalid="ignore", divide="ignore"):
                total += np.where(support > 0, hits / np.maximum(support, 1), 0.0)
            present += support > 0
        return np.where(present > 0, total / np.maximum(present, 1), np.nan)

    return bootstrap(every_column, len(labels), n_resamples=n_resamples, seed=seed)


def percentile_interval(values: np.ndarray, level: float = CI_LEVEL) -> Interval:
    """The central ``level`` percentile interval of ``values`` (NaNs dropped; NaN bounds when none are left)."""
    values = values[~np.isnan(values)]
    if values.size == 0:
        return Interval(float("nan"), float("nan"))
    alpha = (1 - level) / 2 * 100
    lo, hi = np.percentile(values, [alpha, 100 - alpha])
    return Interval(float(lo), float(hi))


@dataclass(frozen=True)
class Metrics:
    """Point estimates for one set of predictions."""

    n: int
    accuracy: float
    balanced_accuracy: float
    auc: float
    per_class_recall: list[float]


def compute_metrics(y_true: np.ndarray, probs: np.ndarray, task: str) -> Metrics:
    """Accuracy, balanced accuracy, AUC and per-class recall from probabilities."""
    y_true, probs = np.asarray(y_true), np.asarray(probs, dtype=np.float64)
    y_pred = predictions(probs, task)
    k = probs.shape[1]
    return Metrics(
        n=len(y_true),
        accuracy=accuracy(y_true, y_pred),
        balanced_accuracy=balanced_accuracy(y_true, y_pred, k),
        auc=auc(y_true, probs, task),
        per_class_recall=[float(v) for v in per_class_recall(y_true, y_pred, k)],
    )


def stratified_indices(labels: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """A sorted, seeded stratified random subset of ``n`` indices that keeps every class.

    Each class gets a share proportional to its frequency (largest remainder), and at least one
    example. Multi-label labels are stratified on their label combination. If ``n`` covers the
    whole set, every index is returned.
    """
    labels = np.asarray(labels)
    total = labels.shape[0]
    if n >= total:
        return np.arange(total)
    keys = labels if labels.ndim == 1 else np.unique(labels, axis=0, return_inverse=True)[1].reshape(-1)
    classes, counts = np.unique(keys, return_counts=True)
    if n < len(classes):
        raise ValueError(f"A stratified subset of {n} cannot keep all {len(classes)} classes; ask for at least {len(classes)}.")
    quota = counts * n / total
    take = np.maximum(np.floor(quota).astype(int), 1)
    while take.sum() > n:  # the minimum of one per class can overshoot
        i = int(np.argmax(np.where(take > 1, take - quota, -np.inf)))
        take[i] -= 1
    remainder = quota - take
    for i in np.argsort(-remainder, kind="stable")[: n - take.sum()]:
        take[i] += 1
    rng = np.random.default_rng(seed)
    chosen = [rng.choice(np.flatnonzero(keys == c), size=t, replace=False) for c, t in zip(classes, take)]
    return np.sort(np.concatenate(chosen))

