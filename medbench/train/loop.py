"""``train()``: run one recipe on one dataset, select the best epoch on the validation split, save it.

Deterministic on CPU given ``config.seed`` (and the same torch build and thread count): the
initial weights, the batch order and the attack noise each come from their own seeded stream.
Writes a JSON-lines log (a ``start`` record, one record per epoch, an ``end`` record) and the
selected weights as safetensors.
"""

from __future__ import annotations

import copy
import datetime as _dt
import json
import os
import platform
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from .. import metrics as M
from ..models.architectures import build_architecture
from ..data import Split, get_spec, load_dataset
from ..inference import to_float
from ..models.weights import save_weights
from .adversarial import pgd_ce
from .config import TrainConfig
from .losses import balanced_class_weights
from .recipes import build_recipe


@dataclass
class TrainResult:
    """What a training run produced."""

    model: nn.Module
    weights_path: Path
    weights_sha256: str
    log_path: Path
    best_epoch: int
    best_val: dict[str, float]
    wall_time_s: float
    config: dict[str, Any] = field(default_factory=dict)


@contextmanager
def _deterministic():
    previous = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous)


def _batches(n: int, batch_size: int, generator: torch.Generator) -> list[torch.Tensor]:
    """A seeded permutation in batches; a trailing batch of one joins the previous one (BatchNorm)."""
    parts = list(torch.randperm(n, generator=generator).split(batch_size))
    if len(parts) > 1 and len(parts[-1]) < 2:
        parts[-2] = torch.cat([parts[-2], parts.pop()])
    return parts


def validate(model: nn.Module, split: Split, cfg: TrainConfig, batch_size: int = 256) -> dict[str, float]:
    """Validation metrics: clean balanced accuracy / AUC / accuracy, plus PGD balanced accuracy when
    the selection needs it (``val_steps`` steps at ``val_eps``, fixed seed so epochs are comparable).

    ``val_predicted_classes`` counts the classes the model predicts at all (1 = a constant predictor).
    With ``cfg.threshold == "val_balanced_accuracy"`` on a binary task the metrics are those of the
    decision threshold that maximises balanced accuracy, reported as ``val_threshold`` (a logit margin).
    """
    model.eval()
    task = split.spec.task
    y = torch.as_tensor(split.labels)
    logits, adv_logits = [], []
    g = torch.Generator().manual_seed(cfg.seed + 1)
    for start in range(0, len(split), batch_size):
        x = to_float(split.images[start:start + batch_size], "cpu")
        with torch.no_grad():
            logits.append(model(x))
        if cfg.selection == "balanced_accuracy+robust":
            x_adv = pgd_ce(model, x, y[start:start + batch_size], eps=cfg.val_eps, steps=cfg.val_steps,
                           step_size=2.5 * cfg.val_eps / cfg.val_steps, generator=g)
            with torch.no_grad():
                adv_logits.append(model(x_adv))
    logits = torch.cat(logits)
    out: dict[str, float] = {}
    shift = torch.zeros(logits.shape[1])
    if cfg.threshold == "val_balanced_accuracy" and logits.shape[1] == 2:
        t = best_threshold((logits[:, 1] - logits[:, 0]).numpy(), split.labels)
        shift[1] = -t
        out["val_threshold"] = t
    logits = logits + shift
    m = M.compute_metrics(split.labels, M.probabilities(logits, task), task)
    out = {"val_balanced_accuracy": m.balanced_accuracy, "val_auc": m.auc, "val_accuracy": m.accuracy,
           "val_predicted_classes": int(len(torch.unique(logits.argmax(1)))), **out}
    if adv_logits:
        r = M.compute_metrics(split.labels, M.probabilities(torch.cat(adv_logits) + shift, task), task)
        out["val_robust_balanced_accuracy"] = r.balanced_accuracy
    return out


def best_threshold(margin: np.ndarray, labels: np.ndarray) -> float:
    """The threshold on a binary logit margin (``logit_1 - logit_0``) with the highest balanced
    accuracy; among equals the one nearest 0 (the argmax decision), and 0 when nothing beats chance."""
    margin, labels = np.asarray(margin, dtype=np.float64), np.asarray(labels).reshape(-1)
    pos, neg = margin[labels == 1], margin[labels == 0]
    if len(pos) == 0 or len(neg) == 0:
        return 0.0
    values = np.unique(margin)
    candidates = np.concatenate([[0.0], (values[1:] + values[:-1]) / 2])
    tpr = (pos[None, :] > candidates[:, None]).mean(1)
    tnr = (neg[None, :] <= candidates[:, None]).mean(1)
    ba = (tpr + tnr) / 2
    best = ba.max()
    if best <= 0.5:
        return 0.0
    ties = candidates[np.isclose(ba, best)]
    return float(ties[np.argmin(np.abs(ties))])


def fold_threshold(model: nn.Module, threshold: float, probe: torch.Tensor) -> None:
    """Move a binary decision threshold into the output layer: ``bias[1] -= threshold`` on the last
    ``nn.Linear``, so the plain argmax of the saved model makes the thresholded decision. Checked on
    ``probe`` inputs: an architecture whose last linear layer is not the logit layer is refused."""
    layer = next((m for m in reversed(list(model.modules())) if isinstance(m, nn.Linear)), None)
    if layer is None or layer.bias is None or layer.out_features != 2:
        raise ValueError("threshold 'val_balanced_accuracy' needs a binary model whose last layer is an nn.Linear "
                         "with a bias (the threshold is folded into it); use threshold 'argmax' for this architecture.")
    model.eval()
    with torch.no_grad():
        before = model(probe)
        layer.bias[1] -= threshold
        after = model(probe)
    expected = before[:, 1] - before[:, 0] - threshold
    if not torch.allclose(after[:, 1] - after[:, 0], expected, atol=1e-4, rtol=1e-4):
        with torch.no_grad():
            layer.bias[1] += threshold  # leave the model as it was
        raise ValueError("Folding the decision threshold into the last nn.Linear did not shift the logits as "
                         "expected (that layer is not the output layer); use threshold 'argmax'.")


def selection_key(val: dict[str, float], selection: str) -> tuple[bool, float]:
    """How epochs are ranked: an epoch that predicts more than one class on validation always beats a
    constant predictor (whose AUC may still look good), then the ``selection`` metric decides."""
    return val.get("val_predicted_classes", 2) > 1, selection_score(val, selection)


def selection_score(val: dict[str, float], selection: str) -> float:
    if selection in ("auc", "last"):  # "last" keeps the final epoch whatever it scores; its AUC is logged
        return val["val_auc"]
    if selection == "balanced_accuracy":
        return val["val_balanced_accuracy"]
    return (val["val_balanced_accuracy"] + val["val_robust_balanced_accuracy"]) / 2


def build_model(cfg: TrainConfig, dataset: str) -> nn.Module:
    spec = get_spec(dataset)
    return build_architecture(cfg.architecture, in_channels=spec.n_channels, num_classes=spec.num_classes,
                              mean=cfg.mean, std=cfg.std, **cfg.architecture_kwargs)


def train(
    config: TrainConfig | dict,
    dataset: str,
    out_dir: str | os.PathLike,
    *,
    name: str = "model",
    size: int = 28,
    data_root: str | os.PathLike | None = None,
    progress: bool = True,
    train_split: Split | None = None,
    val_split: Split | None = None,
) -> TrainResult:
    """Train ``config`` on ``dataset``; write ``<out_dir>/<name>.safetensors`` and ``<name>.train.jsonl``.

    ``train_split`` / ``val_split`` replace the dataset's own splits (e.g. a derived training set built
    by a study); their ``md5`` is logged as the data's identity.
    """
    cfg = config if isinstance(config, TrainConfig) else TrainConfig.from_dict(config)
    spec = get_spec(dataset)
    if spec.is_multilabel:
        raise ValueError(f"{spec.name} is multi-label; the training recipes cover single-label tasks only.")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    weights_path, log_path = out / f"{name}.safetensors", out / f"{name}.train.jsonl"
    if train_split is None:
        train_split = load_dataset(spec.name, "train", size, data_root)
    if val_split is None:
        val_split = load_dataset(spec.name, "val", size, data_root)
    labels = torch.as_tensor(train_split.labels)
    counts = np.bincount(train_split.labels, minlength=spec.num_classes)
    weight = (balanced_class_weights(train_split.labels, spec.num_classes) if cfg.class_weights == "balanced"
              else torch.ones(spec.num_classes))

    t_start = time.perf_counter()
    with _deterministic(), open(log_path, "w") as log:
        def write(record: dict) -> None:
            log.write(json.dumps(record) + "\n")
            log.flush()

        torch.manual_seed(cfg.seed)
        model = build_model(cfg, spec.name)
        data_gen = torch.Generator().manual_seed(cfg.seed)
        attack_gen = torch.Generator().manual_seed(cfg.seed + 2)
        recipe = build_recipe(model, cfg, weight, counts / counts.sum(), attack_gen)
        first, span = cfg.pretrain_epochs, cfg.epochs - cfg.pretrain_epochs  # schedule of the main stage
        milestones = sorted({first + max(1, int(round(f * span))) for f in cfg.lr_milestones})
        write({"event": "start", "model": name, "dataset": spec.name, "size": size, "config": cfg.to_dict(),
               "train_n": len(train_split), "val_n": len(val_split), "train_class_counts": counts.tolist(),
               "class_weights": [round(float(w), 6) for w in weight], "lr_milestone_epochs": milestones,
               "data_md5": train_split.md5, "torch_version": torch.__version__, "threads": torch.get_num_threads(),
               "platform": platform.platform(), "cpu_capability": torch.backends.cpu.get_cpu_capability(),
               "started_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")})
        best_key, best_epoch, best_state, best_val = (False, -float("inf")), 0, None, {}
        bar = tqdm(range(1, cfg.epochs + 1), desc=f"train {name} ({cfg.method}, {spec.name})", unit="epoch",
                   disable=not progress)
        for epoch in bar:
            t0 = time.perf_counter()
            recipe.start_epoch(epoch)
            model.train()
            losses = []
            for idx in _batches(len(labels), cfg.batch_size, data_gen):
                losses.append(recipe.step(to_float(train_split.images[idx], "cpu"), labels[idx]))
            lr = recipe.optimizers[0].param_groups[0]["lr"]
            if epoch in milestones:
                for opt in recipe.optimizers:
                    for group in opt.param_groups:
                        group["lr"] *= cfg.lr_gamma
                recipe.on_lr_decay()
            val = validate(model, val_split, cfg)
            key = selection_key(val, cfg.selection)
            score = key[1]
            improved = key > best_key or cfg.selection == "last"
            if improved:
                best_key, best_epoch, best_val = key, epoch, dict(val)
                best_state = copy.deepcopy(model.state_dict())
            write({"event": "epoch", "epoch": epoch, "lr": lr, "train_loss": float(np.mean(losses)), **val,
                   "selection_score": score, "best": improved, "epoch_time_s": round(time.perf_counter() - t0, 3)})
            bar.set_postfix(loss=f"{np.mean(losses):.3f}", val=f"{score:.3f}", best=f"{best_key[1]:.3f}@{best_epoch}")
        model.load_state_dict(best_state)
        model.eval()
        if best_val.get("val_threshold"):
            fold_threshold(model, best_val["val_threshold"], to_float(val_split.images[:64], "cpu"))
        sha = save_weights(model, weights_path)
        wall = time.perf_counter() - t_start
        write({"event": "end", "best_epoch": best_epoch, "selection": cfg.selection, "selection_score": best_key[1],
               **best_val, "weights_sha256": sha, "wall_time_s": round(wall, 1)})
    return TrainResult(model=model, weights_path=weights_path, weights_sha256=sha, log_path=log_path,
                       best_epoch=best_epoch, best_val=best_val, wall_time_s=wall, config=cfg.to_dict())
