"""Studies from the literature as reproducible benchmark tracks (``medbench study NAME --dataset D``).

Each study lives in its own module exposing ``STUDY`` (a :class:`~medbench.studies.base.Study`); the
registry maps the study's name to that module, imported only when the study is used.
"""

from __future__ import annotations

import importlib
import os
import sys
import time
from pathlib import Path

from ..errors import MedbenchError, SettingError
from ..paths import leaderboard_root
from .base import (Admission, Claim, DerivedFrom, Finding, StatTest, Study, StudyContext, StudyOutcome,
                   StudyProvenance, StudyResult, now_iso, provenance, result_path, save_result)

# study name -> module defining STUDY
STUDIES: dict[str, str] = {
    "nonrobust-features": "medbench.studies.nonrobust_features",
    "explanation-stability": "medbench.studies.explanation_stability",
    "architectures": "medbench.studies.architectures",
}
STUDIES_DIR = leaderboard_root() / "studies"

__all__ = ["STUDIES", "STUDIES_DIR", "Admission", "Claim", "Finding", "StatTest", "Study", "StudyContext",
           "StudyProvenance", "StudyOutcome", "StudyResult", "get_study", "list_studies", "load_result",
           "result_path", "run_study", "save_result", "validate_options"]


class UnknownStudyError(MedbenchError, KeyError):
    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


def list_studies() -> list[str]:
    """Names of the studies whose module is present (in registry order)."""
    return [n for n in STUDIES if importlib.util.find_spec(STUDIES[n]) is not None]


def get_study(name: str) -> Study:
    """The registered study ``name``; a clear error naming the known ones otherwise."""
    if name not in STUDIES or importlib.util.find_spec(STUDIES[name]) is None:
        import difflib

        guess = difflib.get_close_matches(name, list(STUDIES), n=1)
        hint = f" Did you mean {guess[0]!r}?" if guess else ""
        raise UnknownStudyError(f"Unknown study {name!r}.{hint} Known studies: {', '.join(list_studies())}.")
    return importlib.import_module(STUDIES[name]).STUDY


def load_result(path: str | os.PathLike) -> StudyResult:
    """Read a study result file, validated against its study's typed result model."""
    import json

    data = json.loads(Path(path).read_text())
    study = get_study(str(data.get("study", "")))
    return study.result_type.model_validate(data)


def run_study(name: str, dataset: str, *, size: int = 28, seed: int = 0, data_root=None, out=None,
              work_dir=None, options: dict | None = None, progress: bool = True,
              command: list[str] | None = None, rederive_from=None) -> StudyResult:
    """Run study ``name`` on ``dataset`` end to end; write the result under ``out`` when given.

    ``options`` are the study's typed options (``medbench study NAME --help`` lists them); ``work_dir``
    keeps trained models between runs (default: ``$MEDBENCH_CACHE/studies/NAME``). ``rederive_from``: an
    earlier result file of this study and dataset whose conclusions are recomputed from what it stores
    (its options and seed are kept; nothing is trained), for studies that define ``rederive``.
    """
    import torch

    from ..data import get_spec, verify_file
    from ..paths import cache_root, data_root as resolve_data_root

    study = get_study(name)
    spec = get_spec(dataset)
    if study.datasets and spec.name not in study.datasets:
        raise MedbenchError(f"Study {name!r} supports {', '.join(study.datasets)}; not {spec.name}.")
    earlier = None
    if rederive_from is not None:
        earlier, options, seed = _earlier(study, rederive_from, spec.name, size, options)
    opts = validate_options(study, options)
    root = resolve_data_root(data_root)
    verify_file(spec.name, size, root)
    work = Path(work_dir) if work_dir else cache_root() / "studies" / name
    work.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    ctx = StudyContext(dataset=spec.name, size=size, seed=seed, data_root=root, work_dir=work, options=opts,
                       progress=progress)
    started, started_at = time.perf_counter(), now_iso()
    if earlier is not None:
        ctx.models.update(earlier[0].provenance.models)
        outcome = study.rederive(earlier[0], ctx)
    else:
        outcome = study.run(ctx)
    prov = provenance(ctx, started, started_at, command if command is not None else sys.argv)
    if earlier is not None:
        old, sha = earlier
        prov.derived_from = DerivedFrom(started_at=old.provenance.started_at, wall_time_s=old.provenance.wall_time_s,
                                        medbench_version=old.provenance.medbench_version, result_sha256=sha,
                                        how=outcome.derived_how or "re-derived from the earlier result")
    result = study.result_type.model_validate({
        "study": study.name, "study_version": study.version, "dataset": spec.name, "size": size,
        "summary": outcome.summary, "findings": [f.model_dump() for f in outcome.findings],
        "details": outcome.details.model_dump() if hasattr(outcome.details, "model_dump") else outcome.details,
        "admissions": [a.model_dump() for a in outcome.admissions],
        "claims": [c.model_dump() for c in outcome.claims], "provenance": prov.model_dump()})
    if out is not None:
        path = save_result(result, out)
        ctx.log(f"wrote {path}")
    return result


def validate_options(study: Study, options: dict | None):
    """``options`` as the study's typed options; ``SettingError`` naming each bad option and its value."""
    from pydantic import ValidationError

    try:
        return study.options.model_validate(options or {})
    except ValidationError as exc:
        problems = "; ".join(_problem(e) for e in exc.errors())
        known = ", ".join(study.options.model_fields) or "none"
        raise SettingError(f"Bad options for study {study.name!r}: {problems}. Its options: {known} "
                           f"(see medbench study {study.name} --help).") from None


def _problem(error: dict) -> str:
    where = ".".join(map(str, error["loc"]))
    if error.get("type") == "missing":
        return f"{where}: {error['msg']}"
    return f"{where}={error['input']!r}: {error['msg']}"


def _earlier(study: Study, path, dataset: str, size: int, options: dict | None):
    """The earlier result to re-derive, its sha256, its options (updated by ``options``) and seed."""
    import hashlib

    if study.rederive is None:
        raise MedbenchError(f"Study {study.name!r} cannot re-derive a result; run it in full (without --rederive).")
    path = Path(path)
    if not path.is_file():
        raise MedbenchError(f"--rederive: no earlier result {path}; run the study in full first.")
    old = load_result(path)
    if (old.study, old.dataset, old.size) != (study.name, dataset, size):
        raise MedbenchError(f"--rederive: {path} is {old.study} on {old.dataset} at {old.size} px, not {study.name} "
                            f"on {dataset} at {size} px.")
    merged = {**old.provenance.options, **(options or {})}
    return (old, hashlib.sha256(path.read_bytes()).hexdigest()), merged, old.provenance.seed
