"""``medbench train``: retrain a registry entry from its recipe block (one command)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .common import add_data_args

DESCRIPTION = """Retrain a model from the `recipe` block of its registry entry and save the weights
selected on the validation split (never the test split), with a JSON-lines training log.

ENTRY is a registry YAML file or a zoo model id (with --dataset). The run is deterministic on CPU
given the recipe's seed: the printed sha256 is compared with the entry's weights.sha256."""

EXAMPLES = """examples:
  medbench train Baseline_ResNet8_ERM --dataset breastmnist --out results/runs/
  medbench train model_zoo/breastmnist/Baseline_ResNet8_TRADES.yaml --out results/runs/
  medbench train Baseline_ResNet8_SAM --dataset breastmnist --epochs 2   (a short smoke run)
"""


def register(sub) -> None:
    p = sub.add_parser("train", help="retrain a zoo entry from its recipe", description=DESCRIPTION,
                       epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("entry", help="registry entry: a .yaml file or a zoo model id")
    p.add_argument("--dataset", help="MedMNIST dataset (required with a model id; checked against a YAML file)")
    p.add_argument("--out", default="runs", help="output folder for <ModelId>.safetensors and <ModelId>.train.jsonl "
                                                 "(default: ./runs)")
    p.add_argument("--epochs", type=int, default=None, help="override the recipe's epochs (the hash then differs)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_data_args(p)
    p.set_defaults(func=_run)


def load_entry(ref: str, dataset: str | None):
    """A ModelEntry from a YAML path or a (model id, dataset) pair."""
    from ..schema.entry import read_entry

    if ref.endswith((".yaml", ".yml")) or Path(ref).is_file():
        entry = read_entry(ref)
        if dataset and entry.dataset != dataset.lower():
            raise SystemExit(f"error: {ref} is an entry for {entry.dataset}, not {dataset}.")
        return entry
    if not dataset:
        raise SystemExit("error: a model id needs --dataset (e.g. --dataset breastmnist).")
    from ..zoo import get_entry

    return get_entry(ref, dataset)


def _run(args: argparse.Namespace) -> int:
    import torch

    from ..train import train
    from ..train.entry import config_from_entry

    if args.threads:
        torch.set_num_threads(args.threads)
    entry = load_entry(args.entry, args.dataset)
    cfg = config_from_entry(entry)
    if args.epochs is not None:
        cfg.epochs = args.epochs
    result = train(cfg, entry.dataset, args.out, name=entry.id, size=entry.size, data_root=args.data_root,
                   progress=not args.quiet)
    print(f"{entry.id} ({entry.dataset}): best epoch {result.best_epoch}/{cfg.epochs}, "
          + ", ".join(f"{k} {v:.4f}" for k, v in result.best_val.items()))
    print(f"weights {result.weights_path}  sha256 {result.weights_sha256}")
    print(f"log     {result.log_path}  ({result.wall_time_s:.1f}s)")
    if args.epochs is None:
        same = result.weights_sha256 == entry.weights.sha256
        print("reproduced: the sha256 matches the registry entry" if same else
              f"not bit-identical to the registry entry (sha256 {entry.weights.sha256}); torch version, CPU "
              f"kernels (this machine: {torch.backends.cpu.get_cpu_capability()}, torch {torch.__version__}, "
              f"{torch.get_num_threads()} threads) and thread count all change floating-point results; compare "
              "the training logs epoch by epoch", file=sys.stdout)
    return 0
