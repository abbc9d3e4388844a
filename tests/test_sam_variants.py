"""SAM, ASAM, GSAM, WSAM: one step equals the paper's update computed by hand on a quadratic; a few
steps on real BreastMNIST lower the loss; typed settings; ``medbench train --method/--hyper``."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml
from pydantic import ValidationError

from medbench.cli import main
from medbench.train import TrainConfig
from medbench.train.config import SHARPNESS_SETTINGS
from medbench.train.entry import recipe_block
from medbench.train.loop import build_model
from medbench.train.recipes import build_recipe
from medbench.train.sam_variants import ASAM, GSAM, OPTIMIZERS, SAM, WSAM

from conftest import need_real

TINY = {"architecture": "smallcnn", "architecture_kwargs": {"width": 4}, "batch_size": 64}
A = np.array([[3.0, 1.0, 0.5], [1.0, 2.0, 0.0], [0.5, 0.0, 1.0]])
B = np.array([1.0, -2.0, 0.5])
W0 = np.array([0.7, -1.3, 0.2])  # split across two tensors: a "weight" (2) and a "bias" (1)
LR = 0.1


def grad(w: np.ndarray) -> np.ndarray:
    """Gradient of L(w) = 0.5 w'Aw - b'w."""
    return A @ w - B


def set_settings(config: dict) -> dict:
    """The SAM-family hyper-parameters that ``config`` sets."""
    return {name: config[name] for name in SHARPNESS_SETTINGS if config[name] is not None}


def one_step(cls, **settings) -> np.ndarray:
    """One two-step update of ``cls`` around plain SGD on the quadratic, as a recipe runs it."""
    weight = torch.nn.Parameter(torch.tensor(W0[:2]))
    bias = torch.nn.Parameter(torch.tensor(W0[2:]))
    opt = cls([weight, bias], torch.optim.SGD([weight, bias], lr=LR), **settings)
    a, b = torch.tensor(A), torch.tensor(B)

    def loss():
        w = torch.cat([weight, bias])
        return 0.5 * w @ a @ w - b @ w

    loss().backward()
    opt.first_step()
    loss().backward()
    opt.second_step()
    assert weight.grad is None and bias.grad is None  # nothing left over for the next batch
    return torch.cat([weight, bias]).detach().numpy()


def sam_point(rho: float) -> tuple[np.ndarray, np.ndarray]:
    g = grad(W0)
    return g, grad(W0 + rho * g / np.linalg.norm(g))


def test_sam_step_is_the_gradient_at_the_normalised_ascent_point():
    _, g_p = sam_point(0.3)
    np.testing.assert_allclose(one_step(SAM, rho=0.3), W0 - LR * g_p, rtol=1e-9)


def test_asam_step_uses_the_adaptive_ascent_point():
    rho, eta = 0.5, 0.01
    g = grad(W0)
    t = np.abs(W0) + eta
    e = rho * t**2 * g / np.linalg.norm(t * g)  # Kwon et al.: rho T^2 g / ||T g||
    expected = W0 - LR * grad(W0 + e)
    np.testing.assert_allclose(one_step(ASAM, rho=rho, eta=eta), expected, rtol=1e-9)
    assert not np.allclose(expected, W0 - LR * sam_point(rho)[1])  # the test tells ASAM from SAM


def test_gsam_step_removes_alpha_times_the_orthogonal_part_of_the_clean_gradient():
    rho, alpha = 0.3, 0.4
    g, g_p = sam_point(rho)
    g_orth = g - (g @ g_p) / (g_p @ g_p) * g_p  # Zhuang et al.: decomposition along g_p
    assert abs(g_orth @ g_p) < 1e-12 and np.linalg.norm(g_orth) > 1e-2
    expected = W0 - LR * (g_p - alpha * g_orth)
    np.testing.assert_allclose(one_step(GSAM, rho=rho, alpha=alpha), expected, rtol=1e-9)


def test_wsam_step_is_the_clean_step_plus_the_decoupled_weighted_sharpness():
    rho, gamma = 0.3, 0.8
    g, g_p = sam_point(rho)
    expected = W0 - LR * g - LR * gamma / (1 - gamma) * (g_p - g)  # Yue et al., decoupled update
    np.testing.assert_allclose(one_step(WSAM, rho=rho, gamma=gamma), expected, rtol=1e-9)


@pytest.mark.parametrize(("cls", "settings", "message"), [
    (SAM, {"rho": 0.0}, "greater than 0"),
    (ASAM, {"eta": -0.1}, "greater than or equal to 0"),
    (GSAM, {"alpha": float("nan")}, "finite number"),
    (WSAM, {"gamma": 1.0}, "less than 1"),
    (WSAM, {"eta": 0.01}, "Extra inputs are not permitted"),
])
def test_settings_are_validated(cls, settings, message):
    param = torch.nn.Parameter(torch.zeros(2))
    with pytest.raises(ValidationError, match=message):
        cls([param], torch.optim.SGD([param], lr=0.1), **settings)


@pytest.mark.parametrize(("method", "defaults"), [
    ("sam", {"rho": 0.05}), ("asam", {"rho": 0.5, "eta": 0.01}),
    ("gsam", {"rho": 0.05, "alpha": 0.2}), ("wsam", {"rho": 0.05, "gamma": 0.9}),
])
def test_train_config_takes_each_optimizers_paper_defaults(method, defaults):
    cfg = TrainConfig(method=method, **TINY)
    assert set_settings(cfg.to_dict()) == defaults
    assert set(SHARPNESS_SETTINGS) <= set(cfg.to_dict())  # every optimizer setting is a field


def test_train_config_refuses_settings_of_another_method_and_bad_values():
    with pytest.raises(ValueError, match=r"does not use gamma \(used by wsam\)"):
        TrainConfig(method="asam", gamma=0.9, **TINY)
    with pytest.raises(ValueError, match="greater than 0"):
        TrainConfig(method="gsam", rho=-0.1, **TINY)
    with pytest.raises(ValueError, match="takes rho, eta, not alpha"):
        TrainConfig(method="asam", **TINY).with_settings(alpha=0.1)
    assert TrainConfig(method="wsam", **TINY).with_settings(gamma="0.8").gamma == 0.8


@pytest.mark.realdata
@pytest.mark.parametrize("method", list(OPTIMIZERS))
def test_a_few_steps_on_breastmnist_lower_the_loss(real_root, method):
    """Each recipe of the family, 30 steps on one fixed batch of 128 real images: its loss falls."""
    need_real(real_root, "breastmnist.npz")
    from medbench.data import load_dataset
    from medbench.inference import to_float

    torch.set_num_threads(1)
    split = load_dataset("breastmnist", "train", root=real_root)
    x, y = to_float(split.images[:128], "cpu"), torch.as_tensor(split.labels[:128])
    cfg = TrainConfig(method=method, **TINY)
    torch.manual_seed(0)
    model = build_model(cfg, "breastmnist")
    recipe = build_recipe(model, cfg, torch.ones(2), np.array([0.5, 0.5]),
                          torch.Generator().manual_seed(0))
    losses = [recipe.step(x, y) for _ in range(30)]  # each: the loss before that step's update
    assert losses[-1] < losses[0] - 0.1
    assert all(np.isfinite(losses))


def _entry_file(tmp_path, method: str = "sam"):
    cfg = TrainConfig(method=method, epochs=1, **TINY)
    source = {"kind": "bundled", "filename": "Baseline_Tiny_SAM.safetensors"}
    entry = {"id": "Baseline_Tiny_SAM", "dataset": "breastmnist", "size": 28,
             "task": "binary-class", "architecture": "smallcnn", "architecture_kwargs": {"width": 4},
             "preprocessing": {"mean": [0.5], "std": [0.5]}, "recipe": recipe_block(cfg),
             "license": "Apache-2.0", "date_added": "2026-11-22",
             "weights": {"sha256": "0" * 64, "size_bytes": 1, "num_parameters": 1,
                         "sources": [source]}}
    path = tmp_path / "Baseline_Tiny_SAM.yaml"
    path.write_text(yaml.safe_dump(entry))
    return path


@pytest.mark.parametrize(("method", "says"), [
    ("asamm", ["'asamm' is not a training method", "Did you mean asam",
               "Known: erm, pgd-at, trades, sam, asam"]),
    ("lookahead", ["'lookahead' is not a training method", "gsam, wsam, auc-m"]),
])
def test_cli_refuses_an_unknown_method_by_name(tmp_path, method, says):
    with pytest.raises(SystemExit) as info:
        main(["train", str(_entry_file(tmp_path)), "--method", method, "--out",
              str(tmp_path / "run")])
    for text in says:
        assert text in str(info.value.code)
    assert not (tmp_path / "run").exists()  # refused before any training


@pytest.mark.parametrize(("args", "says"), [
    (["--method", "asam", "--hyper", "gamma=0.9"], "method 'asam' takes rho, eta, not gamma"),
    (["--method", "wsam", "--hyper", "gamma=1.5"], "less than 1"),
    (["--hyper", "rho=abc"], "valid number"),
    (["--hyper", "rho"], "expected NAME=VALUE"),
    (["--hyper", "beta=6"], "'beta' is not a SAM-family hyper-parameter"),
    (["--method", "erm", "--hyper", "rho=0.1"], "'erm' is not of the SAM family"),
])
def test_cli_refuses_bad_hyperparameters_with_a_message(tmp_path, args, says):
    with pytest.raises(SystemExit) as info:
        main(["train", str(_entry_file(tmp_path)), *args, "--out", str(tmp_path / "run")])
    assert says in str(info.value.code)
    assert not (tmp_path / "run").exists()


@pytest.mark.realdata
@pytest.mark.parametrize(("method", "hyper", "expected"), [
    ("asam", ["rho=1.0"], {"rho": 1.0, "eta": 0.01}),
    ("gsam", [], {"rho": 0.05, "alpha": 0.2}),
    ("wsam", ["gamma=0.8", "rho=0.1"], {"rho": 0.1, "gamma": 0.8}),
])
def test_cli_trains_a_new_method_from_a_sam_entry(real_root, tmp_path, capsys, method, hyper,
                                                  expected):
    need_real(real_root, "breastmnist.npz")
    torch.set_num_threads(1)
    extra = [arg for item in hyper for arg in ("--hyper", item)]
    rc = main(["train", str(_entry_file(tmp_path)), "--method", method, *extra,
               "--out", str(tmp_path / "run"), "--quiet", "--data-root", str(real_root)])
    out = capsys.readouterr().out
    assert rc == 0 and f"(breastmnist, {method})" in out
    assert "reproduced" not in out and "bit-identical" not in out  # another recipe: no hash check
    log = tmp_path / "run" / f"Baseline_Tiny_SAM-{method}.train.jsonl"
    start = json.loads(log.read_text().splitlines()[0])["config"]
    assert start["method"] == method and start["epochs"] == 1
    assert set_settings(start) == expected
