#!/usr/bin/env python
"""Scaling of the matrix runner (``medbench run``): the same cells with 1 and 2 workers, in one process.

    python bench/matrix.py [--models IDS] [--datasets breastmnist,retinamnist] [--threats clean,corruptions] [--repeats 1]

Each configuration (executor x workers) computes the same cell set from an empty store; the corrupted
test sets are generated once beforehand (untimed), so every configuration measures evaluation only.
Configurations run round-robin per repeat (local 1, local 2, ray 1, ray 2) so machine noise hits all
alike; the machine's load average is recorded around each, because on a shared 2-core machine other
jobs take cores and the speedup says as much about them as about the runner. Writes
``bench/results/matrix.json``: wall times, speedup 1 -> 2 workers per executor (median wall of 1 worker
/ median wall of 2), cells per second, load averages. Ray is measured when it is installed.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import write  # noqa: E402


def warm_corrupted_sets(datasets: list[str], size: int) -> None:
    from medbench.corruptions.generate import build_corrupted_sets
    from medbench.corruptions.params import corruption_parameters
    from medbench.data import get_spec, load_dataset
    from medbench.protocol import load_protocol

    proto = load_protocol()
    for name in datasets:
        spec = get_spec(name)
        build_corrupted_sets(spec, size, load_dataset(name, "test", size), corruption_parameters(spec, size, proto),
                             seed=int(proto["seed"]), progress=False)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default="Baseline_ResNet8_ERM,Baseline_ResNet8_SAM,Baseline_ResNet8_PGDAT,"
                                       "Baseline_ResNet8_AUCM,Baseline_ResNet8_TRADES")
    p.add_argument("--datasets", default="breastmnist,retinamnist")
    p.add_argument("--threats", default="clean,corruptions")
    p.add_argument("--repeats", type=int, default=1)
    args = p.parse_args(argv)
    os.environ.setdefault("MEDBENCH_DATA", str(Path(__file__).resolve().parents[2] / "shared" / "data" / "medmnist"))

    from medbench.matrix import run_matrix

    datasets = args.datasets.split(",")
    warm_corrupted_sets(datasets, 28)
    try:
        import ray
    except ImportError:
        ray = None
    executors = ["local"] + (["ray"] if ray is not None else [])
    if ray is not None:  # one instance for both ray configurations; its start-up is reported, not timed
        t0 = time.perf_counter()
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
        ray_start = time.perf_counter() - t0
    runs: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="medbench-bench-matrix-") as tmp:
        for rep in range(args.repeats):
            for executor in executors:
                for workers in (1, 2):
                    load_before = os.getloadavg()
                    t0 = time.perf_counter()
                    report = run_matrix(args.models, datasets, args.threats, executor=executor, workers=workers,
                                        store=Path(tmp) / f"{executor}-{workers}-{rep}", out=None, progress=False)
                    wall = time.perf_counter() - t0
                    assert report.computed == report.cells and report.ok, report
                    runs.append({"executor": executor, "workers": workers, "repeat": rep, "wall_s": round(wall, 2),
                                 "cells": report.cells, "cells_per_s": round(report.cells / wall, 3),
                                 "loadavg_before": [round(x, 2) for x in load_before],
                                 "loadavg_after": [round(x, 2) for x in os.getloadavg()]})
                    print(f"{executor} workers={workers}: {report.cells} cells in {wall:.1f}s "
                          f"(load {load_before[0]:.1f})", flush=True)
    if ray is not None:
        ray.shutdown()
    summary = {}
    for executor in executors:
        med = {w: statistics.median(r["wall_s"] for r in runs if r["executor"] == executor and r["workers"] == w)
               for w in (1, 2)}
        summary[executor] = {"median_wall_s_1_worker": med[1], "median_wall_s_2_workers": med[2],
                             "speedup_1_to_2": round(med[1] / med[2], 3)}
    payload = {"datasets": datasets, "threats": args.threats, "models": args.models,
               "cells": runs[0]["cells"], "cpu_count": os.cpu_count(), "repeats": args.repeats,
               "ray_startup_s": round(ray_start, 2) if ray is not None else None,
               "summary": summary, "runs": runs,
               "note": "each configuration computes every cell from an empty store (corrupted sets pre-generated); "
                       "wall includes starting the local pool's worker processes (spawn + torch import) and, for "
                       "ray, scheduling on an already started instance; the machine is shared, see loadavg"}
    path = write("matrix", payload)
    print(f"speedup 1 -> 2 workers: " + ", ".join(f"{k} {v['speedup_1_to_2']:.2f}x" for k, v in summary.items())
          + f"; written {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
