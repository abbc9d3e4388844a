"""The one evaluation engine: what a *cell* is computed from and what it holds.

A cell is one unit of work on one model, dataset and size: ``admission``, ``clean`` (with the admission
checks on the clean pass), or one further threat (``corruptions``, ``Linf``, ``L2``, ``curves``).
:func:`compute_payload` runs it on an :class:`~medbench.evaluate.EvalContext` and returns its payload
(the result fields, encoded as JSON data, with where and how long it ran). ``benchmark()`` (one model,
in process) and ``medbench run`` (a matrix of registry models, in worker processes) both compute cells
with it, keep them in a :class:`~medbench.matrix.store.Store` and build the result from them with
:func:`medbench.matrix.assemble.assemble`.
"""

from __future__ import annotations

import datetime as _dt
import functools
import platform
import time
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import torch

__all__ = ["KINDS", "ATTACK_KINDS", "encode_fields", "decode_fields", "merge_fields", "run_cell", "compute_payload",
           "library_versions", "medbench_version", "device_name"]

KINDS = ("admission", "clean", "corruptions", "Linf", "L2", "curves")
ATTACK_KINDS = ("Linf", "L2", "curves")  # skipped for a model that is not admitted


@functools.lru_cache(maxsize=1)
def library_versions() -> dict[str, str]:
    """Versions of the numeric and data libraries a result depends on (recorded in its provenance)."""
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


def device_name(dev: torch.device) -> str:
    if dev.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(dev)})"
    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def encode_fields(fields: dict[str, Any]) -> Any:
    """Result fields (pydantic records in dicts and lists) as JSON data that :func:`decode_fields` restores."""
    def enc(v):
        if hasattr(v, "model_dump"):
            return {"__model__": type(v).__name__, "data": v.model_dump(mode="json")}
        if isinstance(v, dict):
            return {k: enc(x) for k, x in v.items()}
        if isinstance(v, list):
            return [enc(x) for x in v]
        return v

    return enc(fields)


def decode_fields(payload: Any) -> Any:
    """The inverse of :func:`encode_fields` (records validated again by their schema)."""
    from . import schema

    if isinstance(payload, dict) and "__model__" in payload:
        return getattr(schema, payload["__model__"]).model_validate(payload["data"])
    if isinstance(payload, dict):
        return {k: decode_fields(v) for k, v in payload.items()}
    if isinstance(payload, list):
        return [decode_fields(v) for v in payload]
    return payload


def merge_fields(fields: dict[str, Any], update: dict[str, Any]) -> None:
    """Merge a cell's fields into a result's: adversarial sections and checks accumulate, the rest is set."""
    for key, value in update.items():
        if key == "adversarial":
            fields.setdefault("adversarial", {}).update(value)
        elif key == "checks":
            fields.setdefault("checks", []).extend(value)
        else:
            fields[key] = value


def run_cell(kind: str, ctx, *, reuse=None, weights_sha256: str | None = None,
             checks: bool = True) -> tuple[dict[str, Any], dict | None]:
    """(the result fields of cell ``kind`` on ``ctx``, the reused-section record or None).

    ``clean`` includes the admission checks on the clean pass unless ``checks`` is False. An attack cell
    with ``reuse`` (an earlier result or its path) carries its section over when :mod:`medbench.reuse`
    proves it computed exactly as now."""
    from .checks import admission_checks, clean_admission_checks
    from .evaluate import resolve_runner, run_clean

    if kind == "admission":
        return {"checks": admission_checks(ctx)}, None
    if kind == "clean":
        update = run_clean(ctx)
        return ({**update, "checks": clean_admission_checks(ctx, update)} if checks else update), None
    if kind in ATTACK_KINDS and reuse is not None:
        from .reuse import reusable_sections

        found, _ = reusable_sections(reuse, ctx, [kind], weights_sha256)
        if kind in found:
            update, record = found[kind]
            return update, record.model_dump(mode="json")
    return resolve_runner(kind)(ctx), None


def compute_payload(kind: str, ctx, *, cell_id: str, key: dict[str, Any], model_id: str | None, reuse=None,
                    weights_sha256: str | None = None, checks: bool = True) -> dict[str, Any]:
    """Run cell ``kind`` and return its payload: fields, the reused record, and ``measured`` (start, wall time
    and per-stage wall / CPU seconds, device, platform). Model loading is not counted, as in ``benchmark()``."""
    started = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    ctx.stage_times = {}
    t0, c0 = time.perf_counter(), time.process_time()
    fields, reused = run_cell(kind, ctx, reuse=reuse, weights_sha256=weights_sha256, checks=checks)
    wall = 0.0 if reused is not None else time.perf_counter() - t0
    # per stage: the runner's inner stages (attacks, curve points), else the cell as one stage
    stages = {} if reused is not None else (ctx.stage_times or {kind: {"wall": wall,
                                                                        "cpu": time.process_time() - c0}})
    return {
        "format": key["format"], "id": cell_id, "kind": kind, "model_id": model_id, "dataset": ctx.spec.name,
        "size": ctx.size, "key": key, "fields": encode_fields(fields), "reused": reused,
        "measured": {"started_at": started, "wall_time_s": wall, "device": device_name(ctx.device),
                     "platform": platform.platform(), "python_version": platform.python_version(),
                     "stage_times": stages},
    }
