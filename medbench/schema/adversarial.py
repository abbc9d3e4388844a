"""Adversarial robustness results: AutoAttack per threat, and the eps / FGSM / noise curves."""

from __future__ import annotations

from .base import Interval, Strict


class SubsetInfo(Strict):
    n: int
    seed: int
    indices_sha256: str  # sha256 of the sorted int64 indices (little-endian bytes)
    whole_split: bool


class AttackConfig(Strict):
    norm: str  # "Linf" | "L2"
    eps: float
    attacks: list[str]
    n_iter: int
    n_restarts: int
    n_target_classes: int | None = None
    n_queries: int | None = None
    seed: int
    library: str = "pyautoattack"
    library_version: str


class AdversarialResult(Strict):
    threat: str  # "Linf-2/255", "Linf-4/255", "L2-0.25"
    config: AttackConfig
    subset: SubsetInfo
    clean_accuracy: float  # on the subset
    clean_balanced_accuracy: float  # on the subset
    robust_accuracy: float
    robust_balanced_accuracy: float  # headline, from the final per-example predictions
    robust_balanced_accuracy_ci: Interval | None = None
    auc_under_attack: float | None = None  # AUC on the perturbed inputs, not a worst case
    robust_flags: list[bool]  # per subset example: correct and not flipped by any attack
    adv_predictions: list[int]  # final per-example predictions
    wall_time_s: float | None = None


class CurvePoint(Strict):
    x: float  # eps (in [0,1] units) or noise sigma
    accuracy: float
    balanced_accuracy: float


class Curves(Strict):
    subset: SubsetInfo
    apgd_ce: list[CurvePoint]
    fgsm: list[CurvePoint]
    noise: list[CurvePoint]
