"""Metrics: equality with medmnist's evaluator, balanced accuracy per task, bootstrap CIs, subsets."""

from __future__ import annotations

import numpy as np
import pytest
from medmnist.evaluator import getACC, getAUC
from sklearn.metrics import balanced_accuracy_score, recall_score, roc_auc_score

from medbench import metrics as M

TASKS = [("binary-class", 2), ("multi-class", 9), ("ordinal-regression", 5), ("multi-label, binary-class", 14)]


def _random(task, k, n, seed):
    rng = np.random.default_rng(seed)
    if task.startswith("multi-label"):
        y = rng.integers(0, 2, (n, k))
        probs = M.probabilities(rng.normal(size=(n, k)), task)
    else:
        y = rng.integers(0, k, n)
        probs = M.probabilities(rng.normal(size=(n, k)) * 2, task)
    return y, probs


@pytest.mark.parametrize("task,k", TASKS)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_accuracy_and_auc_equal_medmnist_evaluator(task, k, seed):
    y, probs = _random(task, k, 300, seed)
    m = M.compute_metrics(y, probs, task)
    y_eval = y if task.startswith("multi-label") else y.reshape(-1, 1)
    assert m.accuracy == pytest.approx(getACC(y_eval, probs, task), abs=1e-12)
    assert m.auc == pytest.approx(getAUC(y_eval, probs, task), abs=1e-12)


@pytest.mark.parametrize("task,k", TASKS)
def test_balanced_accuracy_per_task(task, k):
    y, probs = _random(task, k, 400, 3)
    m = M.compute_metrics(y, probs, task)
    if task.startswith("multi-label"):
        pred = (probs > 0.5).astype(int)
        expected = np.mean([balanced_accuracy_score(y[:, j], pred[:, j]) for j in range(k)])
        recall = [recall_score(y[:, j], pred[:, j]) for j in range(k)]
    else:
        pred = (probs[:, -1] > 0.5).astype(int) if task == "binary-class" else probs.argmax(1)
        expected = balanced_accuracy_score(y, pred)
        recall = recall_score(y, pred, average=None, labels=range(k))
    assert m.balanced_accuracy == pytest.approx(expected, abs=1e-12)
    assert np.allclose(m.per_class_recall, recall)


def test_binary_threshold_uses_last_column_not_argmax():
    probs = np.array([[0.5, 0.5], [0.2, 0.8], [0.9, 0.1]])
    assert M.predictions(probs, "binary-class").tolist() == [0, 1, 0]


def test_auc_handles_ties_like_sklearn():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 200)
    s = rng.integers(0, 5, 200) / 4.0  # heavy ties
    assert M.auc(y, np.c_[1 - s, s], "binary-class") == pytest.approx(roc_auc_score(y, s))


def test_bootstrap_ci_contains_point_and_is_seeded():
    y, probs = _random("multi-class", 4, 500, 5)
    m = M.compute_metrics(y, probs, "multi-class")
    ci = M.bootstrap_ci(y, probs, "multi-class")
    again = M.bootstrap_ci(y, probs, "multi-class")
    assert ci == again  # seed 0 by default: deterministic
    assert ci != M.bootstrap_ci(y, probs, "multi-class", seed=1)
    for key in ("accuracy", "balanced_accuracy", "auc"):
        assert ci[key].low < getattr(m, key) < ci[key].high
        assert ci[key].high - ci[key].low < 0.2


def test_bootstrap_matches_explicit_resampling():
    """The weighted (count-matrix) bootstrap equals resampling the examples one by one."""
    y, probs = _random("binary-class", 2, 120, 7)
    ci = M.bootstrap_ci(y, probs, "binary-class", n_resamples=200)
    rng = np.random.default_rng(0)
    idx = rng.integers(0, 120, size=(200, 120))
    pred = M.predictions(probs, "binary-class")
    accs = [np.mean(y[i] == pred[i]) for i in idx]
    baccs = [balanced_accuracy_score(y[i], pred[i]) for i in idx]
    aucs = [roc_auc_score(y[i], probs[i, 1]) for i in idx]
    for key, vals in (("accuracy", accs), ("balanced_accuracy", baccs), ("auc", aucs)):
        lo, hi = np.percentile(vals, [2.5, 97.5])
        assert ci[key].low == pytest.approx(lo) and ci[key].high == pytest.approx(hi)


def test_paired_bootstrap_detects_real_difference_only():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 400)
    good = np.where(rng.random(400) < 0.9, y, 1 - y)
    bad = np.where(rng.random(400) < 0.6, y, 1 - y)
    d = M.paired_bootstrap_diff(y, good, bad, 2)
    assert d.low > 0
    same = M.paired_bootstrap_diff(y, good, good, 2)
    assert same.low == same.high == 0


@pytest.mark.parametrize("n", [20, 100, 999])
def test_stratified_indices_keep_every_class(n):
    rng = np.random.default_rng(0)
    labels = rng.choice(5, size=3000, p=[0.6, 0.3, 0.07, 0.02, 0.01])
    idx = M.stratified_indices(labels, n, seed=0)
    assert len(idx) == n == len(np.unique(idx)) and np.all(np.diff(idx) > 0)
    counts = np.bincount(labels[idx], minlength=5)
    assert counts.min() >= 1
    expected = np.bincount(labels, minlength=5) * n / 3000
    assert np.all(np.abs(counts - expected) <= 1.5)
    assert np.array_equal(idx, M.stratified_indices(labels, n, seed=0))
    assert np.array_equal(M.stratified_indices(labels, 5000), np.arange(3000))


def test_stratified_too_small_is_a_clear_error():
    with pytest.raises(ValueError, match="at least 3"):
        M.stratified_indices(np.array([0, 1, 2] * 10), 2)
