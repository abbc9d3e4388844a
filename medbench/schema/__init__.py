"""pydantic models for everything medbench reads or writes; unknown fields are always rejected."""

from .adversarial import AdversarialResult, AttackConfig, BestKnown, BreakSource, CurvePoint, Curves, SubsetInfo
from .attack_record import AttackSubmission, Break, VerifiedAttack
from .base import Interval, Strict
from .calibration import (CalibrationMetrics, CalibrationScores, Estimate, PerLabel, Reliability,
                          RiskCurve, TemperatureScaled)
from .checks import CheckVerdict
from .corruption import CorruptionCell, CorruptionResults, RelativeError
from .entry import BundledSource, EntryError, HubSource, MirrorSource, ModelEntry, Paper, Preprocessing, Recipe, Reported, Weights, parse_entry, read_entry  # noqa: E501
from .result import CleanMetrics, EvaluationResult, Provenance, ReusedSection

__all__ = [
    "AdversarialResult", "AttackConfig", "AttackSubmission", "BestKnown", "Break", "BreakSource", "CheckVerdict", "CleanMetrics", "CorruptionCell",
    "CorruptionResults", "CurvePoint", "Curves", "EvaluationResult", "Interval", "Provenance", "RelativeError",
    "ReusedSection", "Strict", "SubsetInfo", "VerifiedAttack",
]
__all__ += ["BundledSource", "EntryError", "HubSource", "MirrorSource", "ModelEntry", "Paper", "Preprocessing",
            "Recipe", "Reported", "Weights", "parse_entry", "read_entry"]
__all__ += ["CalibrationMetrics", "CalibrationScores", "Estimate", "PerLabel", "Reliability", "RiskCurve",
            "TemperatureScaled"]
