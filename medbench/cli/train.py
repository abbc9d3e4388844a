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
  medbench train Baseline_ResNet8_SAM --dataset breastmnist --method asam --hyper rho=1.0
"""


def register(sub) -> None:
    p = sub.add_parser("train", help="retrain a zoo entry from its recipe", description=DESCRIPTION,
                       epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("entry", help="registry entry: a .yaml file or a zoo model id")
    p.add_argument("--dataset", help="MedMNIST dataset (required with a model id; checked against a YAML file)")
    p.add_argument("--out", default="runs", help="output folder for <ModelId>.safetensors and <ModelId>.train.jsonl "
                                                 "(default: ./runs)")
    p.add_argument("--epochs", type=int, default=None, help="override the recipe's epochs (the hash then differs)")
    p.add_argument("--method", default=None,
                   help="train this method instead of the recipe's, with its paper defaults (keeps "
                        "the architecture, epochs, batch size, schedule and seed); saved as "
                        "<ModelId>-<method>. Any of medbench's training methods, e.g. sam, asam, gsam, wsam")
    p.add_argument("--hyper", action="append", default=[], metavar="NAME=VALUE",
                   help="set a SAM-family hyper-parameter (rho; eta for asam, alpha for gsam, "
                        "gamma for wsam); repeatable")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_data_args(p)
    p.set_defaults(func=_run)


def check_method(text: str) -> str:
    """``text`` if it names a training method, else ``SystemExit`` naming the nearest ones."""
    import difflib

    from ..train.config import METHODS

    if text in METHODS:
        return text
    close = difflib.get_close_matches(text, METHODS, n=2)
    hint = f" Did you mean {' or '.join(close)}?" if close else ""
    raise SystemExit(f"error: --method {text!r} is not a training method.{hint} "
                     f"Known: {', '.join(METHODS)}.")


def configure(cfg, method: str | None, hyper: list[str]):
    """``cfg`` with ``--method`` and ``--hyper`` applied (a new, validated TrainConfig).

    Raises ``SystemExit`` with a one-line message for an item that is not NAME=VALUE, a name the
    method does not take, or a value its pydantic ``Settings`` refuses.
    """
    from pydantic import ValidationError

    from ..train.config import SHARPNESS_SETTINGS

    if method is not None:
        cfg = cfg.with_method(check_method(method))
    updates = {}
    for item in hyper:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise SystemExit(f"error: --hyper {item!r}: expected NAME=VALUE, e.g. rho=0.1.")
        if name not in SHARPNESS_SETTINGS:
            raise SystemExit(f"error: --hyper {item!r}: {name!r} is not a SAM-family hyper-parameter "
                             f"({', '.join(SHARPNESS_SETTINGS)}).")
        updates[name] = value
    if not updates:
        return cfg
    try:
        return cfg.with_settings(**updates)
    except ValidationError as err:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}={e['input']!r}: {e['msg']}" for e in err.errors())
        raise SystemExit(f"error: --hyper: {problems}.") from None
    except ValueError as err:
        raise SystemExit(f"error: --hyper: {err}") from None


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
    if args.method is not None:
        check_method(args.method)
    entry = load_entry(args.entry, args.dataset)
    cfg = config_from_entry(entry)
    if args.epochs is not None:
        cfg.epochs = args.epochs
    cfg = configure(cfg, args.method, args.hyper)
    changed = args.method is not None or bool(args.hyper)
    name = f"{entry.id}-{cfg.method}" if args.method is not None else entry.id
    result = train(cfg, entry.dataset, args.out, name=name, size=entry.size, data_root=args.data_root,
                   progress=not args.quiet)
    print(f"{name} ({entry.dataset}, {cfg.method}): best epoch {result.best_epoch}/{cfg.epochs}, "
          + ", ".join(f"{k} {v:.4f}" for k, v in result.best_val.items()))
    print(f"weights {result.weights_path}  sha256 {result.weights_sha256}")
    print(f"log     {result.log_path}  ({result.wall_time_s:.1f}s)")
    if args.epochs is None and not changed:
        same = result.weights_sha256 == entry.weights.sha256
        print("reproduced: the sha256 matches the registry entry" if same else
              f"not bit-identical to the registry entry (sha256 {entry.weights.sha256}); torch version, CPU "
              f"kernels (this machine: {torch.backends.cpu.get_cpu_capability()}, torch {torch.__version__}, "
              f"{torch.get_num_threads()} threads) and thread count all change floating-point results; compare "
              "the training logs epoch by epoch", file=sys.stdout)
    return 0
