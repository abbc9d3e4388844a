"""Threat runners for ``benchmark()``: ``run_linf``, ``run_l2`` (AutoAttack) and ``run_curves``.

All three work on the protocol's fixed evaluation subset, in chunks of ``attack_batch_size(ctx)``
examples; each finished chunk is checkpointed under ``ctx.state_dir`` (when the run has an output
path), so a killed run resumes mid-attack and ends with the same result as an uninterrupted one.
"""

from __future__ import annotations

import hashlib
import re
import time
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from .. import metrics as M
from ..errors import MedbenchError
from ..inference import NonFiniteCounter, to_float
from ..schema import AdversarialResult, CurvePoint, Curves, Interval
from .autoattack import attack_chunk, attack_config, broken_by_names, make_autoattack
from .progress import AttackProgress, measure_unit_cost
from .curves import apgd_ce, fgsm, noise_predictions
from .resume import ChunkStore
from .subset import Subset, evaluation_subset

# pyautoattack's default batch; also bounds the work lost when a run is killed mid-chunk.
MAX_ATTACK_BATCH = 250


def _add_time(ctx, stage: str, wall: float, cpu: float) -> None:
    """Add to ``ctx.stage_times`` (stage -> wall / CPU seconds), which benchmark() records in provenance."""
    times = getattr(ctx, "stage_times", None)
    if times is None:  # a context made elsewhere (scripts, benchmarks) that does not collect stage times
        return
    entry = times.setdefault(stage, {"wall": 0.0, "cpu": 0.0})
    entry["wall"] += float(wall)
    entry["cpu"] += float(cpu)


def attack_batch_size(ctx) -> int:
    """Chunk size of the attacks: the run's batch size, at most ``MAX_ATTACK_BATCH``."""
    return int(max(1, min(ctx.batch_size, MAX_ATTACK_BATCH)))


def _store(ctx, name: str, meta: dict[str, Any]) -> ChunkStore:
    folder = None if ctx.state_dir is None else ctx.state_dir / "attacks" / re.sub(r"[^A-Za-z0-9_.-]", "_", name)
    return ChunkStore(folder, meta)


def _chunks(subset: Subset, size: int):
    for i, start in enumerate(range(0, len(subset), size)):
        yield i, subset.indices[start:start + size]


def _batch(ctx, idx: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    x = to_float(ctx.images[torch.as_tensor(idx)], ctx.device)
    y = torch.as_tensor(ctx.labels[idx], device=ctx.device)
    return x, y


def _finite(x: float) -> float | None:
    return None if x is None or np.isnan(x) else float(x)


def _clean_predictions(ctx) -> np.ndarray | None:
    """The run's clean-pass predictions on the full test split, when the clean threat already ran."""
    clean = getattr(ctx, "results", {}).get("clean")
    preds = getattr(clean, "predictions", None)
    if preds is None or len(preds) != len(ctx.labels):
        return None
    return np.asarray(preds, dtype=np.int64)


def nested_budgets(protocol) -> bool:
    """Whether the protocol attacks a larger budget only where the next smaller one of the same norm (or
    curve) left the point robust: an example inside the smaller ball lies inside the larger one, so a point
    broken there is broken here by the same example, and robust accuracy can only go down with eps."""
    return bool(protocol["adversarial"].get("nested_budgets", False))


def run_threat(ctx, norm: str, threat: dict[str, Any], prior: dict[str, Any] | None = None,
               ) -> tuple[AdversarialResult, dict[str, Any]]:
    """AutoAttack for one threat entry of the protocol ({norm, eps, label}) on the evaluation subset; the
    wall / CPU seconds per attack go to ``ctx.stage_times`` (stage ``<label>/<attack>``).

    ``prior``: the outcome (second return value) of the same norm's next smaller budget; its broken points
    are carried over (same prediction, logits and breaking attack) and only its robust ones are attacked."""
    spec, k = ctx.spec, ctx.spec.num_classes
    bs = attack_batch_size(ctx)
    config = attack_config(spec, norm, threat["eps"], ctx.protocol, size=ctx.size, batch_size=bs, seed=ctx.seed)
    subset = evaluation_subset(spec.name, ctx.labels, ctx.protocol)
    meta = {"config": config.model_dump(), "subset": subset.info.indices_sha256}
    attacked = np.ones(len(subset), dtype=bool) if prior is None else prior["robust"].astype(bool)
    if prior is not None:
        meta["nested_from"] = {"threat": prior["threat"], "robust": hashlib.sha256(attacked.tobytes()).hexdigest()}
    store = _store(ctx, threat["label"], meta)
    counter = NonFiniteCounter(ctx.model)  # NaN logits must refuse the result, not count as class 0
    adversary = make_autoattack(counter, config, ctx.device)
    parts: list[dict[str, np.ndarray]] = []
    clean = _clean_predictions(ctx)
    chunks = list(_chunks(Subset(subset.indices[attacked], subset.info), bs)) if attacked.any() else []
    unit = None
    if ctx.progress and chunks:  # prices the attack runs ahead for the ETA (a few passes, no state changed)
        x0, y0 = _batch(ctx, chunks[0][1])
        unit = measure_unit_cost(ctx.model, x0, y0)
    with AttackProgress(f"{threat['label']} {spec.name}", norm, list(config.attacks), [len(c) for _, c in chunks],
                        enabled=ctx.progress, config=config, unit=unit) as bar:
        for i, idx in chunks:
            bar.chunk(i)
            saved = store.get(f"chunk{i:05d}")
            if saved is None:
                # after each attack but the last, the chunk's state is checkpointed too: a killed run
                # loses at most the attack that was running on one chunk
                partial = store.get(f"chunk{i:05d}.partial")
                t0 = time.perf_counter() - (0.0 if partial is None else float(partial["spent"]))
                counter.count = 0 if partial is None else int(partial["nonfinite"])
                if partial is not None:
                    bar.skip_attacks(int(partial["done"]))

                def checkpoint(state, i=i, t0=t0):
                    store.put(f"chunk{i:05d}.partial", **state, nonfinite=np.int64(counter.count),
                              spent=np.float64(time.perf_counter() - t0))

                x, y = _batch(ctx, idx)
                out = attack_chunk(adversary, config, x, y, on_start=bar.start, on_attack=bar.done,
                                   clean_pred=None if clean is None else torch.as_tensor(clean[idx]),
                                   resume=partial, on_checkpoint=checkpoint)
                saved = dict(clean_pred=out.clean_pred, adv_pred=out.adv_pred, robust=out.robust,
                             broken_by=out.broken_by, adv_logits=out.adv_logits,
                             max_perturbation=np.float64(out.max_perturbation),
                             nonfinite=np.int64(counter.count),
                             wall=np.float64(time.perf_counter() - t0),
                             attack_wall=np.array([out.attack_wall_s[a] for a in config.attacks]),
                             attack_cpu=np.array([out.attack_cpu_s[a] for a in config.attacks]))
                store.put(f"chunk{i:05d}", **saved)
                store.remove(f"chunk{i:05d}.partial")
            else:
                bar.skip_chunk()
            parts.append(saved)
    keys = ("clean_pred", "adv_pred", "robust", "broken_by", "adv_logits")
    cat = {key: _concat([p[key] for p in parts], len(subset), prior, key, attacked) for key in keys}
    adv_logits = cat.pop("adv_logits")
    # chunks checkpointed by an older medbench did not count: then the section has no count
    nonfinite = sum(int(p["nonfinite"]) for p in parts) if all("nonfinite" in p for p in parts) else None
    if prior is not None and nonfinite is not None:
        nonfinite = None if prior["nonfinite"] is None else nonfinite + prior["nonfinite"]
    finite_scores = bool(np.isfinite(adv_logits).all())
    y = ctx.labels[subset.indices]
    clean_cfg = ctx.protocol["clean"]
    ci = M.bootstrap_metric_ci(y, cat["adv_pred"], k, n_resamples=clean_cfg["bootstrap_resamples"],
                               seed=clean_cfg["bootstrap_seed"], level=clean_cfg["ci_level"])
    codes = cat["broken_by"]
    per_attack = {a: float(np.mean((codes == 0) | (codes > 2 + j))) for j, a in enumerate(config.attacks)}
    for p in parts:  # chunks restored from checkpoints written before per-attack timing lack these
        if "attack_wall" in p and "attack_cpu" in p:
            for j, a in enumerate(config.attacks):
                _add_time(ctx, f"{threat['label']}/{a}", p["attack_wall"][j], p["attack_cpu"][j])
    maxes = [float(p["max_perturbation"]) for p in parts] + ([prior["max_perturbation"]] if prior is not None else [])
    outcome = {**cat, "adv_logits": adv_logits, "threat": threat["label"], "nonfinite": nonfinite,
               "max_perturbation": max(maxes, default=0.0)}
    return AdversarialResult(
        threat=threat["label"], config=config, subset=subset.info.model_copy(update={"indices": subset.indices.tolist()}),
        clean_accuracy=float(np.mean(cat["clean_pred"] == y)),
        clean_balanced_accuracy=M.balanced_accuracy(y, cat["clean_pred"], k),
        robust_accuracy=float(np.mean(cat["robust"])),
        robust_balanced_accuracy=M.balanced_accuracy(y, cat["adv_pred"], k),
        robust_balanced_accuracy_ci=Interval(low=_finite(ci.low), high=_finite(ci.high)),
        auc_under_attack=_finite(M.auc(y, M.probabilities(adv_logits, spec.task), spec.task)) if finite_scores else None,
        robust_flags=[bool(v) for v in cat["robust"]],
        adv_predictions=[int(v) for v in cat["adv_pred"]],
        broken_by=broken_by_names(config, codes),
        per_attack_robust_accuracy=per_attack,
        max_perturbation=outcome["max_perturbation"],
        nonfinite_outputs=nonfinite,
        wall_time_s=round(float(sum(float(p["wall"]) for p in parts)), 3),
        nested_from=None if prior is None else prior["threat"],
        carried_over=None if prior is None else int((~attacked).sum()),
        calibration=_attack_calibration(ctx, threat, y, adv_logits) if finite_scores else None,
    ), outcome


def _attack_calibration(ctx, threat: dict[str, Any], labels: np.ndarray, adv_logits: np.ndarray):
    """Calibration at a headline threat's final inputs on the subset (the clean pass's temperature for the scaled
    numbers); None for other threats and when the protocol measures none."""
    from ..calibration import calibration_summary
    from ..evaluate import calibration_options, fitted_temperature

    options = calibration_options(ctx)
    if options is None or not threat.get("headline"):
        return None
    return calibration_summary(labels, adv_logits, ctx.spec.task, temperature=fitted_temperature(ctx), **options)


def _concat(arrays: list[np.ndarray], n: int, prior: dict[str, Any] | None, key: str,
            attacked: np.ndarray) -> np.ndarray:
    """The per-subset-point array of a threat: the attacked points' chunks, the prior's carried points."""
    if prior is None:
        return np.concatenate(arrays)
    out = np.array(prior[key], copy=True)
    if arrays:
        out[attacked] = np.concatenate(arrays)
    assert len(out) == n
    return out


def _run_norm(ctx, norm: str) -> dict[str, Any]:
    threats = ctx.protocol["adversarial"]["threats"].get(norm, [])
    nested = nested_budgets(ctx.protocol)
    results: dict[str, AdversarialResult] = {}
    prior = None
    for t in sorted(threats, key=lambda t: t["eps"]) if nested else threats:
        results[t["label"]], outcome = run_threat(ctx, norm, t, prior)
        prior = outcome if nested else None
    return {"adversarial": {t["label"]: results[t["label"]] for t in threats}}  # the protocol's order


def run_linf(ctx) -> dict[str, Any]:
    """AutoAttack under every Linf threat of the protocol (2/255 headline, 4/255 strong)."""
    return _run_norm(ctx, "Linf")


def run_l2(ctx) -> dict[str, Any]:
    """AutoAttack under every L2 threat of the protocol (0.25 at 28 px, scaled with the image size)."""
    return _run_norm(ctx, "L2")


STAGE_NAMES = {"apgd": "apgd-ce", "fgsm": "fgsm", "noise": "noise"}


def _curve_chunk(ctx, store: ChunkStore, kind: str, j: int, value: float, i: int, idx: np.ndarray,
                 n_iter: int) -> dict[str, np.ndarray]:
    """One curve point on one chunk: restored from its checkpoint, else computed and checkpointed."""
    name = f"{kind}{j:02d}_chunk{i:05d}"
    saved = store.get(name)
    if saved is not None:
        return saved
    x, y = _batch(ctx, idx)
    model = NonFiniteCounter(ctx.model)
    if kind == "apgd":
        saved = {"pred": apgd_ce(model, x, y, value, n_iter=n_iter, seed=ctx.seed, device=ctx.device).cpu().numpy()}
    elif kind == "fgsm":
        saved = {"pred": fgsm(model, x, y, value).cpu().numpy()}
    else:
        pred, linf, l2 = noise_predictions(model, x, value, seed=ctx.seed, sigma_index=j, example_ids=idx)
        saved = {"pred": pred.cpu().numpy(), "linf": linf.cpu().numpy(), "l2": l2.cpu().numpy()}
    saved["nonfinite"] = np.int64(model.count)
    store.put(name, **saved)
    return saved


def run_curves(ctx) -> dict[str, Any]:
    """APGD-CE and FGSM over Linf eps, Gaussian noise over sigma; balanced accuracy at each point."""
    from .autoattack import check_supported

    check_supported(ctx.spec, "Linf", ctx.protocol)
    cur = ctx.protocol["curves"]
    apgd_eps = [e / 255 for e in cur["apgd_eps_255"]]
    fgsm_eps = [e / 255 for e in cur["fgsm_eps_255"]]
    sigmas = [float(s) for s in cur["noise_sigma"]]
    n_iter = int(cur["apgd_n_iter"])
    bs = attack_batch_size(ctx)
    subset = evaluation_subset(ctx.spec.name, ctx.labels, ctx.protocol)
    nested = nested_budgets(ctx.protocol)
    if nested and (apgd_eps != sorted(apgd_eps) or fgsm_eps != sorted(fgsm_eps)):
        raise MedbenchError("protocol curves: with adversarial.nested_budgets the eps lists (curves.apgd_eps_255, "
                            "curves.fgsm_eps_255) must be in increasing order.")
    meta = {"curves": cur, "subset": subset.info.indices_sha256, "batch_size": bs, "seed": ctx.seed}
    store = _store(ctx, "curves", {**meta, "nested_budgets": True} if nested else meta)
    jobs = [("apgd", j, e) for j, e in enumerate(apgd_eps)] + [("fgsm", j, e) for j, e in enumerate(fgsm_eps)] \
        + [("noise", j, s) for j, s in enumerate(sigmas)]
    results: dict[tuple[str, int], list[dict[str, np.ndarray]]] = {(kind, j): [] for kind, j, _ in jobs}
    clean = _clean_predictions(ctx)
    y = ctx.labels[subset.indices]
    # nested budgets: APGD-CE and FGSM attack at each eps only the points still correct at the previous one
    previous: dict[str, np.ndarray] = {}
    # the bar counts forward+backward passes, so APGD (n_iter steps) and FGSM (one) weigh what they cost
    cost = {"apgd": n_iter + 1, "fgsm": 2, "noise": 1}
    with tqdm(total=len(subset) * sum(cost[kind] for kind, _, _ in jobs), desc=f"curves {ctx.spec.name}",
              unit="pass", disable=not ctx.progress, leave=False,
              bar_format="{desc}: {percentage:3.0f}%|{bar}| {elapsed}<{remaining}{postfix}") as bar:
        for kind, j, value in jobs:
            bar.set_postfix_str(f"{kind} {value:.4g}")
            stage = f"curves/{STAGE_NAMES[kind]}/{value * 255:g}/255" if kind != "noise" else f"curves/noise/{value:g}"
            carried = previous.get(kind) if nested and kind != "noise" else None
            attacked = np.ones(len(subset), dtype=bool) if carried is None else carried == y
            for i, idx in _chunks(Subset(subset.indices[attacked], subset.info), bs):
                t0, c0 = time.perf_counter(), time.process_time()
                if kind != "noise" and value == 0 and clean is not None:
                    # at eps 0 APGD-CE and FGSM return x itself (every step is scaled by eps and projected
                    # onto the eps ball), so their predictions are the clean ones: taken from the clean pass
                    # (admission's eps0_repredicts_clean checks that re-predicting the subset agrees)
                    saved = {"pred": clean[idx], "nonfinite": np.int64(0)}
                else:
                    saved = _curve_chunk(ctx, store, kind, j, value, i, idx, n_iter)
                _add_time(ctx, stage, time.perf_counter() - t0, time.process_time() - c0)
                results[(kind, j)].append(saved)
                bar.update(len(idx) * cost[kind])
            bar.update(int((~attacked).sum()) * cost[kind])
            if carried is not None:  # the carried points keep the prediction that broke them at a smaller eps
                pred = np.array(carried, copy=True)
                if attacked.any():
                    pred[attacked] = np.concatenate([p["pred"] for p in results[(kind, j)]])
                results[(kind, j)] = [{"pred": pred, "nonfinite": np.int64(sum(int(p["nonfinite"])
                                                                                for p in results[(kind, j)]))}]
            if kind != "noise":
                previous[kind] = np.concatenate([p["pred"] for p in results[(kind, j)]])
    k = ctx.spec.num_classes

    def point(kind: str, j: int, value: float) -> CurvePoint:
        parts = results[(kind, j)]
        pred = np.concatenate([p["pred"] for p in parts])
        extra = {}
        if kind == "noise":
            extra = {"linf_norm": [round(float(v), 6) for v in np.concatenate([p["linf"] for p in parts])],
                     "l2_norm": [round(float(v), 6) for v in np.concatenate([p["l2"] for p in parts])]}
        return CurvePoint(x=float(value), accuracy=float(np.mean(pred == y)),
                          balanced_accuracy=M.balanced_accuracy(y, pred, k),
                          correct=[bool(v) for v in pred == y], **extra)

    return {"curves": Curves(
        subset=subset.info.model_copy(update={"indices": subset.indices.tolist()}),
        apgd_ce=[point("apgd", j, e) for j, e in enumerate(apgd_eps)],
        fgsm=[point("fgsm", j, e) for j, e in enumerate(fgsm_eps)],
        noise=[point("noise", j, s) for j, s in enumerate(sigmas)],
        apgd_n_iter=n_iter, seed=ctx.seed, batch_size=bs,
        nonfinite_outputs=(sum(int(p["nonfinite"]) for parts in results.values() for p in parts)
                           if all("nonfinite" in p for parts in results.values() for p in parts) else None),
    )}
