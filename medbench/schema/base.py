"""Shared pydantic base: unknown fields are rejected everywhere."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class StrictInput(Strict):
    """For files people write (zoo entries, submissions): no type coercion, finite numbers only.

    A quoted number, a boolean where a number belongs (``true`` would read as 1.0) or ``.inf``/``.nan``
    is refused rather than converted; integers are still accepted where a float is expected.
    """

    model_config = ConfigDict(extra="forbid", validate_assignment=True, strict=True, allow_inf_nan=False)


class Interval(Strict):
    """A confidence interval (percentile bootstrap, 95% unless stated)."""

    low: float | None
    high: float | None
