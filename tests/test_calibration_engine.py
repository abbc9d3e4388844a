"""Calibration in the harness (protocol 4, issue 27): from the logits each stage computes anyway, with the
temperature fitted once on the val split; equal to the library called on those logits directly."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import medbench
from medbench.calibration import calibration_summary, expected_calibration_error
from medbench.calibration.temperature import fit_temperature
from medbench.inference import predict_logits
from medbench.metrics import probabilities
from medbench.protocol import CURRENT_VERSION, load_protocol
from conftest import need_real


@pytest.fixture(scope="module")
def evaluated(real_root, breast_model):
    need_real(real_root, "breastmnist.npz")
    protocol = load_protocol().derive(**{
        "adversarial.subset_size": 40, "adversarial.n_iter": 5, "adversarial.square_queries": 30,
        "clean.bootstrap_resamples": 100, "corruptions.include": ["pixelate", "brightness_down"]})
    result = medbench.benchmark(breast_model, "breastmnist", threats="clean,corruptions,Linf", protocol=protocol,
                                data_root=real_root, progress=False, checks=False)
    return result, protocol


def test_protocol_4_measures_calibration():
    cal = load_protocol().get("calibration")
    assert CURRENT_VERSION == "4" and cal == {"bins": 15, "coverage": 0.9, "temperature_split": "val"}
    assert load_protocol("3").get("calibration") is None  # version-3 results keep their bytes


def test_clean_calibration_is_the_library_on_the_clean_logits(evaluated, breast_model, real_root):
    result, protocol = evaluated
    cal = result.clean.calibration
    test = medbench.load_dataset("breastmnist", "test", root=real_root)
    val = medbench.load_dataset("breastmnist", "val", root=real_root)
    logits = predict_logits(breast_model, test.images, batch_size=64, device=torch.device("cpu"), progress=False)
    val_logits = predict_logits(breast_model, val.images, batch_size=64, device=torch.device("cpu"), progress=False)
    assert cal.ece.value == pytest.approx(expected_calibration_error(test.labels, probabilities(logits, "binary-class"),
                                                                     "binary-class", n_bins=15), abs=1e-9)
    # the interval of every score holds its value, but the ECE's: binned ECE is biased upwards on a small set, and
    # its resamples more so (the protocol says so)
    assert cal.ece.ci.low < cal.ece.ci.high and cal.n == len(test.labels)
    for score in (cal.brier, cal.nll, cal.aurc, cal.accuracy_at_coverage):
        assert score.ci.low <= score.value <= score.ci.high
    assert cal.n_resamples == 100 and cal.bins == 15 and cal.coverage == 0.9
    t = fit_temperature(val_logits, val.labels, "binary-class")
    assert cal.temperature_scaled.temperature == pytest.approx(t, rel=1e-6)
    assert cal.temperature_scaled.n_fit == len(val.labels)
    # the raw numbers are never replaced: they stay the unscaled logits'
    direct = calibration_summary(test.labels, logits, "binary-class", n_resamples=100)
    assert cal.nll.value == pytest.approx(direct.nll.value, abs=1e-9)
    assert len(cal.risk_coverage.coverage) == len(cal.risk_coverage.risk) == 20
    assert cal.risk_coverage.coverage[-1] == 1.0
    assert cal.risk_coverage.risk[-1] == pytest.approx(1 - result.clean.accuracy, abs=1e-9)


def test_corruption_calibration_pools_every_copy_per_severity(evaluated):
    result, _ = evaluated
    cal = result.corruptions.calibration
    assert sorted(cal) == ["1", "2", "3", "4", "5", "all"]
    n = result.clean.n
    assert all(cal[str(s)].n == 2 * n for s in range(1, 6)) and cal["all"].n == 10 * n
    t = result.clean.calibration.temperature_scaled.temperature
    assert all(c.temperature_scaled.temperature == t for c in cal.values())  # fitted once, on val


def test_grouped_bootstrap_resamples_images_with_their_copies():
    """Ten identical copies of each image are one draw, not ten: the interval is that of the images alone."""
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 150)
    logits = rng.normal(size=(150, 2)) + 1.5 * np.eye(2)[labels]
    alone = calibration_summary(labels, logits, "binary-class", n_resamples=200)
    copies = calibration_summary(np.tile(labels, 10), np.tile(logits, (10, 1)), "binary-class", n_resamples=200,
                                 groups=np.tile(np.arange(150), 10))
    naive = calibration_summary(np.tile(labels, 10), np.tile(logits, (10, 1)), "binary-class", n_resamples=200)
    # the same resamples of the same 150 images
    assert copies.brier.ci.low == pytest.approx(alone.brier.ci.low) and copies.brier.ci.high == pytest.approx(alone.brier.ci.high)
    assert naive.brier.ci.high - naive.brier.ci.low < 0.5 * (alone.brier.ci.high - alone.brier.ci.low)


def test_headline_attack_has_calibration_at_its_final_inputs(evaluated):
    result, _ = evaluated
    head, strong = result.adversarial["Linf-2/255"], result.adversarial["Linf-4/255"]
    assert head.calibration is not None and strong.calibration is None
    assert head.calibration.n == head.subset.n
    # the attack lowers accuracy on the subset, and with it the accuracy of the confident 90%
    assert head.calibration.accuracy_at_coverage.value <= result.clean.calibration.accuracy_at_coverage.value + 0.05
