"""Admission checks on the loaded model, and re-measurement of the claimed numbers (``--reproduce``).

Tolerances (issue 8): clean numbers on the full test split within ``CLEAN_TOLERANCE`` (0.5 points);
the claimed robust balanced accuracy (measured by the authors under the full protocol) must lie in
the 95% bootstrap interval of the robust balanced accuracy re-measured on a small stratified subset.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace
from pathlib import Path

import torch
from torch import nn

from ..data import get_spec, load_dataset
from ..errors import InvalidModelError
from ..evaluate import EvalContext, benchmark, prepare_model
from ..inference import default_batch_size
from ..paths import data_root as resolve_data_root
from ..protocol import Protocol
from .report import Report
from .schema import Submission

CLEAN_TOLERANCE = 0.005  # 0.5 percentage points


@dataclass(frozen=True)
class ReproduceSettings:
    """How much of the adversarial protocol ``--reproduce`` runs (CI budget on a CPU)."""

    subset_size: int = 200
    n_iter: int | None = None  # None: the protocol's (100)
    square_queries: int | None = None  # None: the protocol's (5000)


def threat_labels(protocol: Protocol) -> dict[str, list[str]]:
    """Dataset -> the protocol threat labels it has an adversarial track for."""
    from ..attacks.autoattack import UnsupportedTaskError, check_supported
    from ..data import DATASETS

    out = {}
    for name, spec in DATASETS.items():
        labels = []
        for norm, items in protocol["adversarial"]["threats"].items():
            try:
                check_supported(spec, norm, protocol)
            except UnsupportedTaskError:
                continue
            labels += [t["label"] for t in items]
        out[name] = labels
    return out


def check_admission(report: Report, model: nn.Module, sub: Submission, protocol: Protocol, *,
                    data_root: str | Path | None = None, device: str | None = None) -> nn.Module | None:
    """Input contract + the protocol's admission checks (PROTOCOL.md section 5); the prepared model or None."""
    from ..checks import admission_checks

    spec = get_spec(sub.dataset)
    dev = torch.device(device or "cpu")
    try:
        net = prepare_model(model, spec, sub.size, dev)
    except InvalidModelError as exc:
        dims = "3D" if spec.is_3d else "2D"
        shape = " x ".join([str(spec.n_channels)] + [str(sub.size)] * (3 if spec.is_3d else 2))
        report.add("admission", "input and output shape", False, str(exc),
                   fix=f"{sub.dataset} needs a {dims} model (architecture_kwargs dims: {dims[0]} where the builder has "
                       f"dims) taking N x {shape} inputs in [0, 1] and returning N x {spec.num_classes} logits.")
        return None
    report.add("admission", "input and output shape", True,
               f"takes {spec.n_channels}-channel {sub.size}-px inputs, returns {spec.num_classes} logits")
    split = load_dataset(spec.name, "test", sub.size, data_root)
    ctx = EvalContext(model=net, spec=spec, split=split, size=sub.size, device=dev,
                      batch_size=default_batch_size(spec.input_shape(sub.size), dev), seed=0, protocol=protocol,
                      data_root=resolve_data_root(data_root), progress=False)
    verdicts = admission_checks(ctx)
    if not verdicts:
        report.skip("admission", "admission checks", "medbench.checks returned no verdicts")
    for v in verdicts:
        report.add("admission", v.name, v.passed, v.message,
                   fix=f"{v.message} Admission rules: submissions/README.md and PROTOCOL.md section 5.")
    return net if all(v.passed for v in verdicts) else None


def reproduce_protocol(protocol: Protocol, sub: Submission, settings: ReproduceSettings) -> Protocol:
    """The protocol reduced to the claimed threat on a small subset (marked ``+custom``)."""
    changes: dict = {"adversarial.subset_size": settings.subset_size}
    if settings.n_iter is not None:
        changes["adversarial.n_iter"] = settings.n_iter
    if settings.square_queries is not None:
        changes["adversarial.square_queries"] = settings.square_queries
    threat = sub.claimed.threat
    if threat is not None:
        threats = protocol["adversarial"]["threats"]
        changes["adversarial.threats"] = {norm: [t for t in items if t["label"] == threat]
                                          for norm, items in threats.items() if any(t["label"] == threat for t in items)}
    return protocol.derive(**changes)


def check_reproduce(report: Report, model: nn.Module, sub: Submission, protocol: Protocol,
                    settings: ReproduceSettings = ReproduceSettings(), *, data_root: str | Path | None = None,
                    device: str | None = None):
    """Re-measure the claimed numbers and compare; returns the reduced-protocol EvaluationResult."""
    proto = reproduce_protocol(protocol, sub, settings)
    c = sub.claimed
    norms = list(proto["adversarial"]["threats"]) if c.threat else []
    result = benchmark(model, sub.dataset, threats=["clean", *norms], size=sub.size, device=device or "cpu",
                       data_root=data_root, protocol=proto, model_id=sub.id, weights_sha256=sub.weights.sha256,
                       checks=False, progress=False)
    clean = result.clean
    for name, claimed, measured in (("clean balanced accuracy", c.clean_balanced_accuracy, clean.balanced_accuracy),
                                    ("clean accuracy", c.clean_accuracy, clean.accuracy),
                                    ("clean AUC", c.clean_auc, clean.auc)):
        if claimed is None:
            continue
        if measured is None:
            report.add("reproduce", name, False, f"claimed {claimed:.4f} but it is undefined on this test split",
                       fix=f"Remove claimed {name}.", claimed=claimed)
            continue
        diff = measured - claimed
        report.add("reproduce", name, abs(diff) <= CLEAN_TOLERANCE,
                   f"measured {measured:.4f} on the full test split (n={clean.n}), claimed {claimed:.4f}: "
                   f"difference {100 * diff:+.2f} points (tolerance ±{100 * CLEAN_TOLERANCE:.1f})",
                   fix=f"Claim the number measured by `medbench evaluate` on the test split ({measured:.4f}); "
                       "if it differs from your own evaluation, check preprocessing (mean/std inside the model, "
                       "inputs in [0, 1]) and the exact weights file.",
                   measured=measured, claimed=claimed)
    from ..checks import clean_verdicts, sanity_checks  # admission on the clean pass (accept would refuse the model)

    spec = get_spec(sub.dataset)
    labels = load_dataset(spec.name, "test", sub.size, data_root).labels
    for v in clean_verdicts(clean, spec, protocol.standard(), labels):
        report.add("admission", v.name, v.passed, v.message,
                   fix=f"{v.message} Admission rules: submissions/README.md and the README's checks section.")
    if c.threat is not None:
        adv = result.adversarial[c.threat]
        ci = adv.robust_balanced_accuracy_ci
        ok = ci is not None and ci.low is not None and ci.low <= c.robust_balanced_accuracy <= ci.high
        interval = f"[{ci.low:.4f}, {ci.high:.4f}]" if ci is not None and ci.low is not None else "undefined"
        report.add("reproduce", f"robust balanced accuracy ({c.threat})", ok,
                   f"measured {adv.robust_balanced_accuracy:.4f} on {_where(adv.subset)} "
                   f"({', '.join(adv.config.attacks)}, {adv.config.n_iter} iterations), 95% bootstrap CI {interval}; "
                   f"claimed {c.robust_balanced_accuracy:.4f}",
                   fix="The claimed robust balanced accuracy lies outside the re-measured interval: claim the "
                       "number AutoAttack measures under the protocol (`medbench evaluate MODEL --threats Linf`); "
                       "defences that only mask gradients are not admitted.",
                   measured=adv.robust_balanced_accuracy, claimed=c.robust_balanced_accuracy)
    # a result whose evaluation fails a sanity check (e.g. Square beats the white-box attacks) is not ranked
    ctx = SimpleNamespace(spec=spec, labels=labels, size=sub.size, protocol=proto)
    for v in sanity_checks(ctx, {"clean": clean, "adversarial": result.adversarial, "curves": result.curves}):
        report.add("sanity", v.name, v.passed, v.message,
                   fix=f"{v.message} The evaluation of this model is unreliable, so it would not be ranked; a "
                       "defence that masks gradients needs an adaptive attack (Carlini et al. 2019).")
    adv_note = f"; adversarial: {_where(next(iter(result.adversarial.values())).subset)}" if result.adversarial else ""
    report.notes.append(f"Reproduction used protocol {proto.version} (clean: the full test split{adv_note}); the "
                        "leaderboard numbers come from the full protocol run after merge.")
    return result


def _where(subset) -> str:
    if subset.whole_split:
        return f"the whole test split ({subset.n} images)"
    return f"a stratified subset of {subset.n} test images (seed {subset.seed})"
