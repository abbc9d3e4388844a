"""The lite track's page: screening results (``leaderboard/lite/<dataset>/<model>.json``, protocol lite1).

Lite results are a cheap approximation of the benchmark (a fixed subset, APGD-CE/-DLR only, fewer
iterations). They are shown on their own page, labelled, ordered but never ranked, and never mixed
into the benchmark's tables (which read ``leaderboard/results/`` only).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from ..data import DATASETS
from ..protocol import LITE_VERSION, load_protocol, protocol_file
from ..schema.result import EvaluationResult

HEADLINE = "Linf-2/255"


@dataclass
class LiteRow:
    model_id: str
    clean_ba: float | None
    robust_ba: float
    ci_low: float | None
    ci_high: float | None
    n: int
    attacks: list[str]
    n_iter: int
    admitted: bool
    reliable: bool
    sha256: str  # of the result file


@dataclass
class LitePage:
    version: str
    protocol_file: str
    protocol_sha256: str
    boards: dict[str, list[LiteRow]]  # dataset -> rows, best lite robust balanced accuracy first
    problems: list[str]
    dates: list[str]  # the start dates of the results shown


def load_lite(root: Path) -> LitePage:
    """Every lite result under ``root``; files that are not lite results of this protocol are reported."""
    proto = load_protocol(LITE_VERSION)
    boards: dict[str, list[LiteRow]] = {}
    problems: list[str] = []
    dates: list[str] = []
    for path in sorted(Path(root).glob("*/*.json")) if Path(root).is_dir() else []:
        where = f"lite {path.parent.name}/{path.name}"
        try:
            raw = path.read_bytes()
            r = EvaluationResult.model_validate_json(raw)
        except (ValidationError, OSError, ValueError) as exc:
            problems.append(f"{where}: skipped: not an EvaluationResult ({str(exc).splitlines()[0]})")
            continue
        if r.track != "lite" or r.provenance.protocol_sha256 != proto.sha256() or r.dataset != path.parent.name \
                or r.dataset not in DATASETS or HEADLINE not in r.adversarial:
            problems.append(f"{where}: skipped: not a {LITE_VERSION} lite result of {path.parent.name} with {HEADLINE}")
            continue
        adv = r.adversarial[HEADLINE]
        dates.append(r.provenance.started_at[:10])
        boards.setdefault(r.dataset, []).append(LiteRow(
            model_id=r.model_id or path.stem, clean_ba=r.clean.balanced_accuracy if r.clean else None,
            robust_ba=adv.robust_balanced_accuracy, ci_low=adv.robust_balanced_accuracy_ci.low,
            ci_high=adv.robust_balanced_accuracy_ci.high, n=adv.subset.n, attacks=list(adv.config.attacks),
            n_iter=adv.config.n_iter, admitted=r.admitted, reliable=r.reliable,
            sha256=hashlib.sha256(raw).hexdigest()))
    for rows in boards.values():
        rows.sort(key=lambda row: (-row.robust_ba, row.model_id))
    return LitePage(LITE_VERSION, protocol_file(LITE_VERSION), proto.sha256(), dict(sorted(boards.items())), problems, dates)
