"""Adapter over ``pyautoattack`` 0.2.0 (the reference AutoAttack code) for every MedMNIST task.

The reference code crashes on 2 and 3 classes (DLR losses), on too many target classes and on 3D
Square (REFERENCE.md); the attack set therefore follows PROTOCOL.md section 4:

- C = 2: APGD-CE, FAB-T, Square; C = 3: APGD-CE, APGD-DLR, FAB-T, Square; C >= 4: the standard set
  (APGD-CE, APGD-T, FAB-T, Square); 3D: the same without Square.
- ``version='custom'`` with ``n_iter``, ``n_restarts``, ``n_target_classes = min(9, C - 1)`` and
  ``n_queries`` set explicitly on the attack objects (the 'custom' version otherwise keeps 5 APGD
  restarts and 9 FAB targets); a fixed seed.

The subset is attacked in chunks of ``batch_size`` examples. Each attack is one
``run_standard_evaluation`` call on the points of the chunk that are still robust, exactly the
batches that a direct ``run_standard_evaluation(x, y, batch_size=len(chunk))`` call would form, so
the per-example verdicts are pyautoattack's; the split per attack tells which attack broke which
point (for the Square check and for later unions). Results depend on the chunk size (the attacks'
random starts are drawn per batch), so it is recorded in the configuration.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from importlib.metadata import version as _pkg_version
from typing import Callable

import numpy as np
import torch
from torch import nn
from pyautoattack import AutoAttack

from ..data import DatasetSpec
from ..errors import MedbenchError
from ..schema import AttackConfig

CLEAN = "clean"  # ``broken_by`` value of a point misclassified without attack


class UnsupportedTaskError(MedbenchError, ValueError):
    """The protocol has no adversarial track for this dataset / threat."""


def attack_set(num_classes: int, is_3d: bool, protocol=None) -> list[str]:
    """The protocol's attack list for ``num_classes`` classes (PROTOCOL.md section 4), or the one a
    protocol lists under ``adversarial.attack_sets`` (keys "2", "3", "4+"; the lite track)."""
    if num_classes < 2:
        raise UnsupportedTaskError(f"AutoAttack needs at least 2 classes (logits), got {num_classes}.")
    sets = protocol.get("adversarial.attack_sets") if protocol is not None else None
    if sets:
        attacks = list(sets[str(num_classes)] if str(num_classes) in sets else sets["4+"])
    elif num_classes == 2:
        attacks = ["apgd-ce", "fab-t", "square"]
    elif num_classes == 3:
        attacks = ["apgd-ce", "apgd-dlr", "fab-t", "square"]
    else:
        attacks = ["apgd-ce", "apgd-t", "fab-t", "square"]
    if is_3d and "square" in attacks:  # Square fails on 5-D inputs; APGD and FAB work
        attacks.remove("square")
    return attacks


def check_supported(spec: DatasetSpec, norm: str, protocol) -> None:
    """Raise :class:`UnsupportedTaskError` when the protocol has no ``norm`` track for ``spec``."""
    adv = protocol["adversarial"]
    if spec.is_multilabel or spec.name in adv.get("no_track", []):
        raise UnsupportedTaskError(
            f"{spec.name} ({spec.task}) has no AutoAttack track in protocol {protocol.version}: AutoAttack "
            "is defined for single-label classifiers only, so its leaderboard row shows 'no adversarial "
            "track'. Fix: evaluate it with threats clean and corruptions."
        )
    if norm not in ("Linf", "L2"):
        raise UnsupportedTaskError(f"Unknown norm {norm!r}; the protocol defines Linf and L2.")
    if norm == "L2" and spec.is_3d:
        raise UnsupportedTaskError(
            f"{spec.name} is 3D: protocol {protocol.version} evaluates 3D datasets under Linf only (no L2 "
            "track). Fix: drop L2 from the threats (e.g. --threats clean,Linf,curves); finished threats "
            "of this run are kept and reused."
        )


def scaled_eps(norm: str, eps: float, size: int, spec: DatasetSpec) -> float:
    """The protocol eps at ``size``: Linf unchanged, L2 scaled by sqrt(H*W / 784) (2D)."""
    if norm == "L2":
        return float(eps * math.sqrt(size * size / 784.0))
    return float(eps)


def attack_config(spec: DatasetSpec, norm: str, eps: float, protocol, *, size: int = 28,
                  batch_size: int = 250, seed: int = 0) -> AttackConfig:
    """The full configuration of one AutoAttack threat for ``spec`` under ``protocol``."""
    check_supported(spec, norm, protocol)
    adv = protocol["adversarial"]
    attacks = attack_set(spec.num_classes, spec.is_3d, protocol)
    targeted = any(a in ("apgd-t", "fab-t") for a in attacks)
    return AttackConfig(
        norm=norm, eps=scaled_eps(norm, eps, size, spec), attacks=attacks,
        n_iter=int(adv["n_iter"]), n_restarts=int(adv["n_restarts"]),
        n_target_classes=min(int(adv["max_target_classes"]), spec.num_classes - 1) if targeted else None,
        n_queries=int(adv["square_queries"]) if "square" in attacks else None,
        seed=seed, library_version=_pkg_version("pyautoattack"), version="custom", batch_size=int(batch_size),
    )


def make_autoattack(model: nn.Module, config: AttackConfig, device: torch.device | str) -> AutoAttack:
    """A pyautoattack ``AutoAttack`` with every count set explicitly from ``config``."""
    adversary = AutoAttack(model, attacks=list(config.attacks), device=device, eps=config.eps, norm=config.norm,
                           seed=config.seed, version="custom")
    adversary.apgd.n_iter = config.n_iter
    adversary.apgd.n_restarts = config.n_restarts
    adversary.apgd_targeted.n_iter = config.n_iter
    adversary.apgd_targeted.n_restarts = config.n_restarts
    adversary.fab.n_iter = config.n_iter
    adversary.fab.n_restarts = config.n_restarts
    adversary.square.n_restarts = config.n_restarts
    if config.n_target_classes is not None:
        adversary.apgd_targeted.n_target_classes = config.n_target_classes
        adversary.fab.n_target_classes = config.n_target_classes
    if config.n_queries is not None:
        adversary.square.n_queries = config.n_queries
    # n_iter also sets APGD's checkpoint schedule, computed in __init__ from n_iter: keep them consistent.
    for apgd in (adversary.apgd, adversary.apgd_targeted):
        apgd.n_iter_orig = apgd.n_iter
        apgd.n_iter_2 = max(int(0.22 * apgd.n_iter), 1)
        apgd.n_iter_min = max(int(0.06 * apgd.n_iter), 1)
        apgd.size_decr = max(int(0.03 * apgd.n_iter), 1)
    adversary.logger.setLevel(logging.ERROR)  # its warnings are measured by medbench.checks instead
    return adversary


@dataclass
class ChunkOutcome:
    """AutoAttack on one chunk: final predictions, robust flags, which attack broke each point, adv logits."""

    clean_pred: np.ndarray
    adv_pred: np.ndarray
    robust: np.ndarray
    broken_by: np.ndarray  # int8 code: 0 robust, 1 clean, 2 + i = config.attacks[i]
    adv_logits: np.ndarray
    max_perturbation: float  # largest norm of x_adv - x in the chunk (config.norm)
    out_of_range: float  # largest violation of [0, 1] by x_adv
    x_adv: torch.Tensor  # final inputs (the adversarial example where an attack succeeded, else the clean input)
    attack_wall_s: dict[str, float] | None = None  # attack -> wall seconds spent on this chunk
    attack_cpu_s: dict[str, float] | None = None  # attack -> process CPU seconds spent on this chunk


def broken_by_names(config: AttackConfig, codes: np.ndarray) -> list[str | None]:
    names = [None, CLEAN, *config.attacks]
    return [names[int(c)] for c in codes]


def attack_chunk(adversary: AutoAttack, config: AttackConfig, x: torch.Tensor, y: torch.Tensor,
                 on_attack: Callable[[str, int, int], None] | None = None, *,
                 on_start: Callable[[str, int, int], None] | None = None,
                 clean_pred: torch.Tensor | None = None, resume: dict[str, np.ndarray] | None = None,
                 on_checkpoint: Callable[[dict[str, np.ndarray]], None] | None = None) -> ChunkOutcome:
    """Run the configured attacks on one chunk (float inputs in [0, 1] on the attack device).

    ``clean_pred``: the model's clean predictions for ``x`` when already known (the run's clean pass);
    otherwise they are computed here. ``on_start(attack, n_attacked, n_chunk)`` and
    ``on_attack(attack, n_attacked, n_still_robust)`` report progress. ``on_checkpoint(state)`` receives
    the chunk's state (numpy arrays) after every attack but the last; given back as ``resume``, the
    attacks it holds are not run again and the outcome equals an uninterrupted run's (each attack seeds
    its own random draws and sees the same still-robust points).
    """
    model = adversary.model
    if resume is not None:
        clean_pred = resume["clean_pred"]
    elif clean_pred is None:
        with torch.no_grad():
            clean_pred = model(x).argmax(1)
    clean_pred = torch.as_tensor(clean_pred, device=y.device).long()
    robust = clean_pred == y
    adv_pred = clean_pred.clone()
    codes = torch.where(robust, 0, 1).to(torch.int8)
    x_adv = x.clone()
    wall: dict[str, float] = {}
    cpu: dict[str, float] = {}
    done = 0
    if resume is not None:
        done = int(resume["done"])
        robust = torch.as_tensor(resume["robust"], device=y.device).bool()
        adv_pred = torch.as_tensor(resume["adv_pred"], device=y.device).long()
        codes = torch.as_tensor(resume["codes"], device=y.device).to(torch.int8)
        rows = torch.as_tensor(resume["rows"], device=x.device).long()
        x_adv[rows] = torch.as_tensor(resume["x_rows"], device=x.device).to(x_adv.dtype)
        wall = dict(zip(config.attacks, resume["attack_wall"].tolist()))
        cpu = dict(zip(config.attacks, resume["attack_cpu"].tolist()))
    for i, attack in enumerate(config.attacks):
        if i < done:
            continue
        idx = torch.nonzero(robust).flatten()
        if on_start is not None:
            on_start(attack, int(idx.numel()), len(x))
        t0, c0 = time.perf_counter(), time.process_time()
        if idx.numel():
            adversary.attacks_to_run = [attack]
            xa, ya = adversary.run_standard_evaluation(x[idx], y[idx], batch_size=int(idx.numel()))
            flipped = ya.to(y.device) != y[idx]
            hit = idx[flipped]
            robust[hit] = False
            adv_pred[hit] = ya.to(y.device)[flipped]
            codes[hit] = 2 + i
            x_adv[hit] = xa.to(x_adv.device)[flipped]
        wall[attack], cpu[attack] = time.perf_counter() - t0, time.process_time() - c0
        if on_checkpoint is not None and i + 1 < len(config.attacks):
            rows = torch.nonzero(codes >= 2).flatten()
            on_checkpoint(dict(done=np.int64(i + 1), clean_pred=clean_pred.cpu().numpy(), robust=robust.cpu().numpy(),
                               adv_pred=adv_pred.cpu().numpy(), codes=codes.cpu().numpy(), rows=rows.cpu().numpy(),
                               x_rows=x_adv[rows].cpu().numpy(),
                               attack_wall=np.array([wall[a] for a in config.attacks[:i + 1]]),
                               attack_cpu=np.array([cpu[a] for a in config.attacks[:i + 1]])))
        if on_attack is not None:
            on_attack(attack, int(idx.numel()), int(robust.sum()))
    with torch.no_grad():
        adv_logits = model(x_adv).float().cpu().numpy()
    delta = (x_adv - x).flatten(1)
    norm = delta.abs().amax(1) if config.norm == "Linf" else delta.norm(dim=1)
    out_of_range = float(torch.clamp(torch.maximum(-x_adv, x_adv - 1), min=0).max())
    return ChunkOutcome(
        clean_pred=clean_pred.cpu().numpy(), adv_pred=adv_pred.cpu().numpy(), robust=robust.cpu().numpy(),
        broken_by=codes.cpu().numpy(), adv_logits=adv_logits,
        max_perturbation=float(norm.max()) if len(norm) else 0.0, out_of_range=out_of_range, x_adv=x_adv,
        attack_wall_s=wall, attack_cpu_s=cpu,
    )
