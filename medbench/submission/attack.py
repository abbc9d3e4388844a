"""``verify_attack_submission``: every check on one attack submission, collected into an :class:`AttackReport`.

Stages, in order: ``schema`` (the YAML, its threat), ``file`` (the ``.npz`` beside it: size, sha256),
``model`` (zoo entry with the pinned weights, the committed result computed with them on the protocol's
subset), ``arrays`` (headers, dtypes, shapes, values, indices), ``examples`` (per example: inside the ball,
misclassified deterministically; see :mod:`.attack_examples`). A problem with the file fails the report;
an example that fails a per-example check only counts under ``refused``. A passing report carries the
:class:`~medbench.schema.VerifiedAttack`; a file with no verified break fails.
"""

from __future__ import annotations

import datetime as dt
import difflib
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydantic import ValidationError

from ..schema import AttackSubmission, Break, VerifiedAttack
from ..schema.entry import format_validation_error
from .attack_examples import TOLERANCE, check_examples
from .attack_file import AttackFileError, check_size, file_sha256, read_attack_arrays
from .attack_target import AttackTarget, TargetError, load_target
from .report import Report
from .schema import SubmissionError, display_path, load_yaml

__all__ = ["ATTACKS_DIR", "AttackReport", "looks_like_attack_submission", "verify_attack_submission"]

ATTACKS_DIR = "submissions/attacks"
ATTACK_STAGES = ("schema", "file", "model", "arrays", "examples")
_ATTACK_FIELDS = {"threat", "attack", "file", "sha256", "weights_sha256"}


@dataclass
class AttackReport(Report):
    """A :class:`Report` whose ``verified`` holds what a passing file proved, and ``target`` what it was checked on."""

    verified: VerifiedAttack | None = None
    target: AttackTarget | None = None

    def ordered(self):
        return sorted(self.checks, key=lambda c: ATTACK_STAGES.index(c.stage) if c.stage in ATTACK_STAGES else 99)


def looks_like_attack_submission(path: str | Path) -> bool:
    """A YAML under ``submissions/attacks/``, or one whose top-level keys are an attack submission's."""
    path = Path(path)
    if path.absolute().parent.name == "attacks":
        return True
    try:
        data = load_yaml(path)
    except SubmissionError:
        return False
    return isinstance(data, dict) and _ATTACK_FIELDS <= set(data) and "architecture" not in data


def verify_attack_submission(yaml_path: str | Path, *, registry: str | Path | None = None,
                             results: str | Path | None = None, data_root: str | Path | None = None,
                             device: str | None = None, kind: str = "submission") -> AttackReport:
    """Check one ``submissions/attacks/<name>.yaml`` and its ``.npz`` against the zoo model it names.

    ``registry``: the zoo folder (default :func:`~medbench.zoo.zoo_root`); ``results``: the results folder
    holding ``<dataset>/<model_id>.json`` (default ``<leaderboard>/results``). Never raises for a bad file.
    """
    path = Path(yaml_path)
    report = AttackReport(path=path.name)
    try:
        report.path = display_path(path, ATTACKS_DIR)
        _stages(report, path, registry=registry, results=results, data_root=data_root, device=device or "cpu",
                kind=kind)
    except Exception as exc:  # noqa: BLE001 - a hostile file must get a report, whatever it triggers
        stage = report.checks[-1].stage if report.checks else "schema"
        report.verified = None
        report.add(stage, "unexpected error", False, f"verification stopped: {type(exc).__name__}: {str(exc)[:300]}",
                   fix="If the error names a field or array, fix it; otherwise open an issue quoting this report.")
    return report


def _stages(report: AttackReport, path: Path, *, registry, results, data_root, device, kind) -> None:
    from ..protocol import load_protocol

    proto = load_protocol()
    sub = _check_schema(report, path, proto)
    if sub is None:
        for stage in ATTACK_STAGES[1:]:
            report.skip(stage, stage, "skipped: the YAML does not satisfy the schema")
        return
    npz = _check_file(report, path, sub)
    target = _check_model(report, sub, proto, registry, results, data_root, device)
    if npz is None or target is None:
        for stage in ("arrays", "examples"):
            report.skip(stage, stage, "skipped: fix the problems above first")
        return
    arrays = _check_arrays(report, npz, sub, target)
    if arrays is None:
        report.skip("examples", "examples", "skipped: the arrays are refused")
        return
    report.verified = _check_examples(report, arrays, sub, target, proto, kind, device)
    report.target = target


def _fail(report: AttackReport, stage: str, name: str, message: str, fix: str) -> None:
    report.add(stage, name, False, message, fix=fix)


def _check_schema(report: AttackReport, path: Path, proto) -> AttackSubmission | None:
    from ..data import DATASETS
    from .evaluation import threat_labels

    try:
        data = load_yaml(path, ATTACKS_DIR)
    except SubmissionError as exc:
        problem, _, fix = str(exc).partition(" Fix: ")
        _fail(report, "schema", "file", problem, fix or "Commit one UTF-8 YAML file in submissions/attacks/.")
        return None
    if not isinstance(data, dict):
        _fail(report, "schema", "fields", f"{report.path} must be a YAML mapping, got {type(data).__name__}",
              "Start from submissions/attacks/TEMPLATE.yaml.")
        return None
    try:
        sub = AttackSubmission.model_validate(data)
    except ValidationError as exc:
        text = format_validation_error(exc, report.path).replace("a valid model entry", "a valid attack submission")
        _fail(report, "schema", "fields", text, "Fix the fields named above (see submissions/attacks/TEMPLATE.yaml).")
        return None
    report.model_id, report.dataset = sub.model_id, sub.dataset
    if sub.dataset not in DATASETS:
        close = difflib.get_close_matches(sub.dataset, list(DATASETS), n=3)
        _fail(report, "schema", "dataset", f"unknown dataset {sub.dataset!r}"
              + (f"; did you mean {', '.join(close)}?" if close else ""), "Use a MedMNIST name, e.g. breastmnist.")
        return None
    labels = threat_labels(proto)[sub.dataset]
    if sub.threat not in labels:
        close = difflib.get_close_matches(sub.threat, labels, n=3, cutoff=0.3)
        _fail(report, "schema", "threat", f"{sub.threat!r} is not a threat of protocol {proto.version} for "
              f"{sub.dataset} ({', '.join(labels) or 'no adversarial track'})"
              + (f"; did you mean {close[0]}?" if close else ""),
              "Set threat to one of the protocol's labels, e.g. Linf-2/255.")
        return None
    report.add("schema", "fields", True, f"{sub.attack} on {sub.model_id} ({sub.dataset}, {sub.size} px), {sub.threat}")
    return sub


def _check_file(report: AttackReport, path: Path, sub: AttackSubmission) -> Path | None:
    npz = path.absolute().parent / sub.file
    name = f"{ATTACKS_DIR}/{sub.file}"
    if npz.is_symlink() or not npz.is_file():
        what = "a symbolic link" if npz.is_symlink() else "missing"
        _fail(report, "file", "beside the YAML", f"{name} is {what}",
              f"Commit the .npz itself next to the YAML, as {name}.")
        return None
    try:
        size = check_size(npz, name)
    except AttackFileError as exc:
        _fail(report, "file", exc.check, str(exc), exc.fix)
        return None
    digest = file_sha256(npz)
    if digest != sub.sha256:
        _fail(report, "file", "sha256", f"{name} has sha256 {digest}, the YAML says {sub.sha256}",
              "Put the file's sha256 in the YAML (sha256sum FILE.npz), and commit the file you mean.")
        return None
    report.add("file", "size and sha256", True, f"{name}: {size:,} bytes, sha256 {digest[:12]}...")
    return npz


def _check_model(report: AttackReport, sub: AttackSubmission, proto, registry, results, data_root, device
                 ) -> AttackTarget | None:
    try:
        target = load_target(sub, proto, registry=registry, results=results, data_root=data_root, device=device)
    except TargetError as exc:
        _fail(report, "model", exc.check, str(exc), exc.fix)
        return None
    report.add("model", "pinned weights and result", True,
               f"weights sha256 {target.weights_sha256[:12]}... = the zoo's pin = the committed result's; "
               f"AutoAttack left {sum(target.section.robust_flags)} of {len(target.section.robust_flags)} points "
               f"robust (robust balanced accuracy {target.section.robust_balanced_accuracy:.4f})")
    return target


def _check_arrays(report: AttackReport, npz: Path, sub: AttackSubmission, target: AttackTarget):
    from ..data import get_spec

    name = f"{ATTACKS_DIR}/{sub.file}"
    subset = np.asarray(target.section.subset.indices, dtype=np.int64)
    try:
        arrays = read_attack_arrays(npz, name, image_shape=get_spec(sub.dataset).input_shape(sub.size),
                                    max_examples=len(subset))
    except AttackFileError as exc:
        _fail(report, "arrays", exc.check, str(exc), exc.fix)
        return None
    idx = arrays.indices
    values, counts = np.unique(idx, return_counts=True)
    if (counts > 1).any():
        rep = values[counts > 1]
        _fail(report, "arrays", "indices unique", f"{name}: index {int(rep[0])} appears {int(counts[counts > 1][0])} "
              f"times ({len(rep)} repeated index(es))", "Submit each test example at most once.")
        return None
    outside = np.flatnonzero(~np.isin(idx, subset))
    if outside.size:
        p = int(outside[0])
        _fail(report, "arrays", "indices in the subset", f"{name}: indices[{p}] = {int(idx[p])} is not in the "
              f"{sub.threat} attack subset of {sub.dataset} ({len(subset)} test positions; {outside.size} index(es) "
              "outside)", "Use test-split positions listed in the result's adversarial subset (subset.indices).")
        return None
    report.add("arrays", "arrays", True, f"{len(idx)} example(s), {'x'.join(map(str, arrays.images.shape[1:]))}, "
               "finite, in [0, 1], distinct indices of the attack subset")
    return arrays


def _check_examples(report: AttackReport, arrays, sub: AttackSubmission, target: AttackTarget, proto, kind,
                    device) -> VerifiedAttack | None:
    from .. import __version__

    idx = arrays.indices
    x_clean = target.images[idx].astype(np.float32) / np.float32(255)
    y = target.labels[idx]
    verdicts = check_examples(target.model, arrays.images, x_clean, y, norm=target.norm, eps=target.eps,
                              device=device)
    breaks = [Break(index=int(i), predicted=int(p), distance=float(d))
              for i, p, d, why in zip(idx, verdicts.predicted, verdicts.distance, verdicts.refused) if why is None]
    refused = dict(Counter(r for r in verdicts.refused if r is not None))
    section = target.section
    robust = {int(i) for i, f in zip(section.subset.indices, section.robust_flags) if f}
    new = sum(b.index in robust for b in breaks)
    told = "; ".join(f"{n} {why}" for why, n in refused.items()) or "none"
    message = (f"{len(idx)} submitted, {len(breaks)} verified break(s), {new} of them on points AutoAttack left "
               f"robust; refused: {told}")
    if not breaks:
        _fail(report, "examples", "verified breaks", message,
              f"Submit examples within the {sub.threat} ball (tolerance {TOLERANCE:g}) that the model misclassifies.")
        return None
    report.add("examples", "verified breaks", True, message)
    labels = np.asarray(target.labels)[np.asarray(section.subset.indices, dtype=np.int64)]
    now = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")
    return VerifiedAttack(
        model_id=sub.model_id, dataset=sub.dataset, size=sub.size, threat=sub.threat, norm=target.norm,
        eps=target.eps, attack=sub.attack, kind=kind, submitter=sub.submitter, url=sub.url, file_sha256=sub.sha256,
        weights_sha256=target.weights_sha256, protocol_version=proto.version,
        subset_sha256=section.subset.indices_sha256, subset_labels=[int(v) for v in labels], tolerance=TOLERANCE,
        submitted=len(idx), breaks=breaks, refused=refused, verified_at=now, medbench_version=__version__)
