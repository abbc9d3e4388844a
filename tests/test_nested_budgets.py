"""Nested budgets (protocol ``adversarial.nested_budgets``): a larger budget attacks only what survived the
next smaller one of the same norm, carrying the broken points over with the example that broke them (it
lies inside the larger ball too). Robust accuracy then never goes up with eps, for the threats and the
APGD-CE / FGSM curves alike, and the larger budget costs only its survivors. Real data, a zoo model."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import need_real

pytestmark = [pytest.mark.realdata, pytest.mark.slow]
# a derived protocol small enough for seconds: 48 points, few iterations and queries
SMALL = {"adversarial.subset_size": 48, "adversarial.n_iter": 5, "adversarial.square_queries": 20,
         "curves.apgd_n_iter": 5, "curves.noise_sigma": [0.05], "clean.bootstrap_resamples": 50}


def _run(nested: bool):
    import medbench
    from medbench.protocol import load_protocol

    proto = load_protocol().derive(**SMALL, **{"adversarial.nested_budgets": nested})
    return medbench.benchmark("Baseline_ResNet8_ERM", "breastmnist", threats=["clean", "Linf", "curves"],
                              protocol=proto, progress=False)


@pytest.fixture(scope="module")
def runs(real_root):
    need_real(real_root, "breastmnist.npz")
    return _run(False), _run(True)


def test_the_larger_budget_carries_the_smaller_ones_breaks(runs):
    plain, nested = runs
    small, large = nested.adversarial["Linf-2/255"], nested.adversarial["Linf-4/255"]
    assert small.nested_from is None and large.nested_from == "Linf-2/255"
    broken_small = ~np.asarray(small.robust_flags)
    assert large.carried_over == int(broken_small.sum()) > 0
    assert not np.asarray(large.robust_flags)[broken_small].any()  # broken at 2/255: broken at 4/255
    assert np.array_equal(np.asarray(large.adv_predictions)[broken_small],
                          np.asarray(small.adv_predictions)[broken_small])  # by the same example
    assert large.robust_balanced_accuracy <= small.robust_balanced_accuracy
    # the smaller budget is attacked exactly as without nesting
    assert nested.adversarial["Linf-2/255"].robust_flags == plain.adversarial["Linf-2/255"].robust_flags
    # and the plain run records nothing about nesting (results of the current protocol keep their bytes)
    assert '"nested_from"' not in plain.to_json() and '"carried_over"' not in plain.to_json()


def test_the_curves_never_go_up(runs):
    plain, nested = runs
    for points in (nested.curves.apgd_ce, nested.curves.fgsm):
        correct = np.array([p.correct for p in points])  # eps x points
        assert (correct[1:] <= correct[:-1]).all()  # a point broken at one eps stays broken at the larger ones
        accs = [p.accuracy for p in points]
        assert accs == sorted(accs, reverse=True)
    assert [p.correct for p in nested.curves.noise] == [p.correct for p in plain.curves.noise]  # not an attack


def test_the_larger_budget_costs_only_its_survivors(runs):
    plain, nested = runs
    survivors = sum(nested.adversarial["Linf-2/255"].robust_flags)
    stage = "Linf-4/255/apgd-ce"
    cpu_plain, cpu_nested = (r.provenance.cpu_time_per_stage_s[stage] for r in (plain, nested))
    n = nested.adversarial["Linf-4/255"].subset.n
    assert survivors < n
    # APGD-CE's cost is linear in the points attacked: nesting attacks survivors/n of them (generous slack)
    assert cpu_nested < cpu_plain * (survivors / n) * 1.5 + 0.5
