"""Where cells run: ``local`` (a stdlib process pool) or ``ray`` (a local or existing Ray cluster).

Both take a :class:`~.cells.Job`, run :func:`~.compute.compute_cell` on it in another process and
hand back ``(status, payload)`` or the exception. The scheduler keeps at most ``workers`` cells in
flight on either, so ``--workers N`` means the same on both.
"""

from __future__ import annotations

import multiprocessing
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from typing import Any, Iterable

from ..errors import MedbenchError
from .cells import Job
from .compute import compute_cell

EXECUTORS = ("local", "ray")


class LocalExecutor:
    """A ``ProcessPoolExecutor`` of ``workers`` spawned processes (spawn: torch and fork do not mix)."""

    name = "local"

    def __init__(self, workers: int):
        self.workers = workers
        self.pool = ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"))

    def submit(self, job: Job) -> Future:
        return self.pool.submit(compute_cell, job)

    def wait(self, handles: Iterable[Future]) -> list[tuple[Future, Any, BaseException | None]]:
        done, _ = wait(list(handles), return_when=FIRST_COMPLETED)
        return [(f, None if f.exception() else f.result(), f.exception()) for f in done]

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
        return LocalExecutor(workers)
    if name == "ray":
        return RayExecutor(workers, address=address, max_retries=max_retries)
    raise MedbenchError(f"Unknown executor {name!r}; choose from {', '.join(EXECUTORS)}.")
