"""What an attack submission is checked against: the zoo model with its pinned weights, the committed
result computed with exactly those weights on the protocol's attack subset, and the test split.

:func:`load_target` raises :class:`TargetError` (check name, message, fix) when any of them is missing or
does not match: a file aimed at other weights, or at a result computed on another subset, is refused.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import MedbenchError
from ..schema import AdversarialResult, AttackSubmission, EvaluationResult

__all__ = ["AttackTarget", "TargetError", "load_target", "result_path"]


@dataclass
class AttackTarget:
    """What the file is checked against: the zoo model, its committed result's threat section, the data."""

    model: object  # nn.Module in eval mode
    weights_sha256: str
    result: EvaluationResult
    section: AdversarialResult
    norm: str
    eps: float
    num_classes: int
    images: np.ndarray  # uint8 test split, channels first
    labels: np.ndarray  # int64 test labels


class TargetError(MedbenchError, ValueError):
    def __init__(self, check: str, message: str, fix: str):
        super().__init__(message)
        self.check, self.fix = check, fix


def result_path(results: str | Path | None, dataset: str, model_id: str) -> Path:
    """``<results>/<dataset>/<model_id>.json`` (default results folder: ``<leaderboard>/results``)."""
    from ..paths import leaderboard_root

    return Path(results if results is not None else leaderboard_root() / "results") / dataset / f"{model_id}.json"


def _entry(sub: AttackSubmission, registry):
    from ..zoo import load_registry

    reg = load_registry(registry)
    key = (sub.dataset, sub.model_id)
    if key not in reg.paths:
        here = sorted(e.id for e in reg.entries if e.dataset == sub.dataset)
        close = difflib.get_close_matches(sub.model_id, here, n=3, cutoff=0.5)
        raise TargetError("zoo entry", f"{sub.model_id!r} is not a zoo model for {sub.dataset}"
                          + (f"; did you mean {', '.join(close)}?" if close else ""),
                          "Name a ranked zoo model (`medbench zoo list --dataset DATASET`).")
    entry = next(e for e in reg.entries if (e.dataset, e.id) == key)
    if entry.size != sub.size:
        raise TargetError("zoo entry", f"{sub.model_id} ({sub.dataset}) is a {entry.size} px model, the file says "
                          f"size {sub.size}", f"Set size: {entry.size} and attack {entry.size} px images.")
    if entry.weights.sha256 != sub.weights_sha256:
        raise TargetError("pinned weights", f"the examples target weights {sub.weights_sha256[:12]}..., but the zoo "
                          f"pins {sub.model_id} to {entry.weights.sha256[:12]}...; only the pinned weights are ranked",
                          f"Attack the pinned weights (medbench.load_model('{sub.model_id}', '{sub.dataset}')) and set "
                          f"weights_sha256: {entry.weights.sha256}.")
    return entry, reg.paths[key].parent


def _result(sub: AttackSubmission, results, weights_sha256: str) -> EvaluationResult:
    path = result_path(results, sub.dataset, sub.model_id)
    if not path.is_file():
        raise TargetError("committed result", f"no committed result {sub.dataset}/{sub.model_id}.json: only "
                          "evaluated models have a best-known column", "Attack a model that the leaderboard lists.")
    try:
        result = EvaluationResult.from_json(path)
    except (ValueError, OSError) as exc:
        raise TargetError("committed result", f"{sub.dataset}/{sub.model_id}.json is not a valid result "
                          f"({str(exc).splitlines()[0][:160]})",
                          "Ask a maintainer: the leaderboard is damaged.") from None
    if result.provenance.weights_sha256 != weights_sha256:
        used = str(result.provenance.weights_sha256)[:12]
        raise TargetError("pinned weights", f"the committed result of {sub.model_id} was computed with weights "
                          f"{used}..., not the zoo's pin {weights_sha256[:12]}...",
                          "Ask a maintainer to re-evaluate the model; attack submissions wait for that result.")
    if sub.threat not in result.adversarial:
        raise TargetError("committed result", f"the committed result of {sub.model_id} has no {sub.threat} "
                          f"section (it has: {', '.join(result.adversarial) or 'none'})",
                          "Submit for a threat the leaderboard shows for this model.")
    return result


def _threat(sub: AttackSubmission, proto) -> tuple[str, float]:
    from ..attacks.autoattack import scaled_eps
    from ..data import get_spec

    item = next(t for items in proto["adversarial"]["threats"].values() for t in items if t["label"] == sub.threat)
    return item["norm"], scaled_eps(item["norm"], float(item["eps"]), sub.size, get_spec(sub.dataset))


def load_target(sub: AttackSubmission, proto, *, registry=None, results=None, data_root=None,
                device="cpu") -> AttackTarget:
    """The :class:`AttackTarget` of ``sub`` (``sub.threat`` is a label of ``proto``)."""
    from ..attacks.subset import evaluation_subset
    from ..data import get_spec, load_dataset
    from ..evaluate import prepare_model
    from ..zoo import load_entry_model

    entry, folder = _entry(sub, registry)
    result = _result(sub, results, entry.weights.sha256)
    section = result.adversarial[sub.threat]
    norm, eps = _threat(sub, proto)
    if section.config.norm != norm or abs(section.config.eps - eps) > 1e-12:
        raise TargetError("committed result", f"the committed {sub.threat} section has budget {section.config.norm} "
                          f"{section.config.eps:g}, protocol {proto.version} says {norm} {eps:g}",
                          "Ask a maintainer to re-evaluate the model under the current protocol.")
    try:
        images, labels = load_dataset(sub.dataset, "test", sub.size, data_root)
    except MedbenchError as exc:
        raise TargetError("test split", f"cannot read the {sub.dataset} test split: {exc}",
                          "Make the MedMNIST files available (MEDBENCH_DATA or --data-root).") from None
    labels = np.asarray(labels).reshape(len(images), -1)[:, 0].astype(np.int64)
    subset = evaluation_subset(sub.dataset, labels, proto)
    if section.subset.indices_sha256 != subset.info.indices_sha256 or section.subset.indices is None:
        raise TargetError("committed result", f"the committed {sub.threat} section was computed on another attack "
                          f"subset than protocol {proto.version}'s ({section.subset.indices_sha256[:12]}... vs "
                          f"{subset.info.indices_sha256[:12]}...)",
                          "Ask a maintainer to re-evaluate the model under the current protocol.")
    spec = get_spec(sub.dataset)
    model = prepare_model(load_entry_model(entry, folder=folder, device=device), spec, sub.size, device)
    return AttackTarget(model=model, weights_sha256=entry.weights.sha256, result=result, section=section, norm=norm,
                        eps=eps, num_classes=spec.num_classes, images=np.asarray(images), labels=labels)
