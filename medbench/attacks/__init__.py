"""Adversarial robustness (PROTOCOL.md section 4): the AutoAttack adapter, the fixed evaluation
subset, the eps / FGSM / noise curves, and the ``benchmark()`` threat runners."""

from .autoattack import (UnsupportedTaskError, attack_chunk, attack_config, attack_set, make_autoattack,
                         scaled_eps)
from .subset import Subset, SubsetMismatchError, evaluation_subset, indices_sha256

__all__ = [
    "Subset", "SubsetMismatchError", "UnsupportedTaskError", "attack_chunk", "attack_config", "attack_set",
    "evaluation_subset", "indices_sha256", "make_autoattack", "scaled_eps",
]
