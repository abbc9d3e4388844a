"""``benchmark()``: run the protocol on one model and return an :class:`EvaluationResult`.

Each threat is a runner ``run(ctx) -> dict`` returning the result fields it fills; runners live in
the module that owns the threat (see ``THREAT_RUNNERS``). With ``out=...`` the run is resumable:
each finished threat is stored beside the output, and a re-run with the same path continues.
"""

from __future__ import annotations

import datetime as _dt
import functools
import importlib
import json
import os
import platform
import shutil
import sys
import time
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import torch
from torch import nn

from . import metrics as M
from .data import DatasetSpec, Split, get_spec, load_dataset
from .errors import InvalidModelError, MedbenchError
from .inference import TwoLogits, default_batch_size, default_device, predict_logits
from .paths import data_root as resolve_data_root
from .protocol import CURRENT_VERSION, Protocol, load_protocol
from .schema import CleanMetrics, EvaluationResult, Interval, Provenance

# threat name -> "module:function". A runner takes an EvalContext and returns result fields.
THREAT_RUNNERS: dict[str, str] = {
    "clean": "medbench.evaluate:run_clean",
    "corruptions": "medbench.corruptions.evaluation:run",
    "Linf": "medbench.attacks.evaluation:run_linf",
    "L2": "medbench.attacks.evaluation:run_l2",
    "curves": "medbench.attacks.evaluation:run_curves",
}
ALL_THREATS = tuple(THREAT_RUNNERS)
ATTACK_THREATS = ("Linf", "L2", "curves")  # skipped for a model that is not admitted


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


@functools.lru_cache(maxsize=1)
def _library_versions() -> dict[str, str]:
    out = {}
    for pkg in ("numpy", "medmnist", "pyautoattack", "scikit-learn", "pydantic", "safetensors", "huggingface-hub",
                "timm"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            pass
    return out


def medbench_version() -> str:
    try:
        return version("medbench")
    except PackageNotFoundError:
        return "0+unknown"


def _resolve_runner(threat: str):
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
    )}


def _finite(x: float) -> float | None:
    return None if x is None or np.isnan(x) else float(x)


def _merge(fields: dict[str, Any], update: dict[str, Any]) -> None:
    for key, value in update.items():
        if key == "adversarial":
            fields.setdefault("adversarial", {}).update(value)
        elif key == "checks":
            fields.setdefault("checks", []).extend(value)
        else:
            fields[key] = value


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


def _normalise_threats(threats: str | Iterable[str], spec: DatasetSpec, protocol: Protocol) -> list[str]:
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
    resumable: finished threats are kept in ``<out>.partial/`` until the run completes.
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
    threat_list = _normalise_threats(threats, spec, proto)
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

    state_dir = Path(str(out) + ".partial") if out is not None else None
    identity = {"model_id": model_id, "weights_sha256": weights_sha256, "dataset": spec.name, "size": size,
                "seed": seed, "protocol_sha256": proto.sha256(), "data_md5": split.md5}
    done: dict[str, Any] = _load_state(state_dir, identity)
    ctx.state_dir = state_dir
    started = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    fields: dict[str, Any] = {}
    times: dict[str, float] = {}
    stage_times: dict[str, dict[str, float]] = {}  # stage -> {"wall": s, "cpu": s}
    for name, payload in done.get("threats", {}).items():
        _merge(fields, _decode(payload["fields"]))
        times[name] = payload["wall_time_s"]
        stage_times.update(payload.get("stage_times", {}))
    ctx.results = fields

    reused: dict[str, Any] = {}
    found: dict[str, Any] = {}  # merged in the threat loop, after admission (a refused model gets none)
    if reuse is not None:
        from .reuse import reusable_sections

        found, notes = reusable_sections(reuse, ctx, [t for t in threat_list if t not in done.get("threats", {})],
                                         weights_sha256)
        if progress:
            for note in notes:
                print(f"not reused, recomputing {note}", file=sys.stderr)

    if checks and "admission" not in done.get("threats", {}):
        t0, c0 = time.perf_counter(), time.process_time()
        from .checks import admission_checks

        verdicts = admission_checks(ctx)
        _merge(fields, {"checks": verdicts})
        times["admission"] = time.perf_counter() - t0
        stage_times["admission"] = {"wall": times["admission"], "cpu": time.process_time() - c0}
        _refuse_unless_allowed(fields, allow_unranked)
        _save_state(state_dir, identity, done, "admission", {"checks": verdicts}, times["admission"],
                    {"admission": stage_times["admission"]})
    elif checks:  # resumed: a refusal stored by an earlier --allow-unranked run still needs the flag
        _refuse_unless_allowed(fields, allow_unranked)

    skipped: dict[str, str] = {}
    for threat in threat_list:
        if threat in ATTACK_THREATS and (failed := _failed_admission(fields)):
            skipped[threat] = ("not run: the model is not admitted (" + ", ".join(v.name for v in failed)
                               + "), and attacking it would measure nothing")
            print(f"medbench: skipping {threat}: {skipped[threat]}", file=sys.stderr, flush=True)
            continue
        if threat in found:
            update, reused[threat] = found[threat]
            _merge(fields, update)
            times[threat] = 0.0
            if progress:
                print(f"{threat}: reused from the earlier result (protocol {reused[threat].from_protocol_version})",
                      file=sys.stderr)
            continue
        if threat not in done.get("threats", {}):
            t0, c0 = time.perf_counter(), time.process_time()
            ctx.stage_times = {}
            update = _resolve_runner(threat)(ctx)
            times[threat] = time.perf_counter() - t0
            # runners with inner stages (attacks, curve points) report them; the others are one stage
            stages = ctx.stage_times or {threat: {"wall": times[threat], "cpu": time.process_time() - c0}}
            stage_times.update(stages)
            _merge(fields, update)
            _save_state(state_dir, identity, done, threat, update, times[threat], stages)
        if threat == "clean" and checks:  # admission on the clean pass: before any attack
            from .checks import clean_admission_checks

            _merge(fields, {"checks": clean_admission_checks(ctx, fields)})
            _refuse_unless_allowed(fields, allow_unranked)

    if checks:
        from .checks import sanity_checks

        _merge(fields, {"checks": sanity_checks(ctx, fields)})

    result = EvaluationResult(
        track=proto.track, model_id=model_id or _model_name(model), dataset=spec.name, size=size, task=spec.task,
        num_classes=spec.num_classes, class_names=list(spec.class_names),
        threats=[t for t in threat_list if t not in skipped], skipped=skipped,
        provenance=Provenance(
            medbench_version=medbench_version(), protocol_version=proto.version, protocol_sha256=proto.sha256(),
            dataset=spec.name, size=size, split="test", data_file=split.path.name, data_md5=split.md5,
            weights_sha256=weights_sha256, seed=seed, device=_device_name(dev), torch_version=torch.__version__,
            library_versions=dict(_library_versions()), python_version=platform.python_version(),
            platform=platform.platform(), started_at=done.get("started_at", started),
            wall_time_s=round(sum(times.values()), 3), wall_time_per_threat_s={k: round(v, 3) for k, v in times.items()},
            wall_time_per_stage_s={k: round(v["wall"], 3) for k, v in stage_times.items()},
            cpu_time_per_stage_s={k: round(v["cpu"], 3) for k, v in stage_times.items()}, reused=reused,
        ),
        **fields,
    )
    if out is not None:
        result.to_json(out)
        if state_dir is not None and state_dir.exists():
            shutil.rmtree(state_dir)
    return result


def _failed_admission(fields: dict[str, Any]) -> list:
    return [v for v in fields.get("checks", []) if v.kind == "admission" and not v.passed]


def _refuse_unless_allowed(fields: dict[str, Any], allow_unranked: bool) -> None:
    failed = _failed_admission(fields)
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


def _device_name(dev: torch.device) -> str:
    if dev.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(dev)})"
    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


# ----------------------------------------------------------------------------- resumable state

def _encode(update: dict[str, Any]) -> Any:
    def enc(v):
        if hasattr(v, "model_dump"):
            return {"__model__": type(v).__name__, "data": v.model_dump(mode="json")}
        if isinstance(v, dict):
            return {k: enc(x) for k, x in v.items()}
        if isinstance(v, list):
            return [enc(x) for x in v]
        return v

    return enc(update)


def _decode(payload: Any) -> Any:
    from . import schema

    if isinstance(payload, dict) and "__model__" in payload:
        return getattr(schema, payload["__model__"]).model_validate(payload["data"])
    if isinstance(payload, dict):
        return {k: _decode(v) for k, v in payload.items()}
    if isinstance(payload, list):
        return [_decode(v) for v in payload]
    return payload


def _load_state(state_dir: Path | None, identity: dict) -> dict[str, Any]:
    if state_dir is None:
        return {}
    path = state_dir / "state.json"
    if not path.is_file():
        return {}
    state = json.loads(path.read_text())
    if state.get("identity") != identity:
        raise MedbenchError(
            f"{state_dir} holds a partial run of a different model, dataset, protocol or seed "
            f"({state.get('identity')}). Fix: choose another --out path, or delete {state_dir} to start over."
        )
    return state


def _save_state(state_dir: Path | None, identity: dict, state: dict, threat: str, update: dict, wall: float,
                stage_times: dict[str, dict[str, float]] | None = None) -> None:
    if state_dir is None:
        return
    state_dir.mkdir(parents=True, exist_ok=True)
    state.setdefault("identity", identity)
    state.setdefault("started_at", _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"))
    state.setdefault("threats", {})[threat] = {"fields": _encode(update), "wall_time_s": wall,
                                               "stage_times": stage_times or {}}
    tmp = state_dir / "state.json.tmp"
    tmp.write_text(json.dumps(state))
    tmp.replace(state_dir / "state.json")
