"""The ``corruptions`` threat: metrics on every (corruption, severity) cell of the dataset's suite.

Headline: the unweighted mean balanced accuracy over all cells. Also per-corruption and
per-severity means, relative robustness (corruption BA / clean BA) and, given a reference
model's result, MedMNIST-C's BE and rBE (error = 1 - balanced accuracy):
  BE_c  = sum_s E_cs / sum_s E_cs(ref)
  rBE_c = sum_s (E_cs - E_clean) / sum_s (E_cs(ref) - E_clean(ref)),
each averaged over corruptions c.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np

from .. import metrics as M
from ..inference import predict_logits
from ..schema import CorruptionCell, CorruptionResults, EvaluationResult
from .generate import build_corrupted_sets
from .params import corruption_parameters, parameters_sha256, suite_name


def _mean(values) -> float:
    return float(np.mean(list(values)))


def be_rbe(cells: list[CorruptionCell], clean_ba: float, reference: EvaluationResult) -> tuple[float | None, float | None]:
    """MedMNIST-C's mean BE and rBE of ``cells`` against the reference model's result."""
    if reference.corruptions is None or reference.clean is None:
        warnings.warn("The reference result has no corruption or clean metrics; BE / rBE are left empty.", stacklevel=2)
        return None, None
    ref = {(c.corruption, c.severity): 1 - c.balanced_accuracy for c in reference.corruptions.cells}
    ref_clean = 1 - reference.clean.balanced_accuracy
    clean_err = 1 - clean_ba
    missing = [(c.corruption, c.severity) for c in cells if (c.corruption, c.severity) not in ref]
    if missing:
        warnings.warn(f"The reference result lacks {len(missing)} cell(s) (e.g. {missing[0]}); BE / rBE are left "
                      "empty. Evaluate the reference under the same protocol.", stacklevel=2)
        return None, None
    bes, rbes = [], []
    for name in dict.fromkeys(c.corruption for c in cells):
        mine = [1 - c.balanced_accuracy for c in cells if c.corruption == name]
        theirs = [ref[(c.corruption, c.severity)] for c in cells if c.corruption == name]
        if sum(theirs) > 0:
            bes.append(sum(mine) / sum(theirs))
        gap = sum(t - ref_clean for t in theirs)
        if abs(gap) > 1e-12:
            rbes.append(sum(m - clean_err for m in mine) / gap)
    return (_mean(bes) if bes else None), (_mean(rbes) if rbes else None)


def run(ctx) -> dict[str, Any]:
    """Threat runner: ``{"corruptions": CorruptionResults}`` for the model in ``ctx`` (an EvalContext)."""
    spec, task = ctx.spec, ctx.spec.task
    params = corruption_parameters(spec, ctx.size, ctx.protocol)
    seed = int(ctx.protocol["seed"])
    sets = build_corrupted_sets(spec, ctx.size, ctx.split, params, seed=seed, progress=ctx.progress)
    cells: list[CorruptionCell] = []
    for name in params:
        for severity, images in sets.load(name).items():
            logits = predict_logits(ctx.model, images, batch_size=ctx.batch_size, device=ctx.device,
                                    progress=ctx.progress, desc=f"{name} s{severity}")
            m = M.compute_metrics(ctx.labels, M.probabilities(logits, task), task)
            cells.append(CorruptionCell(corruption=name, severity=severity, accuracy=m.accuracy,
                                        balanced_accuracy=m.balanced_accuracy,
                                        auc=None if math.isnan(m.auc) else m.auc))
    headline = _mean(c.balanced_accuracy for c in cells)
    aucs = [c.auc for c in cells if c.auc is not None]
    clean = ctx.results.get("clean")
    clean_ba = clean.balanced_accuracy if clean is not None else None
    be = rbe = None
    if ctx.reference is not None and clean_ba is not None:
        be, rbe = be_rbe(cells, clean_ba, ctx.reference)
    return {"corruptions": CorruptionResults(
        suite=suite_name(spec),
        cells=cells,
        balanced_accuracy=headline,
        auc=_mean(aucs) if len(aucs) == len(cells) else None,
        per_corruption={n: _mean(c.balanced_accuracy for c in cells if c.corruption == n) for n in params},
        per_severity={str(s): _mean(c.balanced_accuracy for c in cells if c.severity == s)
                      for s in sorted({c.severity for c in cells})},
        relative_robustness=headline / clean_ba if clean_ba else float("nan"),
        be=be,
        rbe=rbe,
        reference_model=(ctx.reference.model_id if ctx.reference is not None else None),
        parameters_sha256=parameters_sha256(params),
        cache_manifest_sha256=sets.manifest_sha256,
    )}
