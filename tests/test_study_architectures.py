"""The architectures study: models paired by architecture, numbers from the harness, APGD-CE as the harness computes it."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from conftest import REPO, need_real
from medbench.schema import EvaluationResult
from medbench.studies import load_result, run_study
from medbench.studies.architectures import ROBUST_EPS, ArchitecturesOptions, _robust_correct, study_entries

DATASET = "breastmnist"
PAIR = ("Baseline_ResNet8_ERM", "Baseline_ResNet8_PGDAT")


@pytest.fixture
def zoo(tmp_path, monkeypatch):
    """A registry holding the committed ResNet-8 ERM / PGD-AT pair and an unpaired SAM entry."""
    root = tmp_path / "model_zoo"
    (root / DATASET).mkdir(parents=True)
    for mid in PAIR + ("Baseline_ResNet8_SAM",):
        for ext in (".yaml", ".safetensors"):
            shutil.copy(REPO / "model_zoo" / DATASET / f"{mid}{ext}", root / DATASET / f"{mid}{ext}")
    monkeypatch.setenv("MEDBENCH_ZOO", str(root))
    from medbench.zoo.registry import clear_cache

    clear_cache()
    yield root
    clear_cache()


def _committed(mid: str) -> EvaluationResult:
    return EvaluationResult.from_json(REPO / "leaderboard" / "results" / DATASET / f"{mid}.json")


def test_entries_are_paired_by_architecture(zoo):
    entries, left = study_entries(DATASET)
    assert [e.id for e in entries] == list(PAIR)
    assert any("Baseline_ResNet8_SAM" in why and "sam" in why for why in left)


def _need_current_results():
    import medbench

    current = medbench.load_protocol().version
    if any(_committed(mid).provenance.protocol_version != current for mid in PAIR):
        pytest.skip(f"the committed {DATASET} results predate protocol {current} (re-run them to test the study on "
                    "them; only_committed leaves such models out)")


def test_study_reads_the_harness_numbers_and_pairs_the_gain(zoo, real_root, tmp_path):
    need_real(real_root, f"{DATASET}.npz")
    _need_current_results()
    result = run_study("architectures", DATASET, data_root=real_root, out=tmp_path / "out", work_dir=tmp_path / "w",
                       options={"only_committed": True, "apgd_iterations": 100}, progress=False)
    again = load_result(tmp_path / "out" / "architectures" / f"{DATASET}_28px.json")
    assert again == result
    models = {m.model_id: m for m in result.details.models}
    for mid in PAIR:
        r = _committed(mid)
        point = next(p for p in r.curves.apgd_ce if abs(p.x - ROBUST_EPS) < 1e-12)
        assert models[mid].robust_ba == pytest.approx(point.balanced_accuracy)
        assert models[mid].clean_ba == r.clean.balanced_accuracy
        assert models[mid].corruption_ba == r.corruptions.balanced_accuracy
        assert models[mid].robust_source == "read from the committed result's curves"
        assert models[mid].num_parameters == 77234 and models[mid].family == "ResNet"
    (gain,) = result.details.gains
    assert gain.gain == pytest.approx(models[PAIR[1]].robust_ba - models[PAIR[0]].robust_ba)
    assert gain.gain_ci.low <= gain.gain <= gain.gain_ci.high
    # two models: no correlation is claimed
    assert all(c.rho is None for c in result.details.correlations)
    assert result.provenance.models == {m.model_id: m.weights_sha256 for m in result.details.models}


@pytest.mark.slow
def test_study_apgd_equals_the_harness_curve_point(zoo, real_root, tmp_path):
    """Robust BA computed by the study is the harness's APGD-CE 2/255 curve point for the same weights."""
    need_real(real_root, f"{DATASET}.npz")
    import torch

    import medbench
    from medbench.attacks.subset import evaluation_subset
    from medbench.studies.base import StudyContext
    from medbench.zoo import get_entry

    torch.set_num_threads(1)
    mid = PAIR[1]
    committed = _committed(mid)
    stripped = committed.model_copy(update={"curves": None})
    split = medbench.load_dataset(DATASET, "test", root=real_root)
    idx = evaluation_subset(DATASET, split.labels, medbench.load_protocol()).indices
    ctx = StudyContext(dataset=DATASET, size=28, seed=0, data_root=real_root, work_dir=tmp_path,
                       options=ArchitecturesOptions(apgd_iterations=100), progress=False)
    correct, source = _robust_correct(ctx, get_entry(mid, DATASET), stripped, split, idx, 100,
                                      committed.curves.batch_size)
    assert source == "computed by the study"
    point = next(p for p in committed.curves.apgd_ce if abs(p.x - ROBUST_EPS) < 1e-12)
    assert np.array_equal(correct, np.asarray(point.correct))


def test_study_page_shows_the_scatter_and_the_models(zoo, real_root, tmp_path):
    need_real(real_root, f"{DATASET}.npz")
    _need_current_results()
    from medbench.site import build_site

    lb = tmp_path / "leaderboard"
    (lb / "results").mkdir(parents=True)
    result = run_study("architectures", DATASET, data_root=real_root, out=lb / "studies", work_dir=tmp_path / "w",
                       options={"only_committed": True, "apgd_iterations": 100}, progress=False)
    report = build_site(tmp_path / "site", tmp_path / "empty_zoo", lb / "results", leaderboard_dir=lb)
    assert not [p for p in report.problems if "architectures" in p]
    page = (tmp_path / "site" / "studies" / "architectures.html").read_text()
    assert "Robust balanced accuracy against parameter count" in page and page.count("<svg") >= 2
    for m in result.details.models:
        assert f'href="../{DATASET}/{m.model_id}.html"' in page
        assert f"{m.robust_ba * 100:.1f}" in page
    assert "APGD-CE" in page and "upper bound" in page


def test_rederived_result_ranks_only_admitted_models(real_root, tmp_path):
    """Re-deriving the committed RetinaMNIST result applies the admission rule itself: the near-constant
    SmallViT_PGDAT (never predicts 2 of 5 classes) is reported with its reason but is not the most robust,
    and the correlations use the admitted models only."""
    need_real(real_root, "retinamnist.npz")
    import medbench
    from medbench.checks import clean_verdicts
    from medbench.data import get_spec
    from medbench.studies.architectures import most_robust

    src = REPO / "leaderboard" / "studies" / "architectures" / "retinamnist_28px.json"
    shutil.copy(src, tmp_path / "earlier.json")
    res = run_study("architectures", "retinamnist", data_root=real_root, out=tmp_path / "out",
                    work_dir=tmp_path / "w", progress=False, rederive_from=tmp_path / "earlier.json")
    models = {m.model_id: m for m in res.details.models}
    gate = {a.model: a for a in res.admissions}
    assert set(gate) == set(models)
    spec, protocol = get_spec("retinamnist"), medbench.load_protocol()
    labels = medbench.load_dataset("retinamnist", "test", root=real_root).labels
    for mid, m in models.items():  # exactly the harness's rule on the committed clean predictions
        committed = EvaluationResult.from_json(REPO / "leaderboard" / "results" / "retinamnist" / f"{mid}.json")
        verdicts = clean_verdicts(committed.clean, spec, protocol, labels)
        assert m.admitted == gate[mid].admitted == all(v.passed for v in verdicts)
        assert [v.message for v in gate[mid].verdicts] == [v.message for v in verdicts]
        pred = np.asarray(committed.clean.predictions)
        assert gate[mid].majority_share == pytest.approx(np.bincount(pred).max() / len(pred))
    assert not models["Baseline_SmallViT_PGDAT"].admitted and "0.05 above chance" in models[
        "Baseline_SmallViT_PGDAT"].refusal
    best = most_robust(res.details.models)
    assert best.admitted and best.model_id != "Baseline_SmallViT_PGDAT"
    assert best.robust_ba == max(m.robust_ba for m in res.details.models if m.admitted)
    assert f"Most robust admitted model: {best.model_id}" in res.summary
    allc = next(c for c in res.details.correlations if c.models == "all")
    assert allc.n == sum(m.admitted for m in res.details.models)
    assert all(all(models[m].admitted for m in models if models[m].architecture == g.architecture)
               for g in res.details.gains)
    assert [c.verdict for c in res.claims][0] == "not run" and {c.verdict for c in res.claims} <= {
        "reproduced", "not reproduced", "not run"}
    assert res.provenance.derived_from is not None and res.provenance.options == load_result(src).provenance.options
