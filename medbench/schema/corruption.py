"""Corruption robustness results (MedMNIST-C 2D suites and the medbench 3D suite)."""

from __future__ import annotations

from pydantic import Field

from .base import Strict
from .calibration import CalibrationMetrics


class CorruptionCell(Strict):
    corruption: str
    severity: int
    accuracy: float
    balanced_accuracy: float
    auc: float | None


class RelativeError(Strict):
    """MedMNIST-C's BE and rBE of one corruption against the pinned reference model (error = 1 - BA)."""

    corruption: str
    be: float | None  # sum_s E_cs / sum_s E_cs(ref); None when undefined (see ``undefined``)
    rbe: float | None  # sum_s (E_cs - E_clean) / sum_s (E_cs(ref) - E_clean(ref)); None when undefined
    reference_error: float  # sum_s E_cs(ref)
    reference_gap: float  # sum_s (E_cs(ref) - E_clean(ref)): rBE's denominator
    undefined: str | None = None  # why be or rbe is None


class CorruptionResults(Strict):
    suite: str  # "medmnist-c" (2D) or "medbench-3d"
    cells: list[CorruptionCell]
    balanced_accuracy: float  # headline: unweighted mean over all cells
    auc: float | None = None  # mean over cells
    per_corruption: dict[str, float]  # mean balanced accuracy per corruption
    per_severity: dict[str, float]  # mean balanced accuracy per severity ("1".."5")
    relative_robustness: float  # corruption BA / clean BA
    be: float | None = None  # mean BE over the corruptions where it is defined (MedMNIST-C's BE)
    rbe: float | None = None  # mean rBE over the corruptions where it is defined (MedMNIST-C's rBE)
    reference_model: str | None = None
    relative_errors: list[RelativeError] = Field(default_factory=list)  # per corruption, every one (undefined ones with the reason)
    be_defined: int | None = None  # corruptions in the BE mean
    be_undefined: int | None = None
    rbe_defined: int | None = None  # corruptions in the rBE mean
    rbe_undefined: int | None = None
    rbe_min_reference_gap: float | None = None  # the protocol's guard on rBE's denominator
    be_rbe_note: str | None = None  # why there are no BE / rBE at all (no pinned reference, none given, ...)
    parameters_sha256: str | None = None  # of the corruption parameters used
    cache_manifest_sha256: str | None = None  # of the corrupted-set manifest that was evaluated
    # protocol 4+: calibration on every corrupted image of a severity ("1".."5") and of all severities ("all"),
    # pooled over the corruptions; intervals resample the test images (each with all its corrupted copies)
    calibration: dict[str, CalibrationMetrics] | None = Field(default=None, exclude_if=lambda v: v is None)
