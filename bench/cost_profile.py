"""CPU time of the full protocol per stage, for every reference model (bench/results/cost_profile.json).

Running the full protocol on all 21 reference models takes hours on this shared 2-core machine, so:

1. ``measured_full``: the whole protocol (``threats=all``) on one model (default: the cheapest 2D one,
   Baseline_ResNet8_AUCM on BreastMNIST), one torch thread, with the harness's own per-stage CPU and wall
   times (``provenance.cpu_time_per_stage_s``). Its verdicts are compared with the committed result.
2. ``models``: for every committed result, the Linf-2/255 AutoAttack attacks and the curves at one eps
   and sigma are run on a fixed small probe subset (``--probe-n`` test images, stratified, seed 0) with the
   full protocol's settings; each attack's CPU time per call is carried to the other threats (Linf-4/255,
   L2-0.25) and eps, and scaled to the full run with an affine per-call cost model:
   an attack iteration on ``n`` points costs ``a + b * n`` (a: per-call overhead, b: per image; measured
   per model from forward+backward passes at two batch sizes), summed over the full run's chunks with
   the number of points that reached the stage in the committed result (known from its ``broken_by`` and
   per-example flags). The curves are probed at eps 2/255 and sigma 0.05 and their per-call cost used for
   every eps / sigma (APGD-CE runs a fixed number of iterations whatever eps is); an attack no probe point
   reached in one threat takes its per-call cost from the same attack in another threat. Clean, admission and corruptions are taken from the committed result's recorded
   wall time (protocol 2, one thread; a wall time, labelled so). Estimates are labelled as such; step 1
   checks the estimate against the measurement on the same model.
3. ``recorded``: the committed results' wall time per threat (``original_wall_time_s`` where a section was
   carried over), which were measured under varying contention.

    python bench/cost_profile.py                          # everything (about an hour of CPU)
    python bench/cost_profile.py --full-result PATH.json  # reuse a full result computed by this medbench
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from medbench.evaluate import benchmark, prepare_model  # noqa: E402
from medbench.data import get_spec  # noqa: E402
from medbench.protocol import load_protocol  # noqa: E402
from medbench.schema import EvaluationResult  # noqa: E402
from medbench.zoo import load_model  # noqa: E402

RESULTS = REPO / "leaderboard" / "results"
OUT = REPO / "bench" / "results" / "cost_profile.json"
CHUNK = 250  # the full runs' attack chunk size (config.batch_size of every committed result)
FROM_RECORD = ("clean", "admission", "corruptions")
COMMANDS = ["python " + " ".join(["bench/cost_profile.py", *sys.argv[1:]])]  # every invocation behind the report


def committed() -> list[EvaluationResult]:
    """The committed results of the full protocol (the architectures study's clean + corruption records,
    which ran no attack, have no attack stage to profile)."""
    results = [EvaluationResult.from_json(p) for p in sorted(RESULTS.glob("*/*.json"))]
    return [r for r in results if r.adversarial and r.track == "full"]


def recorded_walls(r: EvaluationResult) -> dict[str, float]:
    """Wall seconds per threat where each section was computed (a reused section's original time)."""
    prov, out = r.provenance, {}
    for threat, wall in prov.wall_time_per_threat_s.items():
        reused = prov.reused.get(threat)
        wall = reused.original_wall_time_s if reused and reused.original_wall_time_s else wall
        # a resumed run's per-threat time counts only its last session; the per-threat-label attack times
        # (summed over chunks, kept across resumes) are the fuller record
        chunks = sum(a.wall_time_s or 0.0 for a in r.adversarial.values() if a.config.norm == threat)
        out[threat] = round(max(wall, chunks), 2)
    return out


def reached(r: EvaluationResult) -> dict[str, list[int]]:
    """Stage -> number of points it attacked in each chunk of ``r``'s run (chunks of the config's batch size)."""
    out: dict[str, list[int]] = {}
    for label, adv in r.adversarial.items():
        bs = adv.config.batch_size
        for i, attack in enumerate(adv.config.attacks):
            # a point reaches attack i when it was correct and no earlier attack broke it
            ok = np.array([b is None or (b in adv.config.attacks and adv.config.attacks.index(b) >= i)
                           for b in adv.broken_by])
            out[f"{label}/{attack}"] = [int(ok[s:s + bs].sum()) for s in range(0, len(ok), bs)]
    if r.curves is not None:
        bs, n = r.curves.batch_size, len(r.curves.subset.indices)
        correct = np.asarray(r.curves.apgd_ce[0].correct)  # eps 0: the clean verdicts (APGD attacks these only)
        for p in r.curves.apgd_ce:
            out[f"curves/apgd-ce/{p.x * 255:g}/255"] = [0] * len(range(0, n, bs)) if p.x == 0 else \
                [int(correct[s:s + bs].sum()) for s in range(0, n, bs)]
        for p in r.curves.fgsm:
            out[f"curves/fgsm/{p.x * 255:g}/255"] = [0 if p.x == 0 else min(bs, n - s) for s in range(0, n, bs)]
        for p in r.curves.noise:
            out[f"curves/noise/{p.x:g}"] = [min(bs, n - s) for s in range(0, n, bs)]
    return out


def call_cost(model: torch.nn.Module, shape: tuple[int, ...], sizes: tuple[int, int], reps: int) -> tuple[float, float]:
    """(a, b): CPU seconds of one forward+backward on n inputs ~ a + b * n, from two batch sizes."""
    times = []
    for n in sizes:
        x = torch.rand((n, *shape), generator=torch.Generator().manual_seed(0)).requires_grad_(True)
        y = torch.zeros(n, dtype=torch.long)
        torch.nn.functional.cross_entropy(model(x), y).backward()  # warm-up
        c0 = time.process_time()
        for _ in range(reps):
            torch.autograd.grad(torch.nn.functional.cross_entropy(model(x), y), x)
        times.append((time.process_time() - c0) / reps)
    b = max((times[1] - times[0]) / (sizes[1] - sizes[0]), 1e-9)
    return max(times[0] - b * sizes[0], 0.0), b


PROBE_CURVES = {"curves.apgd_eps_255": [0, 2], "curves.fgsm_eps_255": [0, 2], "curves.noise_sigma": [0.05]}
PROBE_THREAT = "Linf-2/255"  # probed; Linf-4/255 and L2-0.25 take each attack's per-call cost from it


def _peer(stage: str, units: dict[str, float]) -> str | None:
    """The measured stage whose per-call cost stands in for ``stage``: a curve point of the same kind
    (APGD-CE runs a fixed number of iterations whatever eps is), or the same attack in another threat."""
    parts = stage.split("/")
    if parts[0] == "curves":
        cands = [k for k in units if k.startswith(f"curves/{parts[1]}/")]
    else:
        cands = [k for k in units if k.endswith("/" + parts[-1]) and k.split("/")[0].split("-")[0] == parts[0].split("-")[0]]
        cands += [k for k in units if k.endswith("/" + parts[-1]) and k not in cands]
    return cands[0] if cands else None


def probe(r: EvaluationResult, probe_n: int) -> dict:
    """Per-stage CPU of the full protocol's attack stages on a ``probe_n`` subset, scaled to ``r``'s run.

    Only Linf-2/255 and the curves at one eps (2/255) and one sigma (0.05) are probed: an attack costs
    about the same per call at every eps and norm (fixed iterations and queries; Square and FAB stop
    early on broken points, which the reached-point counts carry), which the measured full run checks."""
    spec = get_spec(r.dataset)
    full_proto = load_protocol("2")
    linf = [t for t in full_proto["adversarial"]["threats"]["Linf"] if t["label"] == PROBE_THREAT]
    proto = full_proto.derive(**{"adversarial.subset_size": probe_n, "adversarial.threats": {"Linf": linf},
                                 **PROBE_CURVES})
    threats = [t for t in ("Linf", "curves") if t in r.threats]
    c0 = time.process_time()
    p = benchmark(r.model_id, r.dataset, threats=",".join(threats), protocol=proto, progress=False, batch_size=CHUNK)
    probe_cpu = time.process_time() - c0
    model = prepare_model(load_model(r.model_id, r.dataset, device="cpu"), spec, 28, torch.device("cpu"))
    a, b = call_cost(model, spec.input_shape(28), (1, 16), reps=3 if spec.is_3d else 20)
    probe_reached = {k: sum(v) for k, v in reached(p).items()}
    cpu = {k: v for k, v in p.provenance.cpu_time_per_stage_s.items() if k not in FROM_RECORD}
    # CPU seconds per unit of the affine call cost (a + b * n), for the stages the probe exercised
    units = {k: v / (a + b * probe_reached[k]) for k, v in cpu.items() if probe_reached.get(k)}
    stages = {}
    for stage, chunks in reached(r).items():
        full_n = sum(chunks)
        entry = {"full_points": full_n, "probe_cpu_s": cpu.get(stage), "probe_points": probe_reached.get(stage)}
        if not full_n:
            entry["estimated_full_cpu_s"] = 0.0
        else:
            src = stage if stage in units else _peer(stage, units)
            if src is None:
                entry["estimated_full_cpu_s"] = None
                entry["note"] = "not measured: no probe point reached this attack in any threat"
            else:
                entry["estimated_full_cpu_s"] = round(units[src] * sum(a + b * n for n in chunks if n), 2)
                if src != stage:
                    entry["per_call_cost_from"] = src
        stages[stage] = entry
    recorded = recorded_walls(r)
    est = {k: v["estimated_full_cpu_s"] for k, v in stages.items()}
    total = sum(v for v in est.values() if v) + sum(recorded.get(t, 0.0) for t in FROM_RECORD)
    return {"dataset": r.dataset, "model_id": r.model_id, "probe_n": p.adversarial[next(iter(p.adversarial))].subset.n,
            "probe_cpu_s": round(probe_cpu, 1), "call_cost_a_s": a, "call_cost_b_s_per_image": b,
            "stages": stages, "recorded_wall_s": recorded,
            "full_cpu_s": round(total, 1),
            "full_cpu_by_family_s": family_totals(est, recorded)}


def family_totals(est: dict[str, float | None], recorded: dict[str, float]) -> dict[str, float]:
    fam: dict[str, float] = {t: recorded.get(t, 0.0) for t in FROM_RECORD}
    for stage, v in est.items():
        head = stage.split("/")[0]
        key = "curves/" + stage.split("/")[1] if head == "curves" else f"{head.split('-')[0]}/{stage.split('/')[-1]}"
        fam[key] = round(fam.get(key, 0.0) + (v or 0.0), 2)
    return fam


def measured_full(model_id: str, dataset: str, full_result: Path | None) -> dict:
    """The whole protocol on one model (or a saved result of it), with its per-stage CPU, against the committed one."""
    ref = EvaluationResult.from_json(RESULTS / dataset / f"{model_id}.json")
    if full_result is None:
        full_result = Path(f"/tmp/cost_profile_{dataset}_{model_id}.json")
        c0, t0 = time.process_time(), time.perf_counter()
        pinned = load_protocol("2").get("corruptions.reference_models", {}).get(dataset)
        benchmark(model_id, dataset, threats="all", out=full_result, progress=False, batch_size=CHUNK,
                  reference=RESULTS / dataset / f"{pinned}.json" if pinned else None)
        print(f"full run: {time.process_time() - c0:.1f} s CPU, {time.perf_counter() - t0:.1f} s wall", flush=True)
    r = EvaluationResult.from_json(full_result)
    same = {label: (adv.robust_flags == ref.adversarial[label].robust_flags
                    and adv.adv_predictions == ref.adversarial[label].adv_predictions
                    and adv.broken_by == ref.adversarial[label].broken_by)
            for label, adv in r.adversarial.items()}
    same["curves"] = r.curves.model_dump() == ref.curves.model_dump()
    cpu = r.provenance.cpu_time_per_stage_s
    return {"dataset": dataset, "model_id": model_id, "torch_threads": 1,
            "cpu_s_total": round(sum(cpu.values()), 1), "wall_s_total": r.provenance.wall_time_s,
            "cpu_time_per_stage_s": cpu, "wall_time_per_stage_s": r.provenance.wall_time_per_stage_s,
            "cpu_by_family_s": family_totals({k: v for k, v in cpu.items() if k not in FROM_RECORD},
                                             {k: cpu.get(k, 0.0) for k in FROM_RECORD}),
            "verdicts_identical_to_committed": same,
            "committed_recorded_wall_s": recorded_walls(ref)}


def monotone_savings(results: list[EvaluationResult]) -> dict:
    """What skipping points already broken at a smaller eps would save, and why it is not done."""
    out = {}
    for r in results:
        small, big = r.adversarial.get("Linf-2/255"), r.adversarial.get("Linf-4/255")
        if small is None or big is None or small.subset.indices != big.subset.indices:
            continue
        broken_small = np.array([b not in (None, "clean") for b in small.broken_by])
        robust_big = np.asarray(big.robust_flags)
        out[f"{r.dataset}/{r.model_id}"] = {
            "points_attacked_at_4_255": int(np.sum([b != "clean" for b in big.broken_by])),
            "of_which_already_broken_at_2_255": int(broken_small.sum()),
            "broken_at_2_255_but_robust_at_4_255": int(np.sum(broken_small & robust_big)),
        }
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--probe-n", type=int, default=32)
    ap.add_argument("--full-model", default="Baseline_ResNet8_AUCM")
    ap.add_argument("--full-dataset", default="breastmnist")
    ap.add_argument("--full-result", type=Path, default=None,
                    help="a result of --full-model computed by this medbench (threats=all, one thread) instead of running it")
    ap.add_argument("--only", default=None, help="comma-separated datasets to probe (default: all committed)")
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--resume", action="store_true", help="keep the models already in --out, probe the others")
    args = ap.parse_args()
    torch.set_num_threads(1)

    results = committed()
    full = measured_full(args.full_model, args.full_dataset, args.full_result)
    print(f"measured full protocol: {full['cpu_s_total']} s CPU; verdicts identical: {full['verdicts_identical_to_committed']}",
          flush=True)
    only = set(args.only.split(",")) if args.only else None
    before = json.loads(args.out.read_text()) if args.resume and args.out.is_file() else {}
    previous = before.get("models", [])
    COMMANDS[:0] = before.get("commands", [before["command"]] if "command" in before else [])
    done = {(m["dataset"], m["model_id"]): m for m in previous}
    models = []
    # 2D first: seconds each; the 3D probes take minutes on a loaded machine
    for r in sorted(results, key=lambda r: (get_spec(r.dataset).is_3d, r.dataset, r.model_id)):
        if (r.dataset, r.model_id) in done:
            models.append(done[(r.dataset, r.model_id)])
            continue
        if only and r.dataset not in only:
            continue
        row = probe(r, args.probe_n)
        models.append(row)
        write_report(args, full, models, results)
        print(f"{r.dataset:15s} {r.model_id:28s} probe {row['probe_cpu_s']:6.1f} s -> full {row['full_cpu_s']:8.1f} s CPU "
              f"(est.)", flush=True)
    write_report(args, full, models, results)


def write_report(args, full: dict, models: list[dict], results: list[EvaluationResult]) -> None:
    """The report so far (written after every model, so an interrupted run keeps what it measured)."""
    check = next((m for m in models if (m["dataset"], m["model_id"]) == (args.full_dataset, args.full_model)), None)
    validation = None
    if check is not None:
        measured = full["cpu_time_per_stage_s"]
        est = {k: v["estimated_full_cpu_s"] for k, v in check["stages"].items()}
        validation = {
            "model": f"{args.full_dataset}/{args.full_model}",
            "estimated_attack_stages_cpu_s": round(sum(v or 0 for v in est.values()), 1),
            "measured_attack_stages_cpu_s": round(sum(v for k, v in measured.items() if k not in FROM_RECORD), 1),
            "per_stage": {k: {"estimated": est.get(k), "measured": measured.get(k)} for k in measured
                          if k not in FROM_RECORD},
        }
    by_key = {(r.dataset, r.model_id): r for r in results}
    for m in models:
        # a single-thread run's CPU time cannot exceed its wall time: the committed walls bound the estimate
        m["recorded_wall_s"] = recorded_walls(by_key[(m["dataset"], m["model_id"])])
        bound = sum(m["recorded_wall_s"].values())
        m["recorded_wall_s_total"] = round(bound, 1)
        m["estimate_exceeds_recorded_wall"] = m["full_cpu_s"] > bound
    probed = {(m["dataset"], m["model_id"]) for m in models}
    not_probed = [{"dataset": r.dataset, "model_id": r.model_id, "recorded_wall_s": recorded_walls(r),
                   "recorded_wall_s_total": round(sum(recorded_walls(r).values()), 1),
                   "note": "not probed in this run (time): committed single-thread wall times only, an upper "
                           "bound on CPU time"} for r in results if (r.dataset, r.model_id) not in probed]
    report = {
        "what": "CPU time of the full protocol (version 2) per stage for each reference model",
        "commands": COMMANDS,
        "machine": "2-core x86_64 shared with other jobs; torch 1 thread; nice 10",
        "method": __doc__.split("\n\n")[1],
        "measured_full": full,
        "estimate_check": validation,
        "n_models": len(models),
        "models": models,
        "not_probed": not_probed,
        "full_cpu_s_total_estimated": round(sum(m["full_cpu_s"] for m in models), 1),
        "skipped_work": {
            "eps0_curve_points": ("APGD-CE and FGSM at eps 0 return the input itself (every step is scaled by eps and "
                                  "projected onto the eps ball): their predictions are read from the clean pass. "
                                  "Saved per model: one APGD-CE curve point (see curves/apgd-ce/0/255 in the "
                                  "measured run: 0 s instead of about one other APGD-CE point)."),
            "autoattack_after_the_first": ("pyautoattack's run_standard_evaluation attacks only the points still "
                                           "robust before each attack; medbench's attack_chunk calls it once per "
                                           "attack on exactly those points, so FAB-T and Square only run on points "
                                           "APGD left robust."),
            "per_call_checks": ("each run_standard_evaluation call repeats pyautoattack's defence checks (5 "
                                "forward passes for randomness, 1 for the output range, 1 traced for dynamic "
                                "defences) and a clean forward on the attacked points: about 8 forward passes "
                                "per attack call, under 2% of an APGD run (100 forward+backward passes); left as is."),
            "across_eps_not_skipped": ("a point broken at 2/255 is non-robust at 4/255 (its adversarial example lies "
                                       "in the larger ball), but skipping it at 4/255 changes the 4/255 batches, "
                                       "whose random starts are drawn per batch, and so other points' verdicts; and "
                                       "the 4/255 attack does not always re-find it. So it is not done (it would "
                                       "change numbers: a protocol change, not an optimisation). The counts below "
                                       "show what it would save and how often the larger eps missed a point the "
                                       "smaller one broke."),
            "across_eps_counts": monotone_savings(results),
        },
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
