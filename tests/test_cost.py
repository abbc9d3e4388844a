"""Cost of the protocol: per-stage timing in provenance, and the work skipped without changing a number
(the eps-0 curve points are read from the clean pass instead of attacking at eps 0)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import medbench.attacks.evaluation as attack_eval
from medbench.evaluate import benchmark
from medbench.protocol import load_protocol
from medbench.schema import EvaluationResult
from conftest import real_data_root

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


def _protocol():
    # full APGD iterations (the eps-0 shortcut must hold for the real attack), a small subset and
    # two eps per curve so the test takes seconds
    return load_protocol().derive(**{
        "adversarial.subset_size": 32, "adversarial.n_iter": 10, "adversarial.square_queries": 50,
        "curves.apgd_eps_255": [0, 2], "curves.fgsm_eps_255": [0, 2], "curves.noise_sigma": [0.05],
        "curves.apgd_n_iter": 100, "clean.bootstrap_resamples": 50,
    })


def _run(real_root):
    torch.set_num_threads(1)
    return benchmark("Baseline_ResNet8_ERM", "breastmnist", threats="clean,Linf,curves", protocol=_protocol(),
                     data_root=real_root, batch_size=16, progress=False)


@pytest.fixture(scope="module")
def new_path():
    """The run as benchmark() does it now, and the eps at which APGD-CE was called."""
    root = real_data_root()
    if root is None or not (root / "breastmnist.npz").is_file():
        pytest.skip("real BreastMNIST is absent")
    calls: list[float] = []
    real_apgd = attack_eval.apgd_ce

    def counting_apgd(model, x, y, eps, **kw):
        calls.append(eps)
        return real_apgd(model, x, y, eps, **kw)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(attack_eval, "apgd_ce", counting_apgd)
        return _run(root), calls


@pytest.mark.slow
def test_eps0_curve_points_from_the_clean_pass_equal_running_the_attacks(real_root, new_path, monkeypatch):
    """New path (eps-0 APGD-CE / FGSM predictions read from the clean pass) vs old path (both attacks
    run at eps 0): identical curves, AutoAttack sections and checks, on real BreastMNIST and real weights."""
    new, calls = new_path
    assert calls and 0.0 not in calls, "APGD-CE still runs at eps 0"
    calls = []
    real_apgd = attack_eval.apgd_ce
    monkeypatch.setattr(attack_eval, "apgd_ce", lambda model, x, y, eps, **kw: calls.append(eps) or
                        real_apgd(model, x, y, eps, **kw))
    assert new.provenance.wall_time_per_stage_s["curves/apgd-ce/0/255"] < 0.05

    calls.clear()
    monkeypatch.setattr(attack_eval, "_clean_predictions", lambda ctx: None)  # the old path: attack at eps 0
    old = _run(real_root)
    assert 0.0 in calls
    assert old.curves.model_dump() == new.curves.model_dump()
    assert {k: v.model_dump(exclude={"wall_time_s"}) for k, v in old.adversarial.items()} == \
        {k: v.model_dump(exclude={"wall_time_s"}) for k, v in new.adversarial.items()}
    assert [c.model_dump() for c in old.checks] == [c.model_dump() for c in new.checks]
    assert all(c.passed for c in new.checks if c.kind == "sanity")
    # the ERM model is not robust at 2/255: the eps-0 point must differ from the attacked one
    assert new.curves.apgd_ce[1].balanced_accuracy < new.curves.apgd_ce[0].balanced_accuracy


@pytest.mark.slow
def test_provenance_records_wall_and_cpu_time_per_stage(new_path):
    r, _ = new_path
    wall, cpu = r.provenance.wall_time_per_stage_s, r.provenance.cpu_time_per_stage_s
    attacks = r.adversarial["Linf-2/255"].config.attacks
    expected = {"clean", "admission", "curves/apgd-ce/2/255", "curves/fgsm/2/255", "curves/noise/0.05",
                *(f"{label}/{a}" for label in ("Linf-2/255", "Linf-4/255") for a in attacks)}
    assert expected <= set(wall) and set(wall) == set(cpu)
    assert all(v >= 0 for v in wall.values()) and all(v >= 0 for v in cpu.values())
    # APGD-CE with 10 iterations on every correct point costs more than one FGSM step on 32 images
    assert cpu["Linf-2/255/apgd-ce"] > cpu["curves/fgsm/2/255"]
    # the stages of a threat never add up to more than the threat itself
    linf = sum(v for k, v in wall.items() if k.startswith("Linf-"))
    assert linf <= r.provenance.wall_time_per_threat_s["Linf"] + 1e-3
    # and a result without the fields (committed before they existed) still validates
    raw = json.loads(r.to_json())
    for key in ("wall_time_per_stage_s", "cpu_time_per_stage_s"):
        del raw["provenance"][key]
    assert EvaluationResult.model_validate(raw).provenance.wall_time_per_stage_s == {}
