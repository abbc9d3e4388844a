"""Study nonrobust-features on real BreastMNIST: the relabelled set, the end-to-end run with small options,
the refusal when nothing flips, and the statistics behind its findings (against scipy where it has them)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from conftest import REPO, need_real

QUICK = {"max_train": 96, "max_val": 32, "epochs": 2, "steps": 3, "attack": "apgd-ce", "attack_iters": 3,
         "attack_n": 24, "attack_eps_255": [2, 8], "resamples": 300}


def test_relabelled_set_holds_the_targets_the_standard_model_predicts(real_root):
    need_real(real_root, "breastmnist.npz")
    from medbench.data import load_dataset
    from medbench.inference import to_float
    from medbench.studies.nonrobust_set import build_set, random_targets
    from medbench.zoo import load_model

    model = load_model("Baseline_ResNet8_ERM", "breastmnist")
    train = load_dataset("breastmnist", "train", root=real_root)
    s = build_set(model, train, eps=8 / 255, steps=5, step_size=2.5 * 8 / 255 / 5, seed=0, max_n=64)
    source = train.images[torch.as_tensor(s.index)]
    assert (s.images.to(torch.int16) - source.to(torch.int16)).abs().max() <= 8  # inside the ball, in grey levels
    assert np.array_equal(s.labels, train.labels[s.index])
    assert np.array_equal(s.targets, random_targets(len(train), 2, 0, "train")[s.index])
    assert set(np.unique(s.targets)) == {0, 1}
    assert s.kept.mean() > 0.9 and (s.kept & s.needed_flip).sum() > 10  # 8/255 moves a standard model
    kept = s.kept_split(train, train.path, "x")
    assert np.array_equal(kept.labels, s.targets[s.kept])  # relabelled with the targets
    with torch.no_grad():
        pred = model(to_float(kept.images, "cpu")).argmax(1).numpy()
    assert np.array_equal(pred, kept.labels)  # the standard model predicts the target of every kept image
    still = build_set(model, train, eps=0.0, steps=5, step_size=0.0, seed=0, max_n=64)
    assert torch.equal(still.images, source) and np.array_equal(still.pred, still.clean_pred)


@pytest.mark.slow
def test_study_end_to_end_on_breastmnist(real_root, tmp_path):
    need_real(real_root, "breastmnist.npz")
    from medbench.studies import load_result, run_study
    from medbench.studies.nonrobust_features import confusion_balanced_accuracy, corruption_means
    from medbench.data import load_dataset
    from medbench.inference import to_float
    from medbench.metrics import auc
    from medbench.studies.nonrobust_set import load_set
    from medbench.zoo import get_entry, load_model

    res = run_study("nonrobust-features", "breastmnist", data_root=real_root, out=tmp_path / "out",
                    work_dir=tmp_path / "work", options=QUICK, progress=False)
    again = load_result(tmp_path / "out" / "nonrobust-features" / "breastmnist_28px.json")
    assert again.model_dump() == res.model_dump()
    d, f = res.details, {x.key: x for x in res.findings}
    assert d.reused == []

    # a second run takes every stage from the work dir and finds the same
    cached = run_study("nonrobust-features", "breastmnist", data_root=real_root, work_dir=tmp_path / "work",
                       options=QUICK, progress=False)
    assert set(cached.details.reused) == {"relabelled train set", "relabelled val set", "nonrobust-only model",
                                          "attack at Linf 2/255", "attack at Linf 8/255", "corruption predictions"}
    assert [x.model_dump() for x in cached.findings] == [x.model_dump() for x in res.findings]

    # the findings are what the stored details say
    assert f["nonrobust_clean_ba"].value == pytest.approx(confusion_balanced_accuracy(d.test.confusion))
    assert f["nonrobust_clean_ba"].value == pytest.approx(d.test.balanced_accuracy)
    assert f["nonrobust_clean_ba"].test.p_value == d.test.permutation_p
    assert sum(map(sum, d.test.confusion)) == d.test.n == 156
    y_test = load_dataset("breastmnist", "test", root=real_root).labels
    probs = np.asarray(d.test.probabilities)
    assert f["nonrobust_clean_auc"].value == pytest.approx(auc(y_test, probs, "binary-class"))
    assert np.array_equal(np.asarray(d.test.confusion), np.histogram2d(
        y_test, probs.argmax(1), bins=[2, 2], range=[[0, 2], [0, 2]])[0])  # the stored scores made the confusion
    assert d.training.best_epoch == d.training.epochs == 2  # selection "last": the final epoch is kept
    one_class = len(set(probs.argmax(1))) == 1
    assert ("every clean test image in one class" in f["nonrobust_clean_ba"].note) == one_class
    for a in d.attacks:
        assert f[f"nonrobust_robust_ba_linf_{a.eps_255:g}"].value == pytest.approx(a.robust_balanced_accuracy)
        assert confusion_balanced_accuracy(a.confusion) == pytest.approx(a.robust_balanced_accuracy)
        assert a.n == 24 and a.attacks == ["apgd-ce"] and a.n_iter == 3
    std_mean, adv_mean = corruption_means(d.corruptions)
    assert f["standard_corruption_ba"].value == pytest.approx(std_mean)
    assert f["corruption_ba_difference"].value == pytest.approx(adv_mean - std_mean)
    ci = f["corruption_ba_difference"].ci
    assert ci.low <= adv_mean - std_mean <= ci.high
    assert f["train_kept_fraction"].value == pytest.approx(d.train_set.kept / d.train_set.n)
    assert d.train_set.n == 96 and d.val_set.n == 32
    assert f["label_agreement"].value == pytest.approx(d.train_set.agreement / d.train_set.kept)
    assert sum(c.kept for c in d.train_set.per_class) == d.train_set.kept

    # the corruption effect apart from the clean gap: each model's drop from its own clean BA
    c = d.corruptions
    did = (adv_mean - c.adversarial_clean_balanced_accuracy) - (std_mean - c.standard_clean_balanced_accuracy)
    assert f["corruption_drop_difference"].value == pytest.approx(did) == pytest.approx(c.drop_difference)
    assert c.drop_difference_ci.low <= did <= c.drop_difference_ci.high
    assert f["corruption_drop_difference"].test.p_value == c.drop_difference_p

    # every model it reports on went through the admission rule; BA findings carry the majority share
    gate = {a.model: a for a in res.admissions}
    assert set(gate) == {"nonrobust-only (trained by this study)", "Baseline_ResNet8_ERM", "Baseline_ResNet8_PGDAT"}
    nonrobust = gate["nonrobust-only (trained by this study)"]
    assert f["nonrobust_clean_ba"].majority_share == nonrobust.majority_share == pytest.approx(
        np.bincount(probs.argmax(1)).max() / len(probs))
    assert nonrobust.balanced_accuracy == pytest.approx(d.test.balanced_accuracy)
    claims = {cl.claim: cl for cl in res.claims}
    assert all(cl.verdict in ("reproduced", "not reproduced", "not run") and cl.reason for cl in res.claims)
    assert res.claims[-1].verdict == "not run" and "PathMNIST is not in our data" in res.claims[-1].reason
    if not nonrobust.admitted:
        assert "refuses it" in res.summary
        assert claims["A model trained only on nonrobust features collapses under attack"].verdict == "not run"

    # the corruption cells are the harness's: the committed leaderboard result of the standard model agrees
    committed = json.loads((REPO / "leaderboard/results/breastmnist/Baseline_ResNet8_ERM.json").read_text())
    if committed["corruptions"]["parameters_sha256"] == d.corruptions.suite_parameters_sha256:
        theirs = {(c["corruption"], c["severity"]): c["balanced_accuracy"] for c in committed["corruptions"]["cells"]}
        assert {(c.corruption, c.severity): pytest.approx(c.standard) for c in d.corruptions.cells} == theirs

    # provenance names the zoo weights and the trained model
    models = res.provenance.models
    assert models["standard (Baseline_ResNet8_ERM)"] == get_entry("Baseline_ResNet8_ERM", "breastmnist").weights.sha256
    assert models["nonrobust-only (trained by this study)"] == d.training.weights_sha256
    assert res.provenance.options["epochs"] == 2 and d.training.epochs == 2

    # the cached relabelled set is the one trained on: targets as labels, predicted by the standard model
    (path,) = (tmp_path / "work" / "sets").glob("breastmnist_28_train_*.npz")
    s, sha = load_set(path)
    assert sha == d.train_set.sha256 and int(s.kept.sum()) == d.train_set.kept
    std = load_model("Baseline_ResNet8_ERM", "breastmnist")
    with torch.no_grad():
        pred = std(to_float(s.images[torch.as_tensor(s.kept)], "cpu")).argmax(1).numpy()
    assert np.array_equal(pred, s.targets[s.kept])


def test_eps_zero_flips_nothing_and_the_study_refuses(real_root, tmp_path):
    need_real(real_root, "breastmnist.npz")
    from medbench.errors import MedbenchError
    from medbench.studies import run_study

    with pytest.raises(MedbenchError, match=r"moved only 0 of the \d+ train images.*Fix: raise eps_255"):
        run_study("nonrobust-features", "breastmnist", data_root=real_root, work_dir=tmp_path,
                  options={**QUICK, "eps_255": 0}, progress=False)
    assert not (tmp_path / "models").exists()  # refused before any training


def test_a_dataset_without_both_zoo_models_is_refused(real_root, tmp_path):
    need_real(real_root, "vesselmnist3d.npz")
    from medbench.errors import MedbenchError
    from medbench.studies import run_study

    with pytest.raises(MedbenchError, match=r"needs the zoo models .* Datasets that have both: .*breastmnist"):
        run_study("nonrobust-features", "vesselmnist3d", data_root=real_root, work_dir=tmp_path, options=QUICK,
                  progress=False)


def test_help_lists_the_options(capsys):
    from medbench.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["study", "nonrobust-features", "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for name in ("eps_255 (default 8)", "steps (default 10)", "min_flip_rate", "attack_eps_255", "max_train"):
        assert name in out


def test_permutation_test_matches_scipy_exact():
    from scipy.stats import permutation_test

    from medbench.metrics import balanced_accuracy, permutation_test_balanced_accuracy

    y = np.array([0, 0, 0, 0, 1, 1, 2])  # unbalanced: chance accuracy is not 1/3, chance BA is
    pred = np.array([0, 0, 1, 2, 1, 1, 2])
    exact = permutation_test(
        (y,), lambda yy: balanced_accuracy(yy, pred, 3), permutation_type="pairings", n_resamples=math.inf,
        alternative="greater")
    p, null_mean = permutation_test_balanced_accuracy(y, pred, 3, n_permutations=20_000, seed=0)
    assert p == pytest.approx(exact.pvalue, abs=0.01)
    assert null_mean == pytest.approx(np.mean(exact.null_distribution), abs=0.01)
    assert null_mean == pytest.approx(1 / 3, abs=0.01)


def test_paired_bootstrap_uses_the_same_resamples_as_the_harness():
    from medbench.metrics import bootstrap_metric_ci, paired_bootstrap_mean_ba

    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 200)
    good = np.where(rng.random(200) < 0.85, y, 1 - y)
    bad = np.where(rng.random(200) < 0.55, y, 1 - y)
    out = paired_bootstrap_mean_ba(y, good, bad, 2, n_resamples=500, seed=0)
    single = bootstrap_metric_ci(y, good, 2, n_resamples=500, seed=0)
    assert (out.a.low, out.a.high) == pytest.approx((single.low, single.high))
    assert out.diff.low > 0 and out.p_a_not_greater < 0.01 and out.p_a_not_less > 0.99
    same = paired_bootstrap_mean_ba(y, np.stack([good, bad]), np.stack([good, bad]), 2, n_resamples=200, seed=0)
    assert (same.diff.low, same.diff.high) == (0.0, 0.0) and same.p_two_sided == 1.0


def test_auc_permutation_test_is_the_mann_whitney_test():
    from scipy.stats import mannwhitneyu

    from medbench.metrics import auc, permutation_test_auc

    rng = np.random.default_rng(3)
    y = np.r_[np.zeros(12, int), np.ones(7, int)]
    score = rng.random(19) + 0.35 * y  # no ties: scipy's exact distribution applies
    probs = np.c_[1 - score, score]
    exact = mannwhitneyu(score[y == 1], score[y == 0], alternative="greater", method="exact")
    assert exact.statistic / (7 * 12) == pytest.approx(auc(y, probs, "binary-class"))
    p, null_mean = permutation_test_auc(y, probs, "binary-class", n_permutations=20_000, seed=0)
    assert p == pytest.approx(exact.pvalue, abs=0.01) and null_mean == pytest.approx(0.5, abs=0.01)
    three = np.r_[y, np.full(5, 2)]
    p3 = rng.dirichlet(np.ones(3), size=24)
    p_multi, null_multi = permutation_test_auc(three, p3, "multi-class", n_permutations=300, seed=0)
    # the same permutations, each scored by the harness's own AUC (mean one-vs-rest)
    perms = three[np.argsort(np.random.default_rng(0).random((300, 24)), axis=1)]
    null = np.array([auc(row, p3, "multi-class") for row in perms])
    assert null_multi == pytest.approx(null.mean())
    assert p_multi == pytest.approx((1 + (null >= auc(three, p3, "multi-class") - 1e-12).sum()) / 301)


def test_drop_difference_is_the_difference_of_differences_on_shared_resamples():
    from medbench.metrics import paired_bootstrap_mean_ba
    from medbench.studies.nonrobust_features import drop_difference

    rng = np.random.default_rng(4)
    y = rng.integers(0, 2, 300)

    def noisy(p_right, shape=()):
        return np.where(rng.random(shape + (300,)) < p_right, y, 1 - y)

    clean_a, clean_b = noisy(0.75), noisy(0.9)  # a: worse on clean images
    corrupted_a, corrupted_b = noisy(0.72, (4,)), noisy(0.7, (4,))  # ... but loses less under corruption
    out = drop_difference(y, corrupted_a, clean_a, corrupted_b, clean_b, 2, resamples=2000)
    from medbench.metrics import balanced_accuracy as ba

    did = (np.mean([ba(y, p, 2) for p in corrupted_a]) - ba(y, clean_a, 2)) - \
        (np.mean([ba(y, p, 2) for p in corrupted_b]) - ba(y, clean_b, 2))
    assert 2 * out.diff.low <= did <= 2 * out.diff.high and did > 0.1
    assert out.p_a_not_greater < 0.01  # one-sided, H1: a loses less
    raw = paired_bootstrap_mean_ba(y, corrupted_a, corrupted_b, 2, n_resamples=2000, seed=0)
    assert raw.p_a_not_greater > 0.05  # the raw comparison mixes in a's clean gap and shows nothing


@pytest.mark.slow
def test_rederived_committed_result_refuses_the_near_constant_model(real_root, tmp_path):
    """Re-deriving the committed BreastMNIST result (no training): the nonrobust-only model predicts one class
    for every test image, so the rule refuses it and no claim rests on its BA; p-values are of the direction
    the summary states."""
    need_real(real_root, "breastmnist.npz")
    import shutil

    from medbench.studies import load_result, run_study

    src = REPO / "leaderboard" / "studies" / "nonrobust-features" / "breastmnist_28px.json"
    shutil.copy(src, tmp_path / "earlier.json")
    earlier = load_result(src)
    res = run_study("nonrobust-features", "breastmnist", data_root=real_root, work_dir=tmp_path / "w",
                    progress=False, rederive_from=tmp_path / "earlier.json")
    gate = {a.model: a for a in res.admissions}
    nonrobust = gate["nonrobust-only (trained by this study)"]
    assert not nonrobust.admitted and nonrobust.majority_share == 1.0
    assert gate["Baseline_ResNet8_ERM"].admitted and gate["Baseline_ResNet8_PGDAT"].admitted
    claims = {c.claim: c for c in res.claims}
    first = claims["A model trained only on nonrobust features predicts the label well above chance"]
    assert first.verdict == "not reproduced" and "refused by the admission rule" in first.reason
    assert "p = 0.99" not in res.summary and "p = 0.0001" not in res.summary and "p < 1e-4" in res.summary
    f = {x.key: x for x in res.findings}
    worse = f["corruption_ba_difference"].value < 0
    if worse and "significantly worse" in res.summary:
        p_worse = res.summary.split("significantly worse than")[1].split("for 'worse'")[0]
        assert float(p_worse.rsplit("p = ", 1)[1].rstrip("; ")) < 0.05
    assert res.details.test.probabilities == earlier.details.test.probabilities  # nothing retrained
    assert res.provenance.derived_from.started_at == earlier.provenance.started_at
