"""Between a :class:`TrainConfig` and a registry entry's ``recipe`` block (``ModelEntry.recipe``).

The block keeps the schema's common fields (method, epochs, optimizer, lr, batch size, seed, eps,
steps, norm, weight decay, schedule, selection) and every other setting in ``hyperparameters``, so
``config_from_entry(entry)`` rebuilds exactly the config that trained the weights.
"""

from __future__ import annotations

from typing import Any

from .config import TrainConfig

# TrainConfig fields stored under recipe.hyperparameters (scalars only; lists as comma-separated text).
HYPERPARAMETERS = ("class_weights", "momentum", "lr_milestones", "lr_gamma", "step_size", "val_eps", "val_steps",
                   "beta", "rho", "eta", "alpha", "gamma", "margin", "epoch_decay", "pretrain_epochs", "threshold")
SELECTION_PREFIX = "best val "


def recipe_block(cfg: TrainConfig) -> dict[str, Any]:
    """The ``recipe`` mapping of a registry entry for ``cfg`` (validated by ``medbench.schema.entry.Recipe``)."""
    d = cfg.to_dict()
    hyper = {}
    for key in HYPERPARAMETERS:
        value = d[key]
        # defaults that older entries do not state are left out, so their blocks stay as they were
        if value is None or (key == "pretrain_epochs" and not value) or (key == "threshold" and value == "argmax"):
            continue
        hyper[key] = ",".join(f"{v:g}" for v in value) if isinstance(value, list) else value
    block: dict[str, Any] = {
        "method": cfg.method, "epochs": cfg.epochs, "optimizer": cfg.optimizer, "lr": cfg.lr,
        "batch_size": cfg.batch_size, "seed": cfg.seed, "extra_data": False, "weight_decay": cfg.weight_decay,
        "schedule": f"x{cfg.lr_gamma:g} at {' and '.join(f'{f:.0%}' for f in cfg.lr_milestones)} of the epochs",
        "hyperparameters": hyper, "selection": SELECTION_PREFIX + cfg.selection,
    }
    if cfg.method in ("pgd-at", "trades"):
        block.update(eps=cfg.eps, steps=cfg.steps, norm="Linf")
    return block


def config_from_recipe(recipe: Any, *, architecture: str, architecture_kwargs: dict | None = None,
                       mean: Any = 0.5, std: Any = 0.5) -> TrainConfig:
    """Rebuild the :class:`TrainConfig` from a recipe block (a ``Recipe`` model or a mapping)."""
    r = recipe.model_dump() if hasattr(recipe, "model_dump") else dict(recipe)
    if r.get("extra_data"):
        raise ValueError("This recipe used extra training data; medbench train can only retrain on the dataset's own split.")
    selection = r.get("selection")
    if selection is not None and not selection.startswith(SELECTION_PREFIX):
        raise ValueError(f"recipe.selection {selection!r} is not one medbench train understands "
                         f"(expected '{SELECTION_PREFIX}auc', '{SELECTION_PREFIX}balanced_accuracy' or "
                         f"'{SELECTION_PREFIX}balanced_accuracy+robust').")
    if r.get("norm") not in (None, "Linf"):
        raise ValueError(f"medbench train implements Linf adversarial training only, recipe.norm is {r['norm']!r}.")
    hyper = dict(r.get("hyperparameters") or {})
    unknown = sorted(set(hyper) - set(HYPERPARAMETERS))
    if unknown:
        raise ValueError(f"Unknown recipe.hyperparameters: {', '.join(unknown)} (known: {', '.join(HYPERPARAMETERS)}).")
    if isinstance(hyper.get("lr_milestones"), str):
        hyper["lr_milestones"] = [float(v) for v in hyper["lr_milestones"].split(",") if v.strip()]
    fields = {k: r[k] for k in ("method", "epochs", "optimizer", "lr", "batch_size", "weight_decay", "eps", "steps")
              if r.get(k) is not None}
    fields["seed"] = r.get("seed") or 0
    if selection is not None:
        fields["selection"] = selection[len(SELECTION_PREFIX):]
    return TrainConfig.from_dict({**fields, **hyper, "architecture": architecture,
                                  "architecture_kwargs": dict(architecture_kwargs or {}),
                                  "mean": _one_or_list(mean), "std": _one_or_list(std)})


def config_from_entry(entry: Any) -> TrainConfig:
    """The :class:`TrainConfig` that trained a ``ModelEntry``'s weights."""
    return config_from_recipe(entry.recipe, architecture=entry.architecture,
                              architecture_kwargs=entry.architecture_kwargs,
                              mean=entry.preprocessing.mean, std=entry.preprocessing.std)


def _one_or_list(v: Any) -> Any:
    if isinstance(v, (list, tuple)):
        return float(v[0]) if len(v) == 1 else [float(x) for x in v]
    return float(v)
