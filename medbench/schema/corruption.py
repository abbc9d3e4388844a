"""Corruption robustness results (MedMNIST-C 2D suites and the medbench 3D suite)."""

from __future__ import annotations

from .base import Strict


class CorruptionCell(Strict):
    corruption: str
    severity: int
    accuracy: float
    balanced_accuracy: float
    auc: float | None


class CorruptionResults(Strict):
    suite: str  # "medmnist-c" (2D) or "medbench-3d"
    cells: list[CorruptionCell]
    balanced_accuracy: float  # headline: unweighted mean over all cells
    auc: float | None = None  # mean over cells
    per_corruption: dict[str, float]  # mean balanced accuracy per corruption
    per_severity: dict[str, float]  # mean balanced accuracy per severity ("1".."5")
    relative_robustness: float  # corruption BA / clean BA
    be: float | None = None  # balanced error relative to the reference model (MedMNIST-C's BE)
    rbe: float | None = None  # relative balanced error (MedMNIST-C's rBE)
    reference_model: str | None = None
    parameters_sha256: str | None = None  # of the corruption parameters used
    cache_manifest_sha256: str | None = None  # of the corrupted-set manifest that was evaluated
