"""What every study shares: typed findings, provenance, the result record and where it is stored.

A study answers a question from the literature (why are models (not) robust?) with the harness's own
data, models and attacks. Its result is a :class:`StudyResult` subclass whose ``details`` field is the
study's own typed payload; ``findings`` are the headline statements, each with its value, interval,
comparison and statistical test, which the site renders the same way for every study.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal

import torch
from pydantic import BaseModel, Field

from ..schema.base import Interval, Strict

STUDY_SCHEMA_VERSION = 1


class StatTest(Strict):
    """A statistical test behind a finding: what it tests, its statistic and the p of the stated direction."""

    name: str = Field(description="e.g. 'one-sided paired bootstrap (10,000 resamples)' or 'exact binomial'")
    null: str = Field(description="the null hypothesis, in words")
    statistic: float | None = None
    p_value: float | None = None
    resamples: int | None = Field(None, description="permutations or resamples behind p (its floor is "
                                  "1 / (resamples + 1)); None for an analytic p")

    @property
    def p_text(self) -> str:
        return format_p(self.p_value, self.resamples)


class Finding(Strict):
    """One headline number of a study, e.g. 'nonrobust-only clean BA' = 0.62 [0.55, 0.69] vs chance 0.5."""

    key: str = Field(description="machine name, stable across runs (e.g. 'nonrobust_clean_ba')")
    label: str = Field(description="what the number is, in a short sentence")
    value: float | None
    ci: Interval | None = None
    unit: Literal["fraction", "score", "count", "seconds"] = "fraction"
    reference: float | None = Field(None, description="what the value is compared with (chance, another model)")
    reference_label: str | None = None
    test: StatTest | None = None
    paper: str | None = Field(None, description="what the paper reported for this number, quoted with its setting")
    note: str | None = None
    majority_share: float | None = Field(None, description="beside a balanced accuracy: the fraction of the images "
                                         "given the most frequent predicted class")


class GateVerdict(Strict):
    """One check of the harness's admission rule (``medbench.checks.clean_verdicts``)."""

    name: str
    passed: bool
    value: float | None
    threshold: float | None
    message: str


class Admission(Strict):
    """A model a study reports on, through the harness's admission rule on its clean test predictions.

    A refused model is reported with the verdict's message but no conclusion rests on it.
    """

    model: str = Field(description="zoo id, or the role of a model the study trained")
    admitted: bool
    protocol_version: str
    n: int = Field(description="test images")
    balanced_accuracy: float
    balanced_accuracy_ci: Interval
    majority_class: str
    majority_share: float = Field(description="fraction of the test images given the most frequent predicted class")
    verdicts: list[GateVerdict]

    @property
    def reason(self) -> str:
        """The failed checks' messages ('' when admitted)."""
        return "; ".join(v.message for v in self.verdicts if not v.passed)


class Claim(Strict):
    """One claim of the study's source paper and what became of it here."""

    claim: str = Field(description="the paper's claim, in words")
    paper: str = Field(description="what the paper reported, with its setting (data, architecture)")
    verdict: Literal["reproduced", "not reproduced", "not run"]
    here: str | None = Field(None, description="the numbers measured here")
    test: str | None = Field(None, description="the test of the claim's direction")
    p_value: float | None = Field(None, description="p of the claim's (one-sided) direction")
    resamples: int | None = None
    reason: str = Field(description="why this verdict")

    @property
    def p_text(self) -> str:
        return format_p(self.p_value, self.resamples)


class DerivedFrom(Strict):
    """The earlier result a re-derived one was computed from, and what was taken from it."""

    started_at: str
    wall_time_s: float
    medbench_version: str
    result_sha256: str
    how: str = Field(description="what was taken from the earlier result and what was computed again")


class StudyProvenance(Strict):
    """Where, when and from what a study result was computed."""

    medbench_version: str
    torch_version: str
    python_version: str
    platform: str
    started_at: str
    wall_time_s: float
    seed: int
    data_file: str
    data_md5: str
    command: list[str] = Field(default_factory=list)
    options: dict[str, Any] = Field(default_factory=dict)
    models: dict[str, str] = Field(default_factory=dict, description="role or model id -> weights sha256")
    library_versions: dict[str, str] = Field(default_factory=dict)
    derived_from: DerivedFrom | None = Field(None, description="set when the result was re-derived from an "
                                               "earlier result instead of computed by a full run")


class StudyResult(Strict):
    """A study's result on one dataset at one size. Subclasses narrow ``details`` to a typed model."""

    study_schema_version: int = STUDY_SCHEMA_VERSION
    study: str
    study_version: str
    dataset: str
    size: int
    summary: str = Field(description="the result in one or two sentences, written from the numbers")
    findings: list[Finding]
    details: Any = None
    admissions: list[Admission] = Field(default_factory=list, description="every model the study reports on, "
                                        "through the harness's admission rule; refused ones carry no conclusion")
    claims: list[Claim] = Field(default_factory=list, description="the source paper's claims: reproduced, "
                                "not reproduced or not run here, with the reason")
    provenance: StudyProvenance


@dataclass
class StudyOutcome:
    """What a study's ``run`` returns; ``run_study`` adds identity and provenance to make the result."""

    summary: str
    findings: list[Finding]
    details: Any = None
    admissions: list[Admission] = field(default_factory=list)
    claims: list[Claim] = field(default_factory=list)
    derived_how: str | None = None  # a re-derived outcome: what it took from the earlier result


class NoOptions(Strict):
    """A study without options."""


@dataclass
class StudyContext:
    """What a study's ``run`` gets: the dataset, where data and scratch space are, and the options."""

    dataset: str
    size: int
    seed: int
    data_root: Path
    work_dir: Path  # scratch (trained models, caches); reused across runs of the same study
    options: BaseModel
    progress: bool = True
    models: dict[str, str] = field(default_factory=dict)  # filled by the study: role -> weights sha256

    def log(self, msg: str) -> None:
        if self.progress:
            print(msg, file=sys.stderr, flush=True)


@dataclass(frozen=True)
class Study:
    """A registered study: how to run it and how to present it."""

    name: str
    title: str
    question: str  # the question the study answers, one sentence
    paper: str  # citation of the paper whose protocol it follows
    paper_url: str | None
    method: str  # how it is measured here, a paragraph (shown on the site)
    result_type: type[StudyResult]
    run: Callable[[StudyContext], StudyOutcome]
    options: type[BaseModel] = NoOptions
    datasets: tuple[str, ...] = ()  # the datasets it supports (empty: any)
    version: str = "1"
    # recomputes a committed result's conclusions from what it stores (no training); None: full runs only
    rederive: Callable[[StudyResult, StudyContext], StudyOutcome] | None = None
    # (dataset, size, options) -> a one-line duration estimate printed before a run; None: no estimate
    estimate: Callable[[str, int, BaseModel], str | None] | None = None


def provenance(ctx: StudyContext, started: float, started_at: str, command: list[str] | None = None
               ) -> StudyProvenance:
    """The provenance block for a study result started at ``started`` (perf_counter) / ``started_at``."""
    from ..data import file_md5, get_spec
    from ..engine import library_versions, medbench_version

    spec = get_spec(ctx.dataset)
    fname = spec.filename(ctx.size)
    path = Path(ctx.data_root) / fname
    return StudyProvenance(
        medbench_version=medbench_version(), torch_version=torch.__version__,
        python_version=platform.python_version(), platform=platform.platform(), started_at=started_at,
        wall_time_s=round(time.perf_counter() - started, 3), seed=ctx.seed, data_file=fname,
        data_md5=file_md5(path) if path.is_file() else "", command=list(command or []),
        options=ctx.options.model_dump(mode="json"), models=dict(ctx.models),
        library_versions=dict(library_versions()),
    )


def now_iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()


def result_path(root: str | os.PathLike, study: str, dataset: str, size: int) -> Path:
    """``<root>/<study>/<dataset>_<size>px.json``: one file per study, dataset and size."""
    return Path(root) / study / f"{dataset}_{size}px.json"


def save_result(result: StudyResult, root: str | os.PathLike) -> Path:
    """Write ``result`` as indented JSON (atomically) and return its path."""
    path = result_path(root, result.study, result.dataset, result.size)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(result.model_dump(mode="json"), indent=1) + "\n")
    tmp.replace(path)
    return path


# ----------------------------------------------------------------------------- shared statistics

def format_p(p: float | None, resamples: int | None = None) -> str:
    """``p = 0.012``, or ``p < 1e-4`` when a test of ``resamples`` draws gave its smallest attainable
    value 1 / (resamples + 1); ``p undefined`` for None."""
    if p is None:
        return "p undefined"
    if resamples and p <= 1 / (resamples + 1) * (1 + 1e-9):
        return f"p < {_compact(1 / resamples)}"
    return f"p = {p:.2g}"


def _compact(x: float) -> str:
    """1e-4, 5e-4, 0.001 -> '1e-4', '5e-4', '1e-3'."""
    mantissa, exponent = f"{x:.0e}".split("e")
    return f"{mantissa}e{int(exponent)}"


def majority(predictions, class_names: list[str]) -> tuple[str, float]:
    """(most frequently predicted class, the fraction of the images given it)."""
    import numpy as np

    pred = np.asarray(predictions).reshape(-1)
    counts = np.bincount(pred, minlength=len(class_names))
    top = int(counts.argmax())
    return class_names[top], float(counts[top] / max(1, len(pred)))


def admit(model: str, labels, predictions, spec, protocol) -> Admission:
    """``model``'s clean test ``predictions`` through the harness's admission rule
    (:func:`medbench.checks.clean_verdicts`), with the BA interval under the protocol's bootstrap settings."""
    import numpy as np

    from .. import metrics
    from ..schema import CleanMetrics

    y, pred = np.asarray(labels).reshape(-1), np.asarray(predictions).reshape(-1).astype(np.int64)
    settings = protocol["clean"]
    ci = metrics.bootstrap_metric_ci(y, pred, spec.num_classes, n_resamples=settings["bootstrap_resamples"],
                                     seed=settings["bootstrap_seed"], level=settings["ci_level"])
    recall = metrics.per_class_recall(y, pred, spec.num_classes)
    clean = CleanMetrics(
        n=len(y), accuracy=metrics.accuracy(y, pred),
        balanced_accuracy=metrics.balanced_accuracy(y, pred, spec.num_classes),
        auc=None, per_class_recall={n: (None if np.isnan(r) else float(r)) for n, r in zip(spec.class_names, recall)},
        ci={"balanced_accuracy": Interval(low=_finite(ci.low), high=_finite(ci.high))},
        ci_level=settings["ci_level"], bootstrap_resamples=settings["bootstrap_resamples"],
        bootstrap_seed=settings["bootstrap_seed"], predictions=pred.tolist())
    return admit_clean(model, clean, labels, spec, protocol)


def admit_clean(model: str, clean, labels, spec, protocol) -> Admission:
    """The same from the harness's own clean metrics (a ``CleanMetrics`` of an ``EvaluationResult``)."""
    from ..checks import clean_verdicts

    verdicts = clean_verdicts(clean, spec, protocol, labels)
    top, share = majority(clean.predictions, list(spec.class_names))
    ci = clean.ci["balanced_accuracy"]
    return Admission(model=model, admitted=all(v.passed for v in verdicts), protocol_version=protocol.version,
                     n=len(clean.predictions), balanced_accuracy=clean.balanced_accuracy,
                     balanced_accuracy_ci=Interval(low=ci.low, high=ci.high), majority_class=top,
                     majority_share=share,
                     verdicts=[GateVerdict(name=v.name, passed=v.passed, value=v.value, threshold=v.threshold,
                                           message=v.message) for v in verdicts])


def _finite(x: float) -> float | None:
    import math

    return None if x is None or math.isnan(x) else float(x)
