"""The ``medbench`` command. Each command group lives in its own module with a ``register`` function."""

from __future__ import annotations

import argparse
import importlib
import sys

from ..errors import MedbenchError

# Command groups, in the order ``medbench --help`` lists them.
GROUPS = ("evaluate", "data", "zoo", "corruptions", "train", "leaderboard", "submission")

EPILOG = """examples:
  medbench data info                                  datasets, and which files the data root holds
  medbench evaluate Baseline_ResNet8_ERM --dataset breastmnist --threats clean,Linf
  medbench evaluate --weights model.safetensors --arch resnet8 --dataset breastmnist --out result.json
  medbench zoo list --dataset breastmnist
  medbench corruptions list
  medbench train Baseline_ResNet8_ERM --dataset breastmnist --out retrained/
  medbench submission validate submissions/my-model.yaml
  medbench leaderboard build --out site

Each command has its own help: medbench COMMAND --help.

Data root: --data-root, else $MEDBENCH_DATA, else ~/.medmnist.
"""


def build_parser() -> argparse.ArgumentParser:
    from .. import __version__

    parser = argparse.ArgumentParser(
        prog="medbench",
        description="Robustness benchmark and model zoo for medical image classifiers on MedMNIST.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"medbench {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for group in GROUPS:
        importlib.import_module(f"{__name__}.{group}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0 if args.command is None else 2
    try:
        return int(args.func(args) or 0)
    except MedbenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
