"""Training recipes: determinism, validation-only selection, logs, recipe round trip, losses, CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import yaml

from medbench.schema.entry import Recipe
from medbench.train import METHODS, TrainConfig, train
from medbench.train.entry import config_from_recipe, recipe_block
from medbench.train.loop import best_threshold, fold_threshold, selection_key
from medbench.train.losses import AUCMLoss
from medbench.train.sam_variants import SAM
from medbench.models.weights import sha256sum

from conftest import need_real

TINY = {"architecture": "smallcnn", "architecture_kwargs": {"width": 4}, "batch_size": 64}


def _train(root, tmp_path, name, **kw):
    torch.set_num_threads(1)
    cfg = TrainConfig(**{**TINY, **kw})
    return train(cfg, "breastmnist", tmp_path, name=name, data_root=root, progress=False)


@pytest.mark.realdata
@pytest.mark.slow
def test_same_seed_same_weights_hash_and_other_seed_differs(real_root, tmp_path):
    """A short TRADES run (data order, attack noise, BatchNorm) twice gives bit-identical weights."""
    need_real(real_root, "breastmnist.npz")
    kw = dict(method="trades", epochs=2, steps=1, val_steps=1)
    a = _train(real_root, tmp_path / "a", "m", **kw)
    b = _train(real_root, tmp_path / "b", "m", **kw)
    c = _train(real_root, tmp_path / "c", "m", seed=1, **kw)
    assert a.weights_sha256 == b.weights_sha256 == sha256sum(a.weights_path)
    assert c.weights_sha256 != a.weights_sha256


@pytest.mark.realdata
def test_selects_on_validation_never_test_and_logs_each_epoch(real_root, tmp_path, monkeypatch):
    need_real(real_root, "breastmnist.npz")
    import medbench.train.loop as loop

    splits = []
    real_load = loop.load_dataset
    monkeypatch.setattr(loop, "load_dataset", lambda name, split, *a, **k: splits.append(split) or real_load(name, split, *a, **k))
    r = _train(real_root, tmp_path, "erm", method="erm", epochs=3, lr=3e-3)
    assert sorted(splits) == ["train", "val"]
    records = [json.loads(line) for line in r.log_path.read_text().splitlines()]
    assert [x["event"] for x in records] == ["start", "epoch", "epoch", "epoch", "end"]
    assert records[0]["cpu_capability"] == torch.backends.cpu.get_cpu_capability()  # what bit-identity needs
    epochs = records[1:-1]
    best = max(epochs, key=lambda x: (x["val_auc"], -x["epoch"]))  # first epoch with the best val AUC
    assert records[-1]["best_epoch"] == best["epoch"] == r.best_epoch
    assert records[-1]["weights_sha256"] == r.weights_sha256
    # the saved weights are the selected epoch's: re-validating them gives the logged val AUC
    val = loop.validate(r.model, real_load("breastmnist", "val", root=real_root), TrainConfig(**TINY))
    assert val["val_auc"] == pytest.approx(best["val_auc"], abs=1e-9)


@pytest.mark.parametrize("method", METHODS)
def test_recipe_block_round_trips_through_the_schema(method):
    cfg = TrainConfig(method=method, epochs=7, seed=3, **TINY)
    block = Recipe.model_validate(recipe_block(cfg))  # valid under the registry schema
    back = config_from_recipe(block, architecture="smallcnn", architecture_kwargs={"width": 4}, mean=[0.5], std=[0.5])
    assert back.to_dict() == cfg.to_dict()


def test_threshold_setting_round_trips_and_bad_values_are_refused():
    cfg = TrainConfig(method="auc-m", epochs=4, threshold="val_balanced_accuracy", **TINY)
    block = Recipe.model_validate(recipe_block(cfg))
    assert config_from_recipe(block, architecture="smallcnn", architecture_kwargs={"width": 4}).threshold == \
        "val_balanced_accuracy"
    with pytest.raises(ValueError, match="threshold must be one of"):
        TrainConfig(threshold="youden", **TINY)


def test_best_threshold_maximises_balanced_accuracy_on_the_margin():
    rng = np.random.default_rng(0)
    labels = np.r_[np.zeros(90, int), np.ones(10, int)]
    margin = np.r_[rng.normal(-3, 1, 90), rng.normal(-1, 1, 10)]  # ranked well, all below 0
    t = best_threshold(margin, labels)

    def ba(th):
        return ((margin[labels == 1] > th).mean() + (margin[labels == 0] <= th).mean()) / 2
    grid = np.linspace(margin.min() - 1, margin.max() + 1, 2001)
    assert ba(t) >= max(ba(g) for g in grid) - 1e-12
    assert ba(t) > ba(0.0) + 0.2  # argmax alone predicts one class here
    assert best_threshold(rng.normal(size=20), np.zeros(20, int)) == 0.0  # one class: nothing to choose


@pytest.mark.parametrize("arch", ["smallcnn", "resnet8"])
def test_folded_threshold_makes_argmax_the_thresholded_decision(arch):
    from medbench.models.architectures import build_architecture

    torch.manual_seed(0)
    model = build_architecture(arch, in_channels=1, num_classes=2, width=4).eval()
    x = torch.rand(32, 1, 28, 28)
    with torch.no_grad():
        logits = model(x)
    margin = logits[:, 1] - logits[:, 0]
    t = float(margin.median())
    fold_threshold(model, t, x[:8])
    with torch.no_grad():
        assert torch.equal(model(x).argmax(1), (margin > t + 1e-6).long())
    with pytest.raises(ValueError, match="nn.Linear"):
        fold_threshold(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 3)), 0.5, x[:2])


def test_a_constant_predictor_is_never_selected_over_a_real_one():
    constant = {"val_auc": 0.84, "val_balanced_accuracy": 0.5, "val_predicted_classes": 1}
    real = {"val_auc": 0.80, "val_balanced_accuracy": 0.70, "val_predicted_classes": 2}
    assert selection_key(real, "auc") > selection_key(constant, "auc")
    better = {**real, "val_auc": 0.82}
    assert selection_key(better, "auc") > selection_key(real, "auc")


def test_recipe_rejects_unknown_hyperparameters():
    block = recipe_block(TrainConfig(method="sam", **TINY))
    block["hyperparameters"]["rhoo"] = 0.1
    with pytest.raises(ValueError, match="rhoo"):
        config_from_recipe(block, architecture="smallcnn")


def test_aucm_loss_is_zero_for_a_perfect_margin_and_positive_otherwise():
    y = torch.tensor([0, 0, 0, 1])
    loss = AUCMLoss(torch.tensor([0.75, 0.25]), margin=1.0)
    with torch.no_grad():
        loss.a.fill_(1.0)
    perfect = torch.tensor([[-50.0, 50.0]]).repeat(4, 1) * torch.tensor([-1, -1, -1, 1]).view(-1, 1)
    assert float(loss(perfect, y).detach()) == pytest.approx(0.0, abs=1e-6)
    with torch.no_grad():
        loss.alpha.fill_(1.0)
    assert float(loss(-perfect, y).detach()) > 0.5  # inverted scores violate the margin
    multi = AUCMLoss(torch.tensor([0.2, 0.3, 0.5]))
    assert multi.a.shape == (3,) and torch.isfinite(multi(torch.randn(6, 3), torch.tensor([0, 1, 2, 0, 1, 2])))


def test_sam_restores_weights_before_the_base_step():
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 2)
    before = [p.detach().clone() for p in model.parameters()]
    sam = SAM(model.parameters(), torch.optim.SGD(model.parameters(), lr=0.0), rho=0.5)
    x, y = torch.randn(8, 3), torch.randint(0, 2, (8,))
    torch.nn.functional.cross_entropy(model(x), y).backward()
    sam.first_step()
    assert any(not torch.equal(p, q) for p, q in zip(model.parameters(), before))  # moved to w + e
    torch.nn.functional.cross_entropy(model(x), y).backward()
    sam.second_step()
    assert all(torch.allclose(p, q, atol=1e-7) for p, q in zip(model.parameters(), before))


@pytest.mark.realdata
def test_cli_retrains_an_entry_from_its_recipe(real_root, tmp_path, capsys):
    need_real(real_root, "breastmnist.npz")
    from medbench.cli import main

    cfg = TrainConfig(method="sam", epochs=1, **TINY)
    entry = {"id": "Baseline_Tiny_SAM", "dataset": "breastmnist", "size": 28, "task": "binary-class",
             "architecture": "smallcnn", "architecture_kwargs": {"width": 4},
             "preprocessing": {"mean": [0.5], "std": [0.5]}, "recipe": recipe_block(cfg), "license": "Apache-2.0",
             "date_added": "2026-11-22",
             "weights": {"sha256": "0" * 64, "size_bytes": 1, "num_parameters": 1,
                         "sources": [{"kind": "bundled", "filename": "Baseline_Tiny_SAM.safetensors"}]}}
    path = tmp_path / "Baseline_Tiny_SAM.yaml"
    path.write_text(yaml.safe_dump(entry))
    torch.set_num_threads(1)
    rc = main(["train", str(path), "--out", str(tmp_path / "run"), "--quiet", "--data-root", str(real_root)])
    out = capsys.readouterr().out
    assert rc == 0
    weights = tmp_path / "run" / "Baseline_Tiny_SAM.safetensors"
    assert weights.is_file() and f"sha256 {sha256sum(weights)}" in out
    assert "not bit-identical" in out  # the fake sha256 in the entry cannot match
    assert (tmp_path / "run" / "Baseline_Tiny_SAM.train.jsonl").is_file()
    assert np.isfinite(json.loads((tmp_path / "run" / "Baseline_Tiny_SAM.train.jsonl").read_text().splitlines()[-1])["val_auc"])
