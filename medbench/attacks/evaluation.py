"""Threat runners for ``benchmark()``: ``run_linf``, ``run_l2`` (AutoAttack) and ``run_curves``.

All three work on the protocol's fixed evaluation subset, in chunks of ``attack_batch_size(ctx)``
examples; each finished chunk is checkpointed under ``ctx.state_dir`` (when the run has an output
path), so a killed run resumes mid-attack and ends with the same result as an uninterrupted one.
"""

from __future__ import annotations

import re
import time
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from .. import metrics as M
from ..inference import NonFiniteCounter, to_float
from ..schema import AdversarialResult, CurvePoint, Curves, Interval
from .autoattack import attack_chunk, attack_config, broken_by_names, make_autoattack
from .progress import AttackProgress
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


def run_threat(ctx, norm: str, threat: dict[str, Any]) -> AdversarialResult:
    """AutoAttack for one threat entry of the protocol ({norm, eps, label}) on the evaluation subset; the
    wall / CPU seconds per attack go to ``ctx.stage_times`` (stage ``<label>/<attack>``)."""
    spec, k = ctx.spec, ctx.spec.num_classes
    bs = attack_batch_size(ctx)
    config = attack_config(spec, norm, threat["eps"], ctx.protocol, size=ctx.size, batch_size=bs, seed=ctx.seed)
    subset = evaluation_subset(spec.name, ctx.labels, ctx.protocol)
    store = _store(ctx, threat["label"], {"config": config.model_dump(), "subset": subset.info.indices_sha256})
    counter = NonFiniteCounter(ctx.model)  # NaN logits must refuse the result, not count as class 0
    adversary = make_autoattack(counter, config, ctx.device)
    parts: list[dict[str, np.ndarray]] = []
    clean = _clean_predictions(ctx)
    chunks = list(_chunks(subset, bs))
    with AttackProgress(f"{threat['label']} {spec.name}", norm, list(config.attacks), [len(c) for _, c in chunks],
                        enabled=ctx.progress) as bar:
        for i, idx in chunks:
            bar.chunk(i)
            saved = store.get(f"chunk{i:05d}")
            if saved is None:
                t0 = time.perf_counter()
                counter.count = 0
                x, y = _batch(ctx, idx)
                out = attack_chunk(adversary, config, x, y, on_start=bar.start, on_attack=bar.done,
                                   clean_pred=None if clean is None else torch.as_tensor(clean[idx]))
                saved = dict(clean_pred=out.clean_pred, adv_pred=out.adv_pred, robust=out.robust,
                             broken_by=out.broken_by, adv_logits=out.adv_logits,
                             max_perturbation=np.float64(out.max_perturbation),
                             nonfinite=np.int64(counter.count),
                             wall=np.float64(time.perf_counter() - t0),
                             attack_wall=np.array([out.attack_wall_s[a] for a in config.attacks]),
                             attack_cpu=np.array([out.attack_cpu_s[a] for a in config.attacks]))
                store.put(f"chunk{i:05d}", **saved)
            else:
                bar.skip_chunk()
            parts.append(saved)
    cat = {key: np.concatenate([p[key] for p in parts]) for key in ("clean_pred", "adv_pred", "robust", "broken_by")}
    adv_logits = np.concatenate([p["adv_logits"] for p in parts])
    # chunks checkpointed by an older medbench did not count: then the section has no count
    nonfinite = sum(int(p["nonfinite"]) for p in parts) if all("nonfinite" in p for p in parts) else None
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
        max_perturbation=float(max(float(p["max_perturbation"]) for p in parts)) if parts else 0.0,
        nonfinite_outputs=nonfinite,
        wall_time_s=round(float(sum(float(p["wall"]) for p in parts)), 3),
    )


def _run_norm(ctx, norm: str) -> dict[str, Any]:
    threats = ctx.protocol["adversarial"]["threats"].get(norm, [])
    return {"adversarial": {t["label"]: run_threat(ctx, norm, t) for t in threats}}


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
    store = _store(ctx, "curves", {"curves": cur, "subset": subset.info.indices_sha256, "batch_size": bs,
                                   "seed": ctx.seed})
    jobs = [("apgd", j, e) for j, e in enumerate(apgd_eps)] + [("fgsm", j, e) for j, e in enumerate(fgsm_eps)] \
        + [("noise", j, s) for j, s in enumerate(sigmas)]
    results: dict[tuple[str, int], list[dict[str, np.ndarray]]] = {(kind, j): [] for kind, j, _ in jobs}
    clean = _clean_predictions(ctx)
    # the bar counts forward+backward passes, so APGD (n_iter steps) and FGSM (one) weigh what they cost
    cost = {"apgd": n_iter + 1, "fgsm": 2, "noise": 1}
    with tqdm(total=len(subset) * sum(cost[kind] for kind, _, _ in jobs), desc=f"curves {ctx.spec.name}",
              unit="pass", disable=not ctx.progress, leave=False,
              bar_format="{desc}: {percentage:3.0f}%|{bar}| {elapsed}<{remaining}{postfix}") as bar:
        for kind, j, value in jobs:
            bar.set_postfix_str(f"{kind} {value:.4g}")
            stage = f"curves/{STAGE_NAMES[kind]}/{value * 255:g}/255" if kind != "noise" else f"curves/noise/{value:g}"
            for i, idx in _chunks(subset, bs):
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
    y = ctx.labels[subset.indices]
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
