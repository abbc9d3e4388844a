"""BE / rBE (issues 12 and 13): one pinned reference model per dataset, a documented guard on rBE's
denominator, every corruption accounted for; and no submission can become the reference."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
import torch

import medbench
from medbench.models.architectures import build_architecture
from medbench.corruptions.evaluation import be_rbe, pinned_reference
from medbench.errors import MedbenchError
from medbench.protocol import CURRENT_VERSION, load_protocol
from medbench.schema import EvaluationResult
from medbench.submission.accept import find_reference
from medbench.submission.schema import SubmissionError
from medbench.zoo import clear_cache

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "leaderboard" / "results"
PROTO = load_protocol()
MIN_GAP = PROTO.get("corruptions.rbe_min_reference_gap")
PINNED = PROTO.get("corruptions.reference_models")


def test_every_zoo_dataset_pins_a_registered_erm_baseline_with_a_result():
    zoo_datasets = {p.name for p in (REPO / "model_zoo").iterdir() if p.is_dir()}
    assert set(PINNED) == zoo_datasets
    for dataset, model_id in PINNED.items():
        entry = medbench.schema.read_entry(REPO / "model_zoo" / dataset / f"{model_id}.yaml")
        assert entry.is_baseline and entry.recipe.method == "erm"
        assert EvaluationResult.from_json(RESULTS / dataset / f"{model_id}.json").model_id == model_id
    assert pinned_reference("chestmnist", PROTO) is None and MIN_GAP > 0


@pytest.mark.parametrize("path", sorted(RESULTS.glob("*/*.json")), ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_be_rbe_of_every_committed_result_are_finite_and_account_for_every_corruption(path):
    """The committed results (computed by the harness) include vessel models whose old rBE was -14.8 to -34.6."""
    res = EvaluationResult.from_json(path)
    ref = EvaluationResult.from_json(RESULTS / res.dataset / f"{PINNED[res.dataset]}.json")
    out = be_rbe(res.corruptions.cells, res.clean.balanced_accuracy, ref, MIN_GAP)
    per = out["relative_errors"]
    assert [r.corruption for r in per] == list(res.corruptions.per_corruption)  # none dropped
    assert out["rbe_defined"] + out["rbe_undefined"] == len(per) == out["be_defined"] + out["be_undefined"]
    for r in per:
        assert (r.rbe is None) == (r.reference_gap < MIN_GAP), r
        if r.rbe is None:
            assert f"{r.reference_gap:+.3f}, below the protocol's minimum" in r.undefined
        else:
            assert math.isfinite(r.rbe) and abs(r.rbe) < 5, r  # a well-conditioned ratio
    defined = [r.rbe for r in per if r.rbe is not None]
    assert out["rbe"] == pytest.approx(sum(defined) / len(defined))
    assert out["be"] == pytest.approx(sum(r.be for r in per) / len(per))
    if res.model_id == ref.model_id:  # the reference against itself
        assert out["be"] == pytest.approx(1.0) and out["rbe"] == pytest.approx(1.0)


def test_no_defined_corruption_gives_no_mean_but_still_every_record():
    ref = EvaluationResult.from_json(RESULTS / "breastmnist" / f"{PINNED['breastmnist']}.json")
    out = be_rbe(ref.corruptions.cells, ref.clean.balanced_accuracy, ref, min_gap=100.0)
    assert out["rbe"] is None and out["rbe_defined"] == 0 and out["rbe_undefined"] == len(out["relative_errors"])
    assert out["be"] == pytest.approx(1.0)


def _tiny():
    return build_architecture("smallcnn", in_channels=1, num_classes=2, width=4)


def test_benchmark_refuses_a_reference_that_is_not_the_pinned_model():
    other = RESULTS / "breastmnist" / "Baseline_ResNet8_AUCM.json"
    with pytest.raises(MedbenchError, match=rf"'Baseline_ResNet8_AUCM', but protocol {CURRENT_VERSION} pins 'Baseline_ResNet8_ERM'"):
        medbench.benchmark(_tiny(), "breastmnist", threats="corruptions", reference=other, progress=False)
    with pytest.raises(MedbenchError, match="is for pneumoniamnist, not breastmnist"):
        medbench.benchmark(_tiny(), "breastmnist", threats="corruptions", progress=False,
                           reference=RESULTS / "pneumoniamnist" / "Baseline_ResNet8_ERM.json")


@pytest.fixture
def folders(tmp_path):
    registry, results = tmp_path / "model_zoo", tmp_path / "results"
    shutil.copytree(REPO / "model_zoo" / "breastmnist", registry / "breastmnist")
    (results / "breastmnist").mkdir(parents=True)
    for p in (RESULTS / "breastmnist").glob("*.json"):
        shutil.copy(p, results / "breastmnist" / p.name)
    return registry, results


def test_a_baseline_named_submission_cannot_become_the_reference(folders):
    """A result (and entry) with an id sorting before the pinned one, trained by ERM, is never picked."""
    registry, results = folders
    impostor = "Baseline_AAA_ERM"
    shutil.copy(registry / "breastmnist" / "Baseline_ResNet8_ERM.yaml", registry / "breastmnist" / f"{impostor}.yaml")
    text = (registry / "breastmnist" / f"{impostor}.yaml").read_text().replace("Baseline_ResNet8_ERM", impostor)
    (registry / "breastmnist" / f"{impostor}.yaml").write_text(text)
    data = json.loads((results / "breastmnist" / "Baseline_ResNet8_ERM.json").read_text())
    data["model_id"] = impostor
    (results / "breastmnist" / f"{impostor}.json").write_text(json.dumps(data))
    assert find_reference(registry, results, "breastmnist", 28) == results / "breastmnist" / "Baseline_ResNet8_ERM.json"


def test_a_missing_pinned_reference_is_a_clear_error(folders):
    registry, results = folders
    (results / "breastmnist" / "Baseline_ResNet8_ERM.json").unlink()
    with pytest.raises(SubmissionError, match=r"reference for breastmnist \(Baseline_ResNet8_ERM, pinned by "
                                              rf"protocol {CURRENT_VERSION}\) has no result.*Fix: evaluate it first"):
        find_reference(registry, results, "breastmnist", 28)
    (registry / "breastmnist" / "Baseline_ResNet8_ERM.yaml").unlink()
    clear_cache()  # the registry is read once per process
    with pytest.raises(SubmissionError, match="is not a registered entry"):
        find_reference(registry, results, "breastmnist", 28)
    assert find_reference(registry, results, "chestmnist", 28) is None  # no pinned reference: BE / rBE left empty


@pytest.mark.realdata
@pytest.mark.slow
def test_the_pinned_reference_is_its_own_reference(real_root):
    """Evaluated without a reference (it is the first of its dataset), the pinned model gets BE = rBE = 1 where
    defined, and the same per-corruption records as any model measured against it."""
    pinned = PINNED["breastmnist"]
    res = medbench.benchmark(pinned, "breastmnist", threats="corruptions", data_root=real_root, checks=False,
                             progress=False, model_id=pinned)
    c = res.corruptions
    assert c.reference_model == pinned and c.be == pytest.approx(1.0) and c.rbe == pytest.approx(1.0)
    assert [r.corruption for r in c.relative_errors] == list(c.per_corruption)
    assert c.rbe_defined + c.rbe_undefined == len(c.per_corruption) and c.be_rbe_note is None
    other = medbench.benchmark(pinned, "breastmnist", threats="corruptions", data_root=real_root, checks=False,
                               progress=False, model_id="Someone")
    assert other.corruptions.be is None and "no reference result was given" in other.corruptions.be_rbe_note
