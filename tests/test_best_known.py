"""The best-known column: AutoAttack's per-example outcome lowered by verified attack records, never raised;
each lost point names its attack; a record for other weights, another subset or threat is refused."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import REPO, need_real
from medbench import metrics as M
from medbench.attacks.best_known import RecordMismatchError, best_known
from medbench.schema import Break, EvaluationResult, VerifiedAttack

RESULT = REPO / "leaderboard" / "results" / "breastmnist" / "Baseline_ResNet8_PGDAT.json"


@pytest.fixture(scope="module")
def case(real_root):
    import medbench

    need_real(real_root, "breastmnist.npz")
    res = EvaluationResult.from_json(RESULT)
    section = res.adversarial["Linf-2/255"]
    _, labels = medbench.load_dataset("breastmnist", "test", 28, real_root)
    y = np.asarray(labels).reshape(-1)[section.subset.indices]
    return res, section, y


def record(res, section, y, breaks, **kw):
    fields = dict(model_id=res.model_id, dataset="breastmnist", size=28, threat=section.threat, norm="Linf",
                  eps=section.config.eps, attack="FMN", kind="maintainer", submitter="medbench", url=None,
                  file_sha256="ab" * 32, weights_sha256=res.provenance.weights_sha256,
                  protocol_version=res.provenance.protocol_version, subset_sha256=section.subset.indices_sha256,
                  subset_labels=[int(v) for v in y], tolerance=1e-6, submitted=len(breaks), breaks=breaks,
                  verified_at="2026-12-07T00:00:00Z", medbench_version="test")
    return VerifiedAttack(**{**fields, **kw})


def _settings():
    return dict(num_classes=2, bootstrap_resamples=1000, bootstrap_seed=0, ci_level=0.95)


def test_without_records_the_best_known_is_autoattack(case):
    res, section, _ = case
    bk = best_known(section, [], weights_sha256=res.provenance.weights_sha256, **_settings())
    assert bk.robust_balanced_accuracy == section.robust_balanced_accuracy
    assert bk.robust_flags == section.robust_flags and not bk.autoattack_overestimates
    assert [s.attack for s in bk.sources] == ["AutoAttack"]


def test_three_more_breaks_lower_the_column_and_are_traced(case):
    res, section, y = case
    robust = [p for p, f in enumerate(section.robust_flags) if f][:3]
    idx = [section.subset.indices[p] for p in robust]
    breaks = [Break(index=i, predicted=int(1 - y[p]), distance=0.005) for i, p in zip(idx, robust)]
    # a break of a point AutoAttack already broke adds nothing
    already = next(p for p, f in enumerate(section.robust_flags) if not f)
    breaks.append(Break(index=section.subset.indices[already], predicted=int(1 - y[already]), distance=0.001))
    bk = best_known(section, [record(res, section, y, breaks)], weights_sha256=res.provenance.weights_sha256,
                    **_settings())
    assert sum(bk.robust_flags) == sum(section.robust_flags) - 3
    assert [bk.broken_by[p] for p in robust] == ["FMN"] * 3
    assert bk.sources[-1].points == 3 and bk.sources[-1].attack == "FMN"
    flags = np.asarray(bk.robust_flags)
    expected = M.balanced_accuracy(y, np.where(flags, y, 1 - y), 2)  # binary: a miss predicts the other class
    assert bk.robust_balanced_accuracy == pytest.approx(expected)
    assert bk.robust_balanced_accuracy < section.robust_balanced_accuracy
    assert bk.robust_balanced_accuracy_ci.low <= bk.robust_balanced_accuracy <= bk.robust_balanced_accuracy_ci.high


def test_many_breaks_mark_autoattack_as_overestimating(case):
    res, section, y = case
    robust = [p for p, f in enumerate(section.robust_flags) if f][:30]
    breaks = [Break(index=section.subset.indices[p], predicted=int(1 - y[p]), distance=0.005) for p in robust]
    bk = best_known(section, [record(res, section, y, breaks)], weights_sha256=res.provenance.weights_sha256,
                    **_settings())
    assert bk.robust_balanced_accuracy < section.robust_balanced_accuracy_ci.low and bk.autoattack_overestimates


@pytest.mark.parametrize("change,why", [({"weights_sha256": "cd" * 32}, "other weights"),
                                        ({"threat": "Linf-4/255"}, "threat"),
                                        ({"subset_sha256": "00" * 32}, "subset"),
                                        ({"eps": 8 / 255}, "budget")])
def test_a_record_for_something_else_is_refused(case, change, why):
    res, section, y = case
    with pytest.raises(RecordMismatchError, match=why):
        best_known(section, [record(res, section, y, [], **change)], weights_sha256=res.provenance.weights_sha256,
                   **_settings())


@pytest.mark.slow
def test_the_site_shows_the_best_known_column_with_its_sources(case, tmp_path):
    """A record lowers the board's best-known column and the JSON export, the model page names the attack and
    its file; a record for other weights is listed as a build problem and changes nothing."""
    import json
    import shutil

    from medbench.site import build_site

    res, section, y = case
    lb = tmp_path / "leaderboard"
    shutil.copytree(REPO / "leaderboard" / "studies", lb / "studies")
    (lb / "attacks" / "breastmnist").mkdir(parents=True)
    robust = [p for p, f in enumerate(section.robust_flags) if f][:3]
    breaks = [Break(index=section.subset.indices[p], predicted=int(1 - y[p]), distance=0.005) for p in robust]
    good = record(res, section, y, breaks, url="https://example.org/paper", kind="submission", submitter="A. Tester")
    bad = record(res, section, y, breaks, weights_sha256="cd" * 32, file_sha256="ef" * 32)
    for name, rec in (("good.json", good), ("bad.json", bad)):
        (lb / "attacks" / "breastmnist" / name).write_text(rec.model_dump_json())
    report = build_site(tmp_path / "site", REPO / "model_zoo", REPO / "leaderboard" / "results", leaderboard_dir=lb)
    assert [p for p in report.problems if "attack record" in p] == \
        [f"attack record FMN (efefefefefef) for {res.model_id}: not used: other weights than the result's "
         "(the model was re-trained or replaced)"]
    data = json.loads((tmp_path / "site" / "data" / "breastmnist.json").read_text())["datasets"]["breastmnist"]
    row = next(e for t in data["tracks"] for e in t["entries"] if e["model_id"] == res.model_id)
    bk = row["adversarial"]["Linf-2/255"]["best_known"]
    assert bk["robust_balanced_accuracy"] < section.robust_balanced_accuracy
    assert [(s["attack"], s["points"]) for s in bk["sources"]] == [("AutoAttack", sum(not f for f in section.robust_flags)),
                                                                  ("FMN", 3)]
    assert row["adversarial"]["Linf-4/255"]["best_known"]["robust_balanced_accuracy"] == \
        res.adversarial["Linf-4/255"].robust_balanced_accuracy  # no record for that threat
    board = (tmp_path / "site" / "breastmnist" / "index.html").read_text()
    assert 'data-col="best"' in board and f"{bk['robust_balanced_accuracy'] * 100:.1f}" in board
    page = (tmp_path / "site" / "breastmnist" / f"{res.model_id}.html").read_text()
    assert "Best known" in page and "submitted by A. Tester" in page and "ababababab" in page
