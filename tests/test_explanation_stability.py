"""The explanation-stability study: its similarity against scipy, its maps against captum, end to end on the real
BreastMNIST with tiny options (a few images, one one-epoch retraining), and what the site shows of it."""

from __future__ import annotations

import base64
import io
import json
import re
import shutil

import numpy as np
import pytest
import torch

from conftest import need_real

pytest.importorskip("captum")
pytestmark = pytest.mark.filterwarnings("ignore:Input Tensor 0 did not already require gradients")

from medbench.studies import explanation_stability as es  # noqa: E402

MODELS = ["Baseline_ResNet8_ERM", "Baseline_ResNet8_PGDAT"]
TINY = {"n_images": 6, "n_show": 2, "noise_sigma": 0.0, "noise_draws": 1, "adv_iters": 5, "ig_steps": 8,
        "occlusion_window": 7, "occlusion_stride": 7, "retrain_seeds": [1], "retrain_epochs": 1, "models": MODELS,
        "bootstrap": 200}


def test_spearman_matches_scipy_with_ties_and_constant_rows():
    from scipy.stats import spearmanr

    rng = np.random.default_rng(0)
    a = rng.integers(0, 6, size=(20, 50)).astype(float)  # many ties
    b = a + rng.normal(0, 2, size=a.shape)
    b[3] = -a[3]
    mine = es.spearman(a, b)
    ref = np.array([spearmanr(x, y).statistic for x, y in zip(a, b)])
    assert np.allclose(mine, ref, atol=1e-12)
    assert mine[3] == pytest.approx(-1.0)
    flat = np.zeros(50)
    # scipy gives nan for a constant row; the study's convention: identical -> 1, no rank information -> 0
    assert es.spearman(flat, flat)[0] == 1.0 and es.spearman(flat, a[0])[0] == 0.0


def test_topk_overlap():
    a = np.arange(100.0)[None]
    assert es.topk_overlap(a, a, 0.1)[0] == 1.0
    assert es.topk_overlap(a, -a, 0.1)[0] == 0.0
    b = a.copy()
    b[0, 99] = -1  # the top pixel leaves b's top 10; pixel 89 takes its place
    assert es.topk_overlap(a, b, 0.1)[0] == pytest.approx(0.9)


def test_apgd_stays_in_the_ball(real_root):
    need_real(real_root, "breastmnist.npz")
    import medbench

    model = medbench.load_model("Baseline_ResNet8_ERM", dataset="breastmnist")
    x, y = medbench.load_dataset("breastmnist", "test", root=real_root).as_float()
    x, y = x[:8], y[:8]
    x_adv = es.apgd_ce(model, x, y, 2 / 255, 5, seed=0)
    assert float((x_adv - x).abs().max()) <= 2 / 255 + 1e-6 and x_adv.min() >= 0 and x_adv.max() <= 1
    assert not torch.equal(x_adv, x)  # best-loss points: every image moves, not only the ones the attack flips
    with torch.no_grad():
        ce = torch.nn.functional.cross_entropy
        assert ce(model(x_adv), y, reduction="none").sum() > ce(model(x), y, reduction="none").sum()


@pytest.fixture(scope="module")
def tiny(real_root, tmp_path_factory):
    need_real(real_root, "breastmnist.npz")
    from medbench.studies import run_study

    out = tmp_path_factory.mktemp("studies")
    work = tmp_path_factory.mktemp("work")
    res = run_study("explanation-stability", "breastmnist", data_root=real_root, out=out, work_dir=work,
                    options=TINY, progress=False)
    return res, out, work


def _levels(b64: str) -> np.ndarray:
    from PIL import Image

    img = Image.open(io.BytesIO(base64.b64decode(b64)))
    assert img.format == "PNG"
    return np.asarray(img)


def _captum(model, x, y, method):
    from captum.attr import IntegratedGradients, Occlusion, Saliency

    if method == "saliency":
        return Saliency(model).attribute(x, target=y, abs=True)
    if method == "integrated_gradients":
        return IntegratedGradients(model).attribute(x, baselines=0.0, target=y, n_steps=TINY["ig_steps"])
    w, st = TINY["occlusion_window"], TINY["occlusion_stride"]
    return Occlusion(model).attribute(x, sliding_window_shapes=(1, w, w), strides=(1, st, st), baselines=0.0, target=y)


@pytest.mark.realdata
@pytest.mark.slow
def test_end_to_end_on_breastmnist(tiny, real_root):
    import medbench
    from scipy.stats import spearmanr

    from medbench.studies import load_result

    res, out, work = tiny
    d = res.details
    again = load_result(out / "explanation-stability" / "breastmnist_28px.json")
    assert again.details.model(MODELS[0]).weights_sha256 == medbench.zoo.get_entry(MODELS[0], "breastmnist").weights.sha256
    split = medbench.load_dataset("breastmnist", "test", root=real_root)
    x_all, y_all = split.as_float()
    assert len(d.indices) == 6 == len(set(d.indices)) and all(0 <= i < len(split) for i in d.indices)
    assert d.shown == d.indices[:2]
    # the shown inputs are the test images themselves
    for i, b64 in zip(d.shown, d.images):
        assert np.array_equal(_levels(b64), split.images[i, 0].numpy())

    for mid in MODELS:
        mx = d.model(mid)
        model = medbench.load_model(mid, dataset="breastmnist")
        x, y = x_all[d.shown], y_all[d.shown]
        for ms in mx.methods:
            # noise of sigma 0 leaves every map unchanged: stability exactly 1
            assert ms.noise.spearman == 1.0 and ms.noise.topk == 1.0 and set(ms.noise.per_image_spearman) == {1.0}
            # the stored maps are captum's maps for these inputs (16 colour levels of |map| / max)
            ref = _captum(model, x, y, ms.method).abs().sum(1).detach().numpy()
            for k, b64 in enumerate(ms.maps):
                want = np.round(ref[k] / ref[k].max() * 15)
                got = _levels(b64)
                assert np.abs(got - want).max() <= 1 and (got == want).mean() > 0.98
            assert -1 <= ms.adversarial.spearman < 1 and ms.adversarial.spearman_ci.low <= ms.adversarial.spearman
        assert mx.adv_accuracy <= mx.subset_accuracy

    # (a): the ERM recipe retrained with seed 1 (one epoch here); the per-image score is scipy's Spearman of the
    # zoo model's and the retrained model's saliency maps
    erm = d.model(MODELS[0])
    assert list(erm.retrained) == ["1"] and erm.retrain_epochs == 1
    assert d.model(MODELS[1]).methods[0].seeds is None and "pgd-at" in d.model(MODELS[1]).retrain_note
    ctx = es.StudyContext(dataset="breastmnist", size=28, seed=0, data_root=real_root, work_dir=work,
                          options=es.Options(**TINY), progress=False)
    retrained, sha = es.retrain(medbench.zoo.get_entry(MODELS[0], "breastmnist"), 1, ctx, 1)  # cached
    assert sha == erm.retrained["1"]
    x, y = x_all[d.indices], y_all[d.indices]
    zoo = medbench.load_model(MODELS[0], dataset="breastmnist")
    a = _captum(zoo, x, y, "saliency").abs().sum(1).flatten(1).detach().numpy()
    b = _captum(retrained, x, y, "saliency").abs().sum(1).flatten(1).detach().numpy()
    ref = [spearmanr(u, v).statistic for u, v in zip(a, b)]
    assert np.allclose(erm.method("saliency").seeds.per_image_spearman, ref, atol=1e-4)

    # PGD-AT against ERM, paired over the same images, for every method and both perturbation scores
    assert {(c.method, c.score) for c in d.comparisons} == {(m, s) for m in es.METHODS for s in ("adversarial", "noise")}
    c = next(c for c in d.comparisons if c.method == "saliency" and c.score == "adversarial")
    diff = np.subtract(d.model(MODELS[1]).method("saliency").adversarial.per_image_spearman,
                       erm.method("saliency").adversarial.per_image_spearman)
    assert c.difference == pytest.approx(diff.mean(), abs=1e-4) and 0 < c.p_value <= 1
    keys = {f.key for f in res.findings}
    assert {f"adv_{m}" for m in MODELS} | {f"noise_{m}" for m in MODELS} | {f"seeds_{MODELS[0]}"} <= keys

    # every model went through the admission rule on its clean test predictions
    from medbench.data import get_spec
    from medbench.studies.base import admit

    spec, protocol = get_spec("breastmnist"), medbench.load_protocol()
    for mid in MODELS:
        logits = medbench.load_model(mid, dataset="breastmnist")(x_all).detach()
        want = admit(mid, split.labels, logits.argmax(1).numpy(), spec, protocol)
        got = next(a for a in res.admissions if a.model == mid)
        assert got == want and d.model(mid).admitted == want.admitted
        assert d.model(mid).majority_share == want.majority_share
    assert res.claims and res.claims[-1].verdict == "not run" and "3D" in res.claims[-1].reason


def test_the_same_model_twice_is_perfectly_stable_across_seeds(real_root, tmp_path):
    need_real(real_root, "breastmnist.npz")
    import medbench

    entry = medbench.zoo.get_entry("Baseline_SmallCNN_ERM", "breastmnist")
    model = medbench.load_model(entry.id, dataset="breastmnist")
    opts = es.Options(n_images=4, n_show=1, noise_draws=1, adv_iters=2, ig_steps=4, sensitivity_samples=2,
                      occlusion_window=7, occlusion_stride=7, bootstrap=100)
    ctx = es.StudyContext(dataset="breastmnist", size=28, seed=0, data_root=real_root, work_dir=tmp_path,
                          options=opts, progress=False)
    s = es._subset(ctx, opts.n_images)
    mx = es._model_scores(entry, model, "x", s, ctx, np.arange(1), [(7, model, "x")], None)
    for ms in mx.methods:
        assert ms.seeds.spearman == 1.0 and ms.seeds.topk == 1.0
        assert ms.noise.spearman < 1.0  # sigma 0.02 does move the maps
    # captum's own sensitivity_max (relative change of the map under uniform noise) is positive for gradients
    assert mx.method("saliency").sensitivity_max > 0 and mx.method("occlusion").sensitivity_max is None
    assert mx.method("integrated_gradients").sensitivity_max is None


def test_bad_requests_say_what_to_do(real_root, tmp_path):
    need_real(real_root, "breastmnist.npz")
    from medbench.errors import MedbenchError
    from medbench.studies import run_study

    with pytest.raises(MedbenchError, match=r"no zoo model Baseline_Nope for breastmnist.*zoo list"):
        run_study("explanation-stability", "breastmnist", data_root=real_root, work_dir=tmp_path, progress=False,
                  options={"models": ["Baseline_Nope"]})
    with pytest.raises(MedbenchError, match=r"methods"):
        run_study("explanation-stability", "breastmnist", data_root=real_root, work_dir=tmp_path, progress=False,
                  options={"methods": ["gradcam"]})
    with pytest.raises(MedbenchError, match=r"retrain_methods.*unknown recipe\(s\) ERM; choose from erm"):
        run_study("explanation-stability", "breastmnist", data_root=real_root, work_dir=tmp_path, progress=False,
                  options={"retrain_methods": ["ERM"]})
    if (real_root / "adrenalmnist3d.npz").is_file():
        with pytest.raises(MedbenchError, match=r"3D.*2D dataset"):
            run_study("explanation-stability", "adrenalmnist3d", data_root=real_root, work_dir=tmp_path,
                      progress=False)


@pytest.mark.realdata
@pytest.mark.slow
def test_site_shows_maps_on_model_pages_and_a_board_column(tiny, tmp_path):
    from medbench.site import build_site
    from medbench.paths import leaderboard_root

    res, out, _ = tiny
    lb = tmp_path / "leaderboard"
    shutil.copytree(leaderboard_root() / "results" / "breastmnist", lb / "results" / "breastmnist")
    shutil.copytree(out, lb / "studies")
    report = build_site(tmp_path / "site", None, lb / "results", leaderboard_dir=lb)
    assert not [p for p in report.problems if "explanation" in p]
    site = tmp_path / "site"
    page = (site / "breastmnist" / "Baseline_ResNet8_PGDAT.html").read_text()
    imgs = re.findall(r'<img src="data:image/png;base64,([^"]+)" width="56" height="56" alt="([^"]+)">', page)
    d = res.details
    n_methods = len(d.models[0].methods)
    assert len(imgs) == len(d.shown) * (1 + 2 * n_methods)
    assert all(alt.strip() for _, alt in imgs)
    mx = d.model("Baseline_ResNet8_PGDAT")
    assert {b for b, _ in imgs} >= set(mx.method("occlusion").adv_maps)
    assert f"{mx.method('saliency').adversarial.spearman:.3f}" in page
    # a model the study did not cover has no explanations section
    assert 'id="expl"' not in (site / "breastmnist" / "Baseline_ResNet8_SAM.html").read_text()
    board = (site / "breastmnist" / "index.html").read_text()
    assert 'data-col="expl"' in board
    for mid in MODELS:
        shown = mid.replace("_", "_<wbr>")  # (names may wrap after "_" only)
        row = re.search(rf'<a href="{mid}.html">{shown}</a>.*?</tr>', board, re.S).group(0)
        assert f"{d.model(mid).method('saliency').adversarial.spearman:.2f}" in row
    html5lib = pytest.importorskip("html5lib")
    parser = html5lib.HTMLParser(strict=True, namespaceHTMLElements=False)
    for p in ("breastmnist/Baseline_ResNet8_PGDAT.html", "breastmnist/index.html", "studies/explanation-stability.html"):
        parser.parse((site / p).read_bytes())  # raises on any parse error
    study = (site / "studies" / "explanation-stability.html").read_text()
    assert "Stability per model and method" in study and "Baseline_ResNet8_PGDAT" in study
    assert json.loads((site / "studies" / "explanation-stability" / "breastmnist_28px.json").read_text())["study"] \
        == "explanation-stability"


@pytest.mark.slow
def test_rederive_leaves_refused_models_out_of_the_comparisons(real_root, tmp_path, monkeypatch):
    """The committed result re-derived with one model refused (its record marked so by a stand-in rule):
    its comparison goes, with a note, and the summary names it; the stored scores are unchanged."""
    need_real(real_root, "breastmnist.npz")
    from conftest import REPO
    from medbench.studies import load_result, run_study

    src = REPO / "leaderboard" / "studies" / "explanation-stability" / "breastmnist_28px.json"
    shutil.copy(src, tmp_path / "earlier.json")
    real_admission = es._admission

    def refuse_pgdat(ctx, model_id, model):
        a = real_admission(ctx, model_id, model)
        return a.model_copy(update={"admitted": False}) if model_id == "Baseline_ResNet8_PGDAT" else a

    monkeypatch.setattr(es, "_admission", refuse_pgdat)
    res = run_study("explanation-stability", "breastmnist", data_root=real_root, work_dir=tmp_path / "w",
                    progress=False, rederive_from=tmp_path / "earlier.json")
    assert all(c.model != "Baseline_ResNet8_PGDAT" for c in res.details.comparisons)
    assert any("Baseline_ResNet8_PGDAT" in n and "refused" in n for n in res.details.notes)
    assert "Refused by the admission rule" in res.summary and "p < 5e-4" in res.summary
    earlier = load_result(src)
    assert [m.methods for m in res.details.models] == [m.methods for m in earlier.details.models]
    assert {c.verdict for c in res.claims} <= {"reproduced", "not reproduced", "not run"}
