"""``EvaluationResult``: everything ``benchmark()`` measured on one model, with its provenance."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from pydantic import Field

from .adversarial import AdversarialResult, Curves
from .base import Interval, Strict
from .calibration import CalibrationMetrics
from .checks import CheckVerdict
from .corruption import CorruptionResults

RESULT_SCHEMA_VERSION = 1


class CleanMetrics(Strict):
    n: int
    accuracy: float
    balanced_accuracy: float  # the headline
    auc: float | None
    per_class_recall: dict[str, float | None]  # class name -> recall (None if the class is absent)
    ci: dict[str, Interval]  # accuracy, balanced_accuracy, auc
    ci_level: float = 0.95
    bootstrap_resamples: int = 1000
    bootstrap_seed: int = 0
    predictions: list[int] | list[list[int]]  # per test example, for paired comparisons
    # protocol 4+: calibration and selective prediction on the test split (temperature fitted on the val split)
    calibration: CalibrationMetrics | None = Field(default=None, exclude_if=lambda v: v is None)


class ReusedSection(Strict):
    """A threat section carried over from an earlier result of the same weights on the same data
    (``benchmark(..., reuse=...)``, ``medbench.reuse``): where its numbers were computed."""

    from_protocol_version: str
    from_protocol_sha256: str
    from_result_sha256: str | None = None  # sha256 of the result file it was read from
    from_started_at: str
    from_medbench_version: str
    original_wall_time_s: float | None = None


class Provenance(Strict):
    medbench_version: str
    protocol_version: str
    protocol_sha256: str
    dataset: str
    size: int
    split: str
    data_file: str  # file name, not a local path
    data_md5: str
    weights_sha256: str | None = None
    seed: int
    device: str
    torch_version: str
    library_versions: dict[str, str]
    python_version: str
    platform: str
    started_at: str  # ISO 8601, UTC
    wall_time_s: float
    wall_time_per_threat_s: dict[str, float] = Field(default_factory=dict)
    # finer than per threat (absent in results computed before medbench recorded it): clean, admission,
    # corruptions, "<threat label>/<attack>" per AutoAttack attack, "curves/<kind>/<eps or sigma>"
    wall_time_per_stage_s: dict[str, float] = Field(default_factory=dict)
    cpu_time_per_stage_s: dict[str, float] = Field(default_factory=dict)  # process CPU seconds, same keys
    # threat -> where its section was computed, when carried over from an earlier result
    reused: dict[str, ReusedSection] = Field(default_factory=dict)


NO_ADMISSION_CHECKS = ("no admission checks: the result was computed without them (--no-checks / checks=False), "
                       "so it is never ranked; re-evaluate with checks to rank it")


class EvaluationResult(Strict):
    """The record ``medbench.benchmark`` returns and the leaderboard renders."""

    result_schema_version: int = RESULT_SCHEMA_VERSION
    # "lite": the cheap screening track (protocol lite1, lite2), never ranked with the full benchmark's results
    track: Literal["full", "lite"] = "full"
    model_id: str | None = None
    dataset: str
    size: int
    task: str
    num_classes: int
    class_names: list[str]
    threats: list[str]  # what was evaluated
    skipped: dict[str, str] = Field(default_factory=dict)  # threat -> why it was not run (e.g. model not admitted)
    clean: CleanMetrics | None = None
    corruptions: CorruptionResults | None = None
    adversarial: dict[str, AdversarialResult] = Field(default_factory=dict)  # keyed by threat label
    curves: Curves | None = None
    checks: list[CheckVerdict] = Field(default_factory=list)
    provenance: Provenance

    @property
    def admission_checked(self) -> bool:
        """False for a result computed without checks (``--no-checks``): nothing vouches for the model."""
        return any(c.kind == "admission" for c in self.checks)

    @property
    def admitted(self) -> bool:
        """True when admission checks ran and every one passed (a model that fails one, or whose
        result was computed without them, is not ranked)."""
        return self.admission_checked and all(c.passed for c in self.checks if c.kind == "admission")

    @property
    def not_admitted_because(self) -> list[str]:
        """``"<check>: <message>"`` of every failed admission check, or why none ran (empty when admitted)."""
        if not self.admission_checked:
            return [NO_ADMISSION_CHECKS]
        return [f"{c.name}: {c.message}" for c in self.checks if c.kind == "admission" and not c.passed]

    @property
    def reliable(self) -> bool:
        """False when a sanity check failed (the evaluation is unreliable: never ranked) or the model was not
        admitted (its numbers say nothing about robustness)."""
        return self.admitted and all(c.passed for c in self.checks if c.kind == "sanity")

    def plot(self, path: str | Path) -> Path:
        """Save a one-figure overview (summary bars, corruption heatmap, eps and noise curves) to ``path``."""
        from ..plots import plot_result

        return plot_result(self, path)

    def to_json(self, path: str | Path | None = None, indent: int | None = 1) -> str:
        """Serialise to JSON; when ``path`` is given, also write it there (atomically)."""
        text = self.model_dump_json(indent=indent)
        if path is not None:
            path = Path(path)
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(path.name + ".tmp")
            tmp.write_text(text)
            tmp.replace(path)
        return text

    @classmethod
    def from_json(cls, path_or_text: str | Path) -> "EvaluationResult":
        p = Path(path_or_text) if not str(path_or_text).lstrip().startswith("{") else None
        text = p.read_text() if p is not None else str(path_or_text)
        return cls.model_validate(json.loads(text))

    def summary(self):
        """A one-row-per-metric pandas DataFrame of the headline numbers."""
        import pandas as pd

        rows = []
        if self.clean:
            for key in ("balanced_accuracy", "accuracy", "auc"):
                ci = self.clean.ci.get(key)
                rows.append({"section": "clean", "metric": key, "value": getattr(self.clean, key),
                             "ci_low": ci.low if ci else None, "ci_high": ci.high if ci else None})
        if self.corruptions:
            rows.append({"section": "corruptions", "metric": "balanced_accuracy",
                         "value": self.corruptions.balanced_accuracy, "ci_low": None, "ci_high": None})
        for label, adv in self.adversarial.items():
            ci = adv.robust_balanced_accuracy_ci
            rows.append({"section": label, "metric": "robust_balanced_accuracy",
                         "value": adv.robust_balanced_accuracy,
                         "ci_low": ci.low if ci else None, "ci_high": ci.high if ci else None})
        return pd.DataFrame(rows, columns=["section", "metric", "value", "ci_low", "ci_high"])
