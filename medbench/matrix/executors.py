"""Where cells run: ``local`` (a stdlib process pool) or ``ray`` (a local or existing Ray cluster).

Both take a :class:`~.cells.Job`, run :func:`~.compute.compute_cell` on it in another process and
hand back ``(status, payload)`` or the exception. The scheduler keeps at most ``workers`` cells in
flight on either, so ``--workers N`` means the same on both.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
import warnings
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any, Iterable

from ..errors import MedbenchError
from .cells import Job
from .compute import compute_cell

EXECUTORS = ("local", "ray")


def _exit_with_parent(parent: int) -> None:
    """Pool worker initializer: a thread that ends this process when the driver is gone (killed with
    SIGKILL, it cannot shut the pool down), so no worker is ever left running on its own."""
    def watch():
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, name="medbench-exit-with-parent", daemon=True).start()


@dataclass(eq=False)
class LocalHandle:
    """A submitted cell: its job, the current future and how many pools died under it."""

    job: Job
    future: Future
    retries: int = 0


class LocalExecutor:
    """A ``ProcessPoolExecutor`` of ``workers`` spawned processes (spawn: torch and fork do not mix).

    A worker that dies (killed, out of memory) breaks the whole pool: the pool is started again and every
    cell that was in flight is resubmitted, up to ``max_retries`` times each, as Ray retries its tasks (the
    store's write-once cells make a retry safe). Workers end when the driver process is gone."""

    name = "local"

    def __init__(self, workers: int, max_retries: int = 3):
        self.workers = workers
        self.max_retries = max_retries
        self.pool = self._start()

    def _start(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(max_workers=self.workers, mp_context=multiprocessing.get_context("spawn"),
                                   initializer=_exit_with_parent, initargs=(os.getpid(),))

    def submit(self, job: Job) -> LocalHandle:
        return LocalHandle(job, self.pool.submit(compute_cell, job))

    def wait(self, handles: Iterable[LocalHandle]) -> list[tuple[LocalHandle, Any, BaseException | None]]:
        handles = list(handles)
        while True:
            done, _ = wait([h.future for h in handles], return_when=FIRST_COMPLETED)
            finished = [h for h in handles if h.future in done]
            broken = [h for h in finished if isinstance(h.future.exception(), BrokenProcessPool)]
            retry = [h for h in broken if h.retries < self.max_retries]
            if not retry:
                return [(h, None if h.future.exception() else h.future.result(), h.future.exception())
                        for h in finished]
            self.pool.shutdown(wait=False, cancel_futures=True)
            self.pool = self._start()
            for h in handles:  # every future of the dead pool fails: resubmit those with retries left
                if h.future.done() and not isinstance(h.future.exception(), BrokenProcessPool):
                    continue
                if h.retries >= self.max_retries:
                    continue  # returned as failed by the next wait
                h.retries += 1
                h.future = self.pool.submit(compute_cell, h.job)
            warnings.warn(f"a local worker died; started a new pool and resubmitted {len(handles)} cell(s) "
                          f"(retry {max(h.retries for h in retry)} of {self.max_retries})", stacklevel=2)

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)


class RayExecutor:
    """Ray tasks: ``ray.init()`` starts a local instance with ``workers`` CPUs, or ``address`` joins a
    cluster started with ``ray start`` (``"auto"``: the one on this machine). A task whose worker dies
    is retried up to ``max_retries`` times; together with the store's write-once cells and the skip of
    a cell already stored, a killed worker neither loses nor duplicates a cell. An instance that was
    already running in this process is used as it is and left running."""

    name = "ray"

    def __init__(self, workers: int, address: str | None = None, max_retries: int = 3):
        try:
            import ray
        except ImportError:
            raise MedbenchError("--executor ray needs Ray, which is not installed. Fix: pip install "
                                "'medbench[ray]' (or pip install ray), or use --executor local.") from None
        self.ray = ray
        self.workers = workers
        self.owns = not ray.is_initialized()
        if self.owns:
            kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": True}
            if address is None:
                kwargs["num_cpus"] = workers
            ray.init(address=address, **kwargs)
        self.task = ray.remote(num_cpus=1, max_retries=max_retries, retry_exceptions=False)(compute_cell)

    def submit(self, job: Job):
        return self.task.remote(job)

    def wait(self, handles: Iterable) -> list[tuple[Any, Any, BaseException | None]]:
        done, _ = self.ray.wait(list(handles), num_returns=1)
        out = []
        for ref in done:
            try:
                out.append((ref, self.ray.get(ref), None))
            except Exception as exc:  # RayTaskError wraps the worker's exception; WorkerCrashedError after retries
                cause = getattr(exc, "cause", None)
                out.append((ref, None, cause if isinstance(cause, BaseException) else exc))
        return out

    def close(self) -> None:
        if self.owns:
            self.ray.shutdown()


def make_executor(name: str, workers: int, *, address: str | None = None, max_retries: int = 3):
    if name == "local":
        if address is not None:
            raise MedbenchError("--address names a Ray cluster; it needs --executor ray.")
        return LocalExecutor(workers, max_retries=max_retries)
    if name == "ray":
        return RayExecutor(workers, address=address, max_retries=max_retries)
    raise MedbenchError(f"Unknown executor {name!r}; choose from {', '.join(EXECUTORS)}.")
