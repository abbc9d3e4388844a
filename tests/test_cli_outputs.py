"""What users read and get back: model names, the float data view, progress/ETA, estimates, the printed table."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import medbench
from medbench.schema import EvaluationResult

from conftest import need_real

REPO = Path(__file__).resolve().parents[1]


class TinyNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(28 * 28, 2))

    def forward(self, x):
        return self.net(x)


@pytest.mark.realdata
def test_model_name_is_inferred_and_model_id_overrides(real_root):
    need_real(real_root, "breastmnist.npz")
    torch.manual_seed(0)
    kw = dict(threats="clean", data_root=real_root, checks=False, progress=False,
              protocol=medbench.load_protocol().derive(**{"clean.bootstrap_resamples": 5}))
    assert medbench.benchmark(TinyNet(), "breastmnist", **kw).model_id == "TinyNet"
    assert medbench.benchmark(TinyNet(), "breastmnist", model_id="Mine", **kw).model_id == "Mine"
    zoo = medbench.load_model("Baseline_ResNet8_ERM", dataset="breastmnist")
    assert medbench.benchmark(zoo, "breastmnist", **kw).model_id == "Baseline_ResNet8_ERM"


@pytest.mark.realdata
def test_float_view_and_data_loader_follow_the_model_contract(real_root):
    need_real(real_root, "breastmnist.npz")
    split = medbench.load_dataset("breastmnist", "test", root=real_root)
    x, y = split.as_float()
    assert x.dtype == torch.float32 and 0 <= float(x.min()) and float(x.max()) <= 1 and y.dtype == torch.int64
    assert torch.equal(x, split.images.float() / 255) and np.array_equal(y.numpy(), split.labels)
    batches = list(split.loader(batch_size=50))
    assert [len(b[0]) for b in batches] == [50, 50, 50, 6]
    assert torch.equal(torch.cat([b[0] for b in batches]), x) and torch.equal(torch.cat([b[1] for b in batches]), y)
    train = medbench.data_loader("breastmnist", "train", root=real_root, batch_size=64)
    first = next(iter(train))[1]
    assert train.batch_size == 64 and first.dtype == torch.int64
    # train shuffles by default, so two epochs differ in order (seeded by torch's global RNG)
    torch.manual_seed(0)
    a = next(iter(train))[1]
    torch.manual_seed(1)
    b = next(iter(train))[1]
    assert not torch.equal(a, b)


def test_attack_chunk_reuses_known_clean_predictions():
    """Given the run's clean predictions, AutoAttack does not re-run the clean pass on the chunk."""
    from medbench.attacks import attack_chunk, attack_config, make_autoattack

    calls = []

    class Counting(TinyNet):
        def forward(self, x):
            calls.append(len(x))
            return super().forward(x)

    torch.manual_seed(0)
    model = Counting().eval()
    spec = medbench.get_spec("breastmnist")
    quick = medbench.load_protocol().derive(**{"adversarial.n_iter": 2, "adversarial.square_queries": 5})
    cfg = attack_config(spec, "Linf", 2 / 255, quick, batch_size=8)
    x, y = torch.rand(8, 1, 28, 28), torch.tensor([0, 1] * 4)
    wrong = 1 - y  # every point misclassified: nothing left to attack
    out = attack_chunk(make_autoattack(model, cfg, "cpu"), cfg, x, y, clean_pred=wrong)
    assert calls == [8]  # only the final adversarial logits, no clean forward
    assert not out.robust.any() and (out.broken_by == 1).all()
    calls.clear()
    attack_chunk(make_autoattack(model, cfg, "cpu"), cfg, x, y, clean_pred=None)
    assert calls[0] == 8 and len(calls) > 1  # without them: a clean forward first


def test_attack_progress_eta_prices_passes_and_learns_from_each_attack():
    import time
    from types import SimpleNamespace

    from medbench.attacks import progress as P

    P._RATIOS.clear()
    unit = P.UnitCost(forward=(0.01, 0.001), backward=(0.02, 0.002))
    cfg = SimpleNamespace(n_iter=10, n_restarts=1, n_target_classes=None, n_queries=100)
    bar = P.AttackProgress("Linf-2/255 x", "Linf", ["apgd-ce", "square"], [10, 10], enabled=False, config=cfg, unit=unit)
    assert "unknown until apgd-ce" in P.AttackProgress("x", "Linf", ["apgd-ce"], [10], enabled=False)._eta("apgd-ce", 10)
    bar.chunk(0)
    bar.start("apgd-ce", 10, 10)
    # before any attack ran: apgd on 10 (10 passes x 0.04 s) + square on all 10 (100 x 0.02 s), twice
    left, provisional = bar.remaining_s("apgd-ce", 10)
    assert left == pytest.approx(4.8, abs=0.05) and provisional
    bar._t0 = time.perf_counter() - 0.8  # apgd-ce took twice its price
    bar.done("apgd-ce", 10, 1)  # one point left for square
    left, provisional = bar.remaining_s()
    # square on 1 point (100 x 0.011 s) + chunk 2: apgd 2 x 0.4 s + square on 1 point 1.1 s
    assert left == pytest.approx(1.1 + 0.8 + 1.1, abs=0.05) and provisional  # square has not run yet
    bar.start("square", 1, 10)
    bar._t0 = time.perf_counter() - 11.0  # ten times its price: a small batch costs nearly a large one
    bar.done("square", 1, 1)
    left, provisional = bar.remaining_s()
    assert left == pytest.approx(0.8 + 11.0, abs=0.1) and not provisional  # not 11 s per point x 10 points
    assert bar._eta(None, 0) == "ETA 12s"
    bar.__exit__(None, None, None)
    P._RATIOS.clear()


def test_unit_cost_is_measured_without_touching_the_model():
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 2)).eval()
    from medbench.attacks.progress import measure_unit_cost

    unit = measure_unit_cost(model, torch.rand(16, 1, 28, 28), torch.zeros(16, dtype=torch.long), repeats=1)
    assert all(v >= 0 for v in (*unit.forward, *unit.backward)) and unit.seconds("b", 16) > 0
    assert all(p.grad is None for p in model.parameters())


def test_estimate_comes_from_committed_provenance():
    from medbench.cli.estimate import estimate_text, measured_times

    runs = measured_times("breastmnist", 28)
    if not runs:
        pytest.skip("no committed breastmnist results")
    text = estimate_text("breastmnist", 28, ["clean", "Linf"])
    import re

    used = re.search(r"for the (\d+) reference models", text)  # those whose Linf time was measured
    assert used and 1 <= int(used.group(1)) <= len(runs) and "Linf ~" in text
    assert estimate_text("pathmnist", 28, ["clean"]) is None  # no measurement, no made-up number


def test_printed_corruption_block_has_a_header_and_three_decimals(capsys):
    from medbench.cli.evaluate import print_result

    paths = sorted((REPO / "leaderboard" / "results").glob("*/*.json"))
    result = next((EvaluationResult.from_json(p) for p in paths), None)
    if result is None or result.corruptions is None:
        pytest.skip("no committed result with corruptions")
    print_result(result)
    out = capsys.readouterr().out
    block = out.split("\ncorruptions (", 1)[1].split("\n\n", 1)[0]
    assert "relative robustness" not in out
    assert re.search(r"corruption\s+balanced acc\.", block)
    for name, ba in result.corruptions.per_corruption.items():
        assert re.search(rf"{name}\s+{ba:.3f}\b", block)


def test_overview_figure_is_paper_ready(tmp_path):
    """200+ dpi; the chance line is labelled; heatmap cells carry their values (checked in the SVG)."""
    import struct

    paths = sorted((REPO / "leaderboard" / "results").glob("*/*.json"))
    result = next((r for r in map(EvaluationResult.from_json, paths) if r.corruptions and r.curves), None)
    if result is None:
        pytest.skip("no committed full result")
    png = result.plot(tmp_path / "o.png").read_bytes()
    width = struct.unpack(">I", png[16:20])[0]
    assert width >= 4 * 4.6 * 200 * 0.99
    svg = result.plot(tmp_path / "o.svg").read_text()
    assert "chance (" in svg
    cell = result.corruptions.cells[0]
    assert f"{cell.balanced_accuracy:.2f}" in svg
