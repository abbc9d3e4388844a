"""Shared pydantic base: unknown fields are rejected everywhere."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class Interval(Strict):
    """A confidence interval (percentile bootstrap, 95% unless stated)."""

    low: float | None
    high: float | None
