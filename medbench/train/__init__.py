"""Training recipes for the reference zoo: erm, pgd-at, trades, sam, asam, gsam, wsam, auc-m
(``medbench train``)."""

from .config import METHOD_DEFAULTS, METHODS, TrainConfig
from .loop import TrainResult, build_model, train

__all__ = ["METHODS", "METHOD_DEFAULTS", "TrainConfig", "TrainResult", "build_model", "train"]
