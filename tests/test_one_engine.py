"""One engine (issue 24): ``benchmark()`` computes the same cells as ``medbench run`` and builds its result
with the same assembler, so evaluating a zoo model in process reproduces its committed leaderboard result
byte for byte (host and timing fields aside), attack sections carried over from the committed file."""

from __future__ import annotations

import json

import pytest
import torch

from conftest import REPO, need_real

pytestmark = [pytest.mark.realdata, pytest.mark.slow]


@pytest.mark.parametrize("model_id", ["Baseline_ResNet8_ERM", "Baseline_ResNet8_PGDAT"])
def test_benchmark_reproduces_the_committed_result(real_root, model_id, tmp_path):
    from medbench import benchmark
    from medbench.matrix.assemble import identity

    need_real(real_root, "breastmnist.npz")
    torch.set_num_threads(1)
    results = REPO / "leaderboard" / "results" / "breastmnist"
    committed = results / f"{model_id}.json"
    data = json.loads(committed.read_text())
    # BE / rBE are relative to the pinned reference's committed result (medbench run reads its cells)
    reference = None if model_id == "Baseline_ResNet8_ERM" else results / "Baseline_ResNet8_ERM.json"
    ours = benchmark(model_id, "breastmnist", threats="all", data_root=real_root, reuse=committed, progress=False,
                     reference=reference, out=tmp_path / "r.json")
    assert identity(ours) == identity(data)
    assert set(ours.provenance.reused) == {"Linf", "L2", "curves"}
    assert not (tmp_path / "r.json.cells").exists()  # the cells go once the result is written
