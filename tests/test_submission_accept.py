"""Accept-then-build: a validated submission joins a (temporary) registry, gets evaluated, and appears on the
rebuilt site with its verified numbers; a hostile title is escaped on the site, not rejected."""

from __future__ import annotations

import json
import shutil

import pytest
import yaml

from conftest import REPO
from hub_server import HubServer
from medbench.cli import main as cli_main
from medbench.protocol import load_protocol
from medbench.schema import EvaluationResult, read_entry
from medbench.submission import SubmissionError, accept_submission
from test_submission import DATASET, model_bytes, submit, trained  # noqa: F401  (module fixture)

HOSTILE = '<script>alert("pwned")</script><img src=x onerror=alert(1)>'
# A reduced protocol (marked +custom) so the whole pipeline runs in seconds on 2 CPU cores.
_LINF = [t for t in load_protocol()["adversarial"]["threats"]["Linf"] if t["headline"]]
SMALL = load_protocol().derive(**{"adversarial.subset_size": 24, "adversarial.n_iter": 5,
                                  "adversarial.square_queries": 20, "adversarial.threats": {"Linf": _LINF}})


@pytest.fixture(scope="module")
def hub():
    with HubServer() as server:
        yield server


@pytest.fixture(autouse=True)
def _endpoint(hub, monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", hub.endpoint)


@pytest.fixture
def folders(tmp_path):
    """Temporary copies of the registry and results (never the real model_zoo/, leaderboard/ or site/)."""
    registry, results = tmp_path / "model_zoo", tmp_path / "results"
    (registry / DATASET).mkdir(parents=True)
    for name in ("Baseline_SmallCNN_ERM.yaml", "Baseline_SmallCNN_ERM.safetensors"):
        shutil.copy(REPO / "model_zoo" / DATASET / name, registry / DATASET / name)
    results.mkdir()
    return registry, results, tmp_path / "site"


def test_accept_then_build_puts_the_model_on_the_site(hub, tmp_path, folders, trained, real_root):  # noqa: F811
    registry, results, site = folders

    def edit(d):
        d["paper"]["title"] = HOSTILE
        d["description"] = "Adversarially <b>robust</b> & fast"

    path = submit(hub, tmp_path, "Hostile2026Accept", model_bytes(trained, tmp_path), {}, edit=edit)
    done = accept_submission(path, registry=registry, results=results, site=site, protocol=SMALL,
                             threats="clean,Linf", data_root=real_root, progress=False)

    # the entry moved into the registry, without the claimed block
    assert not path.exists()
    entry_path = registry / DATASET / "Hostile2026Accept.yaml"
    assert done.entry_path == entry_path and read_entry(entry_path).paper.title == HOSTILE
    assert "claimed" not in yaml.safe_load(entry_path.read_text())
    # the harness's result was written where the site reads it
    result = EvaluationResult.from_json(results / DATASET / "Hostile2026Accept.json")
    assert result.model_id == "Hostile2026Accept" and result.admitted and "Linf-2/255" in result.adversarial
    assert result.provenance.weights_sha256 == read_entry(entry_path).weights.sha256

    # the site lists the model with its measured numbers, and escapes the hostile text everywhere
    api = json.loads((site / "data" / f"{DATASET}.json").read_text())
    rows = [r for t in api["datasets"][DATASET]["tracks"] for r in t["entries"]]
    row = next(r for r in rows if r["model_id"] == "Hostile2026Accept")
    assert row["clean"]["balanced_accuracy"] == pytest.approx(result.clean.balanced_accuracy)
    assert row["adversarial"]["Linf-2/255"]["robust_balanced_accuracy"] == pytest.approx(
        result.adversarial["Linf-2/255"].robust_balanced_accuracy)
    page = site / row["model_page"]
    html = page.read_text()
    assert "&lt;script&gt;" in html and f"{100 * result.clean.balanced_accuracy:.1f}" in html
    for f in site.rglob("*.html"):
        text = f.read_text()
        assert "<script>alert" not in text and "<img src=x" not in text and "<b>robust</b>" not in text, f
    assert "Hostile2026Accept" in (site / DATASET / "index.html").read_text()


def test_accept_refuses_an_invalid_submission_and_touches_nothing(hub, tmp_path, folders, trained,  # noqa: F811
                                                                  real_root):
    registry, results, site = folders
    path = submit(hub, tmp_path, "Broken2026Sha", model_bytes(trained, tmp_path), {}, pinned=b"x" * 100)
    with pytest.raises(SubmissionError, match="sha256 and size"):
        accept_submission(path, registry=registry, results=results, site=site, protocol=SMALL,
                          threats="clean", data_root=real_root, progress=False)
    assert path.exists() and not (registry / DATASET / "Broken2026Sha.yaml").exists()
    assert not any(results.rglob("*.json")) and not site.exists()
    code = cli_main(["submission", "accept", str(path), "--registry", str(registry), "--results", str(results),
                     "--site", str(site), "--data-root", str(real_root), "--threats", "clean"])
    assert code == 1 and path.exists()
