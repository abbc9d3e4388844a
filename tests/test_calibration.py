"""medbench.calibration against netcal, torchmetrics and sklearn, and its properties on real
MedMNIST logits."""

from __future__ import annotations

import contextlib
import subprocess
import sys

import numpy as np
import pytest
from sklearn.metrics import brier_score_loss, log_loss

from medbench import calibration, metrics
from medbench.calibration import metrics as cm
from medbench.calibration import plots as calplots
from tests.conftest import need_real

BINARY, MULTICLASS, ORDINAL = "binary-class", "multi-class", "ordinal-regression"
MULTILABEL = metrics.MULTILABEL


def _random(task: str, n: int = 700, k: int = 4, seed: int = 0, scale: float = 2.0):
    """Labels and probabilities whose calibration is imperfect (labels drawn from sharper
    probabilities)."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(n, k)) * scale
    if task == MULTILABEL:
        labels = (rng.random((n, k)) < metrics.probabilities(1.5 * logits, task)).astype(np.int64)
    else:
        truth = metrics.probabilities(1.5 * logits, task)
        labels = (rng.random(n)[:, None] > np.cumsum(truth, axis=1)).sum(axis=1)
    return labels, metrics.probabilities(logits, task), logits


@contextlib.contextmanager
def _torchvision_absent_for_lightning():
    """torchmetrics imports torchvision whenever the distribution is installed, and the PyPI
    torchvision wheel beside the CPU torch fails to import; make lightning_utilities report it
    absent meanwhile."""
    from lightning_utilities.core import imports

    original = imports.RequirementCache._check_requirement

    def check(self):
        original(self)
        if self.requirement.split("<")[0].split(">")[0].split("=")[0].strip() == "torchvision":
            self.available = False

    imports.RequirementCache._check_requirement = check
    try:
        yield
    finally:
        imports.RequirementCache._check_requirement = original


@pytest.fixture(scope="module")
def tm():
    pytest.importorskip("lightning_utilities")
    with _torchvision_absent_for_lightning():
        classification = pytest.importorskip("torchmetrics.functional.classification")
    return classification


@pytest.fixture(scope="module")
def netcal_ece():
    return pytest.importorskip("netcal.metrics").ECE


# ----------------------------------------------------------------------------- reference libraries

@pytest.mark.parametrize("n_bins", [5, 15])
@pytest.mark.parametrize("task", [BINARY, MULTICLASS])
def test_equal_mass_ece_equals_netcal(netcal_ece, task, n_bins):
    labels, probs, _ = _random(task, k=2 if task == BINARY else 4)
    ours = calibration.expected_calibration_error(labels, probs, task, n_bins=n_bins)
    theirs = netcal_ece(n_bins, equal_intervals=False).measure(probs, labels)
    assert ours == pytest.approx(theirs, abs=1e-12)
    assert ours > 0.02  # a miscalibrated model: a trivial 0 would not pass


def _plain_equal_mass_ece(confidence: np.ndarray, outcome: np.ndarray, n_bins: int) -> float:
    """ECE written out: np.quantile edges (outer 0 and 1), bins [lo, hi), one bin at a time."""
    edges = np.quantile(confidence, np.linspace(0, 1, n_bins + 1))
    edges[0], edges[-1] = 0.0, 1.0
    total = 0.0
    for lo, hi in zip(edges[:-1], edges[1:]):
        inside = (confidence >= lo) & (confidence < hi)
        if inside.any():
            gap = abs(outcome[inside].mean() - confidence[inside].mean())
            total += inside.sum() / len(confidence) * gap
    return total


def test_equal_mass_ece_with_tied_confidences(netcal_ece):
    """Rounded probabilities put many examples on the quantile edges, and several edges coincide
    (netcal then raises scipy's "smallest edge difference is numerically 0")."""
    labels, probs, _ = _random(MULTICLASS, n=500, k=3, seed=3)
    probs = np.round(probs, 1)
    probs[:, -1] = 1 - probs[:, :-1].sum(axis=1)
    probs = np.clip(probs, 0, 1)
    top, hit = probs.max(axis=1), (probs.argmax(axis=1) == labels).astype(float)
    for n_bins in (4, 10):
        ours = calibration.expected_calibration_error(labels, probs, MULTICLASS, n_bins=n_bins)
        plain = _plain_equal_mass_ece(np.clip(top, 1e-15, 1 - 1e-15), hit, n_bins)
        assert ours == pytest.approx(plain, abs=1e-12)
    with pytest.raises(ValueError, match="numerically 0"):
        netcal_ece(10, equal_intervals=False).measure(probs, labels)


@pytest.mark.parametrize("task", [BINARY, MULTICLASS])
def test_equal_width_ece_equals_torchmetrics_and_netcal(tm, netcal_ece, task):
    import torch

    labels, probs, _ = _random(task, k=2 if task == BINARY else 5, seed=1)
    if task == BINARY:
        positive = torch.as_tensor(np.ascontiguousarray(probs[:, 1]))
        target = torch.as_tensor(labels)
        theirs = tm.binary_calibration_error(positive, target, n_bins=15, norm="l1")
    else:
        theirs = tm.multiclass_calibration_error(torch.as_tensor(probs), torch.as_tensor(labels),
                                                 num_classes=5, n_bins=15, norm="l1")
    ours = calibration.expected_calibration_error(labels, probs, task, n_bins=15,
                                                  binning="equal-width")
    netcal_value = netcal_ece(15, equal_intervals=True).measure(probs, labels)
    assert float(theirs) == pytest.approx(netcal_value, abs=1e-6)  # the two libraries agree
    assert ours == pytest.approx(float(theirs), abs=1e-6)  # torchmetrics computes in float32
    equal_mass = calibration.expected_calibration_error(labels, probs, task, n_bins=15)
    assert ours != pytest.approx(equal_mass, abs=1e-6)


@pytest.mark.parametrize("task", [BINARY, MULTICLASS])
def test_brier_and_nll_equal_sklearn(task):
    labels, probs, _ = _random(task, k=2 if task == BINARY else 4, seed=2)
    k = probs.shape[1]
    scored = probs[:, 1] if task == BINARY else probs
    brier = brier_score_loss(labels, scored, labels=list(range(k)))
    assert calibration.brier_score(labels, probs, task) == pytest.approx(brier, rel=1e-12)
    nll = log_loss(labels, probs, labels=list(range(k)))
    assert calibration.negative_log_likelihood(labels, probs, task) == pytest.approx(nll, rel=1e-12)


def test_multilabel_scores_are_per_label_binary_scores(netcal_ece):
    labels, probs, _ = _random(MULTILABEL, k=5, seed=4)
    per_label = calibration.per_label_scores(labels, probs, MULTILABEL, n_bins=10)
    assert all(v.shape == (5,) for v in per_label.values())
    for j in range(5):
        binary = np.stack([1 - probs[:, j], probs[:, j]], axis=1)
        brier, nll = brier_score_loss(labels[:, j], probs[:, j]), log_loss(labels[:, j], binary)
        assert per_label["brier"][j] == pytest.approx(brier, rel=1e-12)
        assert per_label["nll"][j] == pytest.approx(nll, rel=1e-12)
        assert per_label["ece"][j] == pytest.approx(
            netcal_ece(10, equal_intervals=False).measure(probs[:, j], labels[:, j]), abs=1e-12)
        aurc = calibration.aurc(labels[:, j], binary, BINARY)
        assert per_label["aurc"][j] == pytest.approx(aurc, abs=1e-12)
    mean_ece = calibration.expected_calibration_error(labels, probs, MULTILABEL, n_bins=10)
    assert mean_ece == pytest.approx(per_label["ece"].mean())


# ----------------------------------------------------------------------------- the bootstrap

@pytest.mark.parametrize("task", [BINARY, MULTICLASS, MULTILABEL])
def test_resample_weights_equal_the_materialised_resample(task):
    """A count row scores exactly like the resample written out (bins recomputed on the
    resample)."""
    labels, probs, _ = _random(task, n=300, k=2 if task == BINARY else 3, seed=5)
    rng = np.random.default_rng(0)
    idx = rng.integers(0, len(labels), size=(3, len(labels)))
    counts = np.stack([np.bincount(row, minlength=len(labels)) for row in idx]).astype(float)
    scores = cm.example_scores(labels, probs, task)
    weighted = cm.weighted_scores(scores, counts, n_bins=7, coverage=0.8)
    for row, draw in zip(weighted, idx):
        order = np.sort(draw)  # the order of a resample does not matter
        expected = calibration.per_label_scores(labels[order], probs[order], task, n_bins=7,
                                                coverage=0.8)
        for i, name in enumerate(cm.SCORE_NAMES):
            np.testing.assert_allclose(row[:, i], expected[name], rtol=1e-10, atol=1e-12,
                                       err_msg=name)


def test_bootstrap_shares_the_resamples_of_metrics():
    labels, probs, _ = _random(MULTICLASS, n=200, k=3, seed=6)
    values = calibration.bootstrap_calibration(labels, probs, MULTICLASS, n_resamples=50, seed=3)
    scores = cm.example_scores(labels, probs, MULTICLASS)
    brier = metrics.bootstrap(lambda w: (w @ scores.brier[:, 0]) / w.sum(1), len(labels),
                              n_resamples=50, seed=3)
    np.testing.assert_allclose(values[:, 1], brier, rtol=1e-12)
    assert values.shape == (50, len(cm.SCORE_NAMES))
    other_seed = calibration.bootstrap_calibration(labels, probs, MULTICLASS, n_resamples=50,
                                                   seed=4)
    assert not np.allclose(values[:, 1], other_seed[:, 1])


# ----------------------------------------------------------------------------- selective prediction

def test_aurc_of_a_perfect_ranking_is_the_analytic_optimum():
    rng = np.random.default_rng(7)
    n, errors = 400, 60
    labels = rng.integers(0, 3, n)
    wrong = np.zeros(n, dtype=bool)
    wrong[rng.choice(n, errors, replace=False)] = True
    predicted = np.where(wrong, (labels + 1) % 3, labels)
    # the errors are the least confident
    confidence = np.where(wrong, rng.uniform(0.34, 0.5, n), rng.uniform(0.51, 0.99, n))
    probs = np.full((n, 3), 0.0)
    probs[np.arange(n), predicted] = confidence
    probs[np.arange(n), (predicted + 1) % 3] = (1 - confidence) * 0.6
    probs[np.arange(n), (predicted + 2) % 3] = (1 - confidence) * 0.4
    optimum = sum(j / (n - errors + j) for j in range(1, errors + 1)) / n
    assert calibration.aurc(labels, probs, MULTICLASS) == pytest.approx(optimum, rel=1e-12)
    r = errors / n
    # Geifman et al.'s closed form
    assert optimum == pytest.approx(r + (1 - r) * np.log(1 - r), abs=2e-3)
    shuffled = probs[rng.permutation(n)]  # same confidences, ranking unrelated to the errors
    assert calibration.aurc(labels, shuffled, MULTICLASS) > optimum + 0.05


def test_risk_coverage_curve_and_selective_accuracy():
    labels = np.array([0, 1, 1, 0, 1, 0, 1, 1, 0, 0])
    p1 = np.array([0.05, 0.95, 0.9, 0.6, 0.8, 0.3, 0.4, 0.7, 0.2, 0.45])  # wrong: 0.6 and 0.4
    probs = np.stack([1 - p1, p1], axis=1)
    curve = calibration.risk_coverage_curve(labels, probs, BINARY)
    assert curve.coverage[-1] == 1.0 and curve.risk[-1] == pytest.approx(0.2)
    # predicted-class confidences, sorted: .95 .95 | .9 | .8 .8 | .7 .7 | .6 .6 (both wrong) | .55;
    # ties enter together
    assert curve.coverage.tolist() == pytest.approx([0.2, 0.3, 0.5, 0.7, 0.9, 1.0])
    assert curve.risk[:4].tolist() == pytest.approx([0, 0, 0, 0])
    assert curve.risk[4] == pytest.approx(2 / 9)
    expected_aurc = (2 * (2 / 9) + 0.2) / 10  # each example: the risk at the end of its tie group
    assert calibration.aurc(labels, probs, BINARY) == pytest.approx(expected_aurc, rel=1e-12)
    acc, ba = calibration.selective_accuracy(labels, probs, BINARY, coverage=0.9)
    assert acc == pytest.approx(7 / 9)  # the nine most confident, two of them wrong
    assert ba == pytest.approx((3 / 4 + 4 / 5) / 2)  # class 0: 3 of 4 kept right; class 1: 4 of 5
    acc_all, ba_all = calibration.selective_accuracy(labels, probs, BINARY, coverage=1.0)
    y_pred = metrics.predictions(probs, BINARY)
    assert acc_all == pytest.approx(metrics.accuracy(labels, y_pred))
    assert ba_all == pytest.approx(metrics.balanced_accuracy(labels, y_pred, 2))


def test_coverage_threshold_splits_a_tie_group_fractionally():
    labels = np.array([0, 0, 0, 0])
    probs = np.array([[0.9, 0.1], [0.7, 0.3], [0.3, 0.7], [0.7, 0.3]])  # third wrong, ties two
    acc, _ = calibration.selective_accuracy(labels, probs, BINARY, coverage=0.5)
    # kept: the 0.9 one and half of the three 0.7s (two right, one wrong): (1 + 1/3 * 2) / 2
    assert acc == pytest.approx((1 + (2 / 3) * 1) / 2)


# ----------------------------------------------------------------------------- real data

def _linear_logits(root, dataset: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Logits of a fixed logistic regression on raw pixels, trained on the train split."""
    import medbench
    from sklearn.linear_model import LogisticRegression

    need_real(root, f"{dataset}.npz")
    splits = {}
    for split in ("train", "val", "test"):
        images, labels = medbench.load_dataset(dataset, split, root=root)
        splits[split] = (images.reshape(len(images), -1).numpy() / 255.0, np.asarray(labels))
    model = LogisticRegression(C=0.01, max_iter=300).fit(*splits["train"])
    out = {}
    for split, (x, y) in splits.items():
        z = model.decision_function(x)
        out[split] = (np.stack([np.zeros_like(z), z], axis=1) if z.ndim == 1 else z, y)
    return out


@pytest.fixture(scope="module")
def retina(real_root):
    return _linear_logits(real_root, "retinamnist")


@pytest.fixture(scope="module")
def breast(real_root):
    return _linear_logits(real_root, "breastmnist")


@pytest.mark.realdata
@pytest.mark.parametrize("name,task", [("retina", ORDINAL), ("breast", BINARY)])
def test_temperature_scaling_undoes_overconfidence_on_real_logits(request, name, task):
    logits = request.getfixturevalue(name)
    (val_z, val_y), (test_z, test_y) = logits["val"], logits["test"]
    base = calibration.fit_temperature(val_z, val_y, task)
    hot = calibration.fit_temperature(5 * val_z, val_y, task)
    assert hot == pytest.approx(5 * base, rel=1e-4)  # the fit is at the optimum, not at a bound
    raw = calibration.logits_nll(5 * test_z, test_y, task)
    assert calibration.logits_nll(5 * test_z / hot, test_y, task) < raw - 0.2
    summary = calibration.calibration_summary(test_y, 5 * test_z, task, val_logits=5 * val_z,
                                              val_labels=val_y, n_resamples=200)
    scaled = summary.temperature_scaled
    assert scaled.temperature == pytest.approx(hot) and scaled.n_fit == len(val_y)
    assert scaled.nll.value < summary.nll.value and scaled.ece.value < summary.ece.value
    if task == BINARY:  # the predicted-class probability is monotone in |logit gap|: same ranking
        assert scaled.aurc.value == pytest.approx(summary.aurc.value, rel=1e-12)


@pytest.mark.realdata
def test_temperature_recovers_five_when_labels_follow_the_model(retina):
    """Labels drawn from softmax(z) make z calibrated by construction; on 5 z the fit must find T
    near 5."""
    z = np.concatenate([retina["train"][0], retina["val"][0], retina["test"][0]])
    rng = np.random.default_rng(0)
    p = metrics.probabilities(z, ORDINAL)
    labels = (rng.random(len(z))[:, None] > np.cumsum(p, axis=1)).sum(axis=1)
    assert calibration.fit_temperature(5 * z, labels, ORDINAL) == pytest.approx(5, rel=0.1)


@pytest.mark.realdata
def test_summary_intervals_contain_the_estimates_on_real_logits(retina):
    test_z, test_y = retina["test"]
    summary = calibration.calibration_summary(test_y, test_z, ORDINAL, n_resamples=300, seed=0)
    for name in cm.SCORE_NAMES:
        estimate = getattr(summary, name)
        assert estimate.ci.low <= estimate.value <= estimate.ci.high, name
        assert estimate.ci.high - estimate.ci.low > 0, name
    probs = metrics.probabilities(test_z, ORDINAL)
    ece = calibration.expected_calibration_error(test_y, probs, ORDINAL)
    assert summary.ece.value == pytest.approx(ece)
    assert summary.n == len(test_y) and summary.bins == 15 and summary.temperature_scaled is None
    assert sum(summary.reliability.count) == len(test_y) and len(summary.reliability.count) == 15
    assert type(summary).model_validate_json(summary.model_dump_json()) == summary


def test_multilabel_summary_shapes():
    labels, probs, logits = _random(MULTILABEL, n=300, k=6, seed=8)
    summary = calibration.calibration_summary(labels, logits, MULTILABEL, n_resamples=50,
                                              val_logits=logits, val_labels=labels)
    assert len(summary.per_label.ece) == 6 and len(summary.temperature_scaled.per_label.nll) == 6
    assert summary.reliability is None
    assert summary.ece.value == pytest.approx(np.mean(summary.per_label.ece))
    with pytest.raises(ValueError, match="label="):
        calibration.reliability_diagram(labels, probs, MULTILABEL)
    diagram = calibration.reliability_diagram(labels, probs, MULTILABEL, label=2)
    assert diagram.count.sum() == 300


def test_summary_refuses_half_a_validation_set():
    labels, _, logits = _random(MULTICLASS, n=50, k=3)
    with pytest.raises(ValueError, match="both val_logits and val_labels"):
        calibration.calibration_summary(labels, logits, MULTICLASS, val_logits=logits)


# ----------------------------------------------------------------------------- figures and imports

def test_plots_draw_every_condition_to_svg(tmp_path):
    labels, probs, _ = _random(MULTICLASS, n=300, k=3)
    _, noisy, _ = _random(MULTICLASS, n=300, k=3, scale=4.0)
    conditions = {"clean": probs, "gaussian noise, severity 3": noisy}
    diagrams = {name: calibration.reliability_diagram(labels, p, MULTICLASS)
                for name, p in conditions.items()}
    curves = {name: calibration.risk_coverage_curve(labels, p, MULTICLASS)
              for name, p in conditions.items()}
    for path in (calplots.plot_reliability(diagrams, tmp_path / "rel.svg"),
                 calplots.plot_risk_coverage(curves, tmp_path / "rc.svg")):
        text = path.read_text()
        assert text.lstrip().startswith("<?xml") and "<svg" in text
        assert "clean" in text and "gaussian noise, severity 3" in text
    with pytest.raises(ValueError, match="Nothing to plot"):
        calplots.plot_risk_coverage({}, tmp_path / "empty.svg")


def test_importing_calibration_imports_neither_torchmetrics_nor_torchvision():
    code = ("import sys, medbench.calibration; "
            "print(sorted({m.split('.')[0] for m in sys.modules}"
            " & {'torchmetrics', 'torchvision', 'netcal'}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
