"""``accept_submission``: a validated submission joins the zoo, gets its full evaluation, and the site is rebuilt.

Order matters: validate, evaluate (writes ``<results>/<dataset>/<id>.json``), then move the entry
into ``<registry>/<dataset>/<id>.yaml`` and rebuild the site; a failure before the move leaves the
registry untouched.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from ..data import get_spec
from ..evaluate import normalise_threats, benchmark
from ..protocol import Protocol, load_protocol
from ..schema import EvaluationResult, read_entry
from .evaluation import ReproduceSettings
from .report import Report
from .schema import SubmissionError, load_yaml
from .validate import _validate

# --quick: a reduced protocol (marked "+custom" in the result) for trying the pipeline locally.
QUICK = {"adversarial.subset_size": 64, "adversarial.n_iter": 10, "adversarial.square_queries": 100,
         "curves.apgd_n_iter": 10}


@dataclass
class Accepted:
    entry_path: Path
    result_path: Path
    site_dir: Path
    result: EvaluationResult
    report: Report


def default_paths() -> tuple[Path, Path, Path]:
    """(registry, results, site) of the source checkout."""
    from ..paths import leaderboard_root
    from ..zoo import zoo_root

    return zoo_root(), leaderboard_root() / "results", leaderboard_root().parent / "site"


def accept_submission(path: str | Path, *, registry: str | Path | None = None, results: str | Path | None = None,
                      site: str | Path | None = None, protocol: Protocol | None = None, quick: bool = False,
                      threats: str = "all", data_root: str | Path | None = None, device: str | None = None,
                      reference: str | Path | None = None, progress: bool = True) -> Accepted:
    """Validate ``path``, run the protocol (``threats``), move the entry into the registry, rebuild the site."""
    from ..site.build import build_site
    from ..zoo import clear_cache

    path = Path(path)
    reg_default, res_default, site_default = default_paths() if None in (registry, results, site) else (None,) * 3
    registry_dir = Path(registry) if registry else reg_default
    results_dir = Path(results) if results else res_default
    site_dir = Path(site) if site else site_default
    proto = protocol or load_protocol()
    if quick:
        proto = proto.derive(**QUICK)
    settings = ReproduceSettings(subset_size=int(proto["adversarial"]["subset_size"]))
    report, loaded = _validate(path, registry=registry_dir, reproduce=False, protocol=proto, settings=settings,
                               data_root=data_root, device=device)
    if not report.passed or loaded is None:
        raise SubmissionError(f"{path} cannot be accepted; it fails validation:\n{report.to_text()}")
    sub, model = loaded
    entry = sub.to_entry()
    entry_path = registry_dir / entry.dataset / f"{entry.id}.yaml"
    result_path = results_dir / entry.dataset / f"{entry.id}.json"
    if entry_path.exists():
        raise SubmissionError(f"{entry_path} already exists; refusing to overwrite a registered model.")
    if reference is None and "corruptions" in normalise_threats(threats, get_spec(entry.dataset), proto):
        reference = find_reference(registry_dir, results_dir, entry.dataset, entry.size, proto)
    result = benchmark(model, entry.dataset, threats=threats, size=entry.size, device=device, data_root=data_root,
                       protocol=proto, model_id=entry.id, weights_sha256=entry.weights.sha256, out=result_path,
                       reference=reference, progress=progress)
    _write_entry(path, entry_path)
    if read_entry(entry_path) != entry:
        entry_path.unlink()
        raise SubmissionError(f"writing {entry_path} changed the entry; it was removed again (please report this).")
    path.unlink()
    clear_cache()
    build_site(site_dir, registry_dir, results_dir)
    return Accepted(entry_path, result_path, site_dir, result, report)


def find_reference(registry: Path, results: Path, dataset: str, size: int,
                   protocol: Protocol | None = None) -> Path | None:
    """The corruption reference (BE / rBE) of ``dataset``: the result of the model the protocol pins
    (``corruptions.reference_models``), never chosen by id order, so no submission can become it.

    None when the protocol pins no reference for the dataset (BE / rBE are then left empty, with the
    reason in the result). A pinned reference that is not registered, or has no clean + corruption
    result at ``size``, is an error: evaluating it first is the fix.
    """
    from ..corruptions.evaluation import pinned_reference
    from ..zoo import load_registry

    proto = protocol or load_protocol()
    pinned = pinned_reference(dataset, proto)
    if pinned is None:
        return None
    if not any(e.id == pinned and e.dataset == dataset for e in load_registry(registry).entries):
        raise SubmissionError(f"Protocol {proto.version} pins {pinned} as the BE / rBE reference for {dataset}, but "
                              f"{registry / dataset / (pinned + '.yaml')} is not a registered entry. Fix: restore it.")
    path = results / dataset / f"{pinned}.json"
    fix = (f"Fix: evaluate it first (medbench evaluate {pinned} --dataset {dataset} --size {size} "
           f"--threats all --out {path}).")
    if not path.is_file():
        raise SubmissionError(f"The BE / rBE reference for {dataset} ({pinned}, pinned by protocol {proto.version}) "
                              f"has no result at {path}. {fix}")
    res = EvaluationResult.from_json(path)
    if res.model_id != pinned or res.size != size or res.corruptions is None or res.clean is None:
        raise SubmissionError(f"{path} is not a {size} px clean + corruption result of {pinned}, the BE / rBE "
                              f"reference that protocol {proto.version} pins for {dataset}. {fix}")
    return path


def _write_entry(submission: Path, target: Path) -> None:
    """The submission's own YAML mapping without ``claimed``, in the author's field order."""
    data = load_yaml(submission)
    data.pop("claimed", None)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + ".tmp")
    tmp.write_text(f"# accepted from submissions/{submission.name}; measured results: leaderboard/results/\n"
                   + yaml.safe_dump(data, sort_keys=False, allow_unicode=True), encoding="utf-8")
    tmp.replace(target)
