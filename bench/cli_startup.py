"""Benchmark: start-up cost of the ``medbench`` command against a bare ``python -c pass``.

Runs ``python -m medbench --help``, a few subcommand ``--help`` calls and ``python -c pass`` in
interleaved rounds (so machine noise hits all alike), and records the median wall and CPU time of
each and the ratio to the bare interpreter. Writes ``bench/results/cli_startup.json``.

    python bench/cli_startup.py [--repeats 7]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

OUT = Path(__file__).resolve().parent / "results" / "cli_startup.json"
COMMANDS = {
    "python -c pass": [sys.executable, "-c", "pass"],
    "medbench --help": [sys.executable, "-m", "medbench", "--help"],
    "medbench evaluate --help": [sys.executable, "-m", "medbench", "evaluate", "--help"],
    "medbench zoo list --help": [sys.executable, "-m", "medbench", "zoo", "list", "--help"],
}


def _run(cmd: list[str]) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the child) for one run."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, env={**os.environ, "MPLBACKEND": "Agg"})
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=7)
    args = ap.parse_args()
    walls: dict[str, list[float]] = {k: [] for k in COMMANDS}
    cpus: dict[str, list[float]] = {k: [] for k in COMMANDS}
    for cmd in COMMANDS.values():  # warm-up: page cache, .pyc files
        _run(cmd)
    for _ in range(args.repeats):
        for name, cmd in COMMANDS.items():
            wall, cpu = _run(cmd)
            walls[name].append(wall)
            cpus[name].append(cpu)
    base_wall = statistics.median(walls["python -c pass"])
    base_cpu = statistics.median(cpus["python -c pass"])
    rows = {name: {"median_wall_s": round(statistics.median(walls[name]), 4),
                   "median_cpu_s": round(statistics.median(cpus[name]), 4),
                   "ratio_wall_vs_python": round(statistics.median(walls[name]) / base_wall, 2),
                   "ratio_cpu_vs_python": round(statistics.median(cpus[name]) / base_cpu, 2)}
            for name in COMMANDS}
    payload = {"benchmark": "cli_startup", "repeats": args.repeats, "commands": rows,
               "target": "medbench --help within a few times a bare interpreter (was ~2.5 s CPU)",
               "machine": platform.platform(), "python": platform.python_version(), "cpus": os.cpu_count(),
               "load_average_at_end": [round(x, 2) for x in os.getloadavg()]}
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(payload, indent=2) + "\n")
    print(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
