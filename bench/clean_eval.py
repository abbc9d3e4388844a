"""Clean-evaluation throughput on real PneumoniaMNIST (624 test images), side by side in one process:

- ``medbench``: ``medbench.benchmark(model, "pneumoniamnist")`` (load + inference + metrics + bootstrap CIs);
- ``raw``: the same model's batched forward passes on a pre-made float tensor (the ceiling);
- ``naive``: the obvious user pipeline, ``medmnist.PneumoniaMNIST`` with a per-image ToTensor-style
  transform and a ``DataLoader``, then medmnist's evaluator.

Writes bench/results/clean_eval.json. Targets: medbench >= 0.8x raw, >= 3x naive (images/s).
Usage: MEDBENCH_DATA=../shared/data/medmnist python bench/clean_eval.py
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402

import medbench  # noqa: E402
from medbench.models.architectures import build_architecture  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--arch", default="resnet8",
                    help="architecture; 'linear' is a single linear layer, where the data pipeline dominates")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=256)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    import medmnist
    from medmnist.evaluator import getACC, getAUC
    from torch.utils.data import DataLoader

    dataset = "pneumoniamnist"
    root = medbench.data.data_root()
    if args.arch == "linear":
        model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(28 * 28, 2)).eval()
    else:
        model = build_architecture(args.arch, in_channels=1, num_classes=2).eval()
    split = medbench.load_dataset(dataset, root=root)
    n = len(split)
    x_float = split.images.float() / 255

    def run_medbench():
        medbench.benchmark(model, dataset, batch_size=args.batch_size, progress=False, checks=False)

    def run_medbench_metrics_only():
        # the work the naive pipeline does too: load, inference, accuracy/AUC (no bootstrap CIs)
        s = medbench.load_dataset(dataset, root=root)
        logits = medbench.inference.predict_logits(model, s.images, batch_size=args.batch_size, device="cpu",
                                                   progress=False)
        medbench.metrics.compute_metrics(s.labels, medbench.metrics.probabilities(logits, "binary-class"),
                                         "binary-class")

    @torch.inference_mode()
    def run_raw():
        for i in range(0, n, args.batch_size):
            model(x_float[i:i + args.batch_size])

    def to_tensor(img):  # what torchvision's ToTensor does for a PIL 'L' image
        return torch.from_numpy(np.asarray(img, dtype=np.float32)[None] / 255.0)

    @torch.inference_mode()
    def run_naive():
        ds = medmnist.PneumoniaMNIST(split="test", root=str(root), transform=to_tensor)
        scores, labels = [], []
        for xb, yb in DataLoader(ds, batch_size=args.batch_size, shuffle=False):
            scores.append(torch.softmax(model(xb), 1))
            labels.append(yb)
        y, s = torch.cat(labels).numpy(), torch.cat(scores).numpy()
        getACC(y, s, "binary-class"), getAUC(y, s, "binary-class")

    times = _common.interleaved({"medbench": run_medbench, "medbench_no_ci": run_medbench_metrics_only,
                                 "raw": run_raw, "naive": run_naive}, args.repeats)
    ips = {k: n / _common.median(v) for k, v in times.items()}
    payload = {
        "dataset": dataset, "images": n, "arch": args.arch, "batch_size": args.batch_size, "repeats": args.repeats,
        "images_per_s": {k: round(v, 1) for k, v in ips.items()},
        "median_s": {k: round(_common.median(v), 4) for k, v in times.items()},
        "ratio_medbench_vs_raw": round(ips["medbench"] / ips["raw"], 3),
        "ratio_medbench_vs_naive": round(ips["medbench"] / ips["naive"], 3),
        "ratio_medbench_no_ci_vs_raw": round(ips["medbench_no_ci"] / ips["raw"], 3),
        "ratio_medbench_no_ci_vs_naive": round(ips["medbench_no_ci"] / ips["naive"], 3),
        "targets": {"medbench_vs_raw": ">= 0.8", "medbench_vs_naive": ">= 3"},
        "note": "medbench includes loading + MD5 (memoised), metrics and 1,000-resample bootstrap CIs; "
                "raw is forward passes only on a pre-made float tensor.",
    }
    path = _common.write(f"clean_eval_{args.arch}" if args.arch != "resnet8" else "clean_eval", payload)
    print(path.read_text())


if __name__ == "__main__":
    main()
