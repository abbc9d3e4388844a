"""The ``medbench`` command. Each command group lives in its own module with a ``register`` function."""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from ..errors import MedbenchError

# Command groups, in the order ``medbench --help`` lists them.
GROUPS = ("evaluate", "run", "data", "zoo", "corruptions", "train", "study", "leaderboard", "submission", "attack")

EPILOG = """examples:
  medbench data info                                  datasets, and which files the data root holds
  medbench evaluate Baseline_ResNet8_ERM --dataset breastmnist --threats clean,Linf --out results/erm.json
  medbench evaluate --weights model.safetensors --arch resnet8 --dataset breastmnist --out results/mine.json
  medbench run --models all --datasets breastmnist --threats clean,corruptions --workers 2 --out results/
  medbench zoo list --dataset breastmnist
  medbench corruptions list                           the corruption suites and the datasets they cover
  medbench train Baseline_ResNet8_ERM --dataset breastmnist --out results/retrained/
  medbench study nonrobust-features --dataset breastmnist
  medbench submission validate submissions/my-model.yaml
  medbench attack list                                extra attack plugins (FMN, DDN) beyond AutoAttack
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
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        if not getattr(args, "func", None):
            parser.print_help()
            return 0 if args.command is None else 2
        code = int(args.func(args) or 0)
        sys.stdout.flush()  # a closed pipe shows up here, inside the handler, not at interpreter exit
        return code
    except MedbenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (`medbench zoo list | head`): stop quietly, as Unix tools do. Point stdout at
        # /dev/null so the interpreter's final flush does not raise a second time.
        _silence_stdout()
        return 141  # 128 + SIGPIPE, what a shell reports for a tool killed by the closed pipe


def _silence_stdout() -> None:
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # stdout is not a real file (e.g. captured in a test)
        pass


if __name__ == "__main__":
    sys.exit(main())
