"""``PublishedResult``: a number from the literature, shown beside verified results as "reported".

Published numbers (``leaderboard/literature.yaml``) are not zoo entries: there are no weights to
evaluate, so they never enter a ranking or a verified column. The site shows them in a labelled
row under each leaderboard table and next to the dataset's ERM baselines, so readers see how close
a medbench baseline comes to the paper it follows.

Example::

    - dataset: breastmnist
      size: 28
      model: ResNet-18 (28)
      architecture: ResNet-18
      recipe: erm
      source: MedMNIST v2 (Yang et al.), 2D benchmark results, ResNet-18 (28), mean of 3 runs
      venue: Sci. Data 2023
      url: https://doi.org/10.1038/s41597-022-01721-8
      clean_accuracy: 0.863
      clean_auc: 0.901
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator, model_validator

from ..errors import MedbenchError
from .base import Strict
from .entry import format_validation_error


class LiteratureError(MedbenchError, ValueError):
    """A literature file that does not satisfy the schema."""


class PublishedResult(Strict):
    """Clean numbers a paper reports for a model on one MedMNIST dataset and size (fractions in [0, 1])."""

    dataset: str = Field(description="MedMNIST flag, e.g. breastmnist")
    size: Literal[28, 64, 128, 224] = 28
    model: str = Field(min_length=1, max_length=80, description="display name, e.g. 'ResNet-18 (28)'")
    architecture: str = Field(min_length=1, max_length=80)
    recipe: str = Field("", max_length=40, description="training recipe in medbench's words (erm, pgd-at, ...)")
    source: str = Field(min_length=1, max_length=300, description="paper and table the numbers come from")
    venue: str = Field("", max_length=80)
    url: str | None = Field(None, pattern=r"^https://[^\s<>\"']+$")
    clean_accuracy: float | None = Field(None, ge=0, le=1)
    clean_balanced_accuracy: float | None = Field(None, ge=0, le=1)
    clean_auc: float | None = Field(None, ge=0, le=1)

    @field_validator("dataset")
    @classmethod
    def _known_dataset(cls, v: str) -> str:
        from ..data import DATASETS

        if v not in DATASETS:
            raise ValueError(f"unknown dataset {v!r}; use a MedMNIST flag such as breastmnist")
        return v

    @model_validator(mode="after")
    def _has_a_number(self) -> "PublishedResult":
        if self.clean_accuracy is None and self.clean_balanced_accuracy is None and self.clean_auc is None:
            raise ValueError("give at least one of clean_accuracy, clean_balanced_accuracy, clean_auc")
        return self


def parse_literature(data: Any, where: str = "literature file") -> list[PublishedResult]:
    """Validate a YAML list of published results; raise :class:`LiteratureError` naming each bad field."""
    if data is None:
        return []
    if not isinstance(data, list):
        raise LiteratureError(f"{where} must be a YAML list of published results, got {type(data).__name__}")
    out, problems = [], []
    for i, item in enumerate(data):
        try:
            if not isinstance(item, dict):
                raise LiteratureError(f"{where}, item {i} must be a mapping of fields, got {type(item).__name__}")
            out.append(PublishedResult.model_validate(item))
        except ValidationError as exc:
            problems.append(format_validation_error(exc, f"{where}, item {i}").replace(
                "is not a valid model entry", "is not a valid published result"))
        except LiteratureError as exc:
            problems.append(str(exc))
    if problems:
        raise LiteratureError("\n".join(problems))
    return out


def read_literature(path: str | Path) -> list[PublishedResult]:
    """Read ``leaderboard/literature.yaml`` (or another file of the same shape)."""
    from ..safe_yaml import YamlError, load_yaml_text

    path = Path(path)
    try:
        data = load_yaml_text(path.read_text(encoding="utf-8"), where=str(path))
    except YamlError as exc:
        raise LiteratureError(f"{exc} (not valid YAML)") from None
    return parse_literature(data, str(path))
