"""The lite track's page: screening results (``leaderboard/lite/<dataset>/<model>.json``, the current lite
protocol, ``LITE_VERSION``).

Lite results are a cheap approximation of the benchmark (a fixed subset, fewer iterations, a masking guard).
They are shown on their own page, labelled, never ranked, and never mixed into the benchmark's tables (which
read ``leaderboard/results/`` only). A result is ordered by lite robust balanced accuracy only when its model
was admitted, every sanity check passed and a masking guard ran (``GUARDS``); the others are listed apart,
each with the reason (the failed check's message).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import ValidationError

from ..data import DATASETS
from ..protocol import LITE_VERSION, Protocol, load_protocol, protocol_file
from ..schema.result import EvaluationResult

__all__ = ["GUARDS", "HEADLINE", "LiteBoard", "LitePage", "LiteRow", "Reason", "load_lite", "not_ordered_because"]

HEADLINE = "Linf-2/255"
# sanity checks that compare the white-box attacks with a weaker or black-box one: a result none of them
# judged could hide masked gradients behind a high robust accuracy
GUARDS = ("whitebox_beats_square", "whitebox_beats_fgsm")


@dataclass(frozen=True)
class Reason:
    """Why a result is not ordered: a short label ("not admitted", ...) and the failed check's message."""

    label: str
    detail: str

    def __str__(self) -> str:
        return f"{self.label}: {self.detail}"


@dataclass
class LiteRow:
    model_id: str
    clean_ba: float | None  # on the full test split
    subset_clean_ba: float | None  # on the attack subset: the robust number's own images (robust <= this)
    robust_ba: float | None  # None: no Linf-2/255 result (a model that was not admitted is not attacked)
    ci_low: float | None
    ci_high: float | None
    n: int | None
    attacks: list[str]
    n_iter: int | None
    admitted: bool
    reliable: bool
    why: list[Reason]  # why the row is not ordered (empty: ordered)
    sha256: str  # of the result file


@dataclass
class LiteBoard:
    ordered: list[LiteRow] = field(default_factory=list)  # best lite robust balanced accuracy first
    apart: list[LiteRow] = field(default_factory=list)  # not ordered: not admitted, unreliable or unguarded


@dataclass
class LitePage:
    version: str
    protocol_file: str
    protocol_sha256: str
    boards: dict[str, LiteBoard]  # dataset -> its rows
    problems: list[str]
    dates: list[str]  # the start dates of the results shown


def not_ordered_because(r: EvaluationResult) -> list[Reason]:
    """Why ``r`` must not be ordered by robust balanced accuracy: failed admission checks, failed sanity
    checks, no headline result, or no masking guard that judged it. Empty when it may be ordered."""
    if not r.admitted:
        return [Reason("not admitted", why) for why in r.not_admitted_because]
    failed = [Reason("evaluation unreliable", f"{c.name}: {c.message}") for c in r.checks
              if c.kind == "sanity" and not c.passed]
    if failed:
        return failed
    if HEADLINE not in r.adversarial:
        return [Reason(f"no {HEADLINE} result", r.skipped.get("Linf", "the Linf threat was not evaluated"))]
    if not any(c.name in GUARDS for c in r.checks):
        return [Reason("no masking guard", f"none of {', '.join(GUARDS)} judged this result (Square runs on 2D "
                       "datasets, FGSM with the curves threat), so a model that masks its gradients could not be "
                       "told apart. Fix: evaluate with every threat of the lite protocol (--threats all).")]
    return []


def _row(r: EvaluationResult, name: str, raw: bytes) -> LiteRow:
    adv = r.adversarial.get(HEADLINE)
    return LiteRow(
        model_id=r.model_id or name, clean_ba=r.clean.balanced_accuracy if r.clean else None,
        subset_clean_ba=adv.clean_balanced_accuracy if adv else None,
        robust_ba=adv.robust_balanced_accuracy if adv else None,
        ci_low=adv.robust_balanced_accuracy_ci.low if adv else None,
        ci_high=adv.robust_balanced_accuracy_ci.high if adv else None,
        n=adv.subset.n if adv else None, attacks=list(adv.config.attacks) if adv else [],
        n_iter=adv.config.n_iter if adv else None, admitted=r.admitted, reliable=r.reliable,
        why=not_ordered_because(r), sha256=hashlib.sha256(raw).hexdigest())


def load_lite(root: Path, protocol: Protocol | None = None) -> LitePage:
    """Every lite result under ``root`` computed under ``protocol`` (default: the current lite protocol); files
    that are not lite results of that protocol are reported in ``problems``."""
    proto = protocol or load_protocol(LITE_VERSION)
    boards: dict[str, LiteBoard] = {}
    problems: list[str] = []
    dates: list[str] = []
    for path in sorted(Path(root).glob("*/*.json")) if Path(root).is_dir() else []:
        where = f"lite {path.parent.name}/{path.name}"
        try:
            r = EvaluationResult.model_validate_json(raw := path.read_bytes())
        except (ValidationError, OSError, ValueError) as exc:
            problems.append(f"{where}: skipped: not an EvaluationResult ({str(exc).splitlines()[0]})")
            continue
        if r.track != "lite" or r.provenance.protocol_sha256 != proto.sha256() or r.dataset != path.parent.name \
                or r.dataset not in DATASETS:
            problems.append(f"{where}: skipped: not a {proto.version} lite result of {path.parent.name}")
            continue
        dates.append(r.provenance.started_at[:10])
        row = _row(r, path.stem, raw)
        board = boards.setdefault(r.dataset, LiteBoard())
        (board.apart if row.why else board.ordered).append(row)
    for board in boards.values():
        board.ordered.sort(key=lambda row: (-row.robust_ba, row.model_id))
        board.apart.sort(key=lambda row: row.model_id)
    return LitePage(proto.version, protocol_file(proto.version), proto.sha256(), dict(sorted(boards.items())), problems,
                    dates)
