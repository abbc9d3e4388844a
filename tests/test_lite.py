"""The lite track (protocol lite2): its attack sets and masking guard, the CLI's --track lite on real data and
real zoo weights, the labels its results carry, and its site page (never mixed with the benchmark's tables;
a result that is not admitted, unreliable or unguarded is listed apart, never ordered)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from pyautoattack import AutoAttack

from medbench.attacks.autoattack import attack_config, attack_set
from medbench.data import get_spec
from medbench.protocol import LITE_VERSION, load_protocol
from medbench.schema import EvaluationResult
from medbench.site.lite import load_lite
from conftest import need_real

REPO = Path(__file__).resolve().parents[1]
LITE_DIR = REPO / "leaderboard" / "lite"


def test_lite_protocol_is_its_own_labelled_version():
    lite, full = load_protocol(LITE_VERSION), load_protocol()
    assert (lite.version, lite.track, full.track) == ("lite2", "lite", "full")
    assert lite.sha256() != full.sha256()
    # the full protocol it screens for: the current one, or an earlier one with the same admission and ranking
    base = load_protocol(lite.get("full_protocol"))
    assert (base.get("admission"), base.get("ranking")) == (full.get("admission"), full.get("ranking"))
    assert lite.get("threats") == ["clean", "Linf", "curves"]
    assert [t["label"] for t in lite["adversarial"]["threats"]["Linf"]] == ["Linf-2/255"]
    # the guard's FGSM point is the headline eps; no APGD curve or noise points
    assert (lite.get("curves.fgsm_eps_255"), lite.get("curves.apgd_eps_255"), lite.get("curves.noise_sigma")) == \
        ([2], [], [])


def test_lite_admission_and_ranking_are_the_full_protocols():
    """The admission checks read these keys; a lite result that fails a sanity check is never ordered."""
    lite, full = load_protocol(LITE_VERSION), load_protocol()
    assert lite.get("admission") == full.get("admission")
    assert lite.get("ranking") == {"require_sanity": True}
    assert lite.get("changes_from") == "lite1" and lite.get("changes")


def test_lite1_is_kept_unchanged_for_its_results():
    lite1 = load_protocol("lite1")
    assert lite1.version == "lite1"
    assert lite1.sha256() == "b7cb71e2d922f9dd72e8c97c7470b827f16fb0ca321b8882e8515277cb5f51ff"


@pytest.mark.parametrize("k, is_3d, expected", [
    (2, False, ["apgd-ce", "square"]), (2, True, ["apgd-ce"]), (3, False, ["apgd-ce", "apgd-dlr", "square"]),
    (5, False, ["apgd-ce", "apgd-dlr", "square"]), (11, True, ["apgd-ce", "apgd-dlr"]),
])
def test_lite_attack_sets(k, is_3d, expected):
    """Square (the black-box guard) after the white-box attacks on 2D data; it fails on 5-D inputs, so 3D
    datasets rely on the FGSM guard (curves)."""
    assert attack_set(k, is_3d, load_protocol(LITE_VERSION)) == expected
    assert "fab-t" in attack_set(k, is_3d)  # the full protocol keeps its sets


def test_lite_config_for_real_tasks_has_queries_but_no_targets():
    lite = load_protocol(LITE_VERSION)
    for name, queries in (("breastmnist", 500), ("retinamnist", 500), ("adrenalmnist3d", None)):
        cfg = attack_config(get_spec(name), "Linf", 2 / 255, lite)
        assert cfg.n_iter == lite.get("adversarial.n_iter") and cfg.n_target_classes is None
        assert cfg.n_queries == queries == (lite.get("adversarial.square_queries") if queries else None)


def test_pyautoattack_dlr_needs_three_logits():
    """Why binary tasks run APGD-CE alone on the lite track: the reference DLR loss indexes the third logit."""
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 2))
    x, y = torch.rand(4, 1, 2, 2), torch.tensor([0, 1, 0, 1])
    adversary = AutoAttack(model, attacks=["apgd-dlr"], eps=0.1, norm="Linf", seed=0, version="custom", device="cpu")
    adversary.apgd.n_iter = 2
    with pytest.raises(IndexError):
        adversary.run_standard_evaluation(x, y, batch_size=4)


@pytest.mark.slow
def test_cli_track_lite_on_real_data(real_root, tmp_path, capsys):
    from medbench.cli import main

    need_real(real_root, "breastmnist.npz")
    out = tmp_path / "erm.lite.json"
    code = main(["evaluate", "Baseline_ResNet8_PGDAT", "--dataset", "breastmnist", "--track", "lite", "--quiet",
                 "--out", str(out), "--data-root", str(real_root)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "LITE TRACK" in captured.out
    r = EvaluationResult.from_json(out)
    lite = load_protocol(LITE_VERSION)
    assert r.track == "lite" and r.provenance.protocol_version == "lite2"
    assert r.provenance.protocol_sha256 == lite.sha256()
    assert r.threats == ["clean", "Linf", "curves"] and list(r.adversarial) == ["Linf-2/255"]
    adv = r.adversarial["Linf-2/255"]
    stored = json.loads((REPO / "medbench" / "protocols" / "lite2_subsets.json").read_text())["subsets"]["breastmnist"]
    assert adv.subset.n == stored["n"] == 128 and adv.subset.indices_sha256 == stored["indices_sha256"]
    assert adv.config.attacks == ["apgd-ce", "square"] and set(r.provenance.cpu_time_per_stage_s) == \
        {"admission", "clean", "Linf-2/255/apgd-ce", "Linf-2/255/square", "curves/fgsm/2/255"}
    # an adversarially trained model keeps clearly more than chance under the lite attack; robust <= clean
    assert 0.5 < adv.robust_balanced_accuracy <= adv.clean_balanced_accuracy
    assert r.admitted and r.reliable
    guards = {c.name: c.passed for c in r.checks if c.name in ("whitebox_beats_square", "whitebox_beats_fgsm")}
    assert guards == {"whitebox_beats_square": True, "whitebox_beats_fgsm": True}


def test_cli_track_lite_refuses_threats_it_does_not_define(real_root, capsys):
    from medbench.cli import main

    need_real(real_root, "breastmnist.npz")
    code = main(["evaluate", "Baseline_ResNet8_ERM", "--dataset", "breastmnist", "--track", "lite", "--threats",
                 "clean,L2", "--data-root", str(real_root)])  # in process: a refusal needs no fresh interpreter
    err = capsys.readouterr().err
    assert code == 2
    assert "lite track" in err and "clean, Linf, curves only" in err and "Traceback" not in err


def test_committed_lite_results_are_current_lite_results():
    paths = sorted(LITE_DIR.glob("*/*.json"))
    if not paths:
        pytest.skip("no lite results committed")
    sha = load_protocol(LITE_VERSION).sha256()
    for path in paths:
        r = EvaluationResult.from_json(path)
        assert r.track == "lite" and r.provenance.protocol_sha256 == sha, path
        assert (r.dataset, r.model_id) == (path.parent.name, path.stem)
        assert (REPO / "leaderboard" / "results" / r.dataset / path.name).is_file()  # a lite twin of a full result


def test_site_lite_page_shows_only_lite_results(tmp_path):
    paths = sorted(LITE_DIR.glob("*/*.json"))
    if not paths:
        pytest.skip("no lite results committed")
    root = tmp_path / "lite"
    src = paths[0]
    (root / src.parent.name).mkdir(parents=True)
    shutil.copy(src, root / src.parent.name / src.name)
    full = REPO / "leaderboard" / "results" / src.parent.name / src.name
    shutil.copy(full, root / src.parent.name / f"Full_{src.name}")  # a full result put here by mistake
    page = load_lite(root)
    board = page.boards[src.parent.name]
    assert [row.model_id for row in board.ordered + board.apart] == [src.stem]
    assert len(page.problems) == 1 and "Full_" in page.problems[0] and "lite2" in page.problems[0]
    for board in load_lite(LITE_DIR).boards.values():
        assert [r.robust_ba for r in board.ordered] == sorted((r.robust_ba for r in board.ordered), reverse=True)
        assert all(r.admitted and r.reliable and not r.why for r in board.ordered)
        assert all(r.why for r in board.apart)


def test_the_lite_page_shows_the_clean_number_of_the_robust_numbers_images():
    """Robust balanced accuracy is measured on the attack subset, clean on the whole test split, so robust could
    read above clean; the page also shows clean balanced accuracy on the subset, which robust never exceeds."""
    page = load_lite(LITE_DIR)
    rows = [r for b in page.boards.values() for r in b.ordered + b.apart if r.robust_ba is not None]
    if not rows:
        pytest.skip("no lite results committed")
    assert all(r.robust_ba <= r.subset_clean_ba + 1e-12 for r in rows)
    html = (REPO / "site" / "lite.html").read_text()
    assert html.count("Clean BA, subset") == sum(1 for b in page.boards.values() if b.ordered)
