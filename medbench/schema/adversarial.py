"""Adversarial robustness results: AutoAttack per threat, and the eps / FGSM / noise curves."""

from __future__ import annotations

from pydantic import Field

from .base import Interval, Strict


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
