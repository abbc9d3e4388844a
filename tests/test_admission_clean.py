"""Admission on the clean pass (issue 12): a (near-)constant or at-chance model on real BreastMNIST is
refused for ranking with a message that says why and how to proceed; with the explicit flag its result
exists, is marked not admitted, skips the attacks, and is never ranked on the site."""

from __future__ import annotations

import copy
import shutil

import numpy as np
import pytest
import torch

import medbench
from medbench.cli import main
from medbench.errors import InvalidModelError
from medbench.evaluate import benchmark
from medbench.protocol import load_protocol
from medbench.schema import EvaluationResult
from medbench.models.weights import save_weights

from conftest import REPO
from hub_server import HubServer
from test_submission import model_bytes, submit, trained, validate  # noqa: F401  (module fixture)

pytestmark = pytest.mark.realdata
# attacks reduced so that a run that wrongly attacks stays short; the admission rules are the standard ones
PROTOCOL = load_protocol().derive(**{"adversarial.subset_size": 32, "adversarial.n_iter": 5,
                                     "adversarial.square_queries": 40, "curves.apgd_n_iter": 5})
PROTOCOL_2 = load_protocol("2").derive(**{"adversarial.subset_size": 32, "adversarial.n_iter": 5,
                                         "adversarial.square_queries": 40, "curves.apgd_n_iter": 5})
ATTACKS = "clean,Linf,L2,curves"


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


def _margins(model, root) -> np.ndarray:
    """logit(class 1) - logit(class 0) of ``model`` on every real test image."""
    x, _ = medbench.load_dataset("breastmnist", "test", root=root)
    with torch.no_grad():
        z = model(x.float() / 255)
    return (z[:, 1] - z[:, 0]).numpy()


def _shift_bias(model, root, n_class0: int):
    """A copy of ``model`` whose last-layer bias dominates: it predicts class 0 for exactly ``n_class0``
    test images (those with the smallest margins) and class 1 for all others. The shift keeps the logits
    moderate, so gradients stay non-zero and the model passes the pre-clean admission checks."""
    m = copy.deepcopy(model)
    margins = np.sort(_margins(model, root))
    shift = -margins[0] + 1.0 if n_class0 == 0 else -(margins[n_class0 - 1] + margins[n_class0]) / 2
    last = [mod for mod in m.modules() if isinstance(mod, torch.nn.Linear)][-1]
    with torch.no_grad():
        last.bias[1] += float(shift)
    assert int((_margins(m, root) < 0).sum()) == n_class0
    return m


@pytest.fixture(scope="module")
def constant_model(real_root, breast_model):
    return _shift_bias(breast_model, real_root, 0)


def test_constant_model_is_refused_with_what_is_wrong_and_how_to_proceed(real_root, constant_model):
    with pytest.raises(InvalidModelError) as info:
        benchmark(constant_model, "breastmnist", threats=ATTACKS, protocol=PROTOCOL, data_root=real_root,
                  progress=False)
    msg = str(info.value)
    assert "majority_false_positive_rate: most frequent predicted class (1: " in msg and "is given to 100.0%" in msg
    assert "clean_above_chance:" in msg and "chance 0.500" in msg
    assert "allow_unranked=True" in msg and "--allow-unranked" in msg


def test_with_the_flag_the_result_exists_unadmitted_and_attacks_are_skipped(real_root, constant_model, tmp_path,
                                                                           capsys):
    out = tmp_path / "r.json"
    res = benchmark(constant_model, "breastmnist", threats=ATTACKS, protocol=PROTOCOL, data_root=real_root,
                    progress=False, allow_unranked=True, out=out)
    assert not res.admitted and not res.reliable
    assert res.clean is not None and res.clean.balanced_accuracy == pytest.approx(0.5)
    assert res.adversarial == {} and res.curves is None
    assert res.threats == ["clean"] and set(res.skipped) == {"Linf", "L2", "curves"}
    assert all("not admitted (majority_false_positive_rate, clean_above_chance)" in why for why in res.skipped.values())
    assert "skipping Linf" in capsys.readouterr().err
    failed = {c.name for c in res.checks if not c.passed}
    assert failed == {"majority_false_positive_rate", "clean_above_chance"}
    assert EvaluationResult.from_json(out).skipped == res.skipped  # stored in the result file
    # a resumed run still needs the flag (the refusal is not forgotten)
    again = benchmark(constant_model, "breastmnist", threats=ATTACKS, protocol=PROTOCOL, data_root=real_root,
                      progress=False, allow_unranked=True)
    assert again.skipped == res.skipped


def test_near_constant_model_is_refused_by_its_interval_under_protocol_2(real_root, breast_model):
    """Protocol 2: two test images predicted differently: under the 99% limit, but the clean BA interval
    includes chance."""
    near = _shift_bias(breast_model, real_root, 2)
    with pytest.raises(InvalidModelError, match=r"clean_above_chance: .*does not lie above chance") as info:
        benchmark(near, "breastmnist", protocol=PROTOCOL_2, data_root=real_root, progress=False)
    assert "predictions_not_constant" not in str(info.value)  # 98.7% < 99%: that rule passes
    res = benchmark(near, "breastmnist", protocol=PROTOCOL_2, data_root=real_root, progress=False, allow_unranked=True)
    v = {c.name: c for c in res.checks}
    assert v["predictions_not_constant"].passed and v["predictions_not_constant"].value == pytest.approx(154 / 156)
    assert not v["clean_above_chance"].passed and v["clean_above_chance"].value <= 0.5


def test_one_differing_image_is_near_constant_under_protocol_2(real_root, breast_model):
    res = benchmark(_shift_bias(breast_model, real_root, 1), "breastmnist", protocol=PROTOCOL_2, data_root=real_root,
                    progress=False, allow_unranked=True)
    v = {c.name: c for c in res.checks}
    assert not v["predictions_not_constant"].passed and v["predictions_not_constant"].value == pytest.approx(155 / 156)


def test_trained_model_is_admitted(real_root, breast_model):
    res = benchmark(breast_model, "breastmnist", protocol=PROTOCOL, data_root=real_root, progress=False)
    v = {c.name: c for c in res.checks}
    assert v["majority_false_positive_rate"].passed and v["clean_above_chance"].passed
    assert v["eps0_repredicts_clean"].passed
    assert res.admitted and res.skipped == {}
    assert v["clean_above_chance"].value > 0.55


def test_cli_refuses_then_computes_with_allow_unranked(real_root, constant_model, tmp_path, capsys):
    weights = tmp_path / "constant.safetensors"
    save_weights(constant_model, weights)
    args = ["evaluate", "--weights", str(weights), "--arch", "smallcnn", "--dataset", "breastmnist",
            "--data-root", str(real_root), "--threats", "clean,Linf", "--quiet"]
    assert main(args) == 1
    err = capsys.readouterr().err
    assert "cannot be ranked" in err and "--allow-unranked" in err and "Traceback" not in err
    assert main(args + ["--allow-unranked"]) == 0
    printed = capsys.readouterr().out
    assert "[FAIL] admission majority_false_positive_rate" in printed and "skipped\n  Linf: not run" in printed
    assert "NOT ADMITTED" in printed


def test_v1_protocol_has_no_clean_admission(real_root, constant_model):
    """Results of protocol v1 were computed without these rules; evaluating under v1 keeps its behaviour."""
    res = benchmark(constant_model, "breastmnist", protocol=load_protocol("1"), data_root=real_root, progress=False)
    assert res.admitted and "predictions_not_constant" not in {c.name for c in res.checks}


def test_site_never_ranks_a_not_admitted_result_and_says_why(real_root, breast_model, constant_model, tmp_path):
    from medbench.site.load import load_inputs
    from medbench.site.table import build_board

    results = tmp_path / "results" / "breastmnist"
    for name, model in (("Trained", breast_model), ("Constant", constant_model)):
        benchmark(model, "breastmnist", data_root=real_root, progress=False, allow_unranked=True,  # standard protocol
                  model_id=name, out=results / f"{name}.json")
    inputs = load_inputs(tmp_path / "registry", tmp_path / "results")
    (track,) = build_board("breastmnist", inputs).tracks
    rows = {r.model_id: r for r in track.rows}
    assert rows["Trained"].rank == 1 and rows["Constant"].rank is None
    assert [r.model_id for r in track.rows] == ["Trained", "Constant"]  # the unranked row comes last
    flag = next(f for f in rows["Constant"].flags if f.code == "not-admitted")
    assert "never ranked" in flag.detail and "majority_false_positive_rate (most frequent predicted class" in flag.detail
    assert build_board("breastmnist", inputs).best.model_id == "Trained"


def test_a_refused_model_gets_no_reused_attack_sections(real_root, constant_model, tmp_path):
    """An earlier result that attacked the model (e.g. under protocol v1) is not carried into a refused run."""
    sha, prior = "cd" * 32, tmp_path / "prior.json"
    benchmark(constant_model, "breastmnist", threats="clean,Linf", protocol=PROTOCOL, data_root=real_root,
              checks=False, weights_sha256=sha, out=prior, progress=False)
    assert EvaluationResult.from_json(prior).adversarial
    res = benchmark(constant_model, "breastmnist", threats="clean,Linf", protocol=PROTOCOL, data_root=real_root,
                    weights_sha256=sha, reuse=prior, allow_unranked=True, progress=False)
    assert res.adversarial == {} and res.provenance.reused == {} and "Linf" in res.skipped


def test_submission_validation_reports_a_constant_model(tmp_path, real_root, trained, monkeypatch):  # noqa: F811
    """``medbench submission validate --reproduce`` names the clean-pass rule (accept would refuse the model)."""
    constant = _shift_bias(trained, real_root, 0)
    registry = tmp_path / "registry"
    (registry / "breastmnist").mkdir(parents=True)
    for name in ("Baseline_SmallCNN_ERM.yaml", "Baseline_SmallCNN_ERM.safetensors"):
        shutil.copy(REPO / "model_zoo" / "breastmnist" / name, registry / "breastmnist" / name)
    with HubServer() as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.endpoint)
        report = validate(submit(hub, tmp_path, "Constant2026Cnn", model_bytes(constant, tmp_path), {}), registry,
                          real_root, reproduce=True)
    failing = {c.name: c for c in report.checks if c.failed}
    rule = failing["majority_false_positive_rate"]
    assert rule.stage == "admission" and "is given to 100.0%" in rule.message and not report.passed


def test_a_result_computed_without_checks_is_never_admitted(real_root, breast_model, tmp_path, capsys):
    """``--no-checks`` leaves nothing that vouches for the model: its result is unranked (not vacuously admitted)."""
    from medbench.site.load import load_inputs
    from medbench.site.table import build_board

    results = tmp_path / "results" / "breastmnist"
    checked = benchmark(breast_model, "breastmnist", threats="clean", data_root=real_root, progress=False,
                        model_id="Checked", out=results / "Checked.json")
    unchecked = benchmark(breast_model, "breastmnist", threats="clean", data_root=real_root, progress=False,
                          checks=False, model_id="Unchecked", out=results / "Unchecked.json")
    assert checked.admitted and not unchecked.admitted and unchecked.checks == []
    assert "--no-checks" in unchecked.not_admitted_because[0]
    assert checked.clean.balanced_accuracy == unchecked.clean.balanced_accuracy  # same numbers, only the verdict
    (track,) = build_board("breastmnist", load_inputs(tmp_path / "registry", tmp_path / "results")).tracks
    rows = {r.model_id: r for r in track.rows}
    assert rows["Checked"].rank == 1 and rows["Unchecked"].rank is None
    assert "computed without them" in next(f for f in rows["Unchecked"].flags if f.code == "not-admitted").detail
