"""pydantic models for everything medbench reads or writes; unknown fields are always rejected."""

from .adversarial import AdversarialResult, AttackConfig, CurvePoint, Curves, SubsetInfo
from .base import Interval, Strict
from .checks import CheckVerdict
from .corruption import CorruptionCell, CorruptionResults
from .entry import BundledSource, EntryError, HubSource, MirrorSource, ModelEntry, Paper, Preprocessing, Recipe, Reported, Weights, parse_entry, read_entry  # noqa: E501
from .result import CleanMetrics, EvaluationResult, Provenance, ReusedSection

__all__ = [
    "AdversarialResult", "AttackConfig", "CheckVerdict", "CleanMetrics", "CorruptionCell",
    "CorruptionResults", "CurvePoint", "Curves", "EvaluationResult", "Interval", "Provenance", "ReusedSection",
    "Strict", "SubsetInfo",
]
__all__ += ["BundledSource", "EntryError", "HubSource", "MirrorSource", "ModelEntry", "Paper", "Preprocessing",
            "Recipe", "Reported", "Weights", "parse_entry", "read_entry"]
