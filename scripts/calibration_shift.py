#!/usr/bin/env python
"""Does adversarial training or SAM improve calibration under corruption on the reference zoo? (issue 27)

For each dataset with an ERM baseline and a PGD-AT / SAM model of the same architecture, the clean test
split and every corrupted copy of it (the current protocol's MedMNIST-C suite, all severities) are
predicted by the three models; the score of each model is computed on the pooled corrupted copies (and
on the clean split), and the paired difference method - ERM is bootstrapped by resampling test images,
each with all its corrupted copies, the same resamples for both models. p: one-sided, the share of
resamples where the method is not better (difference >= 0 for ECE / NLL / Brier; lower is better).
Writes scripts/results/calibration_shift.json.

    MEDBENCH_DATA=../shared/data/medmnist python scripts/calibration_shift.py [--resamples 2000]
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import sys
from pathlib import Path

import numpy as np
import torch

import medbench
from medbench.calibration.metrics import SCORE_NAMES, bootstrap_calibration, per_label_scores
from medbench.corruptions.evaluation import cell_logits, corrupted_sets
from medbench.inference import predict_logits
from medbench.metrics import percentile_interval, probabilities
from medbench.protocol import load_protocol

OUT = Path(__file__).resolve().parent / "results" / "calibration_shift.json"
PAIRS = {  # dataset -> (baseline, methods), same architecture and recipe otherwise
    "breastmnist": ("Baseline_ResNet8_ERM", ["Baseline_ResNet8_PGDAT", "Baseline_ResNet8_SAM"]),
    "pneumoniamnist": ("Baseline_ResNet8_ERM", ["Baseline_ResNet8_PGDAT", "Baseline_ResNet8_SAM"]),
    "retinamnist": ("Baseline_ResNet8_ERM", ["Baseline_ResNet8_PGDAT", "Baseline_ResNet8_SAM"]),
    "adrenalmnist3d": ("Baseline_SmallCNN3D_ERM", ["Baseline_SmallCNN3D_PGDAT", "Baseline_SmallCNN3D_SAM"]),
    "vesselmnist3d": ("Baseline_SmallCNN3D_ERM", ["Baseline_SmallCNN3D_PGDAT", "Baseline_SmallCNN3D_SAM"]),
}
SCORES = ("ece", "brier", "nll")


def _resampled(labels, logits, task, groups, protocol, resamples):
    cal = protocol["calibration"]
    probs = probabilities(logits, task)
    point = {k: float(v.mean()) for k, v in per_label_scores(labels, probs, task, n_bins=cal["bins"],
                                                            coverage=cal["coverage"]).items()}
    boot = bootstrap_calibration(labels, probs, task, n_bins=cal["bins"], coverage=cal["coverage"],
                                 n_resamples=resamples, seed=0, groups=groups)
    return point, {k: boot[:, SCORE_NAMES.index(k)] for k in SCORES}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--resamples", type=int, default=2000)
    ap.add_argument("--datasets", default=",".join(PAIRS))
    args = ap.parse_args()
    torch.set_num_threads(1)
    protocol = load_protocol()
    rows = []
    for dataset in args.datasets.split(","):
        base, methods = PAIRS[dataset]
        spec = medbench.get_spec(dataset)
        test = medbench.load_dataset(dataset, "test")
        models = {m: medbench.load_model(m, dataset) for m in [base, *methods]}
        params, sets = corrupted_sets(spec, 28, test, protocol, progress=False)
        blocks: dict[str, list[np.ndarray]] = {m: [] for m in models}
        for _, _, out in cell_logits(models, params, sets, batch_size=128, device=torch.device("cpu"), progress=False):
            for m, logits in out.items():
                blocks[m].append(np.asarray(logits))
        n, k = len(test.labels), len(blocks[base])
        conditions = {
            "clean": (test.labels, {m: np.asarray(predict_logits(models[m], test.images, batch_size=128,
                                                                 device=torch.device("cpu"), progress=False))
                                    for m in models}, np.arange(n)),
            "corrupted": (np.concatenate([test.labels] * k), {m: np.concatenate(b) for m, b in blocks.items()},
                          np.tile(np.arange(n), k)),
        }
        for condition, (labels, logits, groups) in conditions.items():
            scored = {m: _resampled(labels, logits[m], spec.task, groups, protocol, args.resamples) for m in models}
            for method in methods:
                for score in SCORES:
                    diff = scored[method][1][score] - scored[base][1][score]  # paired: the same resamples
                    ci = percentile_interval(diff)
                    rows.append({
                        "dataset": dataset, "condition": condition, "score": score, "method": method, "baseline": base,
                        "method_value": scored[method][0][score], "baseline_value": scored[base][0][score],
                        "difference": scored[method][0][score] - scored[base][0][score],
                        "ci": [ci.low, ci.high],
                        "p_method_not_better": float((np.sum(diff >= 0) + 1) / (len(diff) + 1))})
                    r = rows[-1]
                    print(f"{dataset:15s} {condition:9s} {score:5s} {method:28s} {r['difference']:+.3f} "
                          f"[{ci.low:+.3f}, {ci.high:+.3f}] p={r['p_method_not_better']:.4f}", file=sys.stderr)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps({
        "question": "does adversarial training (PGD-AT) or SAM improve calibration under corruption, against the "
                    "same architecture's ERM baseline?",
        "protocol": protocol.version, "protocol_sha256": protocol.sha256(), "resamples": args.resamples,
        "bootstrap": "test images resampled with all their corrupted copies; both models on the same resamples",
        "p": "one-sided: share of resamples (with +1 smoothing) where method - ERM >= 0 (not better)",
        "measured_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "medbench_version": medbench.__version__, "rows": rows}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
