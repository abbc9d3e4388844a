"""The best-known worst case of a threat: AutoAttack's per-example outcome, lowered by verified attacks.

RobustBench's most trusted column is "AutoAttack plus every stronger external evaluation". Here each
external evaluation is a :class:`~medbench.schema.attack_record.VerifiedAttack` (a submitted ``.npz`` or
an extra attack such as FMN, checked example by example), so the column only ever goes down, and every
point it loses names the attack that broke it.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from .. import metrics as M
from ..schema import AdversarialResult, BestKnown, BreakSource, Interval, VerifiedAttack


class RecordMismatchError(ValueError):
    """A verified record that does not belong to this result's threat section."""


def matching_problem(section: AdversarialResult, record: VerifiedAttack, weights_sha256: str) -> str | None:
    """Why ``record`` cannot lower ``section`` (a different threat, subset, budget or weights), or None."""
    if record.threat != section.threat:
        return f"threat {record.threat}, not {section.threat}"
    if record.subset_sha256 != section.subset.indices_sha256:
        return "a different attack subset (another protocol version)"
    if record.norm != section.config.norm or abs(record.eps - section.config.eps) > 1e-12:
        return f"budget {record.norm} {record.eps:g}, not {section.config.norm} {section.config.eps:g}"
    if record.weights_sha256 != weights_sha256:
        return "other weights than the result's (the model was re-trained or replaced)"
    if section.subset.indices is None:
        return "the result does not list its subset's indices"
    if len(record.subset_labels) != len(section.subset.indices):
        return "its subset labels do not match the subset's size"
    return None


def best_known(section: AdversarialResult, records: Iterable[VerifiedAttack], *, weights_sha256: str,
               num_classes: int, bootstrap_resamples: int, bootstrap_seed: int, ci_level: float) -> BestKnown:
    """Combine AutoAttack's outcome on ``section``'s subset with every record's breaks (records that do
    not match raise :class:`RecordMismatchError`); the bootstrap settings are the protocol's ``clean``."""
    records = sorted(records, key=lambda r: (r.verified_at, r.file_sha256))
    flags = np.asarray(section.robust_flags, dtype=bool)
    pred = np.asarray(section.adv_predictions, dtype=np.int64)
    broken_by = list(section.broken_by) if section.broken_by else [None if f else "autoattack" for f in flags]
    sources = [BreakSource(attack="AutoAttack", kind="autoattack", points=int((~flags).sum()))]
    labels = None
    for rec in records:
        problem = matching_problem(section, rec, weights_sha256)
        if problem is not None:
            raise RecordMismatchError(f"{rec.attack} ({rec.file_sha256[:12]}): {problem}")
        these = np.asarray(rec.subset_labels, dtype=np.int64)
        if labels is not None and not np.array_equal(labels, these):
            raise RecordMismatchError(f"{rec.attack} ({rec.file_sha256[:12]}): its subset labels differ from "
                                      "another record's")
        labels = these
        position = {int(i): p for p, i in enumerate(section.subset.indices)}
        added = 0
        for b in rec.breaks:
            p = position.get(b.index)
            if p is None:
                raise RecordMismatchError(f"{rec.attack}: index {b.index} is not in the attack subset")
            if flags[p]:
                flags[p], pred[p], broken_by[p] = False, b.predicted, rec.attack
                added += 1
        sources.append(BreakSource(attack=rec.attack, kind=rec.kind, points=added, submitter=rec.submitter,
                                   url=rec.url, file_sha256=rec.file_sha256, verified_at=rec.verified_at))
    if labels is None:  # nothing beyond AutoAttack: its own numbers
        return autoattack_only(section)
    ba = M.balanced_accuracy(labels, np.where(flags, labels, pred), num_classes)
    ci = M.bootstrap_metric_ci(labels, np.where(flags, labels, pred), num_classes, n_resamples=bootstrap_resamples,
                               seed=bootstrap_seed, level=ci_level)
    aa_low = section.robust_balanced_accuracy_ci.low if section.robust_balanced_accuracy_ci else None
    return BestKnown(threat=section.threat, robust_accuracy=float(flags.mean()) if flags.size else 0.0,
                     robust_balanced_accuracy=ba, robust_balanced_accuracy_ci=Interval(low=ci.low, high=ci.high),
                     robust_flags=[bool(v) for v in flags], broken_by=broken_by, sources=sources,
                     autoattack_overestimates=aa_low is not None and ba < aa_low)


def autoattack_only(section: AdversarialResult) -> BestKnown:
    """The best known when no attack record applies: AutoAttack's own numbers (built from the already
    validated section without validating its per-example lists again)."""
    broken = section.robust_flags.count(False)
    return BestKnown.model_construct(
        threat=section.threat, robust_accuracy=section.robust_accuracy,
        robust_balanced_accuracy=section.robust_balanced_accuracy,
        robust_balanced_accuracy_ci=section.robust_balanced_accuracy_ci, robust_flags=section.robust_flags,
        broken_by=section.broken_by or [None if f else "autoattack" for f in section.robust_flags],
        sources=[BreakSource(attack="AutoAttack", kind="autoattack", points=broken)], autoattack_overestimates=False)


def best_known_sections(result, records: Iterable[VerifiedAttack]) -> tuple[dict[str, BestKnown], list[str]]:
    """Every threat of ``result`` (an ``EvaluationResult``) lowered by the ``records`` that match it; the
    records that do not (other weights, threat or subset) are left out, each with the reason why."""
    from ..data import get_spec
    from ..protocol import load_protocol

    records = list(records)
    if not records:  # (the common case, at every build: nothing to combine or validate again)
        return {threat: autoattack_only(section) for threat, section in result.adversarial.items()}, []
    try:  # the bootstrap of the result's own protocol (a derived one's base, whose clean settings it keeps)
        clean = load_protocol(result.provenance.protocol_version.split("+")[0])["clean"]
        settings = dict(bootstrap_resamples=clean["bootstrap_resamples"], bootstrap_seed=clean["bootstrap_seed"],
                        ci_level=clean["ci_level"])
    except ValueError:
        settings = dict(bootstrap_resamples=M.N_BOOTSTRAP, bootstrap_seed=0, ci_level=M.CI_LEVEL)
    weights, k = result.provenance.weights_sha256, get_spec(result.dataset).num_classes
    by_threat: dict[str, list[VerifiedAttack]] = {}
    problems = []
    for rec in records:
        section = result.adversarial.get(rec.threat)
        why = f"the result has no {rec.threat} section" if section is None else \
            matching_problem(section, rec, weights)
        if why is None and rec.size != result.size:
            why = f"{rec.size} px, not {result.size} px"
        if why is None:
            by_threat.setdefault(rec.threat, []).append(rec)
        else:
            problems.append(f"attack record {rec.attack} ({rec.file_sha256[:12]}) for {result.model_id}: not used: "
                            f"{why}")
    out = {}
    for threat, section in result.adversarial.items():
        try:
            out[threat] = best_known(section, by_threat.get(threat, []), weights_sha256=weights, num_classes=k,
                                     **settings)
        except RecordMismatchError as exc:  # records disagreeing with each other: AutoAttack alone, and why
            problems.append(f"attack records for {result.model_id} {threat}: not used: {exc}")
            out[threat] = best_known(section, [], weights_sha256=weights, num_classes=k, **settings)
    return out, problems
