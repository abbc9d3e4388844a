"""The lite track against the full protocol on the reference zoo: ranking agreement and cost.

For every committed full result (``leaderboard/results/<dataset>/<model>.json``, protocol 2 or 3: their
Linf-2/255 attacks are the same) the script evaluates the same registered weights under the lite protocol
(``medbench/protocols/<LITE_VERSION>.yaml``: a fixed subset, APGD with fewer iterations, a masking guard),
one model at a time on one thread, and reports:

- Spearman's rho between lite and full Linf-2/255 robust balanced accuracy per dataset (n = 4-5 models
  each), with a 95% bootstrap interval over test images (each replicate resamples the lite subset's images
  and, independently, the full subset's images, the same draw for every model of the dataset, and
  recomputes every model's balanced accuracy from its per-example predictions) and the exact one-sided
  permutation p-value over models (what n models can show at all);
- the pooled rho beside the pooled rho of a score that knows only the dataset (the dataset's mean full
  robust BA, the same for all its models): pooling datasets of different robustness inflates rho;
- the like-for-like cost: the whole lite evaluation (loading, admission, clean, attacks, guard) against
  the full protocol's Linf-2/255 threat alone, per model (median and range) and in total, by wall time
  (full: the committed results' Linf-2/255 section; lite: this run) and by CPU time (full: the per-stage
  estimates of ``bench/results/cost_profile.json``; lite: this run).

Only models both tracks order enter the agreement figures (the lite page: admitted, every sanity check
passed, a masking guard judged it; the full board: a reliable Linf-2/255 result); the others are listed with
the reason.

    python bench/lite_track.py                       # writes bench/results/lite_track.json
    python bench/lite_track.py --write-results       # also (re)writes leaderboard/lite/<dataset>/<model>.json
    python bench/lite_track.py --rejoin --masking    # adds the masking models of tests/test_lite_guard.py
    python bench/lite_track.py --variant adversarial.n_iter=100   # a derived ('+custom') variant, for comparison
    python bench/lite_track.py --write-subsets       # (re)writes medbench/protocols/<LITE_VERSION>_subsets.json
    python bench/lite_track.py --lite-version lite1 --out /tmp/lite1.json   # an earlier lite protocol
    python bench/lite_track.py --rejoin              # the summary again from --out's rows (no evaluation)
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
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
from medbench.protocol import LITE_VERSION, load_protocol, protocol_file  # noqa: E402
from medbench.schema import EvaluationResult  # noqa: E402
from medbench.site.lite import not_ordered_because  # noqa: E402

RESULTS = REPO / "leaderboard" / "results"
LITE_RESULTS = REPO / "leaderboard" / "lite"
OUT = REPO / "bench" / "results" / "lite_track.json"
COST = REPO / "bench" / "results" / "cost_profile.json"
HEADLINE = "Linf-2/255"
FULL_VERSIONS = ("2", "3")  # protocol 3 changed admission, not the Linf-2/255 attacks
N_BOOTSTRAP = 1000
GUARDS = ("whitebox_beats_square", "whitebox_beats_fgsm")


def full_results() -> list[tuple[str, str, EvaluationResult]]:
    """The committed full results of the reference zoo the lite track is compared on: those with a Linf-2/255
    section, and those with a lite twin (a model the full protocol now refuses keeps its lite result current)."""
    out = []
    for path in sorted(RESULTS.glob("*/*.json")):
        r = EvaluationResult.from_json(path)
        twin = (LITE_RESULTS / r.dataset / path.name).is_file()
        if r.provenance.protocol_version in FULL_VERSIONS and (HEADLINE in r.adversarial or twin):
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
    path = REPO / "medbench" / "protocols" / protocol_file(protocol.version, "_subsets.json")
    path.write_text(json.dumps({
        "protocol_version": protocol.version,
        "description": ("Lite-track evaluation subsets: a stratified random subset of adversarial.subset_size test "
                        "images (seed adversarial.subset_seed; the whole split when smaller), sha256 of the sorted "
                        "int64 little-endian indices. Listed for the datasets whose official files were available "
                        "when it was written (bench/lite_track.py --write-subsets); the others are computed from "
                        "the labels and recorded in each result."),
        "subsets": subsets}, indent=1) + "\n")
    return path


def _labels(dataset: str) -> np.ndarray:
    from medbench.paths import data_root

    return np.asarray(load_dataset(dataset, "test", 28, data_root(None)).labels).reshape(-1)


def resampled_bas(dataset: str, rows: list[dict], fulls: dict, protocol, rng: np.random.Generator,
                  n_resamples: int) -> tuple[np.ndarray, np.ndarray]:
    """(lite, full) robust balanced accuracies of ``rows`` under ``n_resamples`` bootstrap draws of test images:
    arrays of shape (n_resamples, n_models). Each draw resamples the lite subset's images and, independently, the
    full subset's images, the same images for every model (the models are compared on one draw)."""
    from medbench import metrics as M
    from medbench.attacks.subset import evaluation_subset

    labels = _labels(dataset)
    lite_idx = evaluation_subset(dataset, labels, protocol).indices
    adv = [fulls[(dataset, r["model_id"])].adversarial[HEADLINE] for r in rows]
    full_idx = np.asarray(adv[0].subset.indices)
    assert all(a.subset.indices == adv[0].subset.indices for a in adv), f"{dataset}: full subsets differ"
    k = fulls[(dataset, rows[0]["model_id"])].num_classes
    y_lite, y_full = labels[lite_idx], labels[full_idx]
    lite_pred = [np.asarray(r["lite_adv_predictions"]) for r in rows]
    full_pred = [np.asarray(a.adv_predictions) for a in adv]
    lite, full = np.empty((n_resamples, len(rows))), np.empty((n_resamples, len(rows)))
    for b in range(n_resamples):
        i, j = rng.integers(0, len(y_lite), len(y_lite)), rng.integers(0, len(y_full), len(y_full))
        lite[b] = [M.balanced_accuracy(y_lite[i], p[i], k) for p in lite_pred]
        full[b] = [M.balanced_accuracy(y_full[j], p[j], k) for p in full_pred]
    return lite, full


def interval(values: list[float | None], level: float = 0.95) -> list[float] | None:
    vals = np.asarray([v for v in values if v is not None and not np.isnan(v)])
    if not len(vals):
        return None
    alpha = (1 - level) / 2 * 100
    return [round(float(v), 4) for v in np.percentile(vals, [alpha, 100 - alpha])]


def permutation_p(full: list[float], lite: list[float]) -> float | None:
    """Exact one-sided p-value of rho(full, lite) over every order of the models (ties count against)."""
    observed = rho(full, lite)
    if observed is None:
        return None
    orders = list(itertools.permutations(range(len(lite))))
    hits = sum((r := rho(full, [lite[i] for i in order])) is not None and r >= observed - 1e-12 for order in orders)
    return round(hits / len(orders), 4)


def dataset_only_score(rows: list[dict]) -> list[float]:
    """Each model's score = the mean full robust BA of its dataset's models: a score that knows only the dataset."""
    means = {ds: float(np.mean([r["full_robust_ba"] for r in rows if r["dataset"] == ds]))
             for ds in {r["dataset"] for r in rows}}
    return [means[r["dataset"]] for r in rows]


def spread(values: list[float]) -> dict | None:
    if not values:
        return None
    return {"median": round(float(np.median(values)), 1), "min": round(float(np.min(values)), 1),
            "max": round(float(np.max(values)), 1)}


def full_linf_cpu_s(cost: dict, dataset: str, model_id: str) -> float | None:
    """The full protocol's Linf-2/255 threat alone (every attack of it), CPU seconds estimated per stage by
    bench/cost_profile.py."""
    for m in cost.get("models", []):
        if (m["dataset"], m["model_id"]) == (dataset, model_id):
            stages = [v.get("estimated_full_cpu_s") for k, v in m.get("stages", {}).items()
                      if k.startswith(HEADLINE + "/")]
            return round(sum(stages), 1) if stages and None not in stages else None
    return None


def evaluate_row(dataset: str, model_id: str, full: EvaluationResult, protocol, cost: dict,
                 write: bool) -> dict:
    t0, c0 = time.perf_counter(), time.process_time()
    lite = benchmark(model_id, dataset, threats="all", protocol=protocol, progress=False, allow_unranked=True)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    if write:
        lite.to_json(LITE_RESULTS / dataset / f"{model_id}.json")
    fa, la = full.adversarial.get(HEADLINE), lite.adversarial.get(HEADLINE)
    why = [str(reason) for reason in not_ordered_because(lite)]
    return {
        "dataset": dataset, "model_id": model_id,
        "full_protocol_version": full.provenance.protocol_version,
        "full_ranked": fa is not None and full.reliable,
        "full_robust_ba": None if fa is None else round(fa.robust_balanced_accuracy, 4),
        "lite_robust_ba": None if la is None else round(la.robust_balanced_accuracy, 4),
        "lite_ci": None if la is None else [la.robust_balanced_accuracy_ci.low, la.robust_balanced_accuracy_ci.high],
        "lite_admitted": lite.admitted, "lite_reliable": lite.reliable, "lite_ordered": not why,
        "lite_not_ordered_because": why,
        "lite_guards": {c.name: {"passed": c.passed, "value": c.value} for c in lite.checks if c.name in GUARDS},
        "lite_attacks": None if la is None else la.config.attacks,
        "lite_broken_by": None if la is None else {k: la.broken_by.count(k)
                                                   for k in sorted(set(la.broken_by) - {None})},
        "lite_n": None if la is None else la.subset.n, "full_n": None if fa is None else fa.subset.n,
        "lite_cpu_s": round(cpu, 2), "lite_wall_s": round(wall, 2),
        "lite_cpu_per_stage_s": lite.provenance.cpu_time_per_stage_s,
        "full_linf_2_255_wall_s": None if fa is None else fa.wall_time_s,
        "full_linf_2_255_cpu_s": None if fa is None else full_linf_cpu_s(cost, dataset, model_id),
        "full_recorded_wall_s": round(full_wall_s(full), 1),
        "lite_adv_predictions": None if la is None else la.adv_predictions,
    }


def agreement(rows: list[dict], fulls: dict, protocol, n_resamples: int, seed: int = 0) -> dict:
    """Per-dataset and pooled Spearman rho of the ordered rows, with bootstrap intervals over test images."""
    rng = np.random.default_rng(seed)
    datasets = sorted({r["dataset"] for r in rows})
    per_dataset, draws = {}, {}
    for ds in datasets:
        sub = [r for r in rows if r["dataset"] == ds]
        full, lite = [r["full_robust_ba"] for r in sub], [r["lite_robust_ba"] for r in sub]
        entry = {"n_models": len(sub), "models": [r["model_id"] for r in sub], "spearman_rho": rho(full, lite)}
        if len(sub) >= 3:
            draws[ds] = resampled_bas(ds, sub, fulls, protocol, rng, n_resamples)
            entry["spearman_rho_ci95_images"] = interval([rho(list(f), list(li)) for li, f in zip(*draws[ds])])
            entry["permutation_p_one_sided"] = permutation_p(full, lite)
        groups = full_tie_groups(ds, [fulls[(ds, r["model_id"])] for r in sub])
        entry["pairs_full_separates"], entry["of_which_lite_reverses"] = discordant(sub, groups)
        for r in sub:
            r["full_tie_group"] = groups[r["model_id"]]
            r["full_robust_ba_on_lite_subset"] = round(full_on_lite_subset(fulls[(ds, r["model_id"])], protocol), 4)
        on_lite = [r["full_robust_ba_on_lite_subset"] for r in sub]
        entry["spearman_rho_full_on_lite_subset_vs_full"] = rho(full, on_lite)
        entry["spearman_rho_lite_vs_full_on_lite_subset"] = rho(on_lite, lite)
        per_dataset[ds] = entry
    pooled_rows = [r for r in rows if r["dataset"] in draws]
    full, lite = [r["full_robust_ba"] for r in pooled_rows], [r["lite_robust_ba"] for r in pooled_rows]
    pooled = []
    for b in range(n_resamples):
        f = np.concatenate([draws[ds][1][b] for ds in sorted(draws)])
        li = np.concatenate([draws[ds][0][b] for ds in sorted(draws)])
        pooled.append(rho(list(f), list(li)))
    return {"per_dataset": per_dataset, "pooled": {
        "n_models": len(pooled_rows), "spearman_rho": rho(full, lite), "spearman_rho_ci95_images": interval(pooled),
        "dataset_only_score_spearman_rho": rho(full, dataset_only_score(pooled_rows)),
        "mean_abs_difference_subset_only": _mean_abs(rows, "full_robust_ba", "full_robust_ba_on_lite_subset"),
        "mean_abs_difference_attack_only": _mean_abs(rows, "full_robust_ba_on_lite_subset", "lite_robust_ba"),
        "decomposition_note": ("full_robust_ba_on_lite_subset: the full protocol's own verdicts on the lite subset's "
                               "images (nan where the lite subset is not inside the full one). full vs it measures "
                               "what the smaller subset costs; it vs lite what the cheaper attack costs"),
        "dataset_only_note": ("the pooled rho of a score that knows only the dataset (each model scored by its "
                              "dataset's mean full robust BA): what pooling alone gives, before any model is told "
                              "apart; compare the per-dataset rho instead")}}


def _mean_abs(rows: list[dict], a: str, b: str) -> float | None:
    diffs = [abs(r[a] - r[b]) for r in rows if not np.isnan(r[a]) and not np.isnan(r[b])]
    return round(float(np.mean(diffs)), 4) if diffs else None


def cost_summary(rows: list[dict]) -> dict:
    """Lite (whole evaluation) against the full protocol's Linf-2/255 threat alone, per model and in total, over
    the models both tracks attacked."""
    rows = [r for r in rows if r["full_linf_2_255_wall_s"] and r["lite_robust_ba"] is not None]
    wall = [r["full_linf_2_255_wall_s"] / r["lite_wall_s"] for r in rows if r["full_linf_2_255_wall_s"]]
    with_cpu = [r for r in rows if r["full_linf_2_255_cpu_s"]]
    cpu = [r["full_linf_2_255_cpu_s"] / r["lite_cpu_s"] for r in with_cpu]
    return {
        "what": ("the whole lite evaluation (model and data loading, admission, clean, APGD, Square, FGSM) against "
                 "the full protocol's Linf-2/255 threat alone (its APGD, targeted attacks, FAB-T and Square on the "
                 "full subset), the threat whose ranking the lite track stands in for"),
        "n_models": len(rows),
        "lite_wall_s": spread([r["lite_wall_s"] for r in rows]),
        "lite_cpu_s": spread([r["lite_cpu_s"] for r in rows]),
        "full_linf_2_255_wall_s": spread([r["full_linf_2_255_wall_s"] for r in rows if r["full_linf_2_255_wall_s"]]),
        "full_linf_2_255_cpu_s": spread([r["full_linf_2_255_cpu_s"] for r in with_cpu]),
        "wall_ratio_full_linf_over_lite_per_model": spread(wall),
        "cpu_ratio_full_linf_over_lite_per_model": spread(cpu),
        "wall_ratio_full_linf_over_lite_total": round(sum(r["full_linf_2_255_wall_s"] for r in rows)
                                                      / sum(r["lite_wall_s"] for r in rows), 1) if rows else None,
        "cpu_ratio_full_linf_over_lite_total": round(sum(r["full_linf_2_255_cpu_s"] for r in with_cpu)
                                                     / sum(r["lite_cpu_s"] for r in with_cpu), 1) if with_cpu else None,
        "note": ("full wall: the committed results' Linf-2/255 sections (chunk wall times, recorded at different "
                 "times under different contention on a shared 2-core machine); full CPU: bench/cost_profile.py's "
                 "per-stage estimates for Linf-2/255; lite: this run (see machine), same machine"),
    }


def masking_models(protocol, previous: str = "lite1") -> dict:
    """The masking models of tests/test_lite_guard.py (the zoo's ERM ResNet-8 on BreastMNIST, wrapped) under
    ``protocol`` and under the ``previous`` lite protocol: verdict, robust BA, which attack broke what."""
    sys.path.insert(0, str(REPO / "tests"))
    import medbench
    from test_lite_guard import (AttackDetector, NaNOffGrid, RoundedWithLeak, RoundedWithMisleadingLeak,
                                 Wiggle)

    erm = medbench.load_model("Baseline_ResNet8_ERM", dataset="breastmnist")
    models = {"Baseline_ResNet8_ERM (plain)": erm, "AttackDetector": AttackDetector(erm),
              "RoundedWithLeak": RoundedWithLeak(erm), "RoundedWithMisleadingLeak": RoundedWithMisleadingLeak(erm),
              "Wiggle": Wiggle(erm), "NaNOffGrid": NaNOffGrid(erm)}
    out = {}
    for name, model in models.items():
        for proto in (protocol, load_protocol(previous)):
            t0 = time.process_time()
            r = benchmark(model, "breastmnist", threats="all", protocol=proto, progress=False, allow_unranked=True)
            adv = r.adversarial.get(HEADLINE)
            out.setdefault(name, {})[proto.version] = {
                # the previous lite page ordered every result with a headline number (flags aside)
                "admitted": r.admitted, "reliable": r.reliable,
                "ordered": not not_ordered_because(r) if proto is protocol else adv is not None,
                "robust_ba": None if adv is None else round(adv.robust_balanced_accuracy, 4),
                "broken_by": None if adv is None else {k: adv.broken_by.count(k)
                                                       for k in sorted(set(adv.broken_by) - {None})},
                "failed_checks": {c.name: c.message for c in r.checks if not c.passed},
                "cpu_s": round(time.process_time() - t0, 1)}
            print(f"{name:28s} {proto.version}: robust BA {out[name][proto.version]['robust_ba']} "
                  f"{'ordered' if out[name][proto.version]['ordered'] else 'NOT ordered'} "
                  f"{sorted(out[name][proto.version]['failed_checks'])}", flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--variant", action="append", default=[], metavar="KEY=VALUE",
                    help="derive a '+custom' lite protocol (for comparing settings); not written as results")
    ap.add_argument("--write-results", action="store_true", help="write leaderboard/lite/<dataset>/<model>.json")
    ap.add_argument("--write-subsets", action="store_true")
    ap.add_argument("--only", default=None, help="comma-separated datasets (default: every committed one)")
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--resamples", type=int, default=N_BOOTSTRAP, help="bootstrap draws of test images")
    ap.add_argument("--lite-version", default=LITE_VERSION,
                    help=f"the lite protocol to evaluate (default: the current one, {LITE_VERSION})")
    ap.add_argument("--masking", action="store_true",
                    help="also evaluate the masking models of tests/test_lite_guard.py (BreastMNIST) under this and "
                         "the previous lite protocol")
    ap.add_argument("--rejoin", action="store_true",
                    help="recompute the summary from --out's rows and the current cost profile (no evaluation)")
    args = ap.parse_args()
    torch.set_num_threads(1)

    protocol = load_protocol(args.lite_version)
    if args.write_results and protocol.version != LITE_VERSION:
        raise SystemExit(f"--write-results writes results of the current lite protocol ({LITE_VERSION}) only")
    if args.write_subsets:
        print(f"wrote {write_subsets(protocol)}")
        return
    changes = {k: yaml.safe_load(v) for k, v in (item.split("=", 1) for item in args.variant)}
    if changes:
        protocol = protocol.derive(**changes)
        if args.write_results:
            raise SystemExit("--write-results writes the standard lite protocol's results only; drop --variant")
    cost = json.loads(COST.read_text()) if COST.is_file() else {}
    fulls = {(r.dataset, r.model_id): r for _, _, r in full_results()}
    only = set(args.only.split(",")) if args.only else None
    if args.rejoin:
        previous = json.loads(args.out.read_text())
        rows, command, machine = previous["models"], previous["command"], previous["machine"]
        for r in rows:
            r["full_linf_2_255_cpu_s"] = full_linf_cpu_s(cost, r["dataset"], r["model_id"])
    else:
        rows, command = [], "python " + " ".join(["bench/lite_track.py", *sys.argv[1:]])
        machine = (f"{torch.get_num_threads()} torch thread(s), nice {os.nice(0)}, on a 2-core machine shared with "
                   "other jobs")
        for (dataset, model_id), full in fulls.items():
            if only and dataset not in only:
                continue
            row = evaluate_row(dataset, model_id, full, protocol, cost, args.write_results)
            rows.append(row)
            full_ba, lite_ba = ("-" if v is None else f"{v:.3f}"
                                for v in (row["full_robust_ba"], row["lite_robust_ba"]))
            print(f"{dataset:15s} {model_id:28s} full {full_ba} lite {lite_ba} "
                  f"{'ordered' if row['lite_ordered'] else 'NOT ordered'} ({row['lite_cpu_s']:.1f} s CPU, "
                  f"{row['lite_wall_s']:.1f} s wall)", flush=True)

    ordered = [r for r in rows if r["lite_ordered"] and r["full_ranked"]]
    agree = agreement(ordered, fulls, protocol, args.resamples)
    report = {
        "what": ("Spearman rho between lite and full Linf-2/255 robust balanced accuracy over the reference zoo, "
                 "per dataset with 95% intervals, and the cost of the lite track against the full Linf-2/255 "
                 "threat alone"),
        "command": command,
        "lite_protocol": {"version": protocol.version, "sha256": protocol.sha256(), "track": protocol.track,
                          "subset_size": protocol.get("adversarial.subset_size"),
                          "n_iter": protocol.get("adversarial.n_iter"),
                          "attack_sets": protocol.get("adversarial.attack_sets"),
                          "square_queries": protocol.get("adversarial.square_queries"),
                          "fgsm_eps_255": protocol.get("curves.fgsm_eps_255")},
        "full_protocol_versions": sorted({fulls[(r["dataset"], r["model_id"])].provenance.protocol_version
                                          for r in rows}),
        "machine": machine,
        "n_models": len(rows),
        "n_compared": len(ordered),
        "lite_not_ordered": {f"{r['dataset']}/{r['model_id']}": r["lite_not_ordered_because"]
                             for r in rows if not r["lite_ordered"]},
        "full_not_ranked": [f"{r['dataset']}/{r['model_id']}" for r in rows if not r["full_ranked"]],
        "agreement_note": (
            "Only models that both tracks order enter: the lite page orders it (admitted under the lite protocol's "
            "version-3 admission, every sanity check passed, a masking guard ran) and the full protocol ranks it "
            "(a Linf-2/255 result, admitted, every sanity check passed). Each dataset has 4-5 reference models: "
            "with n = 4 a "
            "Spearman rho takes 11 values and rho = 1 has a one-sided permutation p of 1/24 = 0.042 (n = 5: 1/120), "
            "so a per-dataset rho is weak evidence whatever its value. spearman_rho_ci95_images: percentile interval "
            f"over {args.resamples} bootstrap draws of test images (lite subset and full subset resampled "
            "independently, the same draw for every model of a dataset); it holds the models fixed, so it says how "
            "much the measured BAs' sampling moves rho, not how rho would generalise to other models. "
            "permutation_p_one_sided: exact, over the n! orders of the models."),
        "spearman_rho_per_dataset": agree["per_dataset"],
        "spearman_rho_pooled": agree["pooled"],
        "pairs_note": ("pairs of models in different tie groups of the full protocol (paired bootstrap 95% "
                       "interval of the difference excludes 0, as the site ranks them), and how many of those "
                       "the lite track orders the other way"),
        "mean_abs_difference": (round(float(np.mean([abs(r["full_robust_ba"] - r["lite_robust_ba"]) for r in ordered])),
                                      4) if ordered else None),
        "cost_like_for_like": cost_summary(rows),
        "models": rows,
    }
    if args.masking:
        report["masking_command"] = "python " + " ".join(["bench/lite_track.py", *sys.argv[1:]])
        report["masking_note"] = ("the zoo's ERM ResNet-8 on BreastMNIST wrapped as in tests/test_lite_guard.py, "
                                  "evaluated on the whole lite subset with today's checks; 'ordered': whether the lite page of "
                                  "that version orders it (lite1's ordered every result with a Linf-2/255 number)")
        report["masking_models"] = masking_models(protocol)
    elif args.rejoin and "masking_models" in previous:
        report.update({k: previous[k] for k in ("masking_command", "masking_note", "masking_models") if k in previous})
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    per = {k: (v["spearman_rho"], v.get("spearman_rho_ci95_images")) for k, v in agree["per_dataset"].items()}
    cst = report["cost_like_for_like"]
    print(f"pooled rho {agree['pooled']['spearman_rho']} (dataset-only score "
          f"{agree['pooled']['dataset_only_score_spearman_rho']}), per dataset {per}; full Linf-2/255 / lite: wall "
          f"{cst['wall_ratio_full_linf_over_lite_per_model']}, CPU {cst['cpu_ratio_full_linf_over_lite_per_model']}")


if __name__ == "__main__":
    main()
