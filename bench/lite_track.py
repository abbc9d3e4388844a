"""The lite track against the full protocol on the reference zoo: ranking agreement and cost.

For every committed full result (``leaderboard/results/<dataset>/<model>.json``, protocol 2) the
script evaluates the same registered weights under the lite protocol (``medbench/protocols/lite1.yaml``:
a fixed subset, APGD-CE / APGD-DLR only, fewer iterations), one model at a time on one thread, and
reports Spearman's rho between lite and full Linf-2/255 robust balanced accuracy (pooled over the zoo
and per dataset) and the CPU time of both tracks.

Full-track CPU time per model comes from ``bench/results/cost_profile.json`` (``bench/cost_profile.py``);
the committed results only record wall time (on a shared 2-core machine, so inflated by contention),
which is reported beside it, labelled as such.

    python bench/lite_track.py                       # writes bench/results/lite_track.json
    python bench/lite_track.py --write-results       # also (re)writes leaderboard/lite/<dataset>/<model>.json
    python bench/lite_track.py --variant adversarial.n_iter=100   # a derived ('+custom') variant, for comparison
    python bench/lite_track.py --write-subsets       # (re)writes medbench/protocols/lite1_subsets.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
import yaml
from scipy.stats import spearmanr

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from medbench.attacks.subset import compute_subset, indices_sha256  # noqa: E402
from medbench.data import load_dataset  # noqa: E402
from medbench.evaluate import benchmark  # noqa: E402
from medbench.protocol import LITE_VERSION, load_protocol  # noqa: E402
from medbench.schema import EvaluationResult  # noqa: E402

RESULTS = REPO / "leaderboard" / "results"
LITE_RESULTS = REPO / "leaderboard" / "lite"
OUT = REPO / "bench" / "results" / "lite_track.json"
COST = REPO / "bench" / "results" / "cost_profile.json"
HEADLINE = "Linf-2/255"


def full_results() -> list[tuple[str, str, EvaluationResult]]:
    out = []
    for path in sorted(RESULTS.glob("*/*.json")):
        r = EvaluationResult.from_json(path)
        if r.provenance.protocol_version == "2" and HEADLINE in r.adversarial:
            out.append((r.dataset, r.model_id, r))
    return out


def full_wall_s(r: EvaluationResult) -> float:
    """The committed full result's wall time: per threat, where it was computed (reused sections too)."""
    prov = r.provenance
    total = 0.0
    for threat, wall in prov.wall_time_per_threat_s.items():
        reused = prov.reused.get(threat)
        wall = reused.original_wall_time_s if reused is not None and reused.original_wall_time_s else wall
        # a resumed run's per-threat time counts its last session only; attack times per label are kept
        chunks = sum(a.wall_time_s or 0.0 for a in r.adversarial.values() if a.config.norm == threat)
        total += max(wall, chunks)
    return total


def rho(a: list[float], b: list[float]) -> float | None:
    if len(a) < 3 or len(set(a)) < 2 or len(set(b)) < 2:
        return None
    return float(spearmanr(a, b).statistic)


def full_tie_groups(dataset: str, results: list[EvaluationResult]) -> dict[str, int]:
    """model -> the full protocol's tie group on Linf-2/255 (paired bootstrap, as the site ranks)."""
    from medbench.paths import data_root
    from medbench.site.ranking import RankItem, tie_groups

    labels = load_dataset(dataset, "test", 28, data_root(None)).labels
    first = results[0].adversarial[HEADLINE]
    y = np.asarray(labels)[np.asarray(first.subset.indices)]
    items = [RankItem(r.model_id, r.adversarial[HEADLINE].robust_balanced_accuracy,
                      predictions=np.asarray(r.adversarial[HEADLINE].adv_predictions)) for r in results]
    ranked, _ = tie_groups(items, labels=y, num_classes=results[0].num_classes)
    return {x.key: x.group for x in ranked}


def full_on_lite_subset(full: EvaluationResult, protocol) -> float:
    """The full protocol's Linf-2/255 verdicts restricted to the lite subset: separates the subset's effect
    (sampling) from the attack's (APGD-CE/-DLR with fewer iterations) at no cost."""
    from medbench import metrics as M
    from medbench.attacks.subset import evaluation_subset
    from medbench.paths import data_root

    labels = np.asarray(load_dataset(full.dataset, "test", 28, data_root(None)).labels)
    lite_idx = evaluation_subset(full.dataset, labels, protocol).indices
    adv = full.adversarial[HEADLINE]
    pos = {int(i): j for j, i in enumerate(adv.subset.indices)}
    if any(int(i) not in pos for i in lite_idx):
        return float("nan")  # the lite subset is not inside the full one (test splits over 1,000 images)
    pred = np.asarray(adv.adv_predictions)[[pos[int(i)] for i in lite_idx]]
    return float(M.balanced_accuracy(labels[lite_idx], pred, full.num_classes))


def discordant(rows: list[dict], groups: dict[str, int]) -> tuple[int, int]:
    """(pairs the full protocol separates (different tie groups), of which the lite track orders the other way)."""
    separated = reversed_ = 0
    for i, a in enumerate(rows):
        for b in rows[i + 1:]:
            if groups[a["model_id"]] == groups[b["model_id"]]:
                continue
            separated += 1
            full_sign = np.sign(a["full_robust_ba"] - b["full_robust_ba"])
            reversed_ += int(np.sign(a["lite_robust_ba"] - b["lite_robust_ba"]) == -full_sign)
    return separated, reversed_


def write_subsets(protocol) -> Path:
    """The lite subsets of every dataset whose test split is on this machine, as protocol data."""
    from medbench.data import DATASETS
    from medbench.paths import data_root

    adv = protocol["adversarial"]
    size, seed = int(adv["subset_size"]), int(adv["subset_seed"])
    subsets = {}
    for name in sorted(DATASETS):
        try:
            labels = load_dataset(name, "test", 28, data_root(None)).labels
        except Exception:  # noqa: BLE001 (the official file is not here: the subset is computed at run time)
            continue
        idx = compute_subset(labels, size, seed)
        subsets[name] = {"n": int(len(idx)), "subset_size": size, "seed": seed, "whole_split": len(idx) == len(labels),
                         "indices_sha256": indices_sha256(idx), "indices": [int(i) for i in idx]}
    path = REPO / "medbench" / "protocols" / f"{LITE_VERSION}_subsets.json"
    path.write_text(json.dumps({
        "protocol_version": protocol.version,
        "description": ("Lite-track evaluation subsets: a stratified random subset of adversarial.subset_size test "
                        "images (seed adversarial.subset_seed; the whole split when smaller), sha256 of the sorted "
                        "int64 little-endian indices. Listed for the datasets whose official files were available "
                        "when it was written (bench/lite_track.py --write-subsets); the others are computed from "
                        "the labels and recorded in each result."),
        "subsets": subsets}, indent=1) + "\n")
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--variant", action="append", default=[], metavar="KEY=VALUE",
                    help="derive a '+custom' lite protocol (for comparing settings); not written as results")
    ap.add_argument("--write-results", action="store_true", help="write leaderboard/lite/<dataset>/<model>.json")
    ap.add_argument("--write-subsets", action="store_true")
    ap.add_argument("--only", default=None, help="comma-separated datasets (default: every committed one)")
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--rejoin", action="store_true",
                    help="recompute the summary from --out's rows and the current cost profile (no evaluation)")
    args = ap.parse_args()
    torch.set_num_threads(1)

    protocol = load_protocol(LITE_VERSION)
    if args.write_subsets:
        print(f"wrote {write_subsets(protocol)}")
        return
    changes = {k: yaml.safe_load(v) for k, v in (item.split("=", 1) for item in args.variant)}
    if changes:
        protocol = protocol.derive(**changes)
        if args.write_results:
            raise SystemExit("--write-results writes the standard lite protocol's results only; drop --variant")
    cost = json.loads(COST.read_text()) if COST.is_file() else {}
    full_cpu = {(m["dataset"], m["model_id"]): m.get("full_cpu_s") for m in cost.get("models", [])}
    # a single-thread run's CPU cannot exceed its wall time: the committed walls cap an over-estimate
    cpu_cap = {(m["dataset"], m["model_id"]): m.get("recorded_wall_s_total") for m in cost.get("models", [])}

    rows = []
    only = set(args.only.split(",")) if args.only else None
    if args.rejoin:
        previous = json.loads(args.out.read_text())
        rows = previous["models"]
        fulls_now = {(r.dataset, r.model_id): r for _, _, r in full_results()}
        for r in rows:
            r["full_cpu_s"] = full_cpu.get((r["dataset"], r["model_id"]))
            r["full_cpu_s_capped"] = None if r["full_cpu_s"] is None else min(
                r["full_cpu_s"], cpu_cap.get((r["dataset"], r["model_id"])) or r["full_cpu_s"])
            r["full_recorded_wall_s"] = round(full_wall_s(fulls_now[(r["dataset"], r["model_id"])]), 1)
        command = previous["command"]
    else:
        command = "python " + " ".join(["bench/lite_track.py", *sys.argv[1:]])
    for dataset, model_id, full in ([] if args.rejoin else full_results()):
        if only and dataset not in only:
            continue
        t0, c0 = time.perf_counter(), time.process_time()
        lite = benchmark(model_id, dataset, threats="all", protocol=protocol, progress=False)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        if args.write_results:
            lite.to_json(LITE_RESULTS / dataset / f"{model_id}.json")
        fa, la = full.adversarial[HEADLINE], lite.adversarial[HEADLINE]
        row = {
            "dataset": dataset, "model_id": model_id,
            "full_robust_ba": round(fa.robust_balanced_accuracy, 4),
            "lite_robust_ba": round(la.robust_balanced_accuracy, 4),
            "lite_ci": [la.robust_balanced_accuracy_ci.low, la.robust_balanced_accuracy_ci.high],
            "lite_attacks": la.config.attacks, "lite_n": la.subset.n, "full_n": fa.subset.n,
            "lite_cpu_s": round(cpu, 2), "lite_wall_s": round(wall, 2),
            "lite_cpu_per_stage_s": lite.provenance.cpu_time_per_stage_s,
            "full_cpu_s": full_cpu.get((dataset, model_id)),
            "full_recorded_wall_s": round(full_wall_s(full), 1),
        }
        rows.append(row)
        print(f"{dataset:15s} {model_id:28s} full {row['full_robust_ba']:.3f} lite {row['lite_robust_ba']:.3f} "
              f"({cpu:.1f} s CPU, {wall:.1f} s wall)", flush=True)

    full_ba = [r["full_robust_ba"] for r in rows]
    lite_ba = [r["lite_robust_ba"] for r in rows]
    per_dataset = {}
    fulls = {(r.dataset, r.model_id): r for _, _, r in full_results()}
    for ds in sorted({r["dataset"] for r in rows}):
        sub = [r for r in rows if r["dataset"] == ds]
        groups = full_tie_groups(ds, [fulls[(ds, r["model_id"])] for r in sub])
        separated, reversed_ = discordant(sub, groups)
        for r in sub:
            r["full_tie_group"] = groups[r["model_id"]]
            r["full_robust_ba_on_lite_subset"] = round(full_on_lite_subset(fulls[(ds, r["model_id"])], protocol), 4)
        per_dataset[ds] = {"n_models": len(sub), "spearman_rho": rho([r["full_robust_ba"] for r in sub],
                                                                      [r["lite_robust_ba"] for r in sub]),
                           "pairs_full_separates": separated, "of_which_lite_reverses": reversed_,
                           "spearman_rho_full_on_lite_subset_vs_full": rho(
                               [r["full_robust_ba"] for r in sub], [r["full_robust_ba_on_lite_subset"] for r in sub]),
                           "spearman_rho_lite_vs_full_on_lite_subset": rho(
                               [r["full_robust_ba_on_lite_subset"] for r in sub], [r["lite_robust_ba"] for r in sub])}
    with_cpu = [r for r in rows if r["full_cpu_s"]]
    report = {
        "what": ("Spearman rho between lite and full (protocol 2) Linf-2/255 robust balanced accuracy over the "
                 "reference zoo, and the cost of both tracks"),
        "command": command,
        "lite_protocol": {"version": protocol.version, "sha256": protocol.sha256(), "track": protocol.track,
                          "subset_size": protocol.get("adversarial.subset_size"),
                          "n_iter": protocol.get("adversarial.n_iter"),
                          "attack_sets": protocol.get("adversarial.attack_sets")},
        "machine": f"{torch.get_num_threads()} torch thread(s), nice 10, on a 2-core machine shared with other jobs",
        "n_models": len(rows),
        "spearman_rho_pooled": rho(full_ba, lite_ba),
        "spearman_rho_per_dataset": per_dataset,
        "decomposition": {
            "spearman_rho_pooled_full_on_lite_subset_vs_full": rho(full_ba, [r["full_robust_ba_on_lite_subset"] for r in rows]),
            "spearman_rho_pooled_lite_vs_full_on_lite_subset": rho([r["full_robust_ba_on_lite_subset"] for r in rows], lite_ba),
            "mean_abs_difference_subset_only": round(float(np.mean([abs(r["full_robust_ba"] - r["full_robust_ba_on_lite_subset"]) for r in rows])), 4),
            "mean_abs_difference_attack_only": round(float(np.mean([abs(r["lite_robust_ba"] - r["full_robust_ba_on_lite_subset"]) for r in rows])), 4),
            "note": ("full_robust_ba_on_lite_subset: the full protocol's own verdicts on the lite subset's 128 images. "
                     "full vs it measures what the smaller subset costs; it vs lite what the cheaper attack costs"),
        },
        "pairs_note": ("pairs of models in different tie groups of the full protocol (paired bootstrap 95% "
                       "interval of the difference excludes 0, as the site ranks them), and how many of those "
                       "the lite track orders the other way"),
        "mean_abs_difference": round(float(np.mean(np.abs(np.subtract(full_ba, lite_ba)))), 4) if rows else None,
        "lite_cpu_s_total": round(sum(r["lite_cpu_s"] for r in rows), 1),
        "full_cpu_s_total": round(sum(r["full_cpu_s"] for r in with_cpu), 1) if with_cpu else None,
        "cpu_ratio_full_over_lite": (round(sum(r["full_cpu_s"] for r in with_cpu)
                                           / sum(r["lite_cpu_s"] for r in with_cpu), 1) if with_cpu else None),
        "cpu_ratio_full_capped_over_lite": (round(sum(r["full_cpu_s_capped"] for r in with_cpu)
                                                  / sum(r["lite_cpu_s"] for r in with_cpu), 1) if with_cpu else None),
        "n_models_with_full_cpu": len(with_cpu),
        "cpu_ratio_note": ("full_cpu_s: per-model CPU of the whole full protocol from bench/results/cost_profile.json "
                           "(see its method; only the models it probed); the capped ratio bounds each estimate by the "
                           "committed single-thread wall time; lite_cpu_s: measured here, the whole lite evaluation including model "
                           "and data loading"),
        "recorded_wall_ratio_full_over_lite": round(sum(r["full_recorded_wall_s"] for r in rows)
                                                    / sum(r["lite_wall_s"] for r in rows), 1) if rows else None,
        "recorded_wall_note": ("full: the committed results' wall times (where each section was computed, at "
                               "different times under different contention); lite: wall time of this run"),
        "models": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    print(f"pooled rho {report['spearman_rho_pooled']}, per dataset "
          f"{ {k: v['spearman_rho'] for k, v in per_dataset.items()} }, CPU ratio {report['cpu_ratio_full_over_lite']}")


if __name__ == "__main__":
    main()
