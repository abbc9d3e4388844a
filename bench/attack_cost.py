"""Nested budgets (issue 25, item 3): the cost of the Linf threats and the APGD-CE / FGSM curves, plain vs
nested, side by side in one process, on real data and committed zoo models.

For each model, ``benchmark(model, dataset, threats=["clean", "Linf", "curves"])`` runs twice under the
current protocol: as published (``plain``), and derived with ``adversarial.nested_budgets: true``
(``nested``: a larger budget attacks only what the next smaller one left robust, carrying the rest over
with the example that broke them). The runs alternate (plain first for even models, nested first for odd
ones) so machine drift hits both alike. Per stage: CPU seconds (process time: with one thread it is the
work done); per threat and curve point: robust balanced accuracy / accuracy, which nesting can only lower.
The figure is ``ratio_cpu`` = plain / nested CPU of the attack stages (admission and clean excluded).
Writes bench/results/attack_cost.json.

    MEDBENCH_DATA=../shared/data/medmnist python bench/attack_cost.py --dataset breastmnist \\
        --models Baseline_ResNet8_ERM,Baseline_ResNet8_SAM [--set KEY=VALUE ...]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import torch
import yaml

import medbench
from medbench.protocol import load_protocol

OUT = Path(__file__).resolve().parent / "results" / "attack_cost.json"
FIXED = ("admission", "clean")


def _run(model_id: str, dataset: str, protocol) -> dict:
    t0 = time.perf_counter()
    res = medbench.benchmark(model_id, dataset, threats=["clean", "Linf", "curves"], protocol=protocol,
                             progress=False)
    cpu = {k: round(v, 3) for k, v in res.provenance.cpu_time_per_stage_s.items() if k not in FIXED}
    return {
        "wall_s": round(time.perf_counter() - t0, 2), "attack_cpu_s": round(sum(cpu.values()), 2), "cpu_s": cpu,
        "robust_balanced_accuracy": {t: a.robust_balanced_accuracy for t, a in res.adversarial.items()},
        "carried_over": {t: a.carried_over for t, a in res.adversarial.items()},
        "apgd_ce_accuracy": [p.accuracy for p in res.curves.apgd_ce],
        "fgsm_accuracy": [p.accuracy for p in res.curves.fgsm],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dataset", default="breastmnist")
    ap.add_argument("--models", default="Baseline_ResNet8_ERM,Baseline_ResNet8_SAM,Baseline_ResNet8_AUCM")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="derive the protocol for both runs (e.g. a smaller subset for a quick look)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    base = load_protocol()
    changes = {k: yaml.safe_load(v) for k, v in (s.split("=", 1) for s in args.set)}
    plain = base.derive(**changes) if changes else base
    nested = base.derive(**changes, **{"adversarial.nested_budgets": True})
    out = {"what": __doc__.split("\n\n")[0].replace("\n", " "), "dataset": args.dataset,
           "protocol": base.version, "derived": changes, "machine": platform.node(), "threads": 1,
           "started_at": datetime.now(timezone.utc).isoformat(timespec="seconds"), "models": {}}
    for i, model_id in enumerate(args.models.split(",")):
        runs = {}
        for name in (("plain", "nested") if i % 2 == 0 else ("nested", "plain")):
            runs[name] = _run(model_id, args.dataset, plain if name == "plain" else nested)
            print(model_id, name, runs[name]["attack_cpu_s"], "s CPU", flush=True)
        p, n = runs["plain"], runs["nested"]
        out["models"][model_id] = {
            **runs, "ratio_cpu": round(p["attack_cpu_s"] / max(n["attack_cpu_s"], 1e-9), 3),
            "ratio_cpu_per_stage": {k: round(v / n["cpu_s"][k], 3) for k, v in p["cpu_s"].items()
                                    if n["cpu_s"].get(k, 0) > 0.05},
            "never_higher": all(n["robust_balanced_accuracy"][t] <= p["robust_balanced_accuracy"][t] + 1e-12
                                for t in p["robust_balanced_accuracy"])}
        OUT.write_text(json.dumps(out, indent=1) + "\n")
    ratios = [m["ratio_cpu"] for m in out["models"].values()]
    out["ratio_cpu_median"] = sorted(ratios)[len(ratios) // 2]
    OUT.write_text(json.dumps(out, indent=1) + "\n")
    print(json.dumps({k: v["ratio_cpu"] for k, v in out["models"].items()}))


if __name__ == "__main__":
    sys.exit(main())
