"""Recording a verified attack: write its record and say what it changed in the best-known column.

``before`` combines the committed result with the records already stored for the same model and threat
(this file's own, when it was verified before, included); ``after`` is the same with this file's new
record in place of its old one, so verifying a file twice changes nothing. Stored records that do not match the
result (another subset, budget or weights) are left out and named in ``skipped``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from ..attacks.best_known import best_known, matching_problem
from ..attacks.records import load_records, write_record
from ..schema import BestKnown
from .attack import AttackReport

__all__ = ["RecordedAttack", "record_verified_attack"]


@dataclass
class RecordedAttack:
    """Where the record went, how many points it broke beyond AutoAttack and earlier records, before / after."""

    path: Path
    beyond_autoattack: int  # subset points this file breaks that AutoAttack left robust
    new_points: int  # the points the column loses: no stored record broke them yet
    before: BestKnown
    after: BestKnown
    skipped: list[str] = field(default_factory=list)

    def summary(self) -> str:
        before, after = self.before.robust_balanced_accuracy, self.after.robust_balanced_accuracy
        return (f"record {self.path.name}: breaks {self.beyond_autoattack} point(s) beyond AutoAttack, "
                f"{self.new_points} new to the column; best-known robust balanced accuracy "
                f"{before:.4f} -> {after:.4f}")


def record_verified_attack(report: AttackReport, root: str | os.PathLike) -> RecordedAttack:
    """Write ``report.verified`` under ``<root>/attacks/`` and compute the column before and after it.

    Raise ``ValueError`` when the report did not pass (a refused file never writes a record).
    """
    from ..protocol import load_protocol

    rec, target = report.verified, report.target
    if not report.passed or rec is None or target is None:
        raise ValueError(f"{report.path} did not pass verification; nothing is recorded")
    section = target.section
    stored = load_records(root)
    skipped = list(stored.problems)
    earlier = []
    for other in stored.get((rec.dataset, rec.model_id, rec.size, rec.threat), []):
        problem = matching_problem(section, other, target.weights_sha256)
        if problem is not None:
            skipped.append(f"{other.attack} ({other.file_sha256[:12]}): {problem}")
        else:
            earlier.append(other)
    others = [r for r in earlier if r.file_sha256 != rec.file_sha256]
    clean = load_protocol()["clean"]
    settings = dict(weights_sha256=target.weights_sha256, num_classes=target.num_classes,
                    bootstrap_resamples=int(clean["bootstrap_resamples"]), bootstrap_seed=int(clean["bootstrap_seed"]),
                    ci_level=float(clean["ci_level"]))
    before = best_known(section, earlier, **settings)
    after = best_known(section, [*others, rec], **settings)
    path = write_record(root, rec)
    robust = {int(i) for i, f in zip(section.subset.indices, section.robust_flags) if f}
    beyond = sum(b.index in robust for b in rec.breaks)
    new = sum(before.robust_flags) - sum(after.robust_flags)
    return RecordedAttack(path=path, beyond_autoattack=beyond, new_points=new, before=before, after=after,
                          skipped=skipped)
