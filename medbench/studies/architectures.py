"""Robustness by architecture (the RobMedNAS question): which architectures are robust, and does size help?

The models are the zoo's 2D reference entries of the dataset that come in an ERM / PGD-AT pair of the
same architecture (same recipes as the ResNet-8 baselines; built-in or ``timm/<name>``). For each:

- clean and corruption balanced accuracy from the harness (``medbench.benchmark``, threats clean and
  corruptions, the full protocol): the committed leaderboard result when it was computed for these
  weights under the current protocol, else a fresh run kept in the study's work folder;
- robust balanced accuracy under APGD-CE, L∞ 2/255, on the protocol's attack subset (pyautoattack's
  APGD, 1 restart, seed 0, chunks of 250; 25 iterations by default): with 100 iterations it is the
  protocol's curve point, read from the committed result's ``curves`` when it has them (the identical
  computation, tested), else computed here.
  This is one attack of AutoAttack's four, an upper bound on the AutoAttack robust BA; the full
  AutoAttack protocol costs 15+ CPU-minutes per model.

Every model goes through the harness's admission rule on its clean test predictions
(:func:`medbench.checks.clean_verdicts`, the current protocol), whatever protocol its result was computed
under; a refused model is listed with the reason and left out of every conclusion. Findings: the ERM ->
PGD-AT robust-BA gain per architecture whose two models are admitted (paired bootstrap CI on the same
examples), the Spearman rank correlation of robust BA with the parameter count (admitted models, all and
per recipe), and the most robust admitted model.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field

from .. import metrics as M
from ..schema.base import Interval, Strict
from .base import (Admission, Claim, Finding, StatTest, Study, StudyContext, StudyOutcome, StudyResult, admit,
                   admit_clean)

ROBUST_EPS = 2 / 255
ALPHA = 0.05  # significance level of the claims' verdicts
RECIPES = ("erm", "pgd-at")
BOOTSTRAP = 1000


class ArchitecturesOptions(Strict):
    """Options of the architectures study."""

    apgd_iterations: int = Field(25, ge=1, le=1000, description="APGD-CE iterations: 25 (the lite track's budget) "
                                 "by default; 100 equals the protocol's curves and reads them from committed "
                                 "results that have them")
    only_committed: bool = Field(False, description="use only committed harness results; models without one are "
                                 "left out instead of evaluated (clean + corruptions) in the work folder")


class ArchModel(Strict):
    """One model of the study with its numbers and where each came from."""

    model_id: str
    architecture: str
    architecture_kwargs: dict = Field(default_factory=dict)
    family: str = Field(description="the network's class (ResNet, VisionTransformer, MobileNetV3, ...)")
    recipe: Literal["erm", "pgd-at"]
    epochs: int
    num_parameters: int
    weights_sha256: str
    train_time_s: float | None = None
    admitted: bool = Field(description="passed the harness's admission rule on its clean test predictions under the "
                           "current protocol (else no conclusion rests on it)")
    refusal: str | None = Field(None, description="the admission rule's reason, for a refused model")
    clean_ba: float
    clean_ba_ci: Interval
    majority_share: float | None = Field(None, description="fraction of the test images given its most frequent "
                                         "predicted class")
    corruption_ba: float | None = Field(None, description="mean balanced accuracy over every corruption and severity")
    robust_ba: float
    robust_ba_ci: Interval
    robust_source: Literal["read from the committed result's curves", "computed by the study"]
    result_file: str = Field(description="the harness result the clean and corruption numbers come from")
    result_sha256: str


class FamilyGain(Strict):
    architecture: str
    family: str
    num_parameters: int
    erm_robust_ba: float
    pgdat_robust_ba: float
    gain: float
    gain_ci: Interval
    erm_clean_ba: float
    pgdat_clean_ba: float


class Correlation(Strict):
    models: str = Field(description="which models: all, or one recipe")
    n: int
    rho: float | None
    p_value: float | None


class ArchitecturesDetails(Strict):
    robust_protocol: str = Field(description="exactly what the robust BA is")
    gate_protocol: str | None = Field(None, description="the protocol version whose admission rule was applied")
    subset_n: int
    chance: float
    models: list[ArchModel]
    gains: list[FamilyGain]
    correlations: list[Correlation]
    left_out: list[str] = Field(default_factory=list, description="entries not used, with the reason")
    notes: list[str] = Field(default_factory=list, description="what was not computed, and why")


class ArchitecturesResult(StudyResult):
    details: ArchitecturesDetails


# ----------------------------------------------------------------------------- models

def _family(entry) -> str:
    """The network's class name from a meta-device build (nothing allocated); the architecture name for
    generic containers."""
    import torch

    from ..zoo.loader import build_model

    with torch.device("meta"):
        model = build_model(entry)
    net = getattr(model, "net", model)
    name = type(net).__name__
    return entry.architecture if type(net).__module__.startswith("torch.nn") else name


def study_entries(dataset: str) -> tuple[list, list[str]]:
    """The dataset's 28-px 2D reference entries that come in an ERM / PGD-AT pair of one architecture."""
    from ..zoo.registry import load_registry

    entries = [e for e in load_registry().entries if e.dataset == dataset and e.size == 28 and "reference" in e.tags
               and "2d" in e.tags]
    key = lambda e: (e.architecture, json.dumps(e.architecture_kwargs, sort_keys=True))  # noqa: E731
    by_arch: dict[tuple, dict[str, object]] = {}
    for e in entries:
        by_arch.setdefault(key(e), {})[e.recipe.method] = e
    chosen, left = [], []
    for k, recipes in sorted(by_arch.items()):
        if all(r in recipes for r in RECIPES):
            chosen += [recipes[r] for r in RECIPES]
        left += [f"{e.id}: no {'/'.join(r for r in RECIPES if r not in recipes)} sibling of {k[0]}"
                 for m, e in recipes.items() if m in RECIPES and not all(r in recipes for r in RECIPES)]
        left += [f"{e.id}: recipe {m} (the study compares {', '.join(RECIPES)})" for m, e in recipes.items()
                 if m not in RECIPES]
    return chosen, sorted(left)


def _train_time(dataset: str, model_id: str) -> float | None:
    from . import STUDIES_DIR

    log = STUDIES_DIR.parent / "results" / dataset / f"{model_id}.train.jsonl"
    if not log.is_file():
        return None
    last = json.loads(log.read_text().splitlines()[-1])
    return float(last["wall_time_s"]) if last.get("event") == "end" else None


def _evaluate(ctx: StudyContext, entry, current: str):
    import medbench
    from ..corruptions.evaluation import pinned_reference
    from ..schema import EvaluationResult
    from . import STUDIES_DIR

    committed = STUDIES_DIR.parent / "results" / entry.dataset / f"{entry.id}.json"
    if committed.is_file():
        r = EvaluationResult.from_json(committed)
        if (r.provenance.protocol_version == current and r.provenance.weights_sha256 == entry.weights.sha256
                and r.corruptions is not None):
            return r, committed
    if ctx.options.only_committed:
        return None, None
    out = ctx.work_dir / entry.dataset / f"v{current}" / f"{entry.id}-{entry.weights.sha256[:12]}.json"
    if not out.is_file():
        protocol = medbench.load_protocol()
        ref_id = pinned_reference(entry.dataset, protocol)
        reference = None
        if ref_id is not None and ref_id != entry.id:
            from ..zoo.registry import get_entry

            reference, _ = _evaluate(ctx, get_entry(ref_id, entry.dataset), current)
        ctx.log(f"evaluating {entry.id} (clean, corruptions) -> {out}")
        medbench.benchmark(entry.id, entry.dataset, threats="clean,corruptions", out=out, reference=reference,
                           model_id=entry.id, weights_sha256=entry.weights.sha256, data_root=ctx.data_root,
                           seed=ctx.seed, progress=ctx.progress, allow_unranked=True)
    return EvaluationResult.from_json(out), out


def _robust_correct(ctx: StudyContext, entry, result, split, subset_idx: np.ndarray, n_iter: int, bs: int
                    ) -> tuple[np.ndarray, str]:
    """Per-example correctness under APGD-CE L∞ 2/255 on the subset (from the result's curves, else computed)."""
    import torch

    curves = result.curves
    if (curves is not None and curves.apgd_n_iter == n_iter and curves.seed == ctx.seed and curves.batch_size == bs
            and list(curves.subset.indices or []) == subset_idx.tolist()):
        for p in curves.apgd_ce:
            if math.isclose(p.x, ROBUST_EPS, rel_tol=1e-9):
                return np.asarray(p.correct, dtype=bool), "read from the committed result's curves"
    cache = ctx.work_dir / entry.dataset / f"apgd-ce-linf-2_255-{n_iter}it-seed{ctx.seed}-bs{bs}" / \
        f"{entry.weights.sha256}.json"
    if cache.is_file():
        saved = json.loads(cache.read_text())
        if saved["subset"] == subset_idx.tolist():
            return np.asarray(saved["correct"], dtype=bool), "computed by the study"
    from ..attacks.curves import apgd_ce
    from ..inference import to_float
    from ..zoo import load_model

    model = load_model(entry.id, entry.dataset)
    ctx.log(f"APGD-CE L∞ 2/255 ({n_iter} iterations) on {entry.id}, {len(subset_idx)} examples")
    correct = []
    for start in range(0, len(subset_idx), bs):
        idx = subset_idx[start:start + bs]
        x = to_float(split.images[torch.as_tensor(idx)], "cpu")
        y = torch.as_tensor(split.labels[idx])
        pred = apgd_ce(model, x, y, ROBUST_EPS, n_iter=n_iter, seed=ctx.seed, device="cpu")
        correct.append((pred == y).numpy())
    out = np.concatenate(correct)
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_text(json.dumps({"model_id": entry.id, "subset": subset_idx.tolist(), "correct": out.tolist()}))
    return out, "computed by the study"


def _pred_from_correct(y: np.ndarray, correct: np.ndarray, k: int) -> np.ndarray:
    """Predictions with the same per-example correctness (balanced accuracy depends on nothing else)."""
    return np.where(correct, y, (y + 1) % k)


def _file_sha256(path: Path) -> str:
    import hashlib

    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _rel(path: Path) -> str:
    from . import STUDIES_DIR

    try:
        return str(Path(path).resolve().relative_to(STUDIES_DIR.parents[1]))
    except ValueError:
        return str(path)


# ----------------------------------------------------------------------------- the study

def run(ctx: StudyContext) -> StudyOutcome:
    import medbench

    from ..attacks.evaluation import MAX_ATTACK_BATCH
    from ..attacks.subset import evaluation_subset
    from ..data import get_spec, load_dataset
    from ..inference import default_batch_size

    spec = get_spec(ctx.dataset)
    k = spec.num_classes
    protocol = medbench.load_protocol()
    n_iter = ctx.options.apgd_iterations
    split = load_dataset(ctx.dataset, "test", ctx.size, ctx.data_root)
    subset = evaluation_subset(ctx.dataset, split.labels, protocol)
    idx = subset.indices
    y = split.labels[idx]
    bs = int(max(1, min(default_batch_size(tuple(split.images.shape[1:])), MAX_ATTACK_BATCH)))
    entries, left_out = study_entries(ctx.dataset)
    if not entries:
        raise medbench.MedbenchError(f"No ERM / PGD-AT reference pairs for {ctx.dataset} in the zoo; train them with "
                                     "scripts/build_reference_zoo.py train --arch ... first.")
    models: list[ArchModel] = []
    admissions: list[Admission] = []
    correct_by_id: dict[str, np.ndarray] = {}
    for e in entries:
        result, path = _evaluate(ctx, e, protocol.version)
        if result is None:
            left_out.append(f"{e.id}: no committed result under protocol {protocol.version} (only_committed)")
            continue
        correct, source = _robust_correct(ctx, e, result, split, idx, n_iter, bs)
        gate = admit_clean(e.id, result.clean, split.labels, spec, protocol)
        admissions.append(gate)
        pred = _pred_from_correct(y, correct, k)
        ci = M.bootstrap_metric_ci(y, pred, k, n_resamples=BOOTSTRAP, seed=0)
        clean_ci = result.clean.ci["balanced_accuracy"]
        models.append(ArchModel(
            model_id=e.id, architecture=e.architecture, architecture_kwargs=dict(e.architecture_kwargs),
            family=_family(e), recipe=e.recipe.method, epochs=e.recipe.epochs,
            num_parameters=e.weights.num_parameters, weights_sha256=e.weights.sha256,
            train_time_s=_train_time(ctx.dataset, e.id), admitted=gate.admitted, refusal=gate.reason or None,
            clean_ba=result.clean.balanced_accuracy, clean_ba_ci=Interval(low=clean_ci.low, high=clean_ci.high),
            majority_share=gate.majority_share,
            corruption_ba=result.corruptions.balanced_accuracy if result.corruptions else None,
            robust_ba=M.balanced_accuracy(y, pred, k), robust_ba_ci=Interval(low=ci.low, high=ci.high),
            robust_source=source, result_file=_rel(path), result_sha256=_file_sha256(path)))
        correct_by_id[e.id] = correct
        ctx.models[e.id] = e.weights.sha256

    gains: list[FamilyGain] = []
    for pair in _pairs(models).values():
        erm, adv = pair["erm"], pair["pgd-at"]
        if not (erm.admitted and adv.admitted):
            continue  # _outcome notes it
        diff = M.paired_bootstrap_diff(y, _pred_from_correct(y, correct_by_id[adv.model_id], k),
                                       _pred_from_correct(y, correct_by_id[erm.model_id], k), k,
                                       n_resamples=BOOTSTRAP, seed=0)
        gains.append(FamilyGain(architecture=erm.architecture, family=erm.family, num_parameters=erm.num_parameters,
                                erm_robust_ba=erm.robust_ba, pgdat_robust_ba=adv.robust_ba,
                                gain=adv.robust_ba - erm.robust_ba, gain_ci=Interval(low=diff.low, high=diff.high),
                                erm_clean_ba=erm.clean_ba, pgdat_clean_ba=adv.clean_ba))
    robust_protocol = (f"APGD-CE (pyautoattack), L∞ eps 2/255, {n_iter} iterations, 1 restart, seed {ctx.seed}, on "
                       f"protocol {protocol.version}'s attack subset ({len(idx)} test images"
                       f"{', the whole test split' if subset.info.whole_split else ''}): one attack of AutoAttack's "
                       "four, so an upper bound on the AutoAttack robust BA (the full AutoAttack protocol was not run "
                       "for these models)")
    details = ArchitecturesDetails(robust_protocol=robust_protocol, gate_protocol=protocol.version, subset_n=len(idx),
                                   chance=1.0 / k, models=models, gains=gains, correlations=[], left_out=left_out,
                                   notes=[])
    return _outcome(spec.python_class, details, admissions, n_iter)


def _outcome(dataset_name: str, details: ArchitecturesDetails, admissions: list[Admission], n_iter: int
             ) -> StudyOutcome:
    """Findings, summary and claims from the models (each with its admission) and the gains measured."""
    from scipy.stats import spearmanr

    models = details.models
    notes = [n for n in details.notes if not n.startswith(("no gain for", "correlations use"))]
    gains = sorted((g for g in details.gains if _pair_admitted(models, g)), key=lambda g: g.num_parameters)
    for pair in _pairs(models).values():
        refused = [m.model_id for m in pair.values() if not m.admitted]
        if refused:
            notes.append(f"no gain for {_label(pair['erm'])}: {' and '.join(refused)} refused by the admission "
                         "rule, so its robust BA measures nothing")
        elif not any(g.architecture == pair["erm"].architecture and g.num_parameters == pair["erm"].num_parameters
                     for g in gains):
            notes.append(f"no gain for {_label(pair['erm'])}: both models are admitted now, but the earlier result "
                         "this one was re-derived from did not measure it (run the study in full)")
    correlations = []
    admitted = [m for m in models if m.admitted]  # a refused model's robust BA measures nothing
    if len(admitted) < len(models):
        notes.append("correlations and the most robust model use the admitted models only")
    for label, group in (("all", admitted), ("erm", [m for m in admitted if m.recipe == "erm"]),
                         ("pgd-at", [m for m in admitted if m.recipe == "pgd-at"])):
        if len(group) >= 3:
            res = spearmanr([m.num_parameters for m in group], [m.robust_ba for m in group])
            rho, p = float(res.statistic), float(res.pvalue)
            correlations.append(Correlation(models=label, n=len(group), rho=None if math.isnan(rho) else rho,
                                            p_value=None if math.isnan(p) else p))
        else:
            correlations.append(Correlation(models=label, n=len(group), rho=None, p_value=None))
    details = details.model_copy(update={"gains": gains, "correlations": correlations, "notes": notes})
    return StudyOutcome(summary=_summary(dataset_name, models, gains, correlations),
                        findings=_findings(models, gains, correlations, details.chance, n_iter), details=details,
                        admissions=admissions, claims=_claims(details, admissions))


def _pairs(models) -> dict[tuple, dict[str, ArchModel]]:
    """The models by architecture (with its keyword arguments), then recipe: complete pairs only."""
    by_arch: dict[tuple, dict[str, ArchModel]] = {}
    for m in models:
        by_arch.setdefault((m.architecture, json.dumps(m.architecture_kwargs, sort_keys=True)), {})[m.recipe] = m
    return {k: v for k, v in by_arch.items() if all(r in v for r in RECIPES)}


def _pair_admitted(models, g: FamilyGain) -> bool:
    pair = [m for m in models if m.architecture == g.architecture and m.num_parameters == g.num_parameters]
    return len(pair) == 2 and all(m.admitted for m in pair)


def rederive(old: ArchitecturesResult, ctx: StudyContext) -> StudyOutcome:
    """``old``'s conclusions under the current admission rule: each model's clean test predictions (from its
    committed harness result when that is of the same weights, else predicted here) go through
    ``clean_verdicts``; gains of pairs with a refused model, correlations and the most robust model are
    recomputed from the stored robust BAs (nothing is attacked or trained)."""
    import medbench
    from ..data import get_spec, load_dataset

    spec = get_spec(ctx.dataset)
    protocol = medbench.load_protocol()
    split = load_dataset(ctx.dataset, "test", ctx.size, ctx.data_root)
    models, admissions = [], []
    for m in old.details.models:
        gate = _admission(ctx, m, split, spec, protocol)
        admissions.append(gate)
        models.append(m.model_copy(update={"admitted": gate.admitted, "refusal": gate.reason or None,
                                           "majority_share": gate.majority_share}))
    details = old.details.model_copy(update={"models": models, "gate_protocol": protocol.version})
    outcome = _outcome(spec.python_class, details, admissions, int(old.provenance.options.get("apgd_iterations", 25)))
    outcome.derived_how = ("clean, corruption and robust BA (with CIs and the paired gains) taken from the earlier "
                           "result; every model's clean test predictions put through the current protocol's "
                           "admission rule (read from its committed harness result when of the same weights, else "
                           "predicted here); correlations, most robust model, summary and claims recomputed")
    return outcome


def _admission(ctx: StudyContext, m: ArchModel, split, spec, protocol) -> Admission:
    from ..inference import default_batch_size, predict_logits
    from ..schema import EvaluationResult
    from ..zoo import load_model
    from . import STUDIES_DIR

    committed = STUDIES_DIR.parent / "results" / ctx.dataset / f"{m.model_id}.json"
    if committed.is_file():
        r = EvaluationResult.from_json(committed)
        if r.provenance.weights_sha256 == m.weights_sha256 and r.clean is not None:
            return admit_clean(m.model_id, r.clean, split.labels, spec, protocol)
    model = load_model(m.model_id, ctx.dataset)
    logits = predict_logits(model, split.images, batch_size=default_batch_size(tuple(split.images.shape[1:])),
                            device="cpu", progress=False)
    pred = M.predictions(M.probabilities(logits, spec.task), spec.task)
    return admit(m.model_id, split.labels, pred, spec, protocol)


def _label(m_or_g) -> str:
    kw = m_or_g.architecture_kwargs if hasattr(m_or_g, "architecture_kwargs") else {}
    return f"{m_or_g.architecture}" + (" (" + ", ".join(f"{k}={v}" for k, v in kw.items()) + ")" if kw else "")


def _findings(models, gains, correlations, chance, n_iter) -> list[Finding]:
    out = []
    test = StatTest(name=f"paired bootstrap ({BOOTSTRAP:,} resamples)", null="no gain")
    for g in gains:
        out.append(Finding(
            key=f"gain_{g.architecture.replace('/', '_')}_{g.num_parameters}",
            label=f"PGD-AT gain in robust BA, {g.architecture} ({g.num_parameters / 1e3:.0f}k parameters)",
            value=g.gain, ci=g.gain_ci, reference=0.0, reference_label="no gain", test=test,
            note=f"{g.erm_robust_ba:.3f} -> {g.pgdat_robust_ba:.3f} (clean {g.erm_clean_ba:.3f} -> "
                 f"{g.pgdat_clean_ba:.3f})"))
    best = most_robust(models)
    if best is not None:
        refused = [m.model_id for m in models if not m.admitted]
        out.append(Finding(key="best_robust_ba", label=f"highest robust BA: {best.model_id}",
                           note="among the admitted models" + (f"; refused by the admission rule: {', '.join(refused)}"
                                                               if refused else "") +
                           f"; its clean BA {best.clean_ba:.3f}",
                           value=best.robust_ba, ci=best.robust_ba_ci, reference=chance, reference_label="chance",
                           majority_share=best.majority_share))
    for c in correlations:
        if c.rho is None:  # fewer than 3 models, or constant values: nothing to claim (details keep the record)
            continue
        out.append(Finding(
            key=f"spearman_params_robust_{c.models}", unit="score",
            label=f"Spearman rho, robust BA vs parameters ({c.models}, n = {c.n})",
            value=c.rho, reference=0.0, reference_label="no relation",
            test=StatTest(name="Spearman (two-sided)", statistic=c.rho, p_value=c.p_value,
                          null="no monotone relation"),
            note="admitted models; n = 4: smallest possible p 0.083" if c.n == 4 else "admitted models"))
    return out


def _summary(dataset_name: str, models, gains, correlations) -> str:
    if not models:
        return f"No models were evaluated on {dataset_name}."
    parts = []
    if gains:
        pos = [g for g in gains if g.gain_ci.low is not None and g.gain_ci.low > 0]
        parts.append(f"PGD-AT raised robust BA (APGD-CE 2/255) for {len(pos)} of the {len(gains)} architectures whose "
                     f"two models are admitted (95% CI above 0); gains from {min(g.gain for g in gains):+.3f} to "
                     f"{max(g.gain for g in gains):+.3f}.")
    allc = next((c for c in correlations if c.models == "all"), None)
    if allc and allc.rho is not None:
        parts.append(f"Across the {allc.n} admitted models, Spearman rho between parameter count and robust BA is "
                     f"{allc.rho:+.2f} (p = {allc.p_value:.2g}).")
    best = most_robust(models)
    if best is not None:
        parts.append(f"Most robust admitted model: {best.model_id} ({best.family}, {best.num_parameters:,} "
                     f"parameters), robust BA {best.robust_ba:.3f} (clean BA {best.clean_ba:.3f}, "
                     f"{best.majority_share:.0%} of the test images in its most predicted class).")
    refused = [m.model_id for m in models if not m.admitted]
    if refused:
        parts.append(f"Refused by the admission rule and left out of these conclusions: {', '.join(refused)}.")
    return " ".join(parts)


ROBMEDNAS = ("Zhang et al., RobMedNAS (Biomed. Phys. Eng. Express 2024): U-Nets for MR-to-CT synthesis, Dice and "
             "MAE under adversarial attack")
MADRY = "Madry et al. (ICLR 2018), CIFAR-10 and MNIST"


def _claims(d: ArchitecturesDetails, admissions: list[Admission]) -> list[Claim]:
    """RobMedNAS's claim (not run here) and the two it rests on, tested on the admitted models."""
    out = [Claim(claim="Architectures found by a robustness-aware search are more robust to adversarial "
                       "perturbations than the standard one, without losing accuracy",
                 paper=ROBMEDNAS, verdict="not run",
                 reason="medbench classifies MedMNIST images: image synthesis, U-Nets and the architecture search "
                        "are not in it; this study compares fixed classification architectures instead")]
    refused = [a.model for a in admissions if not a.admitted]
    left = f"; refused by the admission rule and left out: {', '.join(refused)}" if refused else ""
    gains = d.gains
    if not gains:
        out.append(Claim(claim="Adversarial training (PGD-AT) raises robust accuracy for every architecture",
                         paper=MADRY, verdict="not run",
                         reason=f"no architecture whose ERM and PGD-AT models are both admitted{left}"))
    else:
        pos = [g for g in gains if g.gain_ci.low is not None and g.gain_ci.low > 0]
        here = "; ".join(f"{_label(g)} {g.gain:+.3f} [{g.gain_ci.low:+.3f}, {g.gain_ci.high:+.3f}]" for g in gains)
        out.append(Claim(claim="Adversarial training (PGD-AT) raises robust accuracy for every architecture",
                         paper=MADRY, verdict="reproduced" if len(pos) == len(gains) else "not reproduced",
                         here=f"robust BA gain (APGD-CE 2/255), 95% paired bootstrap CI: {here}",
                         test=f"paired bootstrap CI over the attacked images ({BOOTSTRAP:,} resamples)",
                         reason=f"the gain's CI lies above 0 for {len(pos)} of the {len(gains)} architectures whose "
                                f"two models are admitted{left}"))
    allc = next((c for c in d.correlations if c.models == "all"), None)
    claim = "Robustness grows with capacity: models with more parameters are more robust"
    if allc is None or allc.rho is None:
        out.append(Claim(claim=claim, paper=MADRY, verdict="not run",
                         reason=f"fewer than 3 admitted models (or constant robust BA){left}"))
    else:
        p = allc.p_value / 2 if allc.rho > 0 else 1 - allc.p_value / 2  # one-sided, H1: rho > 0
        out.append(Claim(claim=claim, paper=MADRY,
                         verdict="reproduced" if p < ALPHA else "not reproduced",
                         here=f"Spearman rho {allc.rho:+.2f} between parameter count and robust BA, {allc.n} admitted "
                              "models (ERM and PGD-AT together)",
                         test="Spearman rank correlation, one-sided (H1: rho > 0)", p_value=p,
                         reason=("robust BA rises with the parameter count" if p < ALPHA else
                                 "no significant rise of robust BA with the parameter count") + left))
    return out


def most_robust(models) -> ArchModel | None:
    """The admitted model with the highest robust BA (a refused model's robust BA measures nothing)."""
    return max((m for m in models if m.admitted), key=lambda m: m.robust_ba, default=None)


STUDY = Study(
    name="architectures",
    title="Robustness by architecture",
    question="Which architectures are robust, and does robustness grow with the number of parameters?",
    paper="RobMedNAS, robust neural architecture search for medical images (the question of issue 15; its search "
          "is not reproduced: this study compares fixed architectures trained with one recipe)",
    paper_url=None,
    method=("The zoo's 2D reference entries of the dataset that come as an ERM / PGD-AT pair of one architecture "
            "(built-in or `timm/<name>`; trained with the recipes of the ResNet-8 baselines: same epochs, "
            "optimizer, schedule, PGD-AT eps 3/255 with 3 steps) are compared. Clean and corruption balanced "
            "accuracy (BA) come from the harness (full protocol: clean test split, every corruption and severity). "
            "Robust BA is APGD-CE at L∞ 2/255 (pyautoattack; 25 iterations by default, the lite track's budget; "
            "1 restart) on the protocol's attack subset: one attack of AutoAttack's four with fewer iterations, so "
            "an upper bound on AutoAttack robust BA; the full AutoAttack protocol "
            "was not run for the new architectures (15+ CPU-minutes per model). Per architecture, the ERM to "
            "PGD-AT robust-BA gain has a paired bootstrap CI over the same examples; the relation of robust BA "
            "with the parameter count is a Spearman rank correlation."),
    result_type=ArchitecturesResult,
    run=run,
    options=ArchitecturesOptions,
    datasets=("breastmnist", "retinamnist", "pneumoniamnist"),
    version="2",
    rederive=rederive,
)


def figures(result: ArchitecturesResult) -> dict:
    """The study page's figures: robust and corruption BA against the parameter count, by family."""
    from .. import svg

    d = result.details
    def pts(get):
        return [svg.ShapePoint(x=m.num_parameters, y=get(m), label=f"{m.model_id} ({m.recipe})",
                               cls="pt adv" if m.recipe == "pgd-at" else "pt", group=m.family)
                for m in d.models if get(m) is not None]

    return {
        "robust": svg.log_scatter(pts(lambda m: m.robust_ba), xlabel="parameters (log scale)",
                                  ylabel="robust BA, APGD-CE 2/255 (%)", chance=d.chance,
                                  title=f"Robust balanced accuracy against parameter count on {result.dataset}"),
        "corruption": svg.log_scatter(pts(lambda m: m.corruption_ba), xlabel="parameters (log scale)",
                                      ylabel="corruption BA (%)", chance=d.chance,
                                      title=f"Corruption balanced accuracy against parameter count on {result.dataset}"),
    }
