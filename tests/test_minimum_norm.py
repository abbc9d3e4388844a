"""Minimum-norm curves: the curve is a count over the per-point norms (monotone, balanced accuracy as
scikit-learn computes it), the median's bootstrap CI contains it, and the comparison with a committed
APGD-CE curve reports where the minimum-norm attack is weaker."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import balanced_accuracy_score

from conftest import REPO, need_real
from medbench.attacks.extra import run_extra_attack
from medbench.attacks.minimum_norm import (MinimumNormCurve, compare_with_apgd, curve_points, eps_grid, median_norm,
                                           minimum_norm_curve, norms_array)
from medbench.protocol import load_protocol
from medbench.schema import EvaluationResult

RESULT = REPO / "leaderboard" / "results" / "breastmnist" / "Baseline_ResNet8_ERM.json"


def synthetic_norms(n: int = 300, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, n)
    norms = rng.exponential(0.01, n)
    norms[rng.random(n) < 0.1] = 0.0  # misclassified clean
    norms[rng.random(n) < 0.15] = np.inf  # never broken
    return norms, labels


def test_curve_counts_norms_and_is_monotone():
    norms, labels = synthetic_norms()
    grid = np.concatenate([np.linspace(0, 0.05, 41), np.sort(norms[np.isfinite(norms)])[:20]])  # ties at norms too
    points = curve_points(norms, labels, grid, num_classes=3)
    accuracies = [p.robust_accuracy for p in points]
    assert [p.eps for p in points] == sorted(float(e) for e in grid)
    assert all(a >= b for a, b in zip(accuracies, accuracies[1:]))
    for p in points:
        broken = norms <= p.eps
        assert p.robust_accuracy == pytest.approx(1 - broken.sum() / len(norms))
        predicted = np.where(broken, (labels + 1) % 3, labels)  # any wrong class: BA depends on correctness only
        assert p.robust_balanced_accuracy == pytest.approx(balanced_accuracy_score(labels, predicted))
    assert points[0].robust_accuracy == pytest.approx(np.mean(norms > 0))


def test_median_ci_contains_the_median():
    norms, _ = synthetic_norms()
    median, ci = median_norm(norms, n_resamples=500, seed=0, level=0.95)
    assert median == pytest.approx(np.median(norms))
    assert ci.low <= median <= ci.high and ci.low < ci.high
    mostly_unbroken = np.concatenate([np.full(60, np.inf), np.linspace(0.001, 0.01, 40)])
    median, ci = median_norm(mostly_unbroken, n_resamples=200, seed=0, level=0.95)
    assert median == np.inf and ci.high is None


def test_eps_grid_holds_the_protocols_budgets():
    protocol = load_protocol()
    linf = eps_grid("Linf", protocol)
    assert {round(e * 255, 9) for e in linf} >= {0, 0.5, 1, 2, 4, 8}
    assert 0.25 in eps_grid("L2", protocol) and 0.5 in eps_grid("L2", protocol, scale=2.0)


def _curve_from(norms: np.ndarray, section) -> MinimumNormCurve:
    labels = [0] * len(norms)
    return MinimumNormCurve(
        model_id="m", dataset="breastmnist", size=28, norm="Linf", attack="FMN", steps=1, protocol_version="3",
        subset_sha256=section.indices_sha256, indices=list(range(len(norms))), labels=labels, num_classes=2,
        weights_sha256="0" * 64, norms=[None if np.isinf(v) else float(v) for v in norms], curve=[], median=None,
        median_ci={"low": None, "high": None}, ci_level=0.95, bootstrap_resamples=1, nonfinite_outputs=0,
        medbench_version="test", created_at="2026-12-08T00:00:00Z")


def test_comparison_reports_a_weaker_minimum_norm_attack():
    curves = EvaluationResult.from_json(RESULT).curves
    n = len(curves.apgd_ce[0].correct)
    clean = np.asarray(curves.apgd_ce[0].correct)
    nothing_found = np.where(clean, np.inf, 0.0)  # broke only the clean mistakes
    report = compare_with_apgd(_curve_from(nothing_found, curves.subset), curves)
    assert not report.consistent
    for point, apgd in zip(report.points, curves.apgd_ce):
        assert point.minimum_norm_accuracy == pytest.approx(clean.mean())
        assert point.broken_only_by_apgd == int((clean & ~np.asarray(apgd.correct)).sum())
        assert point.combined_accuracy == pytest.approx(np.mean(apgd.correct))
        assert point.at_or_below == (apgd.accuracy >= clean.mean())
    everything_broken = np.where(clean, 1e-9, 0.0)
    report = compare_with_apgd(_curve_from(everything_broken, curves.subset), curves)
    assert report.points[0].eps == 0 and report.points[0].minimum_norm_accuracy == pytest.approx(clean.mean())
    assert all(p.minimum_norm_accuracy == 0 for p in report.points[1:]) and report.consistent
    with pytest.raises(ValueError, match="another subset"):
        compare_with_apgd(_curve_from(nothing_found, curves.subset.model_copy(update={"indices_sha256": "x"})), curves)
    assert n == len(nothing_found)


@pytest.mark.realdata
@pytest.mark.slow
def test_fmn_curve_on_a_zoo_model_against_its_apgd_curve(real_root):
    need_real(real_root, "breastmnist.npz")
    torch.set_num_threads(1)
    protocol = load_protocol()
    run = run_extra_attack("Baseline_ResNet8_ERM", "breastmnist", "Linf-2/255", "fmn", steps=10, all_points=True,
                           data_root=real_root, device="cpu", progress=False, protocol=protocol)
    curve = MinimumNormCurve.model_validate_json(minimum_norm_curve(run, protocol).model_dump_json())
    norms = norms_array(curve)
    result = EvaluationResult.from_json(RESULT)
    clean_correct = np.asarray(result.curves.apgd_ce[0].correct)
    np.testing.assert_array_equal(norms > 0, clean_correct)  # eps 0: exactly the clean mistakes
    assert curve.median_ci.low <= curve.median <= curve.median_ci.high
    report = compare_with_apgd(curve, result.curves)
    for point, apgd in zip(report.points, result.curves.apgd_ce):
        mn = norms > apgd.x
        assert point.minimum_norm_accuracy == pytest.approx(mn.mean())
        assert point.combined_accuracy == pytest.approx((mn & np.asarray(apgd.correct)).mean())
        assert point.at_or_below == (mn.mean() <= apgd.accuracy + 1e-12)
