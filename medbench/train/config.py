"""``TrainConfig``: everything a training run needs, as plain data (the registry entry's recipe block)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

METHODS = ("erm", "pgd-at", "trades", "sam", "auc-m")
SELECTIONS = ("auc", "balanced_accuracy", "balanced_accuracy+robust", "last")  # "last": keep the final epoch
# How a binary model turns scores into a decision: the plain argmax of its logits, or the threshold on
# the logit margin that maximises validation balanced accuracy, folded into the output layer's bias
# (for ranking losses such as AUC-M, whose scores are ordered but not centred on 0.5).
THRESHOLDS = ("argmax", "val_balanced_accuracy")

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
    # Foret et al.: rho = 0.05 around the base optimizer.
    "sam": {"optimizer": "adam", "lr": 1e-3, "selection": "balanced_accuracy", "rho": 0.05},
    # Yuan et al. (LibAUC): CE pre-training (Adam 1e-3, half the epochs), then the AUC-margin loss,
    # margin 1, PESG lr 0.1, epoch decay 2e-3; selected on val AUC.
    "auc-m": {"optimizer": "pesg", "lr": 0.1, "selection": "auc", "margin": 1.0, "epoch_decay": 2e-3,
              "class_weights": "none", "weight_decay": 1e-4, "momentum": 0.0},
}


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
    rho: float | None = None  # sam
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
