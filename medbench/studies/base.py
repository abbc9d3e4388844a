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
    """A statistical test behind a finding: what it tests, its statistic and p-value."""

    name: str = Field(description="e.g. 'one-sided paired bootstrap (10,000 resamples)' or 'exact binomial'")
    null: str = Field(description="the null hypothesis, in words")
    statistic: float | None = None
    p_value: float | None = None


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
    provenance: StudyProvenance


@dataclass
class StudyOutcome:
    """What a study's ``run`` returns; ``run_study`` adds identity and provenance to make the result."""

    summary: str
    findings: list[Finding]
    details: Any = None


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


def provenance(ctx: StudyContext, started: float, started_at: str, command: list[str] | None = None
               ) -> StudyProvenance:
    """The provenance block for a study result started at ``started`` (perf_counter) / ``started_at``."""
    from ..data import file_md5, get_spec
    from ..evaluate import _library_versions, medbench_version

    spec = get_spec(ctx.dataset)
    fname = spec.filename(ctx.size)
    path = Path(ctx.data_root) / fname
    return StudyProvenance(
        medbench_version=medbench_version(), torch_version=torch.__version__,
        python_version=platform.python_version(), platform=platform.platform(), started_at=started_at,
        wall_time_s=round(time.perf_counter() - started, 3), seed=ctx.seed, data_file=fname,
        data_md5=file_md5(path) if path.is_file() else "", command=list(command or []),
        options=ctx.options.model_dump(mode="json"), models=dict(ctx.models),
        library_versions=dict(_library_versions()),
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
