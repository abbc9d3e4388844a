"""``TrainConfig``: everything a training run needs, as plain data (the registry entry's recipe block)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from .sam_variants import OPTIMIZERS as SHARPNESS_AWARE

METHODS = ("erm", "pgd-at", "trades", *SHARPNESS_AWARE, "auc-m")
SELECTIONS = ("auc", "balanced_accuracy", "balanced_accuracy+robust", "last")  # "last": keep the final epoch
# How a binary model turns scores into a decision: the plain argmax of its logits, or the threshold on
# the logit margin that maximises validation balanced accuracy, folded into the output layer's bias
# (for ranking losses such as AUC-M, whose scores are ordered but not centred on 0.5).
THRESHOLDS = ("argmax", "val_balanced_accuracy")
# What a run keeps when it switches method (TrainConfig.with_method); other fields are the method's.
RUN_FIELDS = ("architecture", "architecture_kwargs", "mean", "std", "epochs", "batch_size",
              "lr_milestones", "lr_gamma", "seed", "val_eps", "val_steps", "threshold")
# TrainConfig fields that are hyper-parameters of a SAM-family optimizer (named as in its Settings).
SHARPNESS_SETTINGS = tuple(dict.fromkeys(name for cls in SHARPNESS_AWARE.values()
                                         for name in cls.Settings.model_fields))

# Per-method defaults from the papers (a config field left as None takes the method's value).
METHOD_DEFAULTS: dict[str, dict[str, Any]] = {
    # MedMNIST v2 baseline: Adam 1e-3, x0.1 at 50% / 75% of the epochs, best epoch by validation AUC.
    "erm": {"optimizer": "adam", "lr": 1e-3, "selection": "auc"},
    # Madry et al.: PGD with a random start, step 2.5 * eps / steps; selected on clean + PGD val BA.
    "pgd-at": {"optimizer": "adam", "lr": 1e-3, "selection": "balanced_accuracy+robust",
               "eps": 3 / 255, "steps": 5},
    # Zhang et al.: CE + beta * KL(f(x_adv) || f(x)), beta = 6, PGD on the KL term.
    "trades": {"optimizer": "adam", "lr": 1e-3, "selection": "balanced_accuracy+robust",
               "eps": 3 / 255, "steps": 5, "beta": 6.0},
    # The SAM family (sam, asam, gsam, wsam) around the same base optimizer; each optimizer's own
    # hyper-parameters (rho; eta, alpha, gamma) default to its paper's values, from its Settings model.
    **{name: {"optimizer": "adam", "lr": 1e-3, "selection": "balanced_accuracy",
              **cls.Settings().model_dump()} for name, cls in SHARPNESS_AWARE.items()},
    # Yuan et al. (LibAUC): CE pre-training (Adam 1e-3, half the epochs), then the AUC-margin loss,
    # margin 1, PESG lr 0.1, epoch decay 2e-3; selected on val AUC.
    "auc-m": {"optimizer": "pesg", "lr": 0.1, "selection": "auc", "margin": 1.0, "epoch_decay": 2e-3,
              "class_weights": "none", "weight_decay": 1e-4, "momentum": 0.0},
}


def _methods_using(setting: str) -> list[str]:
    return [method for method, cls in SHARPNESS_AWARE.items() if setting in cls.Settings.model_fields]


@dataclass
class TrainConfig:
    """A training recipe plus the architecture it trains. ``None`` fields take the method's default."""

    method: str = "erm"
    architecture: str = "resnet8"
    architecture_kwargs: dict[str, Any] = field(default_factory=dict)
    mean: float | list[float] = 0.5
    std: float | list[float] = 0.5
    epochs: int = 100
    batch_size: int = 128
    optimizer: str | None = None  # adam | sgd | pesg
    lr: float | None = None
    momentum: float | None = None  # sgd and pesg (default 0.9; 0 for auc-m)
    weight_decay: float | None = None
    lr_milestones: list[float] = field(default_factory=lambda: [0.5, 0.75])  # fractions of the epochs
    lr_gamma: float = 0.1
    class_weights: str | None = None  # "balanced" (inverse class frequency in the CE terms) or "none"
    selection: str | None = None  # validation metric that picks the best epoch ("last": the final epoch)
    seed: int = 0
    # adversarial training (pgd-at, trades) and robust validation
    eps: float | None = None
    steps: int | None = None
    step_size: float | None = None  # default 2.5 * eps / steps
    val_eps: float = 2 / 255  # protocol headline eps, for "balanced_accuracy+robust" selection
    val_steps: int = 10
    beta: float | None = None  # trades
    rho: float | None = None  # sam, asam, gsam, wsam (the ascent radius)
    eta: float | None = None  # asam
    alpha: float | None = None  # gsam
    gamma: float | None = None  # wsam
    margin: float | None = None  # auc-m
    epoch_decay: float | None = None  # auc-m (PESG's proximal term)
    pretrain_epochs: int | None = None  # auc-m: first epochs with CE (Adam 1e-3); default half the epochs
    threshold: str = "argmax"  # binary tasks: "argmax" or "val_balanced_accuracy" (see THRESHOLDS)

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"Unknown training method {self.method!r}; choose from {', '.join(METHODS)}.")
        for key, value in METHOD_DEFAULTS[self.method].items():
            if getattr(self, key) is None:
                setattr(self, key, value)
        self._check_sharpness_settings()
        if self.momentum is None:
            self.momentum = 0.9
        if self.pretrain_epochs is None:
            self.pretrain_epochs = self.epochs // 2 if self.method == "auc-m" else 0
        if not 0 <= self.pretrain_epochs < self.epochs:
            raise ValueError(f"pretrain_epochs must be in [0, epochs), got {self.pretrain_epochs}.")
        if self.weight_decay is None:
            self.weight_decay = 0.0
        if self.class_weights is None:
            self.class_weights = "balanced"
        if self.class_weights not in ("balanced", "none"):
            raise ValueError(f"class_weights must be 'balanced' or 'none', got {self.class_weights!r}.")
        if self.selection not in SELECTIONS:
            raise ValueError(f"selection must be one of {', '.join(SELECTIONS)}, got {self.selection!r}.")
        if self.threshold not in THRESHOLDS:
            raise ValueError(f"threshold must be one of {', '.join(THRESHOLDS)}, got {self.threshold!r}.")
        if self.method in ("pgd-at", "trades") and self.step_size is None:
            self.step_size = 2.5 * self.eps / self.steps
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError("epochs and batch_size must be positive.")

    def _check_sharpness_settings(self) -> None:
        """The SAM family's hyper-parameters go through the optimizer's pydantic ``Settings`` (a bad
        value raises ``pydantic.ValidationError``); one that the method does not use must stay unset."""
        cls = SHARPNESS_AWARE.get(self.method)
        used = cls.Settings.model_fields if cls else {}
        stray = [f"{name} (used by {', '.join(_methods_using(name))})" for name in SHARPNESS_SETTINGS
                 if name not in used and getattr(self, name) is not None]
        if stray:
            raise ValueError(f"method {self.method!r} does not use {'; '.join(stray)}: leave it unset.")
        if cls:
            cls.Settings(**{name: getattr(self, name) for name in used})

    def with_method(self, method: str) -> "TrainConfig":
        """The same run (its :data:`RUN_FIELDS`) with ``method`` and that method's defaults."""
        return TrainConfig(method=method, **{name: getattr(self, name) for name in RUN_FIELDS})

    def with_settings(self, **settings: Any) -> "TrainConfig":
        """A copy with SAM-family hyper-parameters replaced, validated and converted (``"0.1"`` -> 0.1)
        by the method's optimizer ``Settings``. Raises ``ValueError`` for a name the method does not
        take, ``pydantic.ValidationError`` (a ``ValueError``) for a bad value."""
        cls = SHARPNESS_AWARE.get(self.method)
        if cls is None:
            raise ValueError(f"method {self.method!r} is not of the SAM family "
                             f"({', '.join(SHARPNESS_AWARE)}): it takes no {', '.join(settings)}.")
        known = list(cls.Settings.model_fields)
        unknown = sorted(set(settings) - set(known))
        if unknown:
            raise ValueError(f"method {self.method!r} takes {', '.join(known)}, not {', '.join(unknown)}.")
        checked = cls.Settings(**{**{name: getattr(self, name) for name in known}, **settings})
        return replace(self, **checked.model_dump())

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrainConfig":
        """Build from a mapping, rejecting unknown keys (a typo must not be silently ignored)."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"Unknown training config key(s): {', '.join(unknown)}. Known: {', '.join(sorted(known))}.")
        return cls(**data)

    def to_dict(self) -> dict[str, Any]:
        """All fields with the method defaults resolved (what the run actually used)."""
        return asdict(self)
