"""The evaluation matrix: every (model, dataset, size, threat) cell as one content-addressed job.

A cell's id is the sha256 of everything its numbers depend on (:mod:`.cells`); finished cells live
in a store (:mod:`.store`) and are never recomputed; a result JSON is assembled from its cells
exactly as ``benchmark()`` writes it (:mod:`.assemble`). Cells run on a local process pool or on
Ray (:mod:`.executors`); :func:`run_matrix` (:mod:`.runner`) plans, schedules and writes results.
"""

from .runner import MatrixReport, run_matrix

__all__ = ["MatrixReport", "run_matrix"]
