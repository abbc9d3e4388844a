"""Admission and sanity checks (PROTOCOL.md section 5). Placeholder until issue 5 lands."""

from __future__ import annotations


def admission_checks(ctx) -> list:
    return []


def sanity_checks(ctx, fields) -> list:
    return []
