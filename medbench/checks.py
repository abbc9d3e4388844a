"""Admission and sanity checks (PROTOCOL.md section 5), each a small named function returning a
:class:`CheckVerdict` with the measured value.

Admission (a failing model is not ranked; ``benchmark`` raises ``InvalidModelError``):
``deterministic_forward``, ``outputs_are_logits``, ``nonzero_input_gradients``,
``no_autograd_in_forward``, ``buffers_unchanged``, ``input_contract`` and (protocol 3)
``batch_independent``, ``finite_off_grid``. They run on the *standard* protocol's evaluation subset,
whatever a derived protocol changes. More need the clean pass and run after it, before any attack
(protocol section ``admission``): ``majority_false_positive_rate`` (``predictions_not_constant`` for
multi-label tasks and protocol 2), ``clean_above_chance`` and (protocol 3) ``eps0_repredicts_clean``.

Sanity (a failing result is "evaluation unreliable" and not ranked): ``finite_under_attack``,
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
from .schema import CheckVerdict, Interval

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
    indices: np.ndarray  # the subset's positions in the test split

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
    if not (torch.isfinite(a).all() and torch.isfinite(b).all()):
        n = int((~torch.isfinite(a).all(1) | ~torch.isfinite(b).all(1)).sum())
        return _verdict("deterministic_forward", "admission", False, float("inf"), DETERMINISM_RTOL,
                        f"non-finite logits (NaN or inf) on {n} of {len(a)} subset images, so two passes cannot be "
                        "compared - the model must return finite logits for every input in [0, 1]. Fix: guard "
                        "divisions, logarithms and normalisations in forward.")
    scale = float(a.abs().max().clamp(min=1e-12))
    rel = float((a - b).abs().max() / scale)
    same_pred = bool((a.argmax(1) == b.argmax(1)).all())
    ok = rel <= DETERMINISM_RTOL and same_pred
    msg = f"max relative logit difference between two identical passes: {rel:.3g}"
    if not ok:
        msg += (" - the forward pass is randomised (noise, dropout in training mode, random transforms). "
                "Randomised defences need an EOT evaluation that the protocol does not run; make forward "
                "deterministic.")
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
    """The cross-entropy's input gradient is finite and non-zero on at least 99% of the subset (no
    gradient masking); a model whose logits have no autograd path to the input fails with that cause."""
    nonzero, nonfinite = [], 0
    for x, y in probe.batches:
        x = x.clone().requires_grad_(True)
        with torch.enable_grad():
            logits = probe.model(x)
            if not logits.requires_grad:
                return _verdict("nonzero_input_gradients", "admission", False, 0.0, MIN_NONZERO_GRAD_FRACTION,
                                "the logits have no autograd path to the input (argmax, hard labels, detach(), "
                                "NumPy or integer casts inside forward) - gradient-based attacks cannot run, so a "
                                "robust accuracy would be an illusion. Fix: return differentiable logits.")
            (grad,) = torch.autograd.grad(_loss(logits, y, probe.task), x, allow_unused=True)
        if grad is None:
            nonzero.append(torch.zeros(len(x), dtype=torch.bool))
            continue
        finite = torch.isfinite(grad.flatten(1)).all(1).cpu()
        nonfinite += int((~finite).sum())
        nonzero.append(finite & (grad.flatten(1).abs().sum(1) > 0).cpu())
    frac = float(torch.cat(nonzero).float().mean())
    ok = frac >= MIN_NONZERO_GRAD_FRACTION
    msg = f"fraction of subset examples with a finite, non-zero input gradient: {frac:.3f}"
    if nonfinite:
        msg += (f" - {nonfinite} examples have NaN or infinite input gradients (a non-finite loss or an "
                "undefined derivative in forward); attacks cannot follow them. Fix: make forward finite and "
                "differentiable in its input.")
    elif not ok:
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


def batch_independent(probe: Probe, rtol: float, n_alone: int) -> CheckVerdict:
    """Each image's logits do not depend on the rest of its batch: the first ``n_alone`` subset images
    predicted one by one, and every batch predicted again with as many black images appended, give the
    logits of the subset's own batches within ``rtol`` (relative to the largest |logit|)."""
    native = probe.native
    if not torch.isfinite(native).all():
        return _verdict("batch_independent", "admission", False, float("inf"), rtol,
                        "not measured: the logits on the subset are not finite (see input_contract).")
    first = to_float(probe.images[:n_alone], probe.device)
    with torch.no_grad():
        alone = torch.cat([probe.model(first[i:i + 1]).float().cpu() for i in range(len(first))] or [native[:0]])
        padded = torch.cat([probe.model(torch.cat([x, torch.zeros_like(x)])).float().cpu()[:len(x)]
                            for x, _ in probe.batches])
    scale = float(native.abs().max().clamp(min=1e-12))
    diffs = [(alone - native[:len(alone)]).abs().amax(1), (padded - native).abs().amax(1)]
    rel = float(torch.cat(diffs).max()) / scale if len(native) else 0.0
    changed = int(((alone.argmax(1) != native[:len(alone)].argmax(1)).sum()
                   + (padded.argmax(1) != native.argmax(1)).sum()))
    ok = rel <= rtol and changed == 0
    msg = (f"max relative logit difference when an image is predicted alone ({len(alone)} images) or batched with "
           f"black images ({len(native)}): {rel:.3g}; predictions changed: {changed}")
    if not ok:
        msg += (" - predictions depend on the other images of the batch (normalisation by batch statistics, "
                "BatchNorm in training mode, cross-example attention), so an attacker or a different batch size "
                "changes the answer. Fix: compute each example's output from that example alone.")
    return _verdict("batch_independent", "admission", ok, rel, rtol, msg)


def finite_off_grid(probe: Probe, eps: float, seed: int = 0) -> CheckVerdict:
    """Logits stay finite on inputs off the uint8 grid inside the Linf ``eps`` ball of the subset (uniform
    noise): the points every attack visits."""
    gen = torch.Generator().manual_seed(seed)
    bad = n = 0
    with torch.no_grad():
        for x, _ in probe.batches:
            noise = (torch.rand(x.shape, generator=gen) * 2 - 1).to(x.device) * eps
            out = probe.model((x + noise).clamp(0, 1))
            bad += int((~torch.isfinite(out).all(1)).sum())
            n += len(x)
    msg = (f"subset images whose logits are non-finite (NaN or inf) after uniform noise inside the Linf "
           f"{eps * 255:g}/255 ball: {bad} of {n}")
    if bad:
        msg += (" - the model fails off the uint8 grid, exactly where attacks search; NaN logits would count as "
                "a prediction of class 0. Fix: return finite logits for every float input in [0, 1].")
    return _verdict("finite_off_grid", "admission", bad == 0, bad, 0, msg)


def make_probe(ctx) -> Probe:
    """The admission checks' view of ``ctx``: the evaluation subset of the *standard* protocol (a derived
    protocol with a smaller subset gives the same verdicts)."""
    from .attacks.evaluation import attack_batch_size
    from .attacks.subset import evaluation_subset

    indices = np.asarray(evaluation_subset(ctx.spec.name, ctx.labels, ctx.protocol.standard()).indices)
    return Probe(ctx.model, ctx.images[torch.as_tensor(indices)], ctx.labels[indices], ctx.spec.task,
                 ctx.spec.num_classes, attack_batch_size(ctx), ctx.device, indices)


ADMISSION_ORDER = ("deterministic_forward", "outputs_are_logits", "nonzero_input_gradients", "no_autograd_in_forward",
                   "buffers_unchanged", "input_contract", "batch_independent", "finite_off_grid")


def admission_checks(ctx) -> list[CheckVerdict]:
    """Every admission check on the standard protocol's evaluation subset; buffers are compared around all
    the others. Protocols without the version-3 keys (``admission.batch_rtol``) run the version-2 set."""
    probe = make_probe(ctx)
    rules = ctx.protocol.standard().get("admission") or {}
    verdicts: list[CheckVerdict] = []
    extra = []
    if "batch_rtol" in rules:
        extra = [lambda p: batch_independent(p, float(rules["batch_rtol"]), int(rules["batch_alone"])),
                 lambda p: finite_off_grid(p, float(rules["off_grid_eps_255"]) / 255, seed=ctx.seed)]

    def others():
        for check in (deterministic_forward, outputs_are_logits, nonzero_input_gradients, no_autograd_in_forward,
                      input_contract, *extra):
            verdicts.append(check(probe))

    verdicts.append(buffers_unchanged(probe, others))
    return sorted(verdicts, key=lambda v: ADMISSION_ORDER.index(v.name))


# ----------------------------------------------------------------------------- admission after the clean pass

def predictions_not_constant(clean, task: str, max_fraction: float,
                             class_names: list[str] | None = None) -> CheckVerdict:
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


def majority_false_positive_rate(clean, labels: np.ndarray, limit: float,
                                 class_names: list[str] | None = None) -> CheckVerdict:
    """The most frequently predicted class k takes less than ``limit`` of the test images whose label is
    not k (single-label tasks): a model that labels most images of the other classes k is near-constant
    relative to the class balance, whatever the share of k in the test split."""
    pred, y = np.asarray(clean.predictions), np.asarray(labels).reshape(-1)
    top = int(np.bincount(pred).argmax())
    others = y != top
    rate = float(np.mean(pred[others] == top)) if others.any() else 0.0
    name = f"{top}: {class_names[top]}" if class_names else str(top)
    ok = rate < limit
    msg = (f"most frequent predicted class ({name}) is given to {rate:.1%} of the {int(others.sum())} test "
           f"images of the other classes (limit {limit:.0%}); it is {np.mean(pred == top):.1%} of all predictions "
           f"and {np.mean(y == top):.1%} of the labels")
    if not ok:
        msg += (" - the model labels most images of the other classes as this one, so its robust accuracy would "
                "echo the class balance (a biased output layer is enough). Fix: train it to separate the classes "
                "(class-balanced loss, threshold or bias calibrated on the validation split).")
    return _verdict("majority_false_positive_rate", "admission", ok, rate, limit, msg)


def chance_balanced_accuracy(task: str, num_classes: int) -> float:
    """Balanced accuracy of a constant (or random) predictor: 1/C; 0.5 for binary and multi-label
    (mean per-label BA)."""
    return 0.5 if task == M.MULTILABEL else 1.0 / num_classes


def clean_above_chance(clean, task: str, num_classes: int, margin: float) -> CheckVerdict:
    """The lower end of the clean balanced accuracy's bootstrap CI lies above chance + ``margin``."""
    chance = chance_balanced_accuracy(task, num_classes)
    ci = clean.ci.get("balanced_accuracy")
    low = ci.low if ci is not None else None
    ok = low is not None and low > chance + margin
    level = f"{clean.ci_level:.0%}"
    shown = "undefined" if low is None else f"[{low:.3f}, {ci.high:.3f}]"
    bar = f"chance {chance:.3f}" + (f", bar chance + {margin:g} = {chance + margin:.3f}" if margin else "")
    msg = f"clean balanced accuracy {clean.balanced_accuracy:.3f}, {level} CI {shown}; {bar}"
    if not ok:
        what = "above chance" if not margin else f"at least {margin:g} above chance"
        msg += (f" - the {level} interval does not lie {what}: the model is not shown to classify better than a "
                "constant predictor, so its robustness numbers would mean nothing. Fix: train a model that "
                "beats chance clearly on the clean test split.")
    return _verdict("clean_above_chance", "admission", ok, low, chance + margin, msg)


def clean_verdicts(clean, spec, protocol, labels: np.ndarray | None = None) -> list[CheckVerdict]:
    """The admission rule on clean metrics (``clean``: a ``CleanMetrics``; ``labels``: the test labels, needed
    by protocols from version 3 on). Empty for protocols without an ``admission`` section (version 1)."""
    rules = protocol.get("admission")
    if not rules or clean is None:
        return []
    names = list(spec.class_names)
    out = []
    if "max_majority_false_positive_rate" in rules and spec.task != M.MULTILABEL:
        if labels is None:
            raise ValueError(f"protocol {protocol.version}'s admission rule needs the test labels")
        out.append(majority_false_positive_rate(clean, labels, float(rules["max_majority_false_positive_rate"]), names))
    else:
        out.append(predictions_not_constant(clean, spec.task, float(rules["max_majority_fraction"]), names))
    out.append(clean_above_chance(clean, spec.task, spec.num_classes, float(rules["min_ci_low_above_chance"])))
    return out


def eps0_repredicts_clean(ctx, clean) -> CheckVerdict:
    """The evaluation subset, predicted again in the attacks' batches (in subset order: other batch
    compositions than the clean pass over the whole split), gives the clean predictions (eps = 0)."""
    probe = make_probe(ctx)
    again = M.predictions(M.probabilities(probe.native, ctx.spec.task), ctx.spec.task)
    before = np.asarray(clean.predictions)[probe.indices]
    differ = int(np.sum((again != before).reshape(len(before), -1).any(1)))
    msg = f"subset images whose prediction through the attacks' batches (eps = 0) differs from the clean pass: {differ}"
    if differ:
        msg += (" - the model answers differently for the same image depending on how it is batched or what "
                "precedes it (batch statistics, state kept between calls), so attacks would not measure the "
                "model the clean pass measured. Fix: make each example's output depend on that example only.")
    return _verdict("eps0_repredicts_clean", "admission", differ == 0, differ, 0, msg)


def _with_standard_interval(clean, task: str, num_classes: int, labels: np.ndarray, standard):
    """``clean`` with its balanced-accuracy interval drawn under the standard protocol's bootstrap settings
    (a derived protocol may draw fewer resamples; the admission rule is the standard one)."""
    want = standard["clean"]
    settings = (want["bootstrap_resamples"], want["bootstrap_seed"], want["ci_level"])
    if clean is None or task == M.MULTILABEL or settings == (clean.bootstrap_resamples, clean.bootstrap_seed,
                                                             clean.ci_level):
        return clean
    ci = M.bootstrap_metric_ci(np.asarray(labels).reshape(-1), np.asarray(clean.predictions), num_classes,
                               n_resamples=settings[0], seed=settings[1], level=settings[2])
    interval = Interval(low=None if np.isnan(ci.low) else float(ci.low), high=None if np.isnan(ci.high) else float(ci.high))
    return clean.model_copy(update={"ci": {**clean.ci, "balanced_accuracy": interval}, "ci_level": settings[2],
                                    "bootstrap_resamples": settings[0], "bootstrap_seed": settings[1]})


def clean_admission_checks(ctx, fields) -> list[CheckVerdict]:
    """The admission checks on the clean pass of a run (``fields``: the result fields computed so far), under
    the standard protocol whatever a derived one changed (its split, subset and bootstrap settings)."""
    clean, standard = fields.get("clean"), ctx.protocol.standard()
    verdicts = clean_verdicts(_with_standard_interval(clean, ctx.spec.task, ctx.spec.num_classes, ctx.labels,
                                                      standard), ctx.spec, standard, ctx.labels)
    if clean is not None and "batch_rtol" in (standard.get("admission") or {}):
        verdicts.append(eps0_repredicts_clean(ctx, clean))
    return verdicts


# ----------------------------------------------------------------------------- sanity

def _clean_correct_on_subset(ctx, fields, indices: list[int]) -> np.ndarray | None:
    clean = fields.get("clean")
    if clean is None:
        return None
    pred = np.asarray(clean.predictions)[np.asarray(indices)]
    return pred == ctx.labels[np.asarray(indices)]


def finite_under_attack(ctx, fields) -> CheckVerdict | None:
    """The model's outputs stayed finite during every attack and curve point (no NaN / inf logits, which
    would otherwise count as a prediction of class 0). No verdict for sections that did not count."""
    counts = {label: r.nonfinite_outputs for label, r in fields.get("adversarial", {}).items()}
    curves = fields.get("curves")
    if curves is not None:
        counts["curves"] = curves.nonfinite_outputs
    counts = {k: v for k, v in counts.items() if v is not None}
    if not counts:
        return None
    n = sum(counts.values())
    msg = f"non-finite (NaN or inf) output rows met during the attacks: {n}"
    if n:
        where = ", ".join(f"{k}: {v}" for k, v in counts.items() if v)
        msg += (f" ({where}) - the model returns NaN or inf on perturbed inputs, so its robust accuracy is not "
                "measured but produced by the failure (NaN logits count as class 0). The result is not ranked. "
                "Fix: return finite logits for every float input in [0, 1].")
    return _verdict("finite_under_attack", "sanity", n == 0, n, 0, msg)


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
    if curves is None or not curves.fgsm:
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
    if curves is None or not curves.noise:  # (the lite track runs no noise points: no verdict, not a pass)
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


SANITY_CHECKS = (finite_under_attack, apgd_curve_non_increasing, robust_le_clean, whitebox_beats_square,
                 whitebox_beats_fgsm, whitebox_beats_noise, chance_at_largest_eps)


def sanity_checks(ctx, fields) -> list[CheckVerdict]:
    """Every sanity check whose inputs exist in ``fields`` (the result fields computed so far)."""
    return [v for check in SANITY_CHECKS if (v := check(ctx, fields)) is not None]
