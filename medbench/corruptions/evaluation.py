"""The ``corruptions`` threat: metrics on every (corruption, severity) cell of the dataset's suite.

Headline: the unweighted mean balanced accuracy over all cells. Also per-corruption and
per-severity means, relative robustness (corruption BA / clean BA) and, given a reference
model's result, MedMNIST-C's BE and rBE (error = 1 - balanced accuracy):
  BE_c  = sum_s E_cs / sum_s E_cs(ref)
  rBE_c = sum_s (E_cs - E_clean) / sum_s (E_cs(ref) - E_clean(ref)),
each averaged over the corruptions c where it is defined. The reference is the model the protocol
pins per dataset (``corruptions.reference_models``); rBE_c is undefined when the reference's gap is
below ``corruptions.rbe_min_reference_gap``. Every corruption's BE / rBE (or why not) is stored.
"""

from __future__ import annotations

import math
import warnings
from types import SimpleNamespace
from typing import Any, Iterator

import numpy as np

from .. import metrics as M
from ..errors import MedbenchError
from ..inference import predict_logits
from ..schema import CorruptionCell, CorruptionResults, EvaluationResult, RelativeError
from .generate import CorruptedSets, build_corrupted_sets
from .params import corruption_parameters, parameters_sha256, suite_name


def _mean(values) -> float:
    return float(np.mean(list(values)))


def pinned_reference(dataset: str, protocol) -> str | None:
    """The model id the protocol pins as ``dataset``'s BE / rBE reference (None: the dataset has none)."""
    return (protocol.get("corruptions.reference_models") or {}).get(dataset)


def check_reference(reference: EvaluationResult, dataset: str, protocol) -> None:
    """Refuse a reference result that is not the protocol's pinned reference model for ``dataset``."""
    pinned = pinned_reference(dataset, protocol)
    if reference.dataset != dataset:
        raise MedbenchError(f"The reference result is for {reference.dataset}, not {dataset}. Fix: pass the result "
                            f"of {pinned or 'the pinned reference model'} on {dataset}.")
    if pinned is not None and reference.model_id != pinned:
        raise MedbenchError(
            f"The reference result is of model {reference.model_id!r}, but protocol {protocol.version} pins "
            f"{pinned!r} as the BE / rBE reference for {dataset} (corruptions.reference_models). Fix: pass "
            f"leaderboard/results/{dataset}/{pinned}.json, or no reference (BE / rBE are then left empty).")


def be_rbe(cells: list[CorruptionCell], clean_ba: float, reference: EvaluationResult,
           min_gap: float | None, parameters_sha256: str | None = None) -> dict[str, Any]:
    """MedMNIST-C's BE and rBE of ``cells`` against the reference model's result, per corruption and as
    means over the corruptions where each is defined (result fields of ``CorruptionResults``).

    BE_c is undefined when the reference makes no error on corruption c; rBE_c is undefined when the
    reference's summed gap sum_s (E_cs(ref) - E_clean(ref)) is below ``min_gap`` (an ill-conditioned
    denominator: near zero or negative gaps gave values in the hundreds). Undefined values are None with
    the reason, and the counts are stored, so no corruption is dropped silently.
    """
    if reference.corruptions is None or reference.clean is None:
        return {"be_rbe_note": f"the reference result ({reference.model_id}) has no corruption or clean metrics"}
    theirs_sha = reference.corruptions.parameters_sha256
    if parameters_sha256 and theirs_sha and theirs_sha != parameters_sha256:
        return {"be_rbe_note": f"the reference result ({reference.model_id}) was evaluated on other corruption "
                               "parameters: evaluate it under the same protocol"}
    ref = {(c.corruption, c.severity): 1 - c.balanced_accuracy for c in reference.corruptions.cells}
    missing = [(c.corruption, c.severity) for c in cells if (c.corruption, c.severity) not in ref]
    if missing:
        return {"be_rbe_note": f"the reference result ({reference.model_id}) lacks {len(missing)} cell(s), e.g. "
                               f"{missing[0][0]} severity {missing[0][1]}: evaluate it under the same protocol"}
    ref_clean, clean_err = 1 - reference.clean.balanced_accuracy, 1 - clean_ba
    per: list[RelativeError] = []
    for name in dict.fromkeys(c.corruption for c in cells):
        mine = [1 - c.balanced_accuracy for c in cells if c.corruption == name]
        theirs = [ref[(c.corruption, c.severity)] for c in cells if c.corruption == name]
        ref_err, gap = float(sum(theirs)), float(sum(t - ref_clean for t in theirs))
        why = []
        be = float(sum(mine) / ref_err) if ref_err > 0 else None
        if be is None:
            why.append("BE undefined: the reference makes no error on this corruption")
        # protocol v1 had no guard: any non-zero gap (its committed results were computed so)
        ok = abs(gap) > 1e-12 if min_gap is None else gap >= min_gap
        rbe = float(sum(m - clean_err for m in mine) / gap) if ok else None
        if rbe is None:
            why.append(f"rBE undefined: the reference's summed error gap over the severities is {gap:+.3f}, below "
                       f"the protocol's minimum {min_gap or 0:g} (the corruption barely degrades the reference)")
        per.append(RelativeError(corruption=name, be=be, rbe=rbe, reference_error=ref_err, reference_gap=gap,
                                 undefined="; ".join(why) or None))
    bes = [r.be for r in per if r.be is not None]
    rbes = [r.rbe for r in per if r.rbe is not None]
    return {"be": _mean(bes) if bes else None, "rbe": _mean(rbes) if rbes else None, "relative_errors": per,
            "be_defined": len(bes), "be_undefined": len(per) - len(bes),
            "rbe_defined": len(rbes), "rbe_undefined": len(per) - len(rbes),
            "rbe_min_reference_gap": min_gap, "reference_model": reference.model_id}


def corrupted_sets(spec, size: int, split, protocol, *, progress: bool = True) -> tuple[dict, CorruptedSets]:
    """The protocol's corruption parameters for ``spec`` at ``size`` and the (cached) corrupted test sets."""
    params = corruption_parameters(spec, size, protocol)
    sets = build_corrupted_sets(spec, size, split, params, seed=int(protocol["seed"]), progress=progress)
    return params, sets


def cell_logits(models: dict[str, Any], params: dict, sets: CorruptedSets, *, batch_size: int, device,
                progress: bool = True) -> Iterator[tuple[str, int, dict[str, Any]]]:
    """``(corruption, severity, {name: logits})`` for every cell, each set loaded once for all ``models``."""
    for name in params:
        for severity, images in sets.load(name).items():
            yield name, severity, {key: predict_logits(model, images, batch_size=batch_size, device=device,
                                                       progress=progress, desc=f"{name} s{severity}")
                                   for key, model in models.items()}


def run(ctx) -> dict[str, Any]:
    """Threat runner: ``{"corruptions": CorruptionResults}`` for the model in ``ctx`` (an EvalContext)."""
    spec, task = ctx.spec, ctx.spec.task
    params, sets = corrupted_sets(spec, ctx.size, ctx.split, ctx.protocol, progress=ctx.progress)
    cells: list[CorruptionCell] = []
    logits_by_severity: dict[int, list[np.ndarray]] = {}  # (for calibration, when the protocol measures it)
    for name, severity, out in cell_logits({"model": ctx.model}, params, sets, batch_size=ctx.batch_size,
                                           device=ctx.device, progress=ctx.progress):
        logits_by_severity.setdefault(severity, []).append(np.asarray(out["model"]))
        m = M.compute_metrics(ctx.labels, M.probabilities(out["model"], task), task)
        cells.append(CorruptionCell(corruption=name, severity=severity, accuracy=m.accuracy,
                                    balanced_accuracy=m.balanced_accuracy, auc=None if math.isnan(m.auc) else m.auc))
    headline = _mean(c.balanced_accuracy for c in cells)
    aucs = [c.auc for c in cells if c.auc is not None]
    clean = ctx.results.get("clean")
    clean_ba = clean.balanced_accuracy if clean is not None else None
    pinned = pinned_reference(spec.name, ctx.protocol)
    if ctx.reference is not None and clean_ba is not None:
        check_reference(ctx.reference, spec.name, ctx.protocol)
        relative = be_rbe(cells, clean_ba, ctx.reference, ctx.protocol.get("corruptions.rbe_min_reference_gap"),
                          parameters_sha256(params))
    elif clean is not None and pinned is not None and pinned == getattr(ctx, "model_id", None):
        # the pinned reference itself: BE = rBE = 1 where defined, and which corruptions are defined
        own = SimpleNamespace(model_id=pinned, clean=clean,
                              corruptions=SimpleNamespace(cells=cells, parameters_sha256=None))
        relative = be_rbe(cells, clean_ba, own, ctx.protocol.get("corruptions.rbe_min_reference_gap"))
    elif pinned is None:
        relative = {"be_rbe_note": f"protocol {ctx.protocol.version} pins no BE / rBE reference model for {spec.name}"}
    else:
        relative = {"be_rbe_note": f"no reference result was given (the reference is {pinned})"}
    if ctx.reference is not None and relative.get("be_rbe_note"):  # a reference was given but is unusable
        warnings.warn(f"BE / rBE are left empty: {relative['be_rbe_note']}.", stacklevel=2)
    return {"corruptions": CorruptionResults(
        suite=suite_name(spec),
        cells=cells,
        balanced_accuracy=headline,
        auc=_mean(aucs) if len(aucs) == len(cells) else None,
        per_corruption={n: _mean(c.balanced_accuracy for c in cells if c.corruption == n) for n in params},
        per_severity={str(s): _mean(c.balanced_accuracy for c in cells if c.severity == s)
                      for s in sorted({c.severity for c in cells})},
        relative_robustness=headline / clean_ba if clean_ba else float("nan"),
        parameters_sha256=parameters_sha256(params),
        cache_manifest_sha256=sets.manifest_sha256,
        calibration=corrupted_calibration(ctx, logits_by_severity),
        **relative,
    )}


def corrupted_calibration(ctx, logits_by_severity: dict[int, list[np.ndarray]]) -> dict | None:
    """Calibration on every corrupted copy of the test split, pooled over the corruptions: per severity and over
    all severities ("all"); the clean pass's temperature is applied for the scaled numbers. The bootstrap
    resamples test images, each with all its corrupted copies. None when the protocol measures none."""
    from ..calibration import calibration_summary
    from ..evaluate import calibration_options, fitted_temperature

    options = calibration_options(ctx)
    if options is None or not logits_by_severity:
        return None
    n = len(ctx.labels)

    def pooled(blocks: list[np.ndarray]):
        return calibration_summary(np.concatenate([ctx.labels] * len(blocks)), np.concatenate(blocks),
                                   ctx.spec.task, groups=np.tile(np.arange(n), len(blocks)),
                                   temperature=fitted_temperature(ctx), **options)

    out = {str(s): pooled(blocks) for s, blocks in sorted(logits_by_severity.items())}
    out["all"] = pooled([b for s in sorted(logits_by_severity) for b in logits_by_severity[s]])
    return out
