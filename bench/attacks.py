"""AutoAttack cost through medbench versus pyautoattack called directly, side by side in one process.

On real BreastMNIST with a small CNN (trained here: a standard and a 2-step-PGD robust one), Linf
2/255 with the protocol's attack set and counts (default: the full protocol, 100 iterations,
5,000 Square queries) on a stratified subset:

- ``direct``: ``pyautoattack.AutoAttack(..., version='custom')`` configured by hand and
  ``run_standard_evaluation(x, y, batch_size=n)``, as a user would call it;
- ``adapter``: ``medbench.attacks.attack_chunk`` (one pyautoattack call per attack, per-attack attribution);
- ``runner``: ``medbench.attacks.evaluation.run_threat`` (the ``benchmark()`` path: subset, chunks,
  metrics, bootstrap CI).

Timings are interleaved (the order rotates every repeat) so machine noise hits all alike; figures
are ratios of medians against ``direct`` (target <= 1.05), of process CPU time (the headline: with
one thread it is the work done, and it is far less sensitive than wall time to other jobs sharing
the machine) and of wall time. Also images/s of each attack alone (on
the points it would attack: the clean-correct ones), so users can estimate a full evaluation.
Writes bench/results/attacks.json.
Usage: MEDBENCH_DATA=../shared/data/medmnist python bench/attacks.py [--n 64] [--repeats 3]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402

import medbench  # noqa: E402
from medbench.models.architectures import build_architecture  # noqa: E402
from medbench.attacks import attack_chunk, attack_config, make_autoattack  # noqa: E402
from medbench.attacks.evaluation import run_threat  # noqa: E402
from medbench.evaluate import EvalContext  # noqa: E402
from medbench.protocol import load_protocol  # noqa: E402
from pyautoattack import AutoAttack  # noqa: E402


def train(dataset: str, epochs: int, adversarial_eps: float, seed: int = 0) -> torch.nn.Module:
    """A small CNN on the real train split; 2-step PGD adversarial training when ``adversarial_eps`` > 0."""
    torch.manual_seed(seed)
    spec = medbench.get_spec(dataset)
    images, labels = medbench.load_dataset(dataset, "train")
    x, y = images.float() / 255, torch.as_tensor(labels)
    model = build_architecture("smallcnn", in_channels=spec.n_channels, num_classes=spec.num_classes)
    weight = torch.as_tensor(len(y) / (spec.num_classes * np.bincount(y.numpy())), dtype=torch.float32)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        model.train()
        for idx in torch.randperm(len(y), generator=g).split(64):
            xb, yb = x[idx], y[idx]
            if adversarial_eps > 0:
                delta = torch.zeros_like(xb, requires_grad=True)
                for _ in range(2):
                    (grad,) = torch.autograd.grad(F.cross_entropy(model(xb + delta), yb), delta)
                    delta = (delta + 0.75 * adversarial_eps * grad.sign()).clamp(-adversarial_eps, adversarial_eps)
                    delta = ((xb + delta).clamp(0, 1) - xb).detach().requires_grad_(True)
                xb = (xb + delta).detach()
            loss = F.cross_entropy(model(xb), yb, weight=weight)
            opt.zero_grad()
            loss.backward()
            opt.step()
    return model.eval()


def direct(model, cfg, x, y, attacks=None):
    """pyautoattack called directly with the same configuration."""
    adversary = AutoAttack(model, attacks=list(attacks or cfg.attacks), device="cpu", eps=cfg.eps, norm=cfg.norm,
                           seed=cfg.seed, version="custom")
    for apgd in (adversary.apgd, adversary.apgd_targeted):
        apgd.n_iter, apgd.n_restarts = cfg.n_iter, cfg.n_restarts
        apgd.n_iter_2, apgd.n_iter_min, apgd.size_decr = (max(int(f * cfg.n_iter), 1) for f in (0.22, 0.06, 0.03))
    adversary.fab.n_iter, adversary.fab.n_restarts = cfg.n_iter, cfg.n_restarts
    if cfg.n_target_classes:
        adversary.apgd_targeted.n_target_classes = adversary.fab.n_target_classes = cfg.n_target_classes
    if cfg.n_queries:
        adversary.square.n_queries = cfg.n_queries
    adversary.logger.disabled = True
    return adversary.run_standard_evaluation(x, y, batch_size=len(x))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default="breastmnist")
    ap.add_argument("--n", type=int, default=64, help="subset size (stratified, seed 0)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--n-iter", type=int, default=100)
    ap.add_argument("--queries", type=int, default=5000)
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    spec = medbench.get_spec(args.dataset)
    protocol = load_protocol().derive(**{"adversarial.subset_size": args.n, "adversarial.n_iter": args.n_iter,
                                         "adversarial.square_queries": args.queries})
    split = medbench.load_dataset(args.dataset, "test")
    idx = medbench.metrics.stratified_indices(split.labels, args.n, seed=0)
    x, y = split.images[torch.as_tensor(idx)].float() / 255, torch.as_tensor(split.labels[idx])
    threat = protocol["adversarial"]["threats"]["Linf"][0]
    cfg = attack_config(spec, "Linf", threat["eps"], protocol, batch_size=len(x), seed=0)
    models = {"standard": train(args.dataset, args.epochs, 0.0), "robust": train(args.dataset, args.epochs, 4 / 255)}

    out: dict = {"dataset": args.dataset, "n": len(x), "threat": threat["label"], "config": cfg.model_dump(),
                 "models": {}}
    for name, model in models.items():
        ctx = EvalContext(model=model, spec=spec, split=split, size=28, device=torch.device("cpu"),
                          batch_size=len(x), seed=0, protocol=protocol, data_root=medbench.data.data_root(),
                          progress=False)
        fns = {
            "direct": lambda: direct(model, cfg, x, y),
            "adapter": lambda: attack_chunk(make_autoattack(model, cfg, "cpu"), cfg, x, y),
            "runner": lambda: run_threat(ctx, "Linf", threat)[0],
        }
        times = {k: [] for k in fns}
        cpu = {k: [] for k in fns}
        outputs = {}
        for r in range(args.repeats):
            order = list(fns)[r % 3:] + list(fns)[:r % 3]
            for k in order:
                t0, c0 = time.perf_counter(), time.process_time()
                outputs[k] = fns[k]()
                times[k].append(time.perf_counter() - t0)
                cpu[k].append(time.process_time() - c0)
        robust_direct = (outputs["direct"][1] == y).numpy()
        assert np.array_equal(outputs["adapter"].robust, robust_direct), "adapter and direct disagree"
        assert np.array_equal(np.asarray(outputs["runner"].robust_flags), robust_direct), "runner and direct disagree"
        med = {k: _common.median(v) for k, v in times.items()}
        med_cpu = {k: _common.median(v) for k, v in cpu.items()}

        per_attack = {}
        with torch.no_grad():
            correct = model(x).argmax(1) == y
        for attack in cfg.attacks:  # each attack alone on the clean-correct points (its worst case)
            t0, c0 = time.perf_counter(), time.process_time()
            _, y_adv = direct(model, cfg, x[correct], y[correct], attacks=[attack])
            dt, dc = time.perf_counter() - t0, time.process_time() - c0
            per_attack[attack] = {"images": int(correct.sum()), "wall_seconds": round(dt, 3),
                                  "cpu_seconds": round(dc, 3),
                                  "images_per_cpu_s": round(float(correct.sum()) / dc, 2),
                                  "images_per_s_wall": round(float(correct.sum()) / dt, 2),
                                  "robust_accuracy_alone": round(float((y_adv == y[correct]).float().mean()), 4)}
        out["models"][name] = {
            "clean_accuracy": round(float(correct.float().mean()), 4),
            "robust_accuracy": round(float(robust_direct.mean()), 4),
            "robust_balanced_accuracy": round(outputs["runner"].robust_balanced_accuracy, 4),
            "cpu_seconds": {k: [round(t, 3) for t in v] for k, v in cpu.items()},
            "wall_seconds": {k: [round(t, 3) for t in v] for k, v in times.items()},
            "ratio_vs_direct": {k: round(med_cpu[k] / med_cpu["direct"], 4) for k in ("adapter", "runner")},
            "ratio_vs_direct_wall": {k: round(med[k] / med["direct"], 4) for k in ("adapter", "runner")},
            "images_per_s_full_set_wall": {k: round(len(x) / v, 2) for k, v in med.items()},
            "per_attack": per_attack,
        }
        print(name, out["models"][name]["ratio_vs_direct"], out["models"][name]["cpu_seconds"], flush=True)
    out["target"] = "ratio_vs_direct (CPU time) <= 1.05"
    out["command"] = "python bench/attacks.py " + " ".join(sys.argv[1:])
    print("wrote", _common.write("attacks", out))


if __name__ == "__main__":
    main()
