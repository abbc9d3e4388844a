"""Reuse the attack sections of an earlier result when a new protocol version left them unchanged.

A protocol bump that only touches corruptions or admission (version 1 -> 2) should not cost hours of
AutoAttack per model: the Linf, L2 and curve sections of an earlier result of the *same weights on
the same data* are carried over when what they were computed with is provably what the current run
would use. Provably means: identical weights sha256, data MD5, dataset, size, seed and torch
version; for AutoAttack, an attack configuration equal field by field (norm, eps, attack set,
iterations, restarts, targets, queries, seed, pyautoattack version, chunk size) to the one this run
builds, on the same evaluation subset (indices sha256), with the same bootstrap settings for the
robust-accuracy intervals; for the curves, the same eps / sigma grids,
APGD iterations, seed, chunk size and subset. Anything else is recomputed. Corruption and clean
sections are never reused (their code and parameters are not captured by such a fingerprint; they
are cheap). Every reused section is recorded in ``provenance.reused`` with the sha256 of the result
file it came from, so a reader can trace each number to the run that computed it; a section the prior
result had itself carried over keeps its original record (the run that computed it, not the file
that passed it on).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

from .schema import EvaluationResult
from .schema.result import ReusedSection

REUSABLE_THREATS = ("Linf", "L2", "curves")


def load_prior(prior: EvaluationResult | str | os.PathLike) -> tuple[EvaluationResult, str | None]:
    """The prior result and the sha256 of its file (None when given as an object)."""
    if isinstance(prior, EvaluationResult):
        return prior, None
    data = Path(prior).read_bytes()
    return EvaluationResult.from_json(data.decode()), hashlib.sha256(data).hexdigest()


def _same_origin(prior: EvaluationResult, ctx, weights_sha256: str | None) -> str | None:
    """None when ``prior`` was computed on the same weights, data, size and seed; else the reason."""
    p = prior.provenance
    import torch

    checks = {
        "weights sha256": (p.weights_sha256, weights_sha256),
        "dataset": (prior.dataset, ctx.spec.name),
        "size": (prior.size, ctx.size),
        "data MD5": (p.data_md5, ctx.split.md5),
        "seed": (p.seed, ctx.seed),
        "torch version": (p.torch_version, torch.__version__),
    }
    if weights_sha256 is None:
        return "the model has no weights sha256, so the prior result cannot be tied to it"
    for what, (a, b) in checks.items():
        if a != b:
            return f"{what} differs ({a!r} vs {b!r})"
    return None


def _same_bootstrap(prior: EvaluationResult, ctx) -> bool:
    """The robust-BA intervals were drawn with the clean section's bootstrap settings: they must match."""
    want = ctx.protocol["clean"]
    c = prior.clean
    return c is not None and (c.bootstrap_resamples, c.bootstrap_seed, c.ci_level) == (
        want["bootstrap_resamples"], want["bootstrap_seed"], want["ci_level"])


def _adversarial_update(prior: EvaluationResult, ctx, norm: str) -> dict[str, Any] | None:
    from .attacks.autoattack import attack_config
    from .attacks.evaluation import attack_batch_size
    from .attacks.subset import evaluation_subset

    subset = evaluation_subset(ctx.spec.name, ctx.labels, ctx.protocol)
    threats = ctx.protocol["adversarial"]["threats"].get(norm, [])
    out = {}
    if not _same_bootstrap(prior, ctx):
        return None
    for threat in threats:
        old = prior.adversarial.get(threat["label"])
        if old is None:
            return None
        want = attack_config(ctx.spec, norm, threat["eps"], ctx.protocol, size=ctx.size,
                             batch_size=attack_batch_size(ctx), seed=ctx.seed)
        if old.config != want or old.subset.indices_sha256 != subset.info.indices_sha256:
            return None
        out[threat["label"]] = old
    return {"adversarial": out} if out else None


def _curves_update(prior: EvaluationResult, ctx) -> dict[str, Any] | None:
    from .attacks.evaluation import attack_batch_size
    from .attacks.subset import evaluation_subset

    old = prior.curves
    if old is None:
        return None
    cur = ctx.protocol["curves"]
    subset = evaluation_subset(ctx.spec.name, ctx.labels, ctx.protocol)
    same = (
        [p.x for p in old.apgd_ce] == [e / 255 for e in cur["apgd_eps_255"]]
        and [p.x for p in old.fgsm] == [e / 255 for e in cur["fgsm_eps_255"]]
        and [p.x for p in old.noise] == [float(s) for s in cur["noise_sigma"]]
        and old.apgd_n_iter == int(cur["apgd_n_iter"])
        and old.seed == ctx.seed
        and old.batch_size == attack_batch_size(ctx)
        and old.subset.indices_sha256 == subset.info.indices_sha256
    )
    return {"curves": old} if same else None


def reusable_sections(prior: EvaluationResult | str | os.PathLike, ctx, threats: list[str],
                      weights_sha256: str | None) -> tuple[dict[str, tuple[dict[str, Any], ReusedSection]], list[str]]:
    """({threat: (result fields, provenance record)} that can be carried over, [why the others cannot])."""
    result, file_sha = load_prior(prior)
    reason = _same_origin(result, ctx, weights_sha256)
    wanted = [t for t in threats if t in REUSABLE_THREATS]
    if reason is not None:
        return {}, [f"{t}: {reason}" for t in wanted]
    found, notes = {}, []
    for threat in wanted:
        update = _curves_update(result, ctx) if threat == "curves" else _adversarial_update(result, ctx, threat)
        if update is None:
            notes.append(f"{threat}: the prior result's section is missing or was computed with other settings")
            continue
        earlier = result.provenance.reused.get(threat)
        if earlier is not None:  # the prior result carried it over itself: point at where it was computed
            found[threat] = (update, earlier)
            continue
        wall = result.provenance.wall_time_per_threat_s.get(threat)
        found[threat] = (update, ReusedSection(
            from_protocol_version=result.provenance.protocol_version,
            from_protocol_sha256=result.provenance.protocol_sha256,
            from_result_sha256=file_sha, from_started_at=result.provenance.started_at,
            from_medbench_version=result.provenance.medbench_version, original_wall_time_s=wall))
    return found, notes
