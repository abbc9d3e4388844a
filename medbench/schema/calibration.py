"""Calibration and selective-prediction results (``medbench.calibration.calibration_summary``)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from .base import Interval, Strict


class Estimate(Strict):
    """A point estimate (None where undefined) with its percentile bootstrap interval."""

    value: float | None
    ci: Interval


class PerLabel(Strict):
    """Multi-label only: point estimates per label, in label order (no intervals)."""

    ece: list[float]
    brier: list[float]
    nll: list[float]
    aurc: list[float]


class Reliability(Strict):
    """Reliability-diagram bins of the ECE: mean confidence, outcome rate (None: empty bin) and
    count."""

    confidence: list[float | None]
    accuracy: list[float | None]
    count: list[int]


class RiskCurve(Strict):
    """Risk-coverage curve read at fixed coverages: the error rate of the most confident share kept."""

    coverage: list[float]
    risk: list[float]


class CalibrationScores(Strict):
    """Calibration and selective prediction of one set of probabilities (multi-label: means over
    labels)."""

    ece: Estimate  # equal-mass bins
    brier: Estimate
    nll: Estimate
    aurc: Estimate
    accuracy_at_coverage: Estimate
    balanced_accuracy_at_coverage: Estimate
    per_label: PerLabel | None = None
    reliability: Reliability | None = None  # None for multi-label (one diagram per label)
    risk_coverage: RiskCurve | None = None  # None for multi-label


class TemperatureScaled(CalibrationScores):
    """The same scores after temperature scaling fitted on validation logits; reported beside the
    raw scores, never instead of them."""

    temperature: float = Field(gt=0)
    n_fit: int  # validation examples the temperature was fitted on


class CalibrationMetrics(CalibrationScores):
    """Raw calibration scores with 95% bootstrap CIs, and optionally the temperature-scaled ones."""

    task: str
    n: int
    bins: int
    binning: Literal["equal-mass"] = "equal-mass"
    coverage: float = Field(gt=0, le=1)
    n_resamples: int
    seed: int
    temperature_scaled: TemperatureScaled | None = None
