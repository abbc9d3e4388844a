"""Carrying attack sections over from an earlier result (``benchmark(..., reuse=...)``): only when they
were computed exactly as the current run would compute them, and always recorded in the provenance."""

from __future__ import annotations

import hashlib

import pytest
import torch

from medbench.evaluate import benchmark
from medbench.protocol import load_protocol
from conftest import need_real, train_small_model

SHA = "ab" * 32


def fast(**extra):
    return load_protocol().derive(**{
        "adversarial.subset_size": 24, "adversarial.n_iter": 4, "adversarial.square_queries": 20,
        "curves.apgd_n_iter": 4, "clean.bootstrap_resamples": 40, **extra,
    })


@pytest.fixture(scope="module")
def prior(real_root, tmp_path_factory):
    need_real(real_root, "breastmnist.npz")
    torch.set_num_threads(1)
    model = train_small_model(real_root, "breastmnist", epochs=10)  # 3 epochs: constant predictions, not admitted
    path = tmp_path_factory.mktemp("reuse") / "prior.json"
    result = benchmark(model, "breastmnist", threats=["Linf", "curves"], protocol=fast(), data_root=real_root,
                       weights_sha256=SHA, out=path, progress=False)
    return model, result, path


@pytest.mark.realdata
def test_unchanged_sections_are_carried_over_and_traced_to_their_file(prior, real_root):
    model, old, path = prior
    # a protocol that differs elsewhere (corruptions) leaves the attack sections as they were
    new = benchmark(model, "breastmnist", threats=["Linf", "curves"], protocol=fast(**{"corruptions.note": "x"}),
                    data_root=real_root, weights_sha256=SHA, reuse=path, progress=False)
    assert new.adversarial == old.adversarial and new.curves == old.curves
    assert set(new.provenance.reused) == {"Linf", "curves"}
    record = new.provenance.reused["Linf"]
    assert record.from_result_sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert record.from_protocol_sha256 == old.provenance.protocol_sha256
    assert new.provenance.wall_time_per_threat_s["Linf"] == 0.0 and new.reliable


@pytest.mark.realdata
@pytest.mark.parametrize("change", [
    {"weights_sha256": "cd" * 32},                                  # other weights
    {"protocol": {"adversarial.n_iter": 3, "curves.apgd_n_iter": 3}},  # other attack settings
    {"protocol": {"clean.bootstrap_resamples": 41}},                 # other CI settings (robust BA interval)
])
def test_sections_computed_otherwise_are_recomputed(prior, real_root, change):
    model, old, path = prior
    new = benchmark(model, "breastmnist", threats=["Linf"], protocol=fast(**change.get("protocol", {})),
                    data_root=real_root, weights_sha256=change.get("weights_sha256", SHA), reuse=path, progress=False)
    assert new.provenance.reused == {}
    assert new.provenance.wall_time_per_threat_s["Linf"] > 0


def test_site_names_where_a_carried_over_section_was_computed(tmp_path):
    """Every committed result whose attack sections were carried over says so on its page and in the API."""
    import json
    from pathlib import Path

    from medbench.schema import EvaluationResult
    from medbench.site.build import build_site

    repo = Path(__file__).resolve().parents[1]
    results = repo / "leaderboard" / "results"
    reused = {p: EvaluationResult.from_json(p) for p in results.glob("*/*.json")}
    reused = {p: r for p, r in reused.items() if r.provenance.reused}
    if not reused:
        pytest.skip("no committed result carries a section over")
    out = tmp_path / "site"
    build_site(out, repo / "model_zoo", results)
    path, result = next(iter(sorted(reused.items())))
    page = (out / result.dataset / f"{result.model_id}.html").read_text()
    record = next(iter(result.provenance.reused.values()))
    assert "Carried over" in page and record.from_result_sha256 in page
    api = json.loads((out / "data" / f"{result.dataset}.json").read_text())
    entries = [e for t in api["datasets"][result.dataset]["tracks"] for e in t["entries"]
               if e["model_id"] == result.model_id]
    assert entries and set(entries[0]["provenance"]["reused"]) == set(result.provenance.reused)
