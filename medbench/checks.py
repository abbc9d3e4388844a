"""Admission and sanity checks (PROTOCOL.md section 5), each a small named function returning a
:class:`CheckVerdict` with the measured value.

Admission (a failing model is not ranked; ``benchmark`` raises ``InvalidModelError``):
``deterministic_forward``, ``outputs_are_logits``, ``nonzero_input_gradients``,
``no_autograd_in_forward``, ``buffers_unchanged``, ``input_contract``. They run on the protocol's
evaluation subset. Two more need the clean pass and run after it, before any attack (protocol
section ``admission``): ``predictions_not_constant`` and ``clean_above_chance``.

Sanity (a failing result is flagged "potentially unreliable"): ``eps0_equals_clean``,
``apgd_curve_non_increasing``, ``robust_le_clean``, ``whitebox_beats_square``,
``whitebox_beats_fgsm``, ``whitebox_beats_noise``, ``chance_at_largest_eps``. A sanity check whose
inputs were not computed (e.g. no curves) gives no verdict.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any, Callable

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.modules.batchnorm import _NormBase
from torch.overrides import TorchFunctionMode

from . import metrics as M
from .inference import TwoLogits, to_float
from .schema import CheckVerdict

DETERMINISM_RTOL = 1e-5  # max |logit difference| / max |logit| between two identical passes
PROBABILITY_ATOL = 1e-4  # a row "sums to one" within this
MIN_NONZERO_GRAD_FRACTION = 0.99
INPUT_RANGE_MARGIN = 0.1  # balanced accuracy gain that reveals a model expecting another input range
CHANCE_MARGIN = 0.1
ALTERNATIVE_RANGES: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "[0, 255]": lambda x: x * 255.0,
    "[-1, 1]": lambda x: x * 2.0 - 1.0,
}


def _verdict(name: str, kind: str, passed: bool, value: float | None, threshold: float | None, message: str):
    return CheckVerdict(name=name, kind=kind, passed=bool(passed), value=None if value is None else float(value),
                        threshold=threshold, message=message)


# ----------------------------------------------------------------------------- admission

@dataclass
class Probe:
    """The admission checks' view of the model on the evaluation subset, converted to floats per batch."""

    model: nn.Module
    images: torch.Tensor  # uint8 subset images (CPU)
    targets: np.ndarray  # subset labels
    task: str
    num_classes: int
    batch_size: int
    device: torch.device

    @property
    def batches(self):
        """(x in [0, 1] on the device, y on the device) per batch; converted lazily to bound memory (3D)."""
        for start in range(0, len(self.targets), self.batch_size):
            yield (to_float(self.images[start:start + self.batch_size], self.device),
                   torch.as_tensor(self.targets[start:start + self.batch_size], device=self.device))

    def logits(self, transform: Callable[[torch.Tensor], torch.Tensor] | None = None) -> torch.Tensor:
        with torch.no_grad():
            return torch.cat([self.model(transform(x) if transform else x).float().cpu() for x, _ in self.batches])

    @cached_property
    def native(self) -> torch.Tensor:
        """Logits on the subset as given (one pass, shared by the checks that only read them)."""
        return self.logits()

    @property
    def labels(self) -> np.ndarray:
        return np.asarray(self.targets)


def deterministic_forward(probe: Probe) -> CheckVerdict:
    """Two passes over the same batches give identical logits (no randomised defence)."""
    a, b = probe.native, probe.logits()
    scale = float(a.abs().max().clamp(min=1e-12))
    rel = float((a - b).abs().max() / scale) if torch.isfinite(a).all() and torch.isfinite(b).all() else float("inf")
    same_pred = bool((a.argmax(1) == b.argmax(1)).all())
    ok = rel <= DETERMINISM_RTOL and same_pred
    msg = f"max relative logit difference between two identical passes: {rel:.3g}"
    if not ok:
        msg += (" - the forward pass is randomised (noise, dropout in training mode, random transforms). "
                "Randomised defences need an EOT evaluation that protocol v1 does not run; make forward deterministic.")
    return _verdict("deterministic_forward", "admission", ok, rel, DETERMINISM_RTOL, msg)


def outputs_are_logits(probe: Probe) -> CheckVerdict:
    """Outputs are logits: not every row non-negative and summing to one (softmax outputs)."""
    out = probe.native
    if isinstance(probe.model, TwoLogits):  # single-logit model: its raw output must not look like sigmoid outputs
        raw = out[:, 1]
        frac = float(((raw >= 0) & (raw <= 1)).float().mean())
        what = "single outputs inside [0, 1] (sigmoid probabilities)"
    elif probe.task == M.MULTILABEL:
        frac = float(((out >= 0) & (out <= 1)).all(1).float().mean())
        what = "rows inside [0, 1] (sigmoid probabilities)"
    else:
        frac = float(((out >= 0).all(1) & ((out.sum(1) - 1).abs() <= PROBABILITY_ATOL)).float().mean())
        what = "rows non-negative and summing to one (softmax probabilities)"
    ok = frac < 1.0
    msg = f"fraction of {what}: {frac:.3f}"
    if not ok:
        msg += (" - the model returns probabilities, which flattens the attacks' losses. "
                "Fix: return the logits (drop the final softmax/sigmoid).")
    return _verdict("outputs_are_logits", "admission", ok, frac, 1.0, msg)


def _loss(logits: torch.Tensor, y: torch.Tensor, task: str) -> torch.Tensor:
    if task == M.MULTILABEL:
        return F.binary_cross_entropy_with_logits(logits, y.float(), reduction="sum")
    return F.cross_entropy(logits, y, reduction="sum")


def nonzero_input_gradients(probe: Probe) -> CheckVerdict:
    """The cross-entropy's input gradient is non-zero on at least 99% of the subset (no gradient masking)."""
    nonzero = []
    for x, y in probe.batches:
        x = x.clone().requires_grad_(True)
        with torch.enable_grad():
            (grad,) = torch.autograd.grad(_loss(probe.model(x), y, probe.task), x, allow_unused=True)
        if grad is None:
            nonzero.append(torch.zeros(len(x), dtype=torch.bool))
        else:
            nonzero.append((grad.flatten(1).abs().sum(1) > 0).cpu())
    frac = float(torch.cat(nonzero).float().mean())
    ok = frac >= MIN_NONZERO_GRAD_FRACTION
    msg = f"fraction of subset examples with a non-zero input gradient: {frac:.3f}"
    if not ok:
        msg += (" - gradient-based attacks cannot work (step functions, rounding, argmax or detach in forward): "
                "the robust accuracy would be an illusion. Fix: make forward differentiable in its input.")
    return _verdict("nonzero_input_gradients", "admission", ok, frac, MIN_NONZERO_GRAD_FRACTION, msg)


class _AutogradSpy(TorchFunctionMode):
    """Counts calls of torch.autograd.grad / backward made while the mode is active."""

    NAMES = {"grad", "backward", "Tensor.backward"}

    def __init__(self):
        super().__init__()
        self.calls: list[str] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        name = getattr(func, "__qualname__", getattr(func, "__name__", ""))
        if name in self.NAMES:
            self.calls.append(name)
        return func(*args, **(kwargs or {}))


def no_autograd_in_forward(probe: Probe) -> CheckVerdict:
    """Forward calls neither torch.autograd.grad nor backward (no optimisation loop at inference)."""
    x, _ = next(iter(probe.batches))
    spy = _AutogradSpy()
    for grad_mode in (False, True):  # the harness calls forward under both
        with torch.set_grad_enabled(grad_mode), spy:
            probe.model(x.clone().requires_grad_(grad_mode))
    n = len(spy.calls)
    msg = f"autograd calls inside forward: {n}"
    if n:
        msg += (f" ({', '.join(sorted(set(spy.calls)))}) - forward runs an optimisation or purification loop, "
                "which AutoAttack cannot evaluate (dynamic defence). Such defences need an adaptive attack.")
    return _verdict("no_autograd_in_forward", "admission", n == 0, n, 0, msg)


def _norm_layers_in_batch_mode(model: nn.Module) -> list[str]:
    return [name or type(m).__name__ for name, m in model.named_modules()
            if isinstance(m, _NormBase) and (m.training or not m.track_running_stats)]


def buffers_unchanged(probe: Probe, run: Callable[[], Any]) -> CheckVerdict:
    """``run()`` (the other checks' forward and backward passes) leaves every buffer unchanged, and no
    normalisation layer uses batch statistics."""
    before = {k: v.detach().clone() for k, v in probe.model.named_buffers()}
    try:
        run()
        after = dict(probe.model.named_buffers())
        changed = [k for k, v in before.items() if k not in after or after[k].shape != v.shape
                   or not torch.equal(after[k].detach(), v)]
        batch_mode = _norm_layers_in_batch_mode(probe.model)
    finally:  # leave the model as it was given
        with torch.no_grad():
            for k, v in probe.model.named_buffers():
                if k in before and v.shape == before[k].shape:
                    v.copy_(before[k])
    n = len(changed) + len(batch_mode)
    msg = f"buffers changed by evaluation: {len(changed)}; normalisation layers using batch statistics: {len(batch_mode)}"
    if n:
        names = ", ".join((changed + batch_mode)[:5])
        msg += (f" ({names}) - evaluation changes the model or makes predictions depend on the batch "
                "(BatchNorm in training mode). Fix: keep every layer in eval mode inside forward.")
    return _verdict("buffers_unchanged", "admission", n == 0, n, 0, msg)


def input_contract(probe: Probe) -> CheckVerdict:
    """Finite logits on [0, 1] inputs, and [0, 1] is the range the model works in (not [0, 255] or [-1, 1])."""
    y = probe.labels

    def ba(logits: torch.Tensor) -> float:
        return M.balanced_accuracy(y, M.predictions(M.probabilities(logits, probe.task), probe.task), probe.num_classes)

    native = probe.native
    x0, _ = next(iter(probe.batches))
    with torch.no_grad():  # constant images at both ends of the range (one batch is enough)
        extremes = [probe.model(torch.zeros_like(x0[:8])), probe.model(torch.ones_like(x0[:8]))]
    if not all(torch.isfinite(t).all() for t in [native, *extremes]):
        return _verdict("input_contract", "admission", False, float("inf"), INPUT_RANGE_MARGIN,
                        "non-finite logits on inputs in [0, 1] - the model must accept any float input in [0, 1].")
    base = ba(native)
    gains = {name: ba(probe.logits(f)) - base for name, f in ALTERNATIVE_RANGES.items()}
    worst = max(gains, key=gains.get)
    gain = gains[worst]
    ok = gain <= INPUT_RANGE_MARGIN
    msg = (f"balanced accuracy with inputs in [0, 1]: {base:.3f}; best alternative range {worst}: "
           f"{base + gain:.3f} (gain {gain:+.3f})")
    if not ok:
        msg += (f" - the model expects inputs in {worst}. The contract is float inputs in [0, 1] with "
                "normalisation inside the model. Fix: put the scaling/normalisation in the model's first layer.")
    return _verdict("input_contract", "admission", ok, gain, INPUT_RANGE_MARGIN, msg)


def make_probe(ctx) -> Probe:
    from .attacks.evaluation import attack_batch_size
    from .attacks.subset import evaluation_subset

    subset = evaluation_subset(ctx.spec.name, ctx.labels, ctx.protocol)
    return Probe(ctx.model, ctx.images[torch.as_tensor(subset.indices)], ctx.labels[subset.indices], ctx.spec.task,
                 ctx.spec.num_classes, attack_batch_size(ctx), ctx.device)


def admission_checks(ctx) -> list[CheckVerdict]:
    """Every admission check on the evaluation subset; buffers are compared around all the others."""
    probe = make_probe(ctx)
    verdicts: list[CheckVerdict] = []

    def others():
        for check in (deterministic_forward, outputs_are_logits, nonzero_input_gradients, no_autograd_in_forward,
                      input_contract):
            verdicts.append(check(probe))

    verdicts.append(buffers_unchanged(probe, others))
    order = ["deterministic_forward", "outputs_are_logits", "nonzero_input_gradients", "no_autograd_in_forward",
             "buffers_unchanged", "input_contract"]
    return sorted(verdicts, key=lambda v: order.index(v.name))


# ----------------------------------------------------------------------------- admission after the clean pass

def chance_balanced_accuracy(task: str, num_classes: int) -> float:
    """Balanced accuracy of a constant (or random) predictor: 1/C; 0.5 for binary and multi-label (mean per-label BA)."""
    return 0.5 if task == M.MULTILABEL else 1.0 / num_classes


def predictions_not_constant(clean, task: str, max_fraction: float, class_names: list[str] | None = None) -> CheckVerdict:
    """The most frequent test prediction (a class; for multi-label, a whole label set) covers less than
    ``max_fraction`` of the test split."""
    pred = np.asarray(clean.predictions)
    keys = [tuple(p) for p in pred] if pred.ndim == 2 else pred.tolist()
    values, counts = np.unique(np.asarray(keys), axis=0, return_counts=True)
    top = int(counts.argmax())
    frac = float(counts[top] / len(keys))
    what = "label set" if task == M.MULTILABEL else "class"
    shown = np.asarray(values[top]).tolist()
    if pred.ndim == 1 and class_names:
        shown = f"{shown}: {class_names[shown]}"
    ok = frac < max_fraction
    msg = (f"most frequent predicted {what} ({shown}) covers {frac:.1%} of the "
           f"{len(keys)} test images (limit {max_fraction:.0%})")
    if not ok:
        msg += (" - the model (nearly) always predicts the same thing, so it cannot be attacked and its robust "
                "accuracy would only echo the class balance. Fix: train it until it separates the classes "
                "(e.g. class-balanced loss, more epochs).")
    return _verdict("predictions_not_constant", "admission", ok, frac, max_fraction, msg)


def clean_above_chance(clean, task: str, num_classes: int, margin: float) -> CheckVerdict:
    """The lower end of the clean balanced accuracy's bootstrap CI lies above chance (+ ``margin``)."""
    chance = chance_balanced_accuracy(task, num_classes)
    ci = clean.ci.get("balanced_accuracy")
    low = ci.low if ci is not None else None
    ok = low is not None and low > chance + margin
    level = f"{clean.ci_level:.0%}"
    shown = "undefined" if low is None else f"[{low:.3f}, {ci.high:.3f}]"
    msg = f"clean balanced accuracy {clean.balanced_accuracy:.3f}, {level} CI {shown}; chance {chance:.3f}"
    if not ok:
        msg += (f" - the {level} interval does not lie above chance: the model is not shown to be better than a "
                "constant predictor, so its robustness numbers would mean nothing. Fix: train a model that "
                "beats chance on the clean test split.")
    return _verdict("clean_above_chance", "admission", ok, low, chance + margin, msg)


def clean_verdicts(clean, spec, protocol) -> list[CheckVerdict]:
    """The admission checks on clean metrics (none when the protocol has no ``admission`` section, e.g. v1)."""
    rules = protocol.get("admission")
    if not rules or clean is None:
        return []
    return [predictions_not_constant(clean, spec.task, float(rules["max_majority_fraction"]), list(spec.class_names)),
            clean_above_chance(clean, spec.task, spec.num_classes, float(rules["min_ci_low_above_chance"]))]


def clean_admission_checks(ctx, fields) -> list[CheckVerdict]:
    """The admission checks on the clean pass of a run (``fields``: the result fields computed so far)."""
    return clean_verdicts(fields.get("clean"), ctx.spec, ctx.protocol)


# ----------------------------------------------------------------------------- sanity

def _clean_correct_on_subset(ctx, fields, indices: list[int]) -> np.ndarray | None:
    clean = fields.get("clean")
    if clean is None:
        return None
    pred = np.asarray(clean.predictions)[np.asarray(indices)]
    return pred == ctx.labels[np.asarray(indices)]


def eps0_equals_clean(ctx, fields) -> CheckVerdict | None:
    """At eps = 0 (APGD curve) and before attacking (AutoAttack), predictions equal the clean ones."""
    curves, adv = fields.get("curves"), fields.get("adversarial", {})
    diffs = []
    if curves is not None:
        zero = [p for p in curves.apgd_ce if p.x == 0]
        clean_ok = _clean_correct_on_subset(ctx, fields, curves.subset.indices)
        if zero and zero[0].correct is not None and clean_ok is not None:
            diffs.append(int(np.sum(np.asarray(zero[0].correct) != clean_ok)))
    for result in adv.values():
        clean_ok = _clean_correct_on_subset(ctx, fields, result.subset.indices)
        if clean_ok is not None:
            attacked_ok = np.asarray([b != "clean" for b in result.broken_by])
            diffs.append(int(np.sum(attacked_ok != clean_ok)))
    if not diffs:
        return None
    n = max(diffs)
    msg = f"subset examples whose eps = 0 / pre-attack verdict differs from the clean evaluation: {n}"
    if n:
        msg += " - the attack pipeline does not see the model the clean evaluation saw (preprocessing, mode, batch dependence)."
    return _verdict("eps0_equals_clean", "sanity", n == 0, n, 0, msg)


def apgd_curve_non_increasing(ctx, fields) -> CheckVerdict | None:
    """Balanced accuracy along the APGD-CE curve never increases with eps."""
    curves = fields.get("curves")
    if curves is None or len(curves.apgd_ce) < 2:
        return None
    pts = sorted(curves.apgd_ce, key=lambda p: p.x)
    rise = max(b.balanced_accuracy - a.balanced_accuracy for a, b in zip(pts, pts[1:]))
    rise = max(rise, 0.0)
    ok = rise <= 1e-12
    msg = f"largest increase of APGD-CE balanced accuracy between consecutive eps: {rise:.4f}"
    if not ok:
        msg += " - a larger eps ball should never help the model: the attack is not converging (gradient obfuscation?)."
    return _verdict("apgd_curve_non_increasing", "sanity", ok, rise, 0.0, msg)


def robust_le_clean(ctx, fields) -> CheckVerdict | None:
    """Robust (balanced) accuracy is at most the clean one on the same subset, for every threat."""
    adv = fields.get("adversarial", {})
    if not adv:
        return None
    excess = max(max(r.robust_balanced_accuracy - r.clean_balanced_accuracy, r.robust_accuracy - r.clean_accuracy)
                 for r in adv.values())
    ok = excess <= 1e-12
    msg = f"largest excess of robust over clean (balanced) accuracy: {max(excess, 0):.4f}"
    if not ok:
        msg += " - an attack improved the model: the evaluation is broken."
    return _verdict("robust_le_clean", "sanity", ok, max(excess, 0.0), 0.0, msg)


def whitebox_beats_square(ctx, fields) -> CheckVerdict | None:
    """No point survives the white-box attacks and then falls to the black-box Square attack."""
    adv = [r for r in fields.get("adversarial", {}).values() if "square" in r.config.attacks]
    if not adv:
        return None
    n = sum(r.broken_by.count("square") for r in adv)
    msg = f"points that Square broke after the white-box attacks failed: {n}"
    if n:
        msg += " - gradient-based attacks are being masked; the robust accuracy may be overestimated."
    return _verdict("whitebox_beats_square", "sanity", n == 0, n, 0, msg)


def _whitebox_linf_robust(fields) -> list[tuple[float, np.ndarray]]:
    """(eps, per-example 'still correct') of every Linf white-box result: the APGD curve and AutoAttack."""
    out = []
    curves = fields.get("curves")
    if curves is not None:
        out += [(p.x, np.asarray(p.correct)) for p in curves.apgd_ce if p.correct is not None]
    for r in fields.get("adversarial", {}).values():
        if r.config.norm == "Linf" and (curves is None or r.subset.indices == curves.subset.indices):
            out.append((r.config.eps, np.asarray(r.robust_flags)))
    return out


def whitebox_beats_fgsm(ctx, fields) -> CheckVerdict | None:
    """No point that FGSM breaks at eps survives APGD-CE or AutoAttack at the same (or a larger) eps."""
    curves = fields.get("curves")
    if curves is None:
        return None
    clean_ok = _clean_correct_on_subset(ctx, fields, curves.subset.indices)
    white = _whitebox_linf_robust(fields)
    n = 0
    for p in curves.fgsm:
        if p.correct is None or clean_ok is None:
            continue
        broken = clean_ok & ~np.asarray(p.correct)
        for eps, still in white:
            if eps >= p.x - 1e-12:
                n += int(np.sum(broken & still))
    msg = f"(point, white-box attack) pairs where FGSM broke a point the white-box attack at >= eps missed: {n}"
    if n:
        msg += " - a single gradient step beat the iterative attack: the evaluation is unreliable."
    return _verdict("whitebox_beats_fgsm", "sanity", n == 0, n, 0, msg)


def whitebox_beats_noise(ctx, fields) -> CheckVerdict | None:
    """No point that Gaussian noise breaks from inside a white-box threat's eps ball survives that attack."""
    curves = fields.get("curves")
    if curves is None:
        return None
    clean_ok = _clean_correct_on_subset(ctx, fields, curves.subset.indices)
    if clean_ok is None:
        return None
    balls = [("Linf", eps, still) for eps, still in _whitebox_linf_robust(fields)]
    balls += [("L2", r.config.eps, np.asarray(r.robust_flags)) for r in fields.get("adversarial", {}).values()
              if r.config.norm == "L2" and r.subset.indices == curves.subset.indices]
    n = 0
    for p in curves.noise:
        if p.correct is None:
            continue
        broken = clean_ok & ~np.asarray(p.correct)
        for norm, eps, still in balls:
            size = np.asarray(p.linf_norm if norm == "Linf" else p.l2_norm)
            n += int(np.sum(broken & still & (size <= eps + 1e-9)))
    msg = f"(point, attack) pairs where noise inside the attack's eps ball broke a point the attack missed: {n}"
    if n:
        msg += " - random noise beat a white-box attack inside its own threat model: the evaluation is unreliable."
    return _verdict("whitebox_beats_noise", "sanity", n == 0, n, 0, msg)


def chance_at_largest_eps(ctx, fields) -> CheckVerdict | None:
    """At the largest APGD-CE eps, balanced accuracy is at most chance (1/C) + 0.1."""
    curves = fields.get("curves")
    if curves is None or not curves.apgd_ce:
        return None
    top = max(curves.apgd_ce, key=lambda p: p.x)
    limit = 1.0 / ctx.spec.num_classes + CHANCE_MARGIN
    ok = top.balanced_accuracy <= limit + 1e-12
    msg = f"APGD-CE balanced accuracy at eps {top.x * 255:g}/255: {top.balanced_accuracy:.3f} (limit {limit:.3f})"
    if not ok:
        msg += " - at a large eps any classifier should fall to chance; a model that does not may be masking gradients."
    return _verdict("chance_at_largest_eps", "sanity", ok, top.balanced_accuracy, limit, msg)


SANITY_CHECKS = (eps0_equals_clean, apgd_curve_non_increasing, robust_le_clean, whitebox_beats_square,
                 whitebox_beats_fgsm, whitebox_beats_noise, chance_at_largest_eps)


def sanity_checks(ctx, fields) -> list[CheckVerdict]:
    """Every sanity check whose inputs exist in ``fields`` (the result fields computed so far)."""
    return [v for check in SANITY_CHECKS if (v := check(ctx, fields)) is not None]
