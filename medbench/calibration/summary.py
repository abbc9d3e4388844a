"""``calibration_summary``: the calibration block of one evaluated condition, from logits."""

from __future__ import annotations

import numpy as np

from .. import metrics
from ..schema.base import Interval
from ..schema.calibration import (CalibrationMetrics, Estimate, PerLabel, Reliability, RiskCurve,
                                  TemperatureScaled)
from .metrics import (COVERAGE, N_BINS, SCORE_NAMES, bootstrap_calibration, per_label_scores,
                      reliability_diagram, risk_coverage_curve)
from .temperature import fit_temperature

__all__ = ["calibration_summary"]

CURVE_COVERAGE = np.round(np.linspace(0.05, 1.0, 20), 2)  # where the stored risk-coverage curve is read


def _value(x: float) -> float | None:
    return None if np.isnan(x) else float(x)


def _scores(labels: np.ndarray, probs: np.ndarray, task: str, *, n_bins: int, coverage: float,
            n_resamples: int, seed: int, level: float, groups: np.ndarray | None) -> dict:
    per_column = per_label_scores(labels, probs, task, n_bins=n_bins, coverage=coverage)
    resampled = bootstrap_calibration(labels, probs, task, n_bins=n_bins, coverage=coverage,
                                      n_resamples=n_resamples, seed=seed, groups=groups)
    fields = {}
    for i, name in enumerate(SCORE_NAMES):
        ci = metrics.percentile_interval(resampled[:, i], level)
        interval = Interval(low=_value(ci.low), high=_value(ci.high))
        fields[name] = Estimate(value=_value(per_column[name].mean()), ci=interval)
    if task == metrics.MULTILABEL:
        fields["per_label"] = PerLabel(**{k: [float(v) for v in per_column[k]]
                                          for k in ("ece", "brier", "nll", "aurc")})
    else:
        diagram = reliability_diagram(labels, probs, task, n_bins=n_bins)
        fields["reliability"] = Reliability(confidence=[_value(v) for v in diagram.confidence],
                                            accuracy=[_value(v) for v in diagram.accuracy],
                                            count=[int(c) for c in diagram.count])
        curve = risk_coverage_curve(labels, probs, task)
        at = np.searchsorted(curve.coverage, CURVE_COVERAGE - 1e-9)  # first threshold keeping that share
        fields["risk_coverage"] = RiskCurve(coverage=CURVE_COVERAGE.tolist(),
                                            risk=[float(curve.risk[min(i, len(curve.risk) - 1)]) for i in at])
    return fields


def calibration_summary(labels: np.ndarray, logits: np.ndarray, task: str, *, n_bins: int = N_BINS,
                        val_logits: np.ndarray | None = None, val_labels: np.ndarray | None = None,
                        temperature: tuple[float, int] | None = None, groups: np.ndarray | None = None,
                        seed: int = 0, n_resamples: int = metrics.N_BOOTSTRAP,
                        coverage: float = COVERAGE, level: float = metrics.CI_LEVEL,
                        ) -> CalibrationMetrics:
    """ECE (equal-mass bins), Brier, NLL, AURC and accuracy / balanced accuracy at ``coverage``,
    each with a percentile bootstrap CI, for ``logits`` (N x K) against ``labels`` ((N,), or (N, L)
    for the multi-label task). Probabilities are :func:`medbench.metrics.probabilities` of the
    logits.

    With ``val_logits`` and ``val_labels`` (both or neither), one temperature is fitted on them and
    the scores of ``logits / T`` are added as ``temperature_scaled`` (the same resamples as the raw
    scores); ``temperature`` = (T, examples it was fitted on) applies one fitted before instead.
    ``groups``: resample groups of examples together (see :func:`bootstrap_calibration`).
    Raises ValueError on mismatched shapes or when only one of ``val_logits`` / ``val_labels`` is
    given.
    """
    if (val_logits is None) != (val_labels is None):
        raise ValueError("Temperature scaling needs both val_logits and val_labels (or neither).")
    with metrics.one_blas_thread():  # BLAS sums in another order would change the last digits
        return _summary(labels, logits, task, n_bins=n_bins, val_logits=val_logits, val_labels=val_labels,
                        temperature=temperature, groups=groups, seed=seed, n_resamples=n_resamples,
                        coverage=coverage, level=level)


def _summary(labels, logits, task, *, n_bins, val_logits, val_labels, temperature, groups, seed, n_resamples,
             coverage, level) -> CalibrationMetrics:
    logits, labels = np.asarray(logits, dtype=np.float64), np.asarray(labels)
    options = dict(n_bins=n_bins, coverage=coverage, n_resamples=n_resamples, seed=seed,
                   level=level, groups=groups)
    raw = _scores(labels, metrics.probabilities(logits, task), task, **options)
    if val_logits is not None:
        temperature = (fit_temperature(val_logits, val_labels, task), len(val_labels))
    scaled = None
    if temperature is not None:
        t, n_fit = temperature
        scaled = TemperatureScaled(temperature=t, n_fit=n_fit,
                                   **_scores(labels, metrics.probabilities(logits / t, task), task,
                                             **options))
    return CalibrationMetrics(task=task, n=len(labels), bins=n_bins, coverage=coverage,
                              n_resamples=n_resamples, seed=seed, temperature_scaled=scaled, **raw)
