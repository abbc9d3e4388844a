"""pydantic models for everything medbench reads or writes; unknown fields are always rejected."""

from .adversarial import AdversarialResult, AttackConfig, CurvePoint, Curves, SubsetInfo
from .base import Interval, Strict
from .checks import CheckVerdict
from .corruption import CorruptionCell, CorruptionResults
from .result import CleanMetrics, EvaluationResult, Provenance

__all__ = [
    "AdversarialResult", "AttackConfig", "CheckVerdict", "CleanMetrics", "CorruptionCell",
    "CorruptionResults", "CurvePoint", "Curves", "EvaluationResult", "Interval", "Provenance",
    "Strict", "SubsetInfo",
]
