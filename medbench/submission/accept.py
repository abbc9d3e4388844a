"""``accept_submission``: a validated submission joins the zoo, gets its full evaluation, and the site is rebuilt.

Order matters: validate, evaluate (writes ``<results>/<dataset>/<id>.json``), then move the entry
into ``<registry>/<dataset>/<id>.yaml`` and rebuild the site; a failure before the move leaves the
registry untouched.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from ..evaluate import benchmark
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
    from ..site.build import LEADERBOARD_DIR
    from ..zoo import zoo_root

    return zoo_root(), LEADERBOARD_DIR / "results", LEADERBOARD_DIR.parent / "site"


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
    if reference is None:
        reference = find_reference(registry_dir, results_dir, entry.dataset, entry.size)
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


def find_reference(registry: Path, results: Path, dataset: str, size: int) -> Path | None:
    """The corruption reference (BE / rBE): the dataset's registered ERM baseline with a corruption result.

    PROTOCOL.md section 3: the reference is the zoo's ERM baseline; when several qualify, the first id
    in sorted order. None when there is none (BE / rBE are then left empty).
    """
    from ..zoo import load_registry

    for e in sorted(load_registry(registry).entries, key=lambda e: e.id):
        if e.dataset != dataset or e.size != size or not e.is_baseline or e.recipe.method != "erm":
            continue
        path = results / dataset / f"{e.id}.json"
        if path.is_file():
            res = EvaluationResult.from_json(path)
            if res.corruptions is not None and res.clean is not None and res.size == size:
                return path
    return None


def _write_entry(submission: Path, target: Path) -> None:
    """The submission's own YAML mapping without ``claimed``, in the author's field order."""
    data = load_yaml(submission)
    data.pop("claimed", None)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + ".tmp")
    tmp.write_text(f"# accepted from submissions/{submission.name}; measured results: leaderboard/results/\n"
                   + yaml.safe_dump(data, sort_keys=False, allow_unicode=True), encoding="utf-8")
    tmp.replace(target)
