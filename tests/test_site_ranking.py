"""Ranks and tie groups (PROTOCOL.md section 6) and the recovery of subset labels from results."""

from __future__ import annotations

import numpy as np

from medbench.metrics import paired_bootstrap_diff
from medbench.schema.result import EvaluationResult
from medbench.metrics import bootstrap_balanced_accuracy
from medbench.site.ranking import OVERLAP, PAIRED, RankItem, tie_groups
from site_synthetic import _result
from medbench.site.table import _subset_labels


def _preds(y, k, p, seed):
    rng = np.random.default_rng(seed)
    return np.where(rng.random(len(y)) < p, y, (y + rng.integers(1, k, len(y))) % k)


def test_vectorised_bootstrap_matches_the_paired_reference():
    y = np.arange(300) % 4
    a, b = _preds(y, 4, 0.7, 1), _preds(y, 4, 0.6, 2)
    ref = paired_bootstrap_diff(y, a, b, 4)
    boot = bootstrap_balanced_accuracy(y, np.stack([a, b], axis=1), 4)
    lo, hi = np.percentile(boot[:, 0] - boot[:, 1], [2.5, 97.5])
    assert np.isclose(lo, ref.low) and np.isclose(hi, ref.high)


def test_tie_groups_paired():
    y = np.arange(400) % 2
    strong, strong2 = _preds(y, 2, 0.9, 1), _preds(y, 2, 0.9, 2)
    weak = _preds(y, 2, 0.55, 3)
    ba = lambda p: float(np.mean([(p[y == c] == c).mean() for c in (0, 1)]))  # noqa: E731
    items = [RankItem(k, ba(p), predictions=p) for k, p in
             (("weak", weak), ("strong", strong), ("strong-copy", strong.copy()), ("strong2", strong2))]
    ranking, method = tie_groups(items, labels=y, num_classes=2)
    assert method == PAIRED
    got = {r.key: (r.rank, r.group) for r in ranking}
    assert got["strong"][1] == got["strong-copy"][1] == got["strong2"][1] == 0  # indistinguishable: one group
    assert {got[k][0] for k in ("strong", "strong-copy", "strong2")} == {1}
    assert got["weak"] == (4, 1)  # competition rank after three tied entries


def test_tie_groups_fall_back_to_interval_overlap():
    items = [RankItem("a", 0.80, 0.75, 0.85), RankItem("b", 0.78, 0.70, 0.86), RankItem("c", 0.60, 0.55, 0.65),
             RankItem("d", 0.58, 0.50, 0.66)]
    ranking, method = tie_groups(items)
    assert method == OVERLAP
    assert [(r.key, r.rank) for r in ranking] == [("a", 1), ("b", 1), ("c", 3), ("d", 3)]
    assert tie_groups([])[0] == []


def test_groups_are_anchored_on_the_leader():
    # b overlaps a, c overlaps b but not a: c starts a new group (no chaining through b)
    items = [RankItem("a", 0.80, 0.76, 0.84), RankItem("b", 0.76, 0.72, 0.80), RankItem("c", 0.72, 0.68, 0.75)]
    ranking, _ = tie_groups(items)
    assert [r.rank for r in ranking] == [1, 1, 3]


def _res(dataset, seed):
    rng = np.random.default_rng(seed)
    return EvaluationResult.model_validate(_result(f"Synth2025M{seed}", dataset, rng, hostile=False, clean_n=50,
                                                   weights_sha256="0" * 64))


def test_subset_labels_recovered_from_robust_flags():
    results = [_res("breastmnist", s) for s in range(2)]  # binary: exact from one record
    sha = results[0].adversarial["Linf-2/255"].subset.indices_sha256
    labels = _subset_labels(results, sha, 2, False)
    assert labels is not None and (labels == np.arange(156) % 2).all()
    multi = [_res("dermamnist", s) for s in range(4)]  # 7 classes: an example is known once some model is right
    got = _subset_labels(multi, sha_d := multi[0].adversarial["Linf-2/255"].subset.indices_sha256, 7, False)
    flags = np.any([[a.robust_flags for a in r.adversarial.values()] for r in multi], axis=(0, 1))
    if flags.all():
        assert (got == np.arange(1000) % 7).all()
    else:
        assert got is None
    assert _subset_labels(multi[:1], sha_d, 7, False) is None  # one weak model cannot reveal every label
    assert _subset_labels(results, "f" * 64, 2, False) is None
