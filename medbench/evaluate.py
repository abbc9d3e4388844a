"""``benchmark()``: run the protocol on one model and return an :class:`EvaluationResult`.

Each threat is a runner ``run(ctx) -> dict`` returning the result fields it fills; runners live in
the module that owns the threat (see ``THREAT_RUNNERS``). ``benchmark()`` is the matrix's engine run
in process: each stage is a cell computed by :func:`medbench.engine.compute_payload`, and the result
is assembled from the cells by :func:`medbench.matrix.assemble.assemble`, exactly as ``medbench run``
builds it. With ``out=...`` the cells are kept in a store beside the output (``<out>.cells/``) until
the result is written: a re-run with the same path continues, attacks from their last checkpoint.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import inspect
import os
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import torch
from torch import nn

from . import metrics as M
from .data import DatasetSpec, Split, get_spec, load_dataset
from .engine import ATTACK_KINDS as ATTACK_THREATS, compute_payload, decode_fields
from .errors import InvalidModelError
from .inference import TwoLogits, default_batch_size, default_device, predict_logits
from .matrix.assemble import assemble, not_admitted, skip_message
from .matrix.cells import CELL_FORMAT, cell_id, code_version
from .matrix.store import Store
from .paths import data_root as resolve_data_root
from .protocol import CURRENT_VERSION, Protocol, load_protocol
from .schema import CleanMetrics, EvaluationResult, Interval

# threat name -> "module:function". A runner takes an EvalContext and returns result fields.
THREAT_RUNNERS: dict[str, str] = {
    "clean": "medbench.evaluate:run_clean",
    "corruptions": "medbench.corruptions.evaluation:run",
    "Linf": "medbench.attacks.evaluation:run_linf",
    "L2": "medbench.attacks.evaluation:run_l2",
    "curves": "medbench.attacks.evaluation:run_curves",
}
ALL_THREATS = tuple(THREAT_RUNNERS)


@dataclass
class EvalContext:
    """What a threat runner needs: the model, the test split and the protocol, already resolved."""

    model: nn.Module
    spec: DatasetSpec
    split: Split
    size: int
    device: torch.device
    batch_size: int
    seed: int
    protocol: Protocol
    data_root: Path
    state_dir: Path | None = None  # where a runner may keep resumable partial work (None: not resumable)
    progress: bool = True
    reference: EvaluationResult | None = None  # reference model's result (for BE / rBE)
    model_id: str | None = None  # the model's id, when it has one (the pinned reference is its own reference)
    results: dict[str, Any] = field(default_factory=dict)  # fields filled so far (runners may read them)
    # stage -> {"wall": s, "cpu": s}, filled by runners with inner stages (AutoAttack attacks, curve points)
    stage_times: dict[str, dict[str, float]] = field(default_factory=dict)

    @property
    def images(self) -> torch.Tensor:
        return self.split.images

    @property
    def labels(self) -> np.ndarray:
        return self.split.labels


def resolve_runner(threat: str):
    """The threat runner ``run(ctx) -> result fields`` of ``threat`` (see ``THREAT_RUNNERS``)."""
    if threat not in THREAT_RUNNERS:
        raise ValueError(f"Unknown threat {threat!r}; choose from {', '.join(ALL_THREATS)}.")
    module, func = THREAT_RUNNERS[threat].split(":")
    return getattr(importlib.import_module(module), func)


def _runs_with_autograd(model: nn.Module, probe: torch.Tensor) -> bool:
    try:
        with torch.enable_grad():
            model(probe.clone().requires_grad_(True))
    except Exception:
        return False
    return True


PROBE_BATCH = 2  # images in the input-contract probe (one image hides batch/volume confusions)
_LAYERS_3D = (nn.Conv3d, nn.BatchNorm3d, nn.MaxPool3d, nn.AvgPool3d, nn.AdaptiveAvgPool3d, nn.ConvTranspose3d)
_LAYERS_2D = (nn.Conv2d, nn.BatchNorm2d, nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.ConvTranspose2d)


def _dims_problem(model: nn.Module, spec: DatasetSpec) -> str:
    """'The model is 3D ... but X is 2D. ' when its layers say so (the usual cause of a failed probe), else ''."""
    modules = list(model.modules())
    dims = 3 if any(isinstance(m, _LAYERS_3D) for m in modules) else 2 if any(isinstance(m, _LAYERS_2D)
                                                                                for m in modules) else None
    want = 3 if spec.is_3d else 2
    if dims is None or dims == want:
        return ""
    return (f"The model is {dims}D (it has {dims}D convolution/pooling layers) but {spec.name} is {want}D "
            f"(inputs N x C{' x D' if want == 3 else ''} x H x W). ")


def prepare_model(model: nn.Module, spec: DatasetSpec, size: int, device: torch.device) -> nn.Module:
    """Check the input/output contract on a batch and wrap single-logit binary models as two logits.

    The probe is a batch of ``PROBE_BATCH`` different images of the dataset's shape: with one image, a
    3D model on a 2D dataset can pass (torch reads the batch as an unbatched volume) and fail later.
    """
    model = model.to(device).eval()
    shape = (PROBE_BATCH, *spec.input_shape(size))
    probe = torch.rand(shape, generator=torch.Generator().manual_seed(0)).to(device)
    try:
        # no_grad rather than inference_mode: a forward that needs autograd must reach the clear message
        # below (or the no_autograd_in_forward admission check), not a confusing shape complaint.
        with torch.no_grad():
            out = model(probe)
    except Exception as exc:
        if _runs_with_autograd(model, probe):
            raise InvalidModelError(
                f"The model's forward fails without gradients ({type(exc).__name__}: {exc}) but runs with them: "
                "it uses autograd inside forward (an optimisation or purification loop). medbench runs inference "
                "under torch.no_grad, and AutoAttack cannot evaluate such dynamic defences (admission rule "
                "no_autograd_in_forward). Fix: make forward a plain differentiable function of its input."
            ) from exc
        raise InvalidModelError(
            f"{_dims_problem(model, spec)}The model failed on a batch of shape {tuple(probe.shape)} ({spec.name} at "
            f"size {size}: {spec.n_channels} channel(s), float in [0, 1]): {type(exc).__name__}: {exc}. "
            "Fix: build the model for this dataset's channels, size and dimensionality."
        ) from exc
    if not isinstance(out, torch.Tensor) or out.ndim != 2 or out.shape[0] != PROBE_BATCH:
        got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise InvalidModelError(f"{_dims_problem(model, spec)}The model must return logits of shape N x K; for a "
                                f"batch of {PROBE_BATCH} it returned {got}.")
    k = out.shape[1]
    if k == 1 and spec.task == "binary-class":
        return TwoLogits(model).eval()
    if k != spec.num_classes:
        raise InvalidModelError(
            f"The model returns {k} logits but {spec.name} has {spec.num_classes} "
            f"{'labels' if spec.is_multilabel else 'classes'} ({', '.join(spec.class_names)}). "
            "Fix: set num_classes to match the dataset."
        )
    return model


def run_clean(ctx: EvalContext) -> dict[str, Any]:
    """Clean metrics on the full test split, with percentile bootstrap CIs."""
    clean = ctx.protocol["clean"]
    logits = predict_logits(ctx.model, ctx.images, batch_size=ctx.batch_size, device=ctx.device,
                            progress=ctx.progress, desc=f"clean {ctx.spec.name}")
    probs = M.probabilities(logits, ctx.spec.task)
    m = M.compute_metrics(ctx.labels, probs, ctx.spec.task)
    cis = M.bootstrap_ci(ctx.labels, probs, ctx.spec.task, n_resamples=clean["bootstrap_resamples"],
                         seed=clean["bootstrap_seed"], level=clean["ci_level"])
    return {"clean": CleanMetrics(
        n=m.n,
        accuracy=m.accuracy,
        balanced_accuracy=m.balanced_accuracy,
        auc=None if np.isnan(m.auc) else m.auc,
        per_class_recall={name: (None if np.isnan(r) else r)
                          for name, r in zip(ctx.spec.class_names, m.per_class_recall)},
        ci={k: Interval(low=_finite(v.low), high=_finite(v.high)) for k, v in cis.items()},
        ci_level=clean["ci_level"],
        bootstrap_resamples=clean["bootstrap_resamples"],
        bootstrap_seed=clean["bootstrap_seed"],
        predictions=M.predictions(probs, ctx.spec.task).tolist(),
        calibration=clean_calibration(ctx, logits),
    )}


def calibration_options(ctx: EvalContext) -> dict[str, Any] | None:
    """``calibration_summary`` keywords from the protocol (its ``calibration`` block, the clean bootstrap); None
    when the protocol measures no calibration (versions before 4)."""
    cal, clean = ctx.protocol.get("calibration"), ctx.protocol["clean"]
    if not cal:
        return None
    return dict(n_bins=cal["bins"], coverage=cal["coverage"], seed=clean["bootstrap_seed"],
                n_resamples=clean["bootstrap_resamples"], level=clean["ci_level"])


def clean_calibration(ctx: EvalContext, logits: np.ndarray):
    """Calibration on the test split, with the temperature fitted on the protocol's temperature split (one more
    forward pass over it); None when the protocol measures none."""
    from .calibration import calibration_summary

    options = calibration_options(ctx)
    if options is None:
        return None
    fit = load_dataset(ctx.spec.name, ctx.protocol["calibration"]["temperature_split"], ctx.size, ctx.data_root)
    fit_logits = predict_logits(ctx.model, fit.images, batch_size=ctx.batch_size, device=ctx.device,
                                progress=ctx.progress, desc=f"temperature fit {ctx.spec.name}")
    return calibration_summary(ctx.labels, logits, ctx.spec.task, val_logits=fit_logits, val_labels=fit.labels,
                               **options)


def fitted_temperature(ctx: EvalContext) -> tuple[float, int] | None:
    """(T, examples it was fitted on) of the clean pass's temperature scaling, when the run has one."""
    clean = ctx.results.get("clean")
    scaled = clean.calibration.temperature_scaled if clean is not None and clean.calibration else None
    return None if scaled is None else (scaled.temperature, scaled.n_fit)


def _finite(x: float) -> float | None:
    return None if x is None or np.isnan(x) else float(x)


def protocol_threats(spec: DatasetSpec, protocol: Protocol) -> list[str]:
    """The threats ``protocol`` defines for ``spec``: no L2 track for 3D data, no adversarial track
    (Linf, L2, curves) for multi-label or excluded datasets."""
    from .attacks.autoattack import UnsupportedTaskError, check_supported

    out = []
    for threat in protocol.get("threats") or ALL_THREATS:  # the lite track lists its own (clean, Linf)
        norm = {"Linf": "Linf", "L2": "L2", "curves": "Linf"}.get(threat)
        if norm is not None:
            try:
                check_supported(spec, norm, protocol)
            except UnsupportedTaskError:
                continue
        out.append(threat)
    return out


def normalise_threats(threats: str | Iterable[str], spec: DatasetSpec, protocol: Protocol) -> list[str]:
    """``threats`` (names, comma lists, ``all``) as the protocol's threat names, clean first; an unknown name or
    one the protocol does not define raises ``ValueError`` saying which exist."""
    items = [threats] if isinstance(threats, str) else list(threats)
    out: list[str] = []
    for item in items:
        for t in str(item).split(","):
            t = t.strip()
            if t == "all":
                out.extend(protocol_threats(spec, protocol))
            elif t:
                match = {k.lower(): k for k in THREAT_RUNNERS}.get(t.lower())
                if match is None:
                    raise ValueError(f"Unknown threat {t!r}; choose from {', '.join(ALL_THREATS)} or 'all'.")
                defined = protocol.get("threats") or ALL_THREATS
                if match not in defined:
                    raise ValueError(f"Threat {match!r} is not part of protocol {protocol.version} ({protocol.track} "
                                     f"track), which evaluates {', '.join(defined)}. Fix: choose from those, or "
                                     "evaluate on the full track.")
                out.append(match)
    # clean always runs first: relative robustness, the admission checks on the clean pass and the
    # sanity checks need its numbers
    return ["clean"] + [t for t in dict.fromkeys(out) if t != "clean"]


def benchmark(
    model: nn.Module | str,
    dataset: str,
    *,
    threats: str | Iterable[str] = ("clean",),
    size: int = 28,
    device: str | torch.device | None = None,
    batch_size: int | None = None,
    data_root: str | os.PathLike | None = None,
    seed: int = 0,
    protocol: Protocol | str | None = None,
    model_id: str | None = None,
    weights_sha256: str | None = None,
    out: str | os.PathLike | None = None,
    reference: EvaluationResult | str | os.PathLike | None = None,
    checks: bool = True,
    allow_unranked: bool = False,
    progress: bool = True,
    reuse: EvaluationResult | str | os.PathLike | None = None,
) -> EvaluationResult:
    """Evaluate ``model`` on the test split of ``dataset`` under the benchmark protocol.

    ``model`` is an ``nn.Module`` taking [0, 1] inputs and returning logits, or a zoo model id.
    ``model_id`` names it in tables and figures (default: the zoo id, a ``model_id`` attribute
    of the module (set by ``load_model``), else the module's class name).
    ``threats``: any of ``clean``, ``corruptions``, ``Linf``, ``L2``, ``curves``, or ``all`` (every
    threat the protocol defines for the dataset: no L2 for 3D, no attacks for ChestMNIST); clean is
    always included. With ``out``, the result JSON is written there and the run is
    resumable: finished cells are kept in ``<out>.cells/`` until the run completes.
    ``reuse``: an earlier result (object or JSON path) of the same weights on the same data whose
    attack sections (Linf, L2, curves) are carried over when they were computed exactly as this run
    would compute them (see ``medbench.reuse``); recorded in ``provenance.reused``.

    A model that fails an admission check (including the ones on the clean pass: near-constant
    predictions, clean balanced accuracy not above chance) raises ``InvalidModelError``; with
    ``allow_unranked=True`` its result is computed anyway, marked not admitted (never ranked), and
    its attack stages (Linf, L2, curves) are skipped and listed in ``result.skipped``.
    """
    spec = get_spec(dataset)
    spec.check_size(size)
    proto = protocol if isinstance(protocol, Protocol) else load_protocol(protocol or CURRENT_VERSION)
    threat_list = normalise_threats(threats, spec, proto)
    dev = torch.device(device) if device is not None else default_device()

    if isinstance(model, str):
        from .zoo import get_entry, load_model

        entry = get_entry(model, spec.name)
        model_id = model_id or entry.id
        weights_sha256 = weights_sha256 or entry.weights.sha256
        model = load_model(entry.id, spec.name, device=str(dev))
    if isinstance(reference, (str, os.PathLike)):
        reference = EvaluationResult.from_json(reference)
    if reference is not None and "corruptions" in threat_list:  # fail before any work, not after the clean pass
        from .corruptions.evaluation import check_reference

        check_reference(reference, spec.name, proto)

    split = load_dataset(spec.name, "test", size, data_root)
    net = prepare_model(model, spec, size, dev)
    ctx = EvalContext(
        model=net, spec=spec, split=split, size=size, device=dev,
        batch_size=batch_size or default_batch_size(spec.input_shape(size), dev),
        seed=seed, protocol=proto, data_root=resolve_data_root(data_root), progress=progress,
        reference=reference, model_id=model_id,
    )
    # the cells of this run, kept beside ``out`` until the result is written: the run's resume state
    store = Store(Path(str(out) + ".cells")) if out is not None else None
    cells = _Cells(ctx, store, weights_sha256, reference, checks)
    if reuse is not None and progress:
        from .reuse import reusable_sections

        _, notes = reusable_sections(reuse, ctx, [t for t in threat_list if t in ATTACK_THREATS], weights_sha256)
        for note in notes:
            print(f"not reused, recomputing {note}", file=sys.stderr)

    if checks:
        cells.get("admission")
        _refuse_unless_allowed(cells.failed_admission(), allow_unranked)
    for threat in threat_list:
        if threat in ATTACK_THREATS and (failed := cells.failed_admission()):
            print(f"medbench: skipping {threat}: {skip_message(failed)}", file=sys.stderr, flush=True)
            continue
        payload = cells.get(threat, reuse=reuse if threat in ATTACK_THREATS else None)
        if payload["reused"] is not None and progress:
            print(f"{threat}: reused from the earlier result (protocol {payload['reused']['from_protocol_version']})",
                  file=sys.stderr)
        if threat == "clean" and checks:  # admission on the clean pass: before any attack
            _refuse_unless_allowed(cells.failed_admission(), allow_unranked)

    result = assemble(model_id or _model_name(model), spec, split, threat_list, cells.payloads, seed=seed,
                      protocol=proto, weights_sha256=weights_sha256, checks=checks)
    if out is not None:
        result.to_json(out)
        shutil.rmtree(store.root, ignore_errors=True)
    return result


class _Cells:
    """The cells of one ``benchmark()`` run: keyed like the matrix's (what the numbers depend on, the code
    version), computed in this process by :func:`medbench.engine.compute_payload`, kept in ``store``."""

    def __init__(self, ctx: EvalContext, store: Store | None, weights_sha256: str | None, reference, checks: bool):
        self.ctx, self.store, self.checks = ctx, store, checks
        self.payloads: dict[str, dict[str, Any]] = {}
        self.weights_sha256 = weights_sha256
        ref = None if reference is None else hashlib.sha256(reference.to_json().encode()).hexdigest()
        self.base = {"format": CELL_FORMAT, "model": module_identity(ctx.model, weights_sha256),
                     "model_id": ctx.model_id, "dataset": ctx.spec.name, "size": ctx.size,
                     "data_md5": ctx.split.md5, "seed": ctx.seed,
                     "protocol": {"version": ctx.protocol.version, "sha256": ctx.protocol.sha256()},
                     "device": ctx.device.type, "batch_size": ctx.batch_size, "reference_sha256": ref}

    def get(self, kind: str, reuse=None) -> dict[str, Any]:
        depends = {"clean": self.payloads["clean"]["id"]} if kind not in ("admission", "clean") else {}
        key = {**self.base, "kind": kind, "code": code_version(kind), "depends": depends,
               "checks": self.checks if kind == "clean" else None}
        cid = cell_id(key)
        payload = self.store.get(cid) if self.store is not None else None
        if payload is None:
            with self.store.computing(cid) if self.store is not None else contextlib.nullcontext():
                payload = self.store.get(cid) if self.store is not None else None
                if payload is None:
                    self.ctx.state_dir = (self.store.partial_dir(cid) if self.store is not None
                                          and kind in ATTACK_THREATS else None)
                    payload = compute_payload(kind, self.ctx, cell_id=cid, key=key, model_id=self.ctx.model_id,
                                              reuse=reuse, weights_sha256=self.weights_sha256, checks=self.checks)
                    if self.store is not None:
                        payload, _ = self.store.put(payload)
        self.payloads[kind] = payload
        if kind == "clean":  # what the other cells read
            self.ctx.results = {"clean": decode_fields(payload["fields"])["clean"]}
        return payload

    def failed_admission(self) -> list:
        return not_admitted(self.payloads) if self.checks else []


def module_identity(model: nn.Module, weights_sha256: str | None) -> dict[str, Any]:
    """What a cell's numbers depend on in ``model``: the weights sha256 when known, the sha256 of every tensor
    of its state, and of its classes' source code (a forward pass changed in code changes the cells)."""
    state = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        state.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        try:
            data = t.numpy()
        except TypeError:  # dtypes NumPy lacks (bfloat16, ...): their float32 values, exactly
            data = t.float().numpy()
        state.update(data.tobytes())
    code = hashlib.sha256()
    for cls in sorted({type(m) for m in model.modules()}, key=lambda c: f"{c.__module__}.{c.__qualname__}"):
        try:
            text = inspect.getsource(cls)
        except (OSError, TypeError):  # defined interactively: its name is all there is
            text = ""
        code.update(f"{cls.__module__}.{cls.__qualname__}\0{text}\0".encode())
    return {"weights_sha256": weights_sha256, "state_sha256": state.hexdigest(), "code_sha256": code.hexdigest()}


def _refuse_unless_allowed(failed: list, allow_unranked: bool) -> None:
    if failed and not allow_unranked:
        lines = "\n".join(f"  - {v.name}: {v.message}" for v in failed)
        raise InvalidModelError(
            f"The model fails {len(failed)} admission check(s) and cannot be ranked:\n{lines}\n"
            "To compute its result anyway (marked not admitted, never ranked, attacks skipped), pass "
            "allow_unranked=True (CLI: medbench evaluate ... --allow-unranked)."
        )


def _model_name(model: nn.Module) -> str:
    """A readable title for tables and figures: a ``model_id`` attribute (set by ``load_model``), else the class."""
    return str(getattr(model, "model_id", None) or type(model).__name__)
