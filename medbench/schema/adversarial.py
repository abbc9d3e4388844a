"""Adversarial robustness results: AutoAttack per threat, and the eps / FGSM / noise curves."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from .base import Interval, Strict
from .calibration import CalibrationMetrics


class SubsetInfo(Strict):
    n: int
    seed: int
    indices_sha256: str  # sha256 of the sorted int64 indices (little-endian bytes)
    whole_split: bool
    indices: list[int] | None = None  # positions in the test split (sorted); flags below follow this order


class AttackConfig(Strict):
    norm: str  # "Linf" | "L2"
    eps: float  # in [0, 1] pixel units, already scaled for the image size (L2)
    attacks: list[str]
    n_iter: int
    n_restarts: int
    n_target_classes: int | None = None
    n_queries: int | None = None
    seed: int
    library: str = "pyautoattack"
    library_version: str
    version: str = "custom"  # pyautoattack's version argument; every count above is set explicitly
    batch_size: int | None = None  # chunk size: the attacks' random starts are drawn per batch


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
    # per subset example: None (robust), "clean" (misclassified without attack) or the attack that flipped it
    broken_by: list[str | None] = Field(default_factory=list)
    per_attack_robust_accuracy: dict[str, float] = Field(default_factory=dict)  # after each attack, in order
    max_perturbation: float | None = None  # largest ||x_adv - x|| (config.norm) over the subset
    # model outputs (rows) that were NaN or infinite during the attacks or on the final inputs (None: not
    # counted, e.g. a section computed before protocol version 3)
    nonfinite_outputs: int | None = None
    wall_time_s: float | None = None
    # nested budgets (protocol adversarial.nested_budgets): the smaller budget of the same norm whose broken
    # points were carried over unattacked (their example lies inside this ball too), and how many
    nested_from: str | None = Field(default=None, exclude_if=lambda v: v is None)  # absent when not nested
    carried_over: int | None = Field(default=None, exclude_if=lambda v: v is None)
    # protocol 4+, headline threats: calibration at the attack's final inputs (the adversarial example where one
    # was found, else the clean image) on the evaluation subset
    calibration: CalibrationMetrics | None = Field(default=None, exclude_if=lambda v: v is None)


class CurvePoint(Strict):
    x: float  # eps (in [0,1] units) or noise sigma
    accuracy: float
    balanced_accuracy: float
    correct: list[bool] | None = None  # per subset example
    linf_norm: list[float] | None = None  # noise only: realised ||x_noisy - x||_inf per example (after clipping)
    l2_norm: list[float] | None = None  # noise only: realised ||x_noisy - x||_2 per example


class Curves(Strict):
    subset: SubsetInfo
    apgd_ce: list[CurvePoint]
    fgsm: list[CurvePoint]
    noise: list[CurvePoint]
    apgd_n_iter: int | None = None
    seed: int | None = None
    batch_size: int | None = None
    nonfinite_outputs: int | None = None  # NaN / infinite output rows met by the curves' attacks (None: not counted)


class BreakSource(Strict):
    """One attack that contributed to a best-known number, with its provenance."""

    attack: str  # "AutoAttack", or a verified attack's name
    kind: Literal["autoattack", "submission", "maintainer"]
    points: int  # subset points it broke that no source listed before it had broken
    submitter: str | None = None
    url: str | None = None
    file_sha256: str | None = None
    verified_at: str | None = None


class BestKnown(Strict):
    """The strongest known evaluation of one threat: AutoAttack lowered by every verified attack record
    (medbench.attacks.best_known); equal to AutoAttack's numbers when no record broke more."""

    threat: str
    robust_accuracy: float
    robust_balanced_accuracy: float
    robust_balanced_accuracy_ci: Interval | None = None
    robust_flags: list[bool]  # per subset example
    broken_by: list[str | None]  # per subset example: None (robust), "clean", an AutoAttack attack or a record's attack
    sources: list[BreakSource]
    autoattack_overestimates: bool  # the best known lies below AutoAttack's 95% interval
