"""Arguments and formatting shared by several commands."""

from __future__ import annotations

import argparse


def add_data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-root", metavar="DIR", default=None,
                   help="folder with the MedMNIST .npz files (default: $MEDBENCH_DATA, else ~/.medmnist)")


def add_device_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default=None, help="torch device, e.g. cpu or cuda:0 (default: cuda if available)")
    p.add_argument("--batch-size", type=int, default=None, help="inference batch size (default: automatic)")


def fmt(x: float | None, digits: int = 3) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def fmt_ci(value: float | None, ci) -> str:
    if value is None:
        return "-"
    if ci is None or ci.low is None:
        return fmt(value)
    return f"{value:.3f} [{ci.low:.3f}, {ci.high:.3f}]"
