"""``validate_submission``: every check on one submission file, collected into a :class:`Report`.

Stages run in order; a stage that cannot run because an earlier one failed is marked skipped, so
the report lists every problem that can be found at once.
"""

from __future__ import annotations

from pathlib import Path

from torch import nn

from ..errors import MedbenchError
from ..protocol import Protocol, load_protocol
from .evaluation import ReproduceSettings, check_admission, check_reproduce, reproduce_protocol, threat_labels
from .model import load_checked_model
from .report import Report
from .schema import Submission, SubmissionError, display_path, load_yaml
from .static import check_static


def validate_submission(path: str | Path, *, registry: str | Path | None = None, reproduce: bool = False,
                        protocol: Protocol | None = None, settings: ReproduceSettings = ReproduceSettings(),
                        data_root: str | Path | None = None, device: str | None = None,
                        local: bool = False) -> Report:
    """Check one submission file; ``reproduce`` also re-measures the claimed numbers.

    ``local``: the author's check before uploading: the file may lie in any folder and its weights may
    be a bundled file next to it (CI never sets it; a pull request needs a Hub source in submissions/).
    """
    report, _ = _validate(Path(path), registry=registry, reproduce=reproduce, protocol=protocol, settings=settings,
                          data_root=data_root, device=device, local=local)
    return report


def _validate(path: Path, *, registry, reproduce, protocol, settings, data_root, device, local=False
              ) -> tuple[Report, tuple[Submission, nn.Module] | None]:
    """Run every stage; any exception nobody anticipated becomes one failed check (never a traceback)."""
    report = Report(path=Path(path).name)
    try:
        report.path = display_path(path)
        return _stages(report, path, registry=registry, reproduce=reproduce, protocol=protocol, settings=settings,
                       data_root=data_root, device=device, local=local)
    except Exception as exc:  # noqa: BLE001 - a hostile file must get a report, whatever it triggers
        stage = report.checks[-1].stage if report.checks else "schema"
        text = f"{type(exc).__name__}: {exc}"
        report.add(stage, "unexpected error", False,
                   f"validation stopped after the checks above: {text[:300]}{'...' if len(text) > 300 else ''}",
                   fix="Fix the entry field involved in the error if it names one; otherwise open an issue quoting "
                       "this report (a maintainer will extend the validator).")
        return report, None


def _stages(report: Report, path: Path, *, registry, reproduce, protocol, settings, data_root, device, local
            ) -> tuple[Report, tuple[Submission, nn.Module] | None]:
    from ..zoo import zoo_root

    proto = protocol or load_protocol()
    try:
        data = load_yaml(path, local=local)
    except SubmissionError as exc:
        problem, _, fix = str(exc).partition(" Fix: ")
        report.add("schema", "file", False, problem,
                   fix=fix[:1].upper() + fix[1:] if fix else "Commit one UTF-8 YAML file, submissions/<ModelId>.yaml.")
        return report, None
    sub = check_static(report, data, path, Path(registry) if registry else zoo_root(), threat_labels(proto),
                       local=local)
    if sub is None:
        for stage in ("weights", "model", "admission", "reproduce"):
            report.skip(stage, stage, "skipped: the file does not satisfy the schema")
        return report, None
    if any(c.failed for c in report.checks if c.name == "size limits"):
        model = None
        report.skip("weights", "download", "skipped: the declared size is above the limits")
    else:
        model = load_checked_model(report, sub.to_entry(), folder=path.absolute().parent if local else None,
                                   data_root=data_root)
    if model is None:
        report.skip("admission", "admission checks", "skipped: no model could be loaded")
        report.skip("reproduce", "claimed numbers", "skipped: no model could be loaded")
        return report, None
    small = reproduce_protocol(proto, sub, settings)
    try:
        net = check_admission(report, model, sub, small, data_root=data_root, device=device)
    except MedbenchError as exc:
        report.add("admission", "admission checks", False, f"could not run: {exc}",
                   fix="Make the MedMNIST test split available (MEDBENCH_DATA or --data-root).")
        net = None
    except Exception as exc:  # the submitted model itself raised during a check
        report.add("admission", "admission checks", False, f"the model raised {type(exc).__name__}: {exc}",
                   fix="The model must run forward and backward passes on [0, 1] inputs of the dataset's shape.")
        net = None
    if net is None:
        report.skip("reproduce", "claimed numbers", "skipped: the model is not admitted")
        return report, None
    if not reproduce:
        report.skip("reproduce", "claimed numbers", "not run (use --reproduce)")
    elif report.stage_failed("metadata"):
        report.skip("reproduce", "claimed numbers", "skipped: fix the metadata problems first")
    else:
        try:
            check_reproduce(report, model, sub, proto, settings, data_root=data_root, device=device)
        except Exception as exc:  # noqa: BLE001 - the report must be written whatever the model does
            report.add("reproduce", "claimed numbers", False, f"could not run: {type(exc).__name__}: {exc}",
                       fix="See the error; if it names the model, fix the model, else ask a maintainer.")
    return report, (sub, model)
