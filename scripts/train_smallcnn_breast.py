"""Train the bundled reference entry ``Baseline_SmallCNN_ERM`` on real BreastMNIST, deterministically.

    MEDBENCH_DATA=../shared/data/medmnist python scripts/train_smallcnn_breast.py [--out model_zoo/breastmnist]

Plain ERM (class-weighted cross-entropy), Adam, fixed epochs; the checkpoint with the best validation
AUC is kept. Writes ``Baseline_SmallCNN_ERM.safetensors`` and its YAML entry (sha256, size and
parameter count computed here, never typed by hand). Takes well under a minute on one CPU thread.
"""

from __future__ import annotations

import argparse
import copy
import datetime as dt
from pathlib import Path

import numpy as np
import torch
import yaml

import medbench
from medbench.models.architectures import build_architecture, count_parameters
from medbench.metrics import compute_metrics, probabilities
from medbench.schema import parse_entry
from medbench.models.weights import save_weights

MODEL_ID = "Baseline_SmallCNN_ERM"
DATASET = "breastmnist"
ARCH, ARCH_KWARGS = "smallcnn", {"width": 16}
MEAN, STD = [0.5], [0.25]
RECIPE = {"method": "erm", "epochs": 40, "optimizer": "adam", "lr": 0.003, "batch_size": 64, "seed": 0,
          "extra_data": False, "weight_decay": 0.0, "schedule": "constant",
          "selection": "best validation AUC over epochs; class-weighted cross-entropy"}


def evaluate(model: torch.nn.Module, split) -> dict[str, float]:
    model.eval()
    with torch.no_grad():
        logits = model(split.images.float() / 255)
    m = compute_metrics(split.labels, probabilities(logits, split.spec.task), split.spec.task)
    return {"accuracy": m.accuracy, "balanced_accuracy": m.balanced_accuracy, "auc": m.auc}


def train() -> tuple[torch.nn.Module, dict]:
    torch.set_num_threads(1)
    torch.manual_seed(RECIPE["seed"])
    torch.use_deterministic_algorithms(True)
    spec = medbench.get_spec(DATASET)
    train_split, val = medbench.load_dataset(DATASET, "train"), medbench.load_dataset(DATASET, "val")
    x, y = train_split.images.float() / 255, torch.as_tensor(train_split.labels)
    counts = np.bincount(train_split.labels, minlength=spec.num_classes)
    weight = torch.as_tensor(len(y) / (spec.num_classes * counts), dtype=torch.float32)
    model = build_architecture(ARCH, in_channels=spec.n_channels, num_classes=spec.num_classes,
                               mean=MEAN[0], std=STD[0], **ARCH_KWARGS)
    opt = torch.optim.Adam(model.parameters(), lr=RECIPE["lr"], weight_decay=RECIPE["weight_decay"])
    g = torch.Generator().manual_seed(RECIPE["seed"])
    best, best_state, best_epoch = -1.0, None, -1
    for epoch in range(RECIPE["epochs"]):
        model.train()
        for idx in torch.randperm(len(y), generator=g).split(RECIPE["batch_size"]):
            xb = x[idx]
            flip = torch.rand(len(idx), generator=g) < 0.5  # horizontal flips: the only augmentation
            xb = torch.where(flip[:, None, None, None], xb.flip(-1), xb)
            loss = torch.nn.functional.cross_entropy(model(xb), y[idx], weight=weight)
            opt.zero_grad()
            loss.backward()
            opt.step()
        auc = evaluate(model, val)["auc"]
        if auc > best:
            best, best_state, best_epoch = auc, copy.deepcopy(model.state_dict()), epoch + 1
    model.load_state_dict(best_state)
    return model.eval(), {"best_epoch": best_epoch, "val": evaluate(model, val),
                          "test": evaluate(model, medbench.load_dataset(DATASET, "test"))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "model_zoo" / DATASET)
    args = ap.parse_args()
    model, info = train()
    weights_file = args.out / f"{MODEL_ID}.safetensors"
    sha = save_weights(model, weights_file)
    entry = {
        "id": MODEL_ID, "dataset": DATASET, "size": 28, "task": medbench.get_spec(DATASET).task,
        "architecture": ARCH, "architecture_kwargs": ARCH_KWARGS,
        "preprocessing": {"mean": MEAN, "std": STD}, "recipe": RECIPE, "paper": None,
        "license": "Apache-2.0", "date_added": dt.date(2026, 11, 22),
        "description": "3-layer CNN (24k parameters) trained with plain ERM on BreastMNIST 28 px; "
                       "a small bundled reference baseline, made by scripts/train_smallcnn_breast.py.",
        "tags": ["reference", "bundled"],
        "weights": {"format": "safetensors", "sha256": sha, "size_bytes": weights_file.stat().st_size,
                    "num_parameters": count_parameters(model),
                    "sources": [{"kind": "bundled", "filename": weights_file.name}]},
        "reported": None,
    }
    parse_entry(entry, MODEL_ID)  # validate before writing
    (args.out / f"{MODEL_ID}.yaml").write_text(yaml.safe_dump(entry, sort_keys=False, width=110), encoding="utf-8")
    print(f"wrote {weights_file} ({weights_file.stat().st_size} bytes, sha256 {sha})")
    print(f"best epoch {info['best_epoch']}; val {info['val']}; test {info['test']}")


if __name__ == "__main__":
    main()
