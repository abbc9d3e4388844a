"""Typed verdicts of the admission and sanity checks (PROTOCOL.md section 5)."""

from __future__ import annotations

from typing import Literal

from .base import Strict


class CheckVerdict(Strict):
    name: str  # e.g. "deterministic_forward"
    kind: Literal["admission", "sanity"]
    passed: bool
    value: float | None = None  # the measured quantity
    threshold: float | None = None
    message: str  # what was measured and, when failing, why it matters and how to fix it
