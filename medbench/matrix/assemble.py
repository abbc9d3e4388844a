"""Assemble an ``EvaluationResult`` from its cells, exactly as ``benchmark()`` builds it.

Sections merge in ``benchmark()``'s order: the admission checks, then each threat in the order
asked (clean first, with the admission checks on the clean pass), then the sanity checks, which
read every section and are recomputed here. Attack threats of a model that is not admitted are
skipped with ``benchmark()``'s message. Provenance: versions from the cells' keys; host and timing
fields (``started_at`` = the earliest cell's start, device, platform, wall times) from the cells'
measurements, so the same cells always give the same bytes.

:func:`identity` is what two results must share to count as the same evaluation: the JSON without
the timing and host fields.
"""

from __future__ import annotations

import copy
import json
from types import SimpleNamespace
from typing import Any

from ..engine import decode_fields, merge_fields
from ..schema import EvaluationResult, Provenance
from ..schema.result import ReusedSection

# provenance fields that describe where and when a result was computed, not what it is
HOST_FIELDS = ("started_at", "wall_time_s", "wall_time_per_threat_s", "wall_time_per_stage_s", "cpu_time_per_stage_s",
               "device", "platform")


def not_admitted(cells: dict[str, dict]) -> list:
    """The failed admission verdicts in the admission and clean cells."""
    out = []
    for kind in ("admission", "clean"):
        if kind in cells:
            out += [v for v in decode_fields(cells[kind]["fields"]).get("checks", [])
                    if v.kind == "admission" and not v.passed]
    return out


def skip_message(failed: list) -> str:
    return ("not run: the model is not admitted (" + ", ".join(v.name for v in failed)
            + "), and attacking it would measure nothing")


def assemble(model_id: str, spec, split, threats: list[str], cells: dict[str, dict], *, seed: int,
             protocol, weights_sha256: str | None, checks: bool = True) -> EvaluationResult:
    """The result of ``model_id`` from ``cells`` (kind -> payload; ``admission`` (unless ``checks`` is
    False: then no admission and no sanity checks) and ``clean`` required; an attack threat without a cell
    must be one the model's admission skips)."""
    from ..checks import sanity_checks

    fields: dict[str, Any] = {}
    times: dict[str, float] = {}
    reused: dict[str, ReusedSection] = {}
    skipped: dict[str, str] = {}
    used = []
    if checks:
        used.append(cells["admission"])
        merge_fields(fields, decode_fields(cells["admission"]["fields"]))
        times["admission"] = cells["admission"]["measured"]["wall_time_s"]
    failed = not_admitted(cells)
    for threat in threats:
        if threat not in cells:
            if threat in ("Linf", "L2", "curves") and failed:
                skipped[threat] = skip_message(failed)
                continue
            raise KeyError(f"no {threat} cell for {model_id} ({spec.name})")
        cell = cells[threat]
        used.append(cell)
        merge_fields(fields, decode_fields(cell["fields"]))
        times[threat] = cell["measured"]["wall_time_s"]
        if cell.get("reused") is not None:
            reused[threat] = ReusedSection.model_validate(cell["reused"])
    # cells written before stage times were recorded have none: the result then has none either
    stages = {k: v for cell in used for k, v in cell["measured"].get("stage_times", {}).items()}
    if checks:
        ctx = SimpleNamespace(spec=spec, labels=split.labels, size=split.size, protocol=protocol)
        merge_fields(fields, {"checks": sanity_checks(ctx, fields)})
    code = cells["clean"]["key"]["code"]
    host = cells["clean"]["measured"]
    return EvaluationResult(
        track=protocol.track, model_id=model_id, dataset=spec.name, size=split.size, task=spec.task,
        num_classes=spec.num_classes, class_names=list(spec.class_names), threats=[t for t in threats if t not in skipped], skipped=skipped,
        provenance=Provenance(
            medbench_version=code["medbench"], protocol_version=protocol.version,
            protocol_sha256=protocol.sha256(), dataset=spec.name, size=split.size, split="test",
            data_file=split.path.name, data_md5=split.md5, weights_sha256=weights_sha256, seed=seed,
            device=host["device"], torch_version=code["torch"], library_versions=dict(code["libraries"]),
            python_version=host["python_version"], platform=host["platform"],
            started_at=min(c["measured"]["started_at"] for c in used),
            wall_time_s=round(sum(times.values()), 3),
            wall_time_per_threat_s={k: round(v, 3) for k, v in times.items()},
            wall_time_per_stage_s={k: round(v["wall"], 3) for k, v in stages.items()},
            cpu_time_per_stage_s={k: round(v["cpu"], 3) for k, v in stages.items()}, reused=reused,
        ),
        **fields,
    )


def identity(result: EvaluationResult | dict | str) -> dict[str, Any]:
    """The result as JSON data without its timing and host fields (provenance ``started_at``, wall times,
    ``device``, ``platform``; every ``wall_time_s`` inside the sections): equal identities are the same
    evaluation, wherever and however fast it ran."""
    if isinstance(result, EvaluationResult):
        data = json.loads(result.to_json())
    elif isinstance(result, str):
        data = json.loads(result)
    else:
        data = copy.deepcopy(result)
    for name in HOST_FIELDS:
        data["provenance"].pop(name, None)

    def strip(node):
        if isinstance(node, dict):
            return {k: strip(v) for k, v in node.items() if k != "wall_time_s"}
        if isinstance(node, list):
            return [strip(v) for v in node]
        return node

    return strip(data)
