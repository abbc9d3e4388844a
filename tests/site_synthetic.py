"""A synthetic registry and result set, for the site's tests and its build benchmark.

Entries validate against ``ModelEntry`` and results against ``EvaluationResult``; the numbers are
random but internally consistent (robust flags agree with predictions and labels). ``hostile``
puts markup and quotes into every free-text field, to test escaping.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import yaml

from medbench.data import DATASETS
from medbench.metrics import balanced_accuracy
from medbench.schema.result import EvaluationResult

HOSTILE = '<script>alert("x")</script><img src=x onerror=alert(1)> & \'quote\''
THREATS = {"Linf-2/255": ("Linf", 2 / 255), "Linf-4/255": ("Linf", 4 / 255), "L2-0.25": ("L2", 0.25)}
CORRUPTIONS = ["pixelate", "jpeg_compression", "gaussian_noise", "motion_blur", "brightness_up", "contrast_down"]
METHODS = ["erm", "pgd-at", "trades", "sam", "auc-m"]
ARCHS = ["resnet18", "resnet8", "wrn16", "smallcnn"]


def model_ids(n: int) -> list[str]:
    """Ids valid under the registry's pattern: a few baselines, then Author<year>Keyword ids."""
    base = [f"Baseline_{a}_{m}" for a in ("ResNet18", "SmallCNN") for m in ("ERM", "TRADES")]
    return (base + [f"Synth{2000 + i % 26}Model{i:04d}" for i in range(n)])[:n]


def _entry(model_id: str, dataset: str, rng: np.random.Generator, hostile: bool) -> dict:
    spec = DATASETS[dataset]
    method = METHODS[int(rng.integers(len(METHODS)))]
    text = HOSTILE if hostile else None
    recipe = {"method": method, "epochs": int(rng.integers(5, 100)), "optimizer": "adam", "lr": 0.001,
              "batch_size": 128, "seed": 0, "extra_data": bool(rng.random() < 0.2)}
    if method in ("pgd-at", "trades"):
        recipe.update(eps=round(2 / 255, 6), steps=4, norm="Linf")
    entry = {
        "id": model_id, "dataset": dataset, "size": 28, "task": spec.task,
        "architecture": ARCHS[int(rng.integers(len(ARCHS)))],
        "preprocessing": {"mean": [0.5], "std": [0.25]}, "recipe": recipe,
        "license": text or "Apache-2.0", "date_added": "2026-11-22",
        "description": text or f"Synthetic entry {model_id}.",
        "weights": {"sha256": hashlib.sha256(f"{dataset}/{model_id}".encode()).hexdigest(), "size_bytes": 123456,
                    "num_parameters": 23858, "sources": [{"kind": "bundled", "filename": f"{model_id}.safetensors"}]},
    }
    if not model_id.startswith("Baseline_"):
        entry["paper"] = {"title": text or f"A study of {model_id}", "url": "https://example.org/paper",
                          "authors": [text or "A. Author", "B. Author"], "venue": text or "MICCAI",
                          "year": 2020 + int(rng.integers(6))}
    if rng.random() < 0.3 or hostile:
        entry["reported"] = {"source": text or "Table 2", "clean_auc": round(float(rng.uniform(0.7, 1)), 3),
                             "clean_accuracy": round(float(rng.uniform(0.6, 1)), 3)}
    return entry


def _noisy(labels: np.ndarray, k: int, p: float, rng: np.random.Generator) -> np.ndarray:
    wrong = rng.random(len(labels)) > p
    return np.where(wrong, (labels + rng.integers(1, max(2, k), len(labels))) % k, labels)


def _result(model_id: str, dataset: str, rng: np.random.Generator, *, hostile: bool, clean_n: int | None,
            weights_sha256: str, protocol: str = "1", sections: tuple[str, ...] = ("clean", "corruptions", "adv", "curves")) -> dict:
    spec = DATASETS[dataset]
    k = spec.num_classes
    names = [HOSTILE + str(i) for i in range(k)] if hostile else list(spec.class_names)
    n = min(spec.n_samples["test"], clean_n or spec.n_samples["test"])
    y = np.arange(n) % k
    skill = float(rng.uniform(0.55, 0.95))
    robust = float(rng.uniform(0.1, 0.9)) * skill
    res: dict = {"model_id": model_id, "dataset": dataset, "size": 28, "task": spec.task, "num_classes": k,
                 "class_names": names, "threats": [], "adversarial": {}, "checks": []}
    if "clean" in sections:
        if spec.is_multilabel:
            pred = (rng.random((n, k)) < 0.1).astype(int)
            preds, ba = pred.tolist(), skill
        else:
            pred = _noisy(y, k, skill, rng)
            preds, ba = pred.tolist(), balanced_accuracy(y, pred, k)
        res["threats"].append("clean")
        res["clean"] = {"n": n, "accuracy": ba, "balanced_accuracy": ba, "auc": min(1.0, ba + 0.05),
                        "per_class_recall": {c: float(rng.uniform(0.3, 1)) for c in names},
                        "ci": {m: {"low": max(0.0, ba - 0.05), "high": min(1.0, ba + 0.05)}
                               for m in ("accuracy", "balanced_accuracy", "auc")},
                        "predictions": preds}
    if "corruptions" in sections:
        cells = [{"corruption": (HOSTILE if hostile and c == "pixelate" else c), "severity": s,
                  "accuracy": skill * (1 - 0.06 * s), "balanced_accuracy": skill * (1 - 0.06 * s) * float(rng.uniform(0.9, 1)),
                  "auc": None} for c in CORRUPTIONS for s in range(1, 6)]
        mean = float(np.mean([c["balanced_accuracy"] for c in cells]))
        res["threats"].append("corruptions")
        res["corruptions"] = {"suite": "medbench-3d" if spec.is_3d else "medmnist-c", "cells": cells,
                              "balanced_accuracy": mean,
                              "per_corruption": {c["corruption"]: mean for c in cells},
                              "per_severity": {str(s): mean for s in range(1, 6)},
                              "relative_robustness": mean / skill}
    m = min(spec.n_samples["test"], 1000)
    subset = {"n": m, "seed": 0, "indices_sha256": hashlib.sha256(f"{dataset}-subset".encode()).hexdigest(),
              "whole_split": m == spec.n_samples["test"]}
    ys = np.arange(m) % k
    if "adv" in sections and not spec.is_multilabel:
        for label, (norm, eps) in THREATS.items():
            if spec.is_3d and norm == "L2":
                continue
            p = robust * (0.8 if label == "Linf-4/255" else 1.0)
            adv = _noisy(ys, k, p, rng)
            rba = balanced_accuracy(ys, adv, k)
            res["adversarial"][label] = {
                "threat": label, "subset": subset, "clean_accuracy": skill, "clean_balanced_accuracy": skill,
                "robust_accuracy": float((adv == ys).mean()), "robust_balanced_accuracy": rba,
                "robust_balanced_accuracy_ci": {"low": max(0.0, rba - 0.04), "high": min(1.0, rba + 0.04)},
                "auc_under_attack": rba, "robust_flags": (adv == ys).tolist(), "adv_predictions": adv.tolist(),
                "config": {"norm": norm, "eps": eps, "attacks": ["apgd-ce", "fab-t", "square"], "n_iter": 100,
                           "n_restarts": 1, "seed": 0, "library_version": "0.2.0"}}
        res["threats"] += ["Linf", "L2"]
    if "curves" in sections and not spec.is_multilabel:
        eps = [0, 0.5 / 255, 1 / 255, 2 / 255, 4 / 255, 8 / 255]
        curve = lambda d: [{"x": e, "accuracy": skill * (1 - d * i / 6), "balanced_accuracy": skill * (1 - d * i / 6)}
                           for i, e in enumerate(eps)]
        res["curves"] = {"subset": subset, "apgd_ce": curve(0.9), "fgsm": curve(0.6),
                         "noise": [{"x": s, "accuracy": skill * (1 - s), "balanced_accuracy": skill * (1 - s)}
                                   for s in (0.01, 0.02, 0.05, 0.1, 0.2)]}
    bad = rng.random()
    for name, kind in (("deterministic_forward", "admission"), ("logits_not_probabilities", "admission"),
                       ("nonzero_input_gradients", "admission"), ("eps0_equals_clean", "sanity"),
                       ("apgd_curve_monotone", "sanity"), ("robust_le_clean", "sanity")):
        passed = not ((kind == "admission" and bad < 0.03 and name == "nonzero_input_gradients")
                      or (kind == "sanity" and 0.03 <= bad < 0.08 and name == "apgd_curve_monotone"))
        res["checks"].append({"name": name, "kind": kind, "passed": passed, "value": 1.0, "threshold": 0.99,
                              "message": (HOSTILE if hostile else "measured as expected") + ("" if passed else "; FAILED")})
    res["provenance"] = {
        "medbench_version": "0.1.0", "protocol_version": protocol, "protocol_sha256": "0" * 64, "dataset": dataset,
        "size": 28, "split": "test", "data_file": f"{dataset}.npz", "data_md5": "0" * 32,
        "weights_sha256": weights_sha256, "seed": 0, "device": "cpu", "torch_version": "2.13.0",
        "library_versions": {"numpy": "2.3.0", "pyautoattack": "0.2.0"}, "python_version": "3.11",
        "platform": "linux", "started_at": "2026-11-22T05:00:00Z", "wall_time_s": 123.0}
    return res


def write_synthetic(registry: Path, results: Path, datasets: list[str], n_models: int, *, seed: int = 0,
                    hostile: bool = False, clean_n: int | None = 200, with_results: float = 1.0) -> list[str]:
    """Write ``n_models`` entries per dataset (and results for a fraction ``with_results`` of them)."""
    ids = model_ids(n_models)
    for dataset in datasets:
        rng = np.random.default_rng([seed, len(dataset)] + [ord(c) for c in dataset])
        (registry / dataset).mkdir(parents=True, exist_ok=True)
        (results / dataset).mkdir(parents=True, exist_ok=True)
        for i, mid in enumerate(ids):
            entry = _entry(mid, dataset, rng, hostile)
            (registry / dataset / f"{mid}.yaml").write_text(yaml.safe_dump(entry, sort_keys=False))
            if i < round(with_results * n_models):
                res = _result(mid, dataset, rng, hostile=hostile, clean_n=clean_n,
                              weights_sha256=entry["weights"]["sha256"])
                EvaluationResult.model_validate(res).to_json(results / dataset / f"{mid}.json", indent=None)
    return ids
