"""Compute one cell in a worker process: ``compute_cell(job) -> (status, payload)``.

The worker first looks in the store (a retried task whose cell was already written skips), checks
that its own code version equals the one the cell is keyed on (a cluster worker with other code
or libraries refuses instead of storing wrong cells), builds the model and evaluation context the
way ``benchmark()`` does, runs the threat's runner and stores the cell. An attack cell with an
earlier result to reuse carries its section over through :mod:`medbench.reuse` when, and only when,
that section was computed exactly as this cell would compute it (recorded in the payload).

Fault injection for tests: when ``$MEDBENCH_MATRIX_KILL_ONCE`` names an existing folder, the worker
kills itself (SIGKILL) once per cell, after computing it and before storing it (the moment a crash
loses the most), leaving ``<folder>/<cell id>`` as the record. Nothing else reads that variable.
"""

from __future__ import annotations

import os
import platform
import signal
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from ..engine import compute_payload, decode_fields
from ..errors import MedbenchError
from .cells import ATTACK_KINDS, Job, code_version
from .store import Store

KILL_ONCE_ENV = "MEDBENCH_MATRIX_KILL_ONCE"


def _decode_fields(payload: dict[str, Any]) -> dict[str, Any]:
    return decode_fields(payload["fields"])


def _reference(job: Job):
    """The pinned reference's result fields that BE / rBE read (dataset, model id, clean, corruptions)."""
    if "ref_corruptions" not in job.inputs:
        return None
    clean = _decode_fields(job.inputs["ref_clean"])["clean"]
    corruptions = _decode_fields(job.inputs["ref_corruptions"])["corruptions"]
    return SimpleNamespace(dataset=job.dataset, model_id=job.inputs["ref_corruptions"]["model_id"], clean=clean,
                           corruptions=corruptions)


def _context(job: Job, store: Store):
    import torch

    from ..data import get_spec, load_dataset
    from ..evaluate import EvalContext, prepare_model
    from ..protocol import Protocol, load_protocol
    from ..zoo import get_entry, load_model

    spec = get_spec(job.dataset)
    proto = load_protocol(job.protocol_version) if job.protocol_data is None else Protocol(job.protocol_data,
                                                                                             custom=True)
    entry = get_entry(job.model_id, spec.name)
    if entry.weights.sha256 != job.key["model"]["weights_sha256"]:
        raise MedbenchError(f"{job.model_id} ({spec.name}): the registry entry's weights sha256 changed while the "
                            "matrix ran. Fix: run it again (cells are keyed on the weights).")
    dev = torch.device(job.device)
    split = load_dataset(spec.name, "test", job.size, job.data_root)
    if split.md5 != job.key["data_md5"]:
        raise MedbenchError(f"{split.path}: MD5 {split.md5} differs from the {job.key['data_md5']} the cell was "
                            "keyed on. Fix: run the matrix again.")
    net = prepare_model(load_model(entry.id, spec.name, device=str(dev)), spec, job.size, dev)
    ctx = EvalContext(model=net, spec=spec, split=split, size=job.size, device=dev, batch_size=job.batch_size,
                      seed=job.seed, protocol=proto, data_root=Path(job.data_root), progress=False,
                      reference=_reference(job), model_id=entry.id,
                      state_dir=store.partial_dir(job.id) if job.kind in ATTACK_KINDS else None)
    if "clean" in job.inputs:
        ctx.results = {"clean": _decode_fields(job.inputs["clean"])["clean"]}
    return ctx, entry


def _maybe_kill(job: Job) -> None:
    folder = os.environ.get(KILL_ONCE_ENV)
    if not folder or not Path(folder).is_dir():
        return
    marker = Path(folder) / job.id
    if not marker.exists():
        marker.write_text(str(os.getpid()))
        os.kill(os.getpid(), signal.SIGKILL)


def compute_cell(job: Job) -> tuple[str, dict[str, Any]]:
    """("stored" | "computed" | "reused", the cell's payload) for ``job``; stores the cell when computed."""
    store = Store(job.store)
    existing = store.get(job.id)
    if existing is not None:
        return "stored", existing
    with store.computing(job.id):  # another run computing this cell finishes first; then it is stored
        existing = store.get(job.id)
        if existing is not None:
            return "stored", existing
        return _compute(job, store)


def _compute(job: Job, store: Store) -> tuple[str, dict[str, Any]]:
    import torch

    mine = code_version(job.kind)
    if mine != job.key["code"]:
        raise MedbenchError(
            f"This worker ({platform.node()}) runs other code or libraries than the matrix driver for a "
            f"{job.kind} cell: worker {mine}, driver {job.key['code']}. Fix: install the same medbench checkout and "
            "library versions on every node of the cluster.")
    torch.set_num_threads(job.threads)
    ctx, entry = _context(job, store)
    payload = compute_payload(job.kind, ctx, cell_id=job.id, key=job.key, model_id=job.model_id,
                              reuse=job.reuse if job.kind in ATTACK_KINDS else None,
                              weights_sha256=entry.weights.sha256)
    _maybe_kill(job)
    stored, _ = store.put(payload)
    return ("reused" if payload["reused"] is not None else "computed"), stored
