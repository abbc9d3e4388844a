"""``run_matrix``: plan the cells of models x datasets x threats, run the missing ones, write results.

Plan: per (model, dataset) an ``admission`` and a ``clean`` cell, then one cell per further threat;
corruption cells also read the pinned reference model's clean and corruption cells (BE / rBE), which
are planned even when that model is not among ``models``. Schedule (``graphlib.TopologicalSorter``): a
cell starts when the cells it reads are finished; attack cells also wait for the model's admission, and are skipped (with
``allow_unranked``) or the model's result is refused (without it) when it is not admitted, as in
``benchmark()``. Stored cells are never recomputed. Results go to ``<out>/<dataset>/<model>.json``.
"""

from __future__ import annotations

import os
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from graphlib import TopologicalSorter
from pathlib import Path
from typing import Iterable

from ..errors import MedbenchError
from .cells import ATTACK_KINDS, Job, cell_id, make_key
from .store import DamagedCellError, Store


@dataclass
class MatrixReport:
    """What a run did: results written, cells by status, refusals and failures."""

    results: dict[tuple[str, str], Path | None] = field(default_factory=dict)  # (dataset, model) -> written file
    cells: int = 0
    computed: int = 0
    reused: int = 0
    stored: int = 0  # found in the store (before or during the run)
    skipped: int = 0  # attack cells of models that are not admitted
    refused: dict[tuple[str, str], str] = field(default_factory=dict)
    failed: dict[tuple[str, str], str] = field(default_factory=dict)
    dropped: dict[str, list[str]] = field(default_factory=dict)  # dataset -> threats the protocol does not define
    wall_time_s: float = 0.0

    @property
    def ok(self) -> bool:
        """No cell failed. A refused model is an outcome (reported), not a failed run."""
        return not self.failed


def _as_list(value: str | Iterable[str]) -> list[str]:
    items = [value] if isinstance(value, str) else list(value)
    return [x.strip() for item in items for x in str(item).split(",") if x.strip()]


def select(models: str | Iterable[str], datasets: str | Iterable[str],
           pairs: Iterable[tuple[str, str]] | None = None) -> list:
    """Registry entries for ``models`` ("all" or ids) on ``datasets`` ("all" or names), dataset by dataset;
    ``pairs``: only these (dataset, model id) among them."""
    from ..data import get_spec
    from ..zoo.registry import list_models

    wanted_ds = _as_list(datasets)
    all_entries = list(list_models())
    if wanted_ds == ["all"]:
        names = sorted({e.dataset for e in all_entries})
    else:
        names = list(dict.fromkeys(get_spec(d).name for d in wanted_ds))
    ids = _as_list(models)
    entries = [e for e in all_entries if e.dataset in names and (ids == ["all"] or e.id in ids)]
    if pairs is not None:
        keep = {(get_spec(d).name, m) for d, m in pairs}
        entries = [e for e in entries if (e.dataset, e.id) in keep]
    if ids != ["all"]:
        missing = [i for i in ids if not any(e.id == i for e in entries)]
        if missing:
            raise MedbenchError(f"--models: {', '.join(missing)} not in the registry for {', '.join(names)}. "
                                "See `medbench zoo list`.")
    if not entries:
        raise MedbenchError(f"No registry models for {', '.join(names)}. See `medbench zoo list`.")
    order = {n: i for i, n in enumerate(names)}
    return sorted(entries, key=lambda e: (order[e.dataset], e.id))


class _Plan:
    def __init__(self, *, threats, size, seed, device, batch_size, data_root, protocol, store, threads, reuse):
        self.threats, self.size, self.seed, self.device = threats, size, seed, device
        self.batch_size, self.data_root, self.protocol, self.store = batch_size, data_root, protocol, store
        self.threads, self.reuse = threads, reuse
        self.jobs: dict[str, Job] = {}
        self.targets: dict[tuple[str, str], dict] = {}  # (dataset, model) -> {"threats", "cells": kind -> id, ...}
        self.splits: dict[str, object] = {}

    def split(self, dataset: str):
        from ..data import load_dataset

        if dataset not in self.splits:
            self.splits[dataset] = load_dataset(dataset, "test", self.size, self.data_root)
        return self.splits[dataset]

    def _job(self, kind: str, entry, depends: dict[str, str], reference: str | None = None) -> str:
        from ..inference import default_batch_size
        from ..data import get_spec

        spec = get_spec(entry.dataset)
        bs = self.batch_size or default_batch_size(spec.input_shape(self.size), self.device)
        key = make_key(kind, entry, dataset=spec.name, size=self.size, data_md5=self.split(spec.name).md5,
                       seed=self.seed, protocol=self.protocol, device=self.device, batch_size=bs, depends=depends,
                       reference=reference)
        cid = cell_id(key)
        if cid not in self.jobs:
            prior = None
            if self.reuse is not None and kind in ATTACK_KINDS:
                path = Path(self.reuse) / spec.name / f"{entry.id}.json"
                prior = str(path) if path.is_file() else None
            self.jobs[cid] = Job(id=cid, kind=kind, key=key, model_id=entry.id, dataset=spec.name, size=self.size,
                                 seed=self.seed, device=self.device, batch_size=bs, data_root=str(self.data_root),
                                 protocol_version=self.protocol.version, store=str(self.store.root),
                                 protocol_data=None if self.protocol.is_standard else self.protocol.data,
                                 threads=self.threads, depends=dict(depends), reuse=prior)
        return cid

    def base(self, entry) -> tuple[str, str]:
        return self._job("admission", entry, {}), self._job("clean", entry, {})

    def corruptions(self, entry) -> str:
        from ..corruptions.evaluation import pinned_reference
        from ..zoo.registry import list_models

        _, clean = self.base(entry)
        pinned = pinned_reference(entry.dataset, self.protocol)
        ref = next((e for e in list_models(entry.dataset) if e.id == pinned), None) if pinned else None
        if pinned is not None and pinned == entry.id:
            return self._job("corruptions", entry, {"clean": clean}, reference="self")
        if ref is None:  # no pinned reference in the registry: BE / rBE are left empty, as without --reference
            return self._job("corruptions", entry, {"clean": clean}, reference="none")
        ref_corr = self.corruptions(ref)
        return self._job("corruptions", entry, {"clean": clean, "ref_clean": self.base(ref)[1],
                                                "ref_corruptions": ref_corr}, reference=ref.id)

    def add(self, entry, threats: list[str]) -> None:
        admission, clean = self.base(entry)
        cells = {"admission": admission, "clean": clean}
        for threat in threats:
            if threat == "corruptions":
                cells[threat] = self.corruptions(entry)
            elif threat != "clean":
                cells[threat] = self._job(threat, entry, {"clean": clean})
        self.targets[(entry.dataset, entry.id)] = {"entry": entry, "threats": threats, "cells": cells}


def plan(entries, threats, *, size, seed, device, batch_size, data_root, protocol, store, threads, reuse):
    """The jobs and result targets for ``entries`` x ``threats`` (per dataset: the threats it defines)."""
    from ..data import get_spec
    from ..evaluate import normalise_threats, protocol_threats

    p = _Plan(threats=threats, size=size, seed=seed, device=device, batch_size=batch_size, data_root=data_root,
              protocol=protocol, store=store, threads=threads, reuse=reuse)
    dropped: dict[str, list[str]] = {}
    for entry in entries:
        spec = get_spec(entry.dataset)
        spec.check_size(size)
        asked = normalise_threats(threats, spec, protocol)
        defined = protocol_threats(spec, protocol)
        kept = [t for t in asked if t in defined]
        if len(kept) < len(asked):
            dropped[spec.name] = [t for t in asked if t not in defined]
        p.add(entry, kept)
    return p, dropped


def run_matrix(models: str | Iterable[str] = "all", datasets: str | Iterable[str] = "all",
               threats: str | Iterable[str] = "all", *, executor: str = "local", workers: int = 1,
               store: str | os.PathLike | None = None, out: str | os.PathLike | None = None, size: int = 28,
               seed: int = 0, device: str | None = None, batch_size: int | None = None,
               data_root: str | os.PathLike | None = None, reuse: str | os.PathLike | None = None,
               allow_unranked: bool = False, address: str | None = None, max_retries: int = 3,
               threads_per_worker: int = 1, pairs: Iterable[tuple[str, str]] | None = None,
               progress: bool = True, protocol=None, recompute_damaged: bool = False) -> MatrixReport:
    """Evaluate registry ``models`` on ``datasets`` under ``threats`` cell by cell; write each result to
    ``<out>/<dataset>/<model>.json`` (``out=None``: only fill the store). ``store`` (default
    ``<cache>/matrix``) keeps finished cells. ``reuse``: a results folder (``<dataset>/<model>.json``)
    whose attack sections are carried over where ``medbench.reuse`` proves them identical. ``pairs``:
    restrict ``models`` x ``datasets`` to these (dataset, model id) pairs. ``protocol``: a ``Protocol``
    (e.g. a derived one) instead of the current version. Stored cells that are damaged or tampered with
    raise :class:`~.store.DamagedCellError` naming every one, before anything runs; with
    ``recompute_damaged`` they are set aside and computed again."""
    from tqdm.auto import tqdm

    from ..data import get_spec
    from ..inference import default_device
    from ..paths import cache_root, data_root as resolve_data_root
    from ..protocol import load_protocol
    from .assemble import assemble, not_admitted
    from .executors import make_executor

    if workers < 1:
        raise MedbenchError(f"--workers must be at least 1 (got {workers}).")
    t_start = time.perf_counter()
    proto = protocol if protocol is not None else load_protocol()
    st = Store(store if store is not None else cache_root() / "matrix")
    dev = str(device) if device is not None else str(default_device())
    entries = select(models, datasets, pairs)
    p, dropped = plan(entries, threats, size=size, seed=seed, device=dev, batch_size=batch_size,
                      data_root=resolve_data_root(data_root), protocol=proto, store=st, threads=threads_per_worker,
                      reuse=reuse)
    report = MatrixReport(cells=len(p.jobs), dropped=dropped)
    done: dict[str, dict] = {}
    failed: dict[str, str] = {}
    skipped: set[str] = set()
    required = {d for job in p.jobs.values() for d in job.depends.values()}
    # the attack cells of each model wait for its admission and clean cells
    gates = {cid: (t["cells"]["admission"], t["cells"]["clean"]) for t in p.targets.values()
             for kind, cid in t["cells"].items() if kind in ATTACK_KINDS}
    bar = tqdm(total=len(p.jobs), desc="cells", unit="cell", disable=not progress)

    def note(status: str) -> None:
        setattr(report, status, getattr(report, status) + 1)
        bar.set_postfix_str(f"computed {report.computed}, stored {report.stored}, reused {report.reused}"
                            + (f", skipped {report.skipped}" if report.skipped else ""))
        bar.update(1)

    stored, damaged = st.scan(p.jobs)
    if damaged and not recompute_damaged:
        bar.close()
        raise DamagedCellError(st, damaged)
    for cid in damaged:
        st.set_aside(cid)
    for cid, payload in stored.items():
        done[cid] = payload
        note("stored")
    # the graph: a cell waits for the cells it reads; an attack cell also for its model's admission and clean
    graph = {cid: set(job.depends.values()) | set(gates.get(cid, ())) for cid, job in p.jobs.items()}
    order = TopologicalSorter(graph)
    order.prepare()
    waiting: deque[str] = deque()  # ready to run, waiting for a free worker
    ex = None
    inflight: dict = {}

    def settle(cid: str) -> bool:
        """Resolve a ready cell that needs no worker (stored, failed upstream, skipped); True if resolved."""
        blockers = graph[cid]
        if cid in done:
            return True
        if any(b in failed for b in blockers):
            failed[cid] = next(failed[b] for b in blockers if b in failed)
            bar.update(1)
            return True
        if cid in gates and cid not in required and not_admitted(
                {k: done[c] for k, c in zip(("admission", "clean"), gates[cid])}):
            skipped.add(cid)
            note("skipped")
            return True
        return False

    try:
        while order.is_active():
            for cid in order.get_ready():
                if settle(cid):
                    order.done(cid)
                else:
                    waiting.append(cid)
            while waiting and len(inflight) < workers:
                job = p.jobs[waiting.popleft()]
                job.inputs = {role: done[cid] for role, cid in job.depends.items()}
                ex = ex or make_executor(executor, workers, address=address, max_retries=max_retries)
                inflight[ex.submit(job)] = job
            if not inflight:
                continue  # cells resolved without a worker may have made others ready
            for handle, result, exc in ex.wait(inflight):
                job = inflight.pop(handle)
                job.inputs = {}
                if exc is not None:
                    failed[job.id] = f"{job.kind} cell failed: {type(exc).__name__}: {exc}"
                    bar.update(1)
                else:
                    status, payload = result
                    payload, _ = st.put(payload)  # a no-op when the worker stored it (same filesystem)
                    done[job.id] = payload
                    note(status)
                order.done(job.id)
    finally:
        if ex is not None:
            ex.close()
        bar.close()

    for (dataset, model_id), target in p.targets.items():
        cells = target["cells"]
        why = next((failed[c] for c in cells.values() if c in failed), None)
        if why is not None:
            report.failed[(dataset, model_id)] = why
            continue
        have = {kind: done[c] for kind, c in cells.items() if c in done}
        refused = not_admitted(have)
        if refused and not allow_unranked:
            report.refused[(dataset, model_id)] = "; ".join(f"{v.name}: {v.message}" for v in refused)
            continue
        result = assemble(model_id, get_spec(dataset), p.split(dataset), target["threats"], have, seed=seed,
                          protocol=proto, weights_sha256=target["entry"].weights.sha256)
        path = None
        if out is not None:
            path = Path(out) / dataset / f"{model_id}.json"
            result.to_json(path)
        report.results[(dataset, model_id)] = path
    report.wall_time_s = time.perf_counter() - t_start
    return report
