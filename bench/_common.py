"""Helpers shared by the benchmarks: interleaved timing and JSON output."""

from __future__ import annotations

import json
import platform
import statistics
import time
from pathlib import Path
from typing import Callable

import torch

RESULTS = Path(__file__).resolve().parent / "results"


def interleaved(fns: dict[str, Callable[[], object]], repeats: int = 5) -> dict[str, list[float]]:
    """Time each function ``repeats`` times, round-robin, so machine noise hits all of them alike."""
    times: dict[str, list[float]] = {k: [] for k in fns}
    for fn in fns.values():  # warm-up
        fn()
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return times


def median(xs: list[float]) -> float:
    return statistics.median(xs)


def write(name: str, payload: dict) -> Path:
    payload = {"benchmark": name, "machine": {"platform": platform.platform(), "processor": platform.machine(),
                                              "torch": torch.__version__, "threads": torch.get_num_threads()},
               **payload}
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(payload, indent=2) + "\n")
    return path
