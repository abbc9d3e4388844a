"""One optimisation step per recipe. Each recipe builds its state once and returns a ``step(x, y)``.

A step takes a float batch in [0, 1] and integer labels, updates the model, and returns the
batch loss. Class imbalance: the CE-based recipes weight the CE terms by ``weight`` (inverse class
frequency when ``class_weights: balanced``); AUC-M handles imbalance through the class priors.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .adversarial import pgd_ce, pgd_linf
from .config import TrainConfig
from .losses import AUCMLoss, trades_kl
from .optim import PESG, frozen_batchnorm_stats
from .sam_variants import OPTIMIZERS as SHARPNESS_AWARE

Step = Callable[[torch.Tensor, torch.Tensor], float]


@dataclass
class Recipe:
    """A recipe's step function and the optimizers whose learning rate the schedule decays."""

    step: Step
    optimizers: list[torch.optim.Optimizer]  # whose learning rate the step schedule decays
    on_lr_decay: Callable[[], None] = lambda: None
    start_epoch: Callable[[int], None] = lambda epoch: None


def _base_optimizer(params, cfg: TrainConfig) -> torch.optim.Optimizer:
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    raise ValueError(f"optimizer {cfg.optimizer!r} is not available for method {cfg.method!r} (adam or sgd).")


def build_recipe(model: nn.Module, cfg: TrainConfig, weight: torch.Tensor, priors: np.ndarray,
                 generator: torch.Generator) -> Recipe:
    """The :class:`Recipe` of ``cfg.method`` for ``model``."""
    if cfg.method == "auc-m":
        return _aucm(model, cfg, priors)
    opt = _base_optimizer(model.parameters(), cfg)

    def ce(logits, y):
        return F.cross_entropy(logits, y, weight=weight)

    if cfg.method == "erm":
        def step(x, y):
            loss = ce(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            return float(loss.detach())
        return Recipe(step, [opt])

    if cfg.method == "pgd-at":
        def step(x, y):
            model.eval()  # craft the attack without touching BatchNorm statistics
            x_adv = pgd_ce(model, x, y, eps=cfg.eps, steps=cfg.steps, step_size=cfg.step_size, generator=generator)
            model.train()
            loss = ce(model(x_adv), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            return float(loss.detach())
        return Recipe(step, [opt])

    if cfg.method == "trades":
        def step(x, y):
            model.eval()
            with torch.no_grad():
                p_clean = model(x)
            x_adv = pgd_linf(model, x, lambda logits: trades_kl(logits, p_clean), eps=cfg.eps, steps=cfg.steps,
                             step_size=cfg.step_size, generator=generator, random_start="normal")
            model.train()
            logits = model(x)
            loss = ce(logits, y) + cfg.beta * trades_kl(model(x_adv), logits)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            return float(loss.detach())
        return Recipe(step, [opt])

    if cfg.method in SHARPNESS_AWARE:
        cls = SHARPNESS_AWARE[cfg.method]
        settings = {name: getattr(cfg, name) for name in cls.Settings.model_fields}
        sam = cls(model.parameters(), opt, **settings)

        def step(x, y):
            loss = ce(model(x), y)
            sam.zero_grad()
            loss.backward()
            sam.first_step()
            with frozen_batchnorm_stats(model):
                ce(model(x), y).backward()
            sam.second_step()
            return float(loss.detach())
        return Recipe(step, [opt])

    raise ValueError(f"No recipe for method {cfg.method!r}.")


def _aucm(model: nn.Module, cfg: TrainConfig, priors: np.ndarray) -> Recipe:
    """CE pre-training for ``pretrain_epochs`` (Adam 1e-3), then AUC-M with PESG (Yuan et al.'s two stages)."""
    if cfg.optimizer != "pesg":
        raise ValueError("auc-m trains with optimizer 'pesg' (descent on the network and a, b; ascent on alpha).")
    loss_fn = AUCMLoss(torch.as_tensor(priors), margin=cfg.margin)
    # the loss's a, b, alpha live outside the model: they are not part of the saved weights
    opt = PESG(list(model.parameters()) + loss_fn.primal_parameters(), loss_fn.dual_parameters(), lr=cfg.lr,
               momentum=cfg.momentum, epoch_decay=cfg.epoch_decay, weight_decay=cfg.weight_decay)
    pre = torch.optim.Adam(model.parameters(), lr=1e-3)
    stage = {"aucm": cfg.pretrain_epochs == 0}

    def start_epoch(epoch: int) -> None:
        if not stage["aucm"] and epoch > cfg.pretrain_epochs:
            stage["aucm"] = True
            opt.update_reference()  # the proximal term starts from the pre-trained weights

    def step(x, y):
        logits = model(x)
        loss = loss_fn(logits, y) if stage["aucm"] else F.cross_entropy(logits, y)
        optimizer = opt if stage["aucm"] else pre
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return float(loss.detach())

    return Recipe(step, [opt], on_lr_decay=opt.update_reference, start_epoch=start_epoch)
