"""Attack plugins: the foolbox plugins equal foolbox called directly, the AutoAttack plugin equals the
adapter, written attack files validate and hold only in-ball misclassified examples, NaN logits are
reported and never counted as breaks."""

from __future__ import annotations

import hashlib

import foolbox
import numpy as np
import pytest
import torch
import yaml

import medbench
from conftest import need_real
from medbench.attacks import attack_chunk, attack_config, make_autoattack
from medbench.attacks.extra import run_extra_attack, threat_entry, write_attack_files
from medbench.attacks.plugins import (Attack, UnknownAttackError, get_attack, l2_fmn_projected, list_attacks,
                                      lp_distance)
from medbench.protocol import load_protocol
from medbench.schema import AttackSubmission

MODEL, DATASET, STEPS = "Baseline_ResNet8_ERM", "breastmnist", 10


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def batch(real_root):
    need_real(real_root, "breastmnist.npz")
    images, labels = medbench.load_dataset(DATASET, "test", root=real_root)
    idx = medbench.metrics.stratified_indices(labels, 24, seed=0)
    x = images[torch.as_tensor(idx)].float() / 255
    return medbench.load_model(MODEL, DATASET), x, torch.as_tensor(labels[idx]).reshape(-1)


def test_registry_lists_and_suggests():
    assert {"autoattack", "fmn", "ddn"} <= set(list_attacks())
    fmn = get_attack("fmn", steps=5)
    assert isinstance(fmn, Attack) and fmn.minimum_norm and fmn.norms == ("Linf", "L2")
    with pytest.raises(UnknownAttackError, match="Did you mean fmn"):
        get_attack("fnm")
    with pytest.raises(UnknownAttackError, match="L2, not 'Linf'"):
        get_attack("ddn").foolbox_attack("Linf")


@pytest.mark.realdata
@pytest.mark.parametrize("name, norm, eps, foolbox_class", [
    ("fmn", "Linf", 2 / 255, foolbox.attacks.LInfFMNAttack),
    ("fmn", "L2", 0.25, l2_fmn_projected()),  # foolbox's L2 FMN with the paper's projection (see below)
    ("ddn", "L2", 0.25, foolbox.attacks.DDNAttack),
])
def test_foolbox_plugin_equals_foolbox_called_directly(batch, name, norm, eps, foolbox_class):
    model, x, y = batch
    out = get_attack(name, steps=STEPS).run(model, x, y, norm=norm, eps=eps, seed=0)
    raw, clipped, success = foolbox_class(steps=STEPS)(foolbox.PyTorchModel(model, bounds=(0, 1)), x, y, epsilons=eps)
    assert torch.equal(out.adversarial, clipped)
    np.testing.assert_array_equal(out.broken(y), success.numpy())
    with torch.no_grad():
        raw_wrong = (model(raw).argmax(1) != y).numpy()
    np.testing.assert_array_equal(np.isfinite(out.min_norm), raw_wrong)
    np.testing.assert_allclose(out.min_norm[raw_wrong], lp_distance(raw, x, norm)[raw_wrong])
    inside = out.min_norm < eps * (1 - 1e-6)  # a minimal adversarial inside the ball breaks the point at eps
    assert out.broken(y)[inside].all()
    assert out.nonfinite_outputs == 0 and out.finite.all()


def linear_problem(n: int = 8):
    """A linear 2-class model on 8x8 inputs near 0.5, and each point's exact smallest breaking L2 and Linf norm
    (margin / ||w1 - w0|| in the dual norm; the box [0, 1] is never reached)."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 2)).eval()
    x = 0.4 + 0.2 * torch.rand(n, 1, 8, 8)
    with torch.no_grad():
        logits = model(x)
    w = model[1].weight.detach()
    margin = (logits[:, 0] - logits[:, 1]).abs()
    return model, x, logits.argmax(1), {"L2": (margin / (w[1] - w[0]).norm()).numpy(),
                                        "Linf": (margin / (w[1] - w[0]).abs().sum()).numpy()}


@pytest.mark.parametrize("name, norm, rtol", [("fmn", "Linf", 1e-3), ("fmn", "L2", 1e-3), ("ddn", "L2", 0.05)])
def test_minimum_norm_attacks_find_the_exact_minimum_of_a_linear_model(name, norm, rtol):
    model, x, y, exact = linear_problem()
    out = get_attack(name, steps=100).run(model, x, y, norm=norm, eps=0.01, seed=0)
    assert (out.min_norm >= exact[norm] * (1 - 1e-4)).all()  # nothing below the true minimum (float32 slack)
    np.testing.assert_allclose(out.min_norm, exact[norm], rtol=rtol)


def test_foolbox_l2_fmn_still_needs_the_projection_fix():
    """foolbox 3.3.4's L2FMNAttack never projects (its factor is norms / norms): it stops near its first step's
    norm. When this fails, foolbox fixed it and ``l2_fmn_projected`` can go."""
    model, x, y, exact = linear_problem()
    raw, _, _ = foolbox.attacks.L2FMNAttack(steps=100)(foolbox.PyTorchModel(model, bounds=(0, 1)), x, y, epsilons=0.01)
    assert (lp_distance(raw, x, "L2") > 2 * exact["L2"]).all()


@pytest.mark.realdata
def test_autoattack_plugin_equals_adapter(batch):
    model, x, y = batch
    fast = load_protocol().derive(**{"adversarial.n_iter": 4, "adversarial.square_queries": 20})
    spec = medbench.get_spec(DATASET)
    out = get_attack("autoattack", spec=spec, protocol=fast).run(model, x, y, norm="Linf", eps=2 / 255, seed=0)
    config = attack_config(spec, "Linf", 2 / 255, fast, batch_size=len(x), seed=0)
    direct = attack_chunk(make_autoattack(model, config, "cpu"), config, x, y)
    np.testing.assert_array_equal(out.predicted, direct.adv_pred)
    assert torch.equal(out.adversarial, direct.x_adv)
    assert out.min_norm is None and (out.distance <= 2 / 255 + 1e-6).all()


@pytest.fixture(scope="module")
def written(real_root, tmp_path_factory):
    need_real(real_root, "breastmnist.npz")
    torch.set_num_threads(1)
    run = run_extra_attack(MODEL, DATASET, "Linf-2/255", "fmn", steps=STEPS, all_points=True, data_root=real_root,
                           device="cpu", progress=False)
    out = tmp_path_factory.mktemp("attack")
    npz, meta = write_attack_files(run, out)
    return run, npz, meta


@pytest.mark.realdata
@pytest.mark.slow
def test_written_files_validate_as_an_attack_submission(written):
    run, npz, meta = written
    sub = AttackSubmission.model_validate(yaml.safe_load(meta.read_text()))
    assert sub.file == npz.name and sub.sha256 == hashlib.sha256(npz.read_bytes()).hexdigest()
    assert sub.weights_sha256 == medbench.zoo.get_entry(MODEL, DATASET).weights.sha256
    assert (sub.submitter, sub.attack, sub.threat, sub.model_id) == ("medbench", "FMN", "Linf-2/255", MODEL)
    assert sub.url == "https://arxiv.org/abs/2102.12827"
    with np.load(npz, allow_pickle=False) as data:
        assert sorted(data.files) == ["images", "indices"]
        assert data["indices"].dtype == np.int64 and data["images"].dtype == np.float32
        assert len(set(data["indices"].tolist())) == len(data["indices"]) > 0
        assert set(data["indices"].tolist()) <= set(run.indices.tolist())


@pytest.mark.realdata
@pytest.mark.slow
def test_every_written_example_is_inside_the_ball_and_misclassified(written, real_root):
    _, npz, _ = written
    images, labels = medbench.load_dataset(DATASET, "test", root=real_root)
    with np.load(npz, allow_pickle=False) as data:
        idx, adv = data["indices"], torch.from_numpy(data["images"])
    clean = images[torch.as_tensor(idx)].double() / 255
    eps = threat_entry(load_protocol(), "Linf-2/255")["eps"]
    assert (lp_distance(adv, clean, "Linf") <= eps).all()
    assert adv.min() >= 0 and adv.max() <= 1
    with torch.no_grad():
        logits = medbench.load_model(MODEL, DATASET)(adv)
    assert torch.isfinite(logits).all()
    assert (logits.argmax(1).numpy() != labels.reshape(-1)[idx]).all()


class NaNWhenBright(torch.nn.Module):
    """The zoo model, but NaN logits for inputs brighter than ``threshold`` (mean pixel)."""

    def __init__(self, model, threshold: float):
        super().__init__()
        self.model, self.threshold = model, threshold

    def forward(self, x):
        out = self.model(x)
        bright = (x.flatten(1).mean(1) > self.threshold)[:, None]
        return torch.where(bright, torch.full_like(out, float("nan")), out)


@pytest.mark.realdata
@pytest.mark.parametrize("name, norm, eps", [("fmn", "Linf", 2 / 255), ("ddn", "L2", 0.25)])
def test_nan_logits_are_reported_not_counted(batch, name, norm, eps):
    model, x, y = batch
    means = x.flatten(1).mean(1)
    nan_model = NaNWhenBright(model, float(means.median())).eval()
    out = get_attack(name, steps=STEPS).run(nan_model, x, y, norm=norm, eps=eps, seed=0)
    assert out.nonfinite_outputs > 0
    with torch.no_grad():
        finite = torch.isfinite(nan_model(out.adversarial)).all(1).numpy()
    np.testing.assert_array_equal(out.finite, finite)
    assert not finite.all() and not out.broken(y)[~finite].any()
    always_nan = NaNWhenBright(model, -1.0).eval()
    out = get_attack(name, steps=STEPS).run(always_nan, x, y, norm=norm, eps=eps, seed=0)
    assert not out.broken(y).any() and np.isinf(out.min_norm).all() and out.nonfinite_outputs >= len(x)
