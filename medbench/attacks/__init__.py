"""Adversarial robustness (PROTOCOL.md section 4): the AutoAttack adapter, the fixed evaluation
subset, the eps / FGSM / noise curves, and the ``benchmark()`` threat runners."""

from .autoattack import (UnsupportedTaskError, attack_chunk, attack_config, attack_set, make_autoattack,
                         scaled_eps)
from .plugins import Attack, AttackOutput, get_attack, list_attacks
from .subset import Subset, SubsetMismatchError, evaluation_subset, indices_sha256

__all__ = [
    "Attack", "AttackOutput", "Subset", "SubsetMismatchError", "UnsupportedTaskError", "attack_chunk", "attack_config",
    "attack_set", "evaluation_subset", "get_attack", "indices_sha256", "list_attacks", "make_autoattack", "scaled_eps",
]
