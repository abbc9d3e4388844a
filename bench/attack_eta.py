"""The attack progress bar's ETA against the time the attacks really took (issue 26, item 2), on real data
and committed zoo models under the published protocol.

For each model, ``benchmark(model, dataset, threats=[...])`` runs once with the progress machinery on (its
output discarded); every time an attack run starts or ends on a chunk, the bar's predicted remaining time
of the threat is logged with the clock. When the threat is over, each logged prediction is compared with
the time that really remained. Side by side, from the same log, the estimator this bar replaced (seconds
per attacked point, measured per attack: ``legacy``) is priced on the same events. Figures, per threat and
overall: the worst factor ``max(predicted / actual, actual / predicted)`` over the events after the first
minute of the threat (``worst_after_60s``; target <= 2) and over every event after the threat's first
attack run (``worst_after_first_run``); events where an estimator had no number count as misses.
Writes bench/results/attack_eta.json.

    MEDBENCH_DATA=../shared/data/medmnist python bench/attack_eta.py --dataset breastmnist \\
        --models Baseline_ResNet8_ERM,Baseline_ResNet8_PGDAT [--threats Linf,L2] [--set KEY=VALUE ...]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from contextlib import redirect_stderr
from datetime import datetime, timezone
from pathlib import Path

import torch
import yaml

import medbench
from medbench.attacks import progress as P
from medbench.protocol import load_protocol

OUT = Path(__file__).resolve().parent / "results" / "attack_eta.json"


def _legacy_remaining(bar: P.AttackProgress, costs: dict[str, float], current: str | None, n_current: int) -> float | None:
    """The replaced estimator: seconds per attacked point of each attack (measured), times the points expected."""
    steps = [(current, n_current)] if current is not None else []
    pos = bar.attacks.index(current) + 1 if current is not None else (bar._runs % len(bar.attacks) or len(bar.attacks))
    steps += [(a, bar._expected(a) * bar.chunk_sizes[bar._chunk]) for a in bar.attacks[pos:]]
    for n in bar.chunk_sizes[bar._chunk + 1:]:
        steps += [(a, bar._expected(a) * n) for a in bar.attacks]
    if any(a not in costs for a, n in steps if n > 0):
        return None
    return sum(costs[a] * n for a, n in steps if n > 0)


def _logged_run(model_id: str, dataset: str, threats: list[str], protocol) -> list[dict]:
    """Run the threats; return one record per threat: its events (clock, predicted, legacy) and its end."""
    log: list[dict] = []
    legacy_costs: dict[str, float] = {}
    start, done = P.AttackProgress.start, P.AttackProgress.done

    def threat_of(bar) -> dict:
        if not log or log[-1]["label"] != bar.label:
            log.append({"label": bar.label, "t0": time.perf_counter(), "events": [], "runs": []})
        return log[-1]

    def on_start(bar, attack, n_attacked, n_chunk):
        start(bar, attack, n_attacked, n_chunk)
        rec = threat_of(bar)
        left, provisional = bar.remaining_s(attack, n_attacked)
        rec["events"].append({"t": time.perf_counter(), "predicted": left, "provisional": provisional,
                              "legacy": _legacy_remaining(bar, legacy_costs, attack, n_attacked)})

    def on_done(bar, attack, n_attacked, n_left):
        wall = time.perf_counter() - bar._t0
        done(bar, attack, n_attacked, n_left)
        if n_attacked:
            legacy_costs[attack] = wall / n_attacked
        rec = threat_of(bar)
        rec["runs"].append({"attack": attack, "n": n_attacked, "wall_s": round(wall, 3)})
        left, provisional = bar.remaining_s()
        rec["events"].append({"t": time.perf_counter(), "predicted": left, "provisional": provisional,
                              "legacy": _legacy_remaining(bar, legacy_costs, None, 0)})
        rec["t_end"] = time.perf_counter()

    P.AttackProgress.start, P.AttackProgress.done = on_start, on_done
    P._RATIOS.clear()
    try:
        with open(os.devnull, "w") as sink, redirect_stderr(sink):  # the bars themselves are not the point
            medbench.benchmark(model_id, dataset, threats=threats, protocol=protocol, progress=True)
    finally:
        P.AttackProgress.start, P.AttackProgress.done = start, done
    return log


def _factor(pred: float | None, actual: float) -> float | None:
    if pred is None:
        return None
    pred, actual = max(pred, 1.0), max(actual, 1.0)  # within a second counts as exact
    return max(pred / actual, actual / pred)


def _score(rec: dict, key: str) -> dict:
    t0, t_end = rec["t0"], rec["t_end"]
    first_run_end = rec["events"][1]["t"] if len(rec["events"]) > 1 else t_end
    out = {}
    for name, after in (("after_60s", t0 + 60), ("after_first_run", first_run_end)):
        factors = [_factor(e[key], t_end - e["t"]) for e in rec["events"] if e["t"] >= after and t_end - e["t"] > 0]
        out[f"worst_{name}"] = None if not factors else (None if None in factors else round(max(factors), 2))
        out[f"events_{name}"] = len(factors)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dataset", default="breastmnist")
    ap.add_argument("--models", default="Baseline_ResNet8_ERM,Baseline_ResNet8_PGDAT")
    ap.add_argument("--threats", default="Linf,L2")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="derive the protocol")
    args = ap.parse_args()
    torch.set_num_threads(1)
    protocol = load_protocol()
    if args.set:
        protocol = protocol.derive(**{k: yaml.safe_load(v) for k, v in (s.split("=", 1) for s in args.set)})
    rows = []
    for model_id in args.models.split(","):
        for rec in _logged_run(model_id, args.dataset, args.threats.split(","), protocol):
            duration = rec["t_end"] - rec["t0"]
            rows.append({"model": model_id, "threat": rec["label"], "duration_s": round(duration, 1),
                         "runs": rec["runs"], "eta": _score(rec, "predicted"), "legacy": _score(rec, "legacy"),
                         "events": [{"t_s": round(e["t"] - rec["t0"], 2), "remaining_s": round(rec["t_end"] - e["t"], 2),
                                     "predicted_s": None if e["predicted"] is None else round(e["predicted"], 2),
                                     "provisional": e["provisional"],
                                     "legacy_s": None if e["legacy"] is None else round(e["legacy"], 2)}
                                    for e in rec["events"]]})
            print(f"{model_id} {rec['label']}: {duration:.0f} s; ETA {rows[-1]['eta']}; legacy {rows[-1]['legacy']}",
                  file=sys.stderr)

    def worst(key: str, which: str):
        vals = [r[which][key] for r in rows if r[which][f"events_{key[6:]}"]]
        return None if not vals or None in vals else max(vals)

    doc = {
        "what": "attack progress ETA vs the time that really remained (issue 26 item 2); target: within 2x after "
                "the first minute",
        "dataset": args.dataset, "protocol": protocol.version, "threats": args.threats,
        "figures": {which: {k: worst(k, which) for k in ("worst_after_60s", "worst_after_first_run")}
                    for which in ("eta", "legacy")},
        "threat_runs": rows,
        "machine": {"platform": platform.platform(), "python": platform.python_version(), "torch_threads": 1,
                    "cpus": os.cpu_count(), "load_average": list(os.getloadavg())},
        "measured_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(doc, indent=1) + "\n")
    print(json.dumps(doc["figures"], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
