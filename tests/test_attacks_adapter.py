"""The AutoAttack adapter: attack sets, explicit configuration, equality with pyautoattack called
directly, perturbation bounds, eps = 0, and an exactly solvable linear model."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pyautoattack import AutoAttack

import medbench
from medbench.attacks import UnsupportedTaskError, attack_chunk, attack_config, attack_set, make_autoattack
from medbench.attacks.curves import apgd_ce, fgsm
from medbench.protocol import load_protocol
from conftest import need_real


@pytest.fixture(autouse=True)
def _one_thread():
    # tiny models on 32-image batches gain nothing from intra-op threads, and CI shares its 2 cores
    torch.set_num_threads(1)


# Reduced counts for CI; the full protocol (100 iterations, 5,000 queries) is what users run.
FAST = load_protocol().derive(**{"adversarial.n_iter": 8, "adversarial.square_queries": 40})


def _subset(root, name: str, n: int = 32):
    images, labels = medbench.load_dataset(name, "test", root=root)
    idx = medbench.metrics.stratified_indices(labels, n, seed=0)
    return images[torch.as_tensor(idx)].float() / 255, torch.as_tensor(labels[idx])


@pytest.mark.parametrize("c, is_3d, expected", [
    (2, False, ["apgd-ce", "fab-t", "square"]),
    (3, False, ["apgd-ce", "apgd-dlr", "fab-t", "square"]),
    (5, False, ["apgd-ce", "apgd-t", "fab-t", "square"]),
    (11, False, ["apgd-ce", "apgd-t", "fab-t", "square"]),
    (2, True, ["apgd-ce", "fab-t"]),
    (11, True, ["apgd-ce", "apgd-t", "fab-t"]),
])
def test_attack_set_follows_protocol(c, is_3d, expected):
    assert attack_set(c, is_3d) == expected


@pytest.mark.parametrize("name, targets, queries", [
    ("breastmnist", 1, 5000), ("retinamnist", 4, 5000), ("pathmnist", 8, 5000), ("organamnist", 9, 5000),
    ("fracturemnist3d", 2, None),
])
def test_config_sets_every_count_explicitly(name, targets, queries):
    spec = medbench.get_spec(name)
    cfg = attack_config(spec, "Linf", 2 / 255, load_protocol(), seed=0)
    assert (cfg.n_iter, cfg.n_restarts, cfg.n_target_classes, cfg.n_queries, cfg.version) == (100, 1, targets, queries, "custom")
    adversary = make_autoattack(torch.nn.Linear(2, 2), cfg, "cpu")
    assert adversary.attacks_to_run == cfg.attacks and adversary.seed == 0
    assert adversary.apgd.n_restarts == 1 and adversary.fab.n_restarts == 1  # 'custom' would keep 5
    assert adversary.apgd.n_iter == adversary.fab.n_iter == adversary.apgd_targeted.n_iter == 100
    assert adversary.fab.n_target_classes == adversary.apgd_targeted.n_target_classes == targets
    if queries:
        assert adversary.square.n_queries == queries


def test_l2_eps_scales_with_image_size():
    spec = medbench.get_spec("breastmnist")
    assert attack_config(spec, "L2", 0.25, load_protocol(), size=28).eps == pytest.approx(0.25)
    assert attack_config(spec, "L2", 0.25, load_protocol(), size=224).eps == pytest.approx(0.25 * 8)
    assert attack_config(spec, "Linf", 2 / 255, load_protocol(), size=224).eps == pytest.approx(2 / 255)


def test_unsupported_tracks_are_refused_clearly():
    with pytest.raises(UnsupportedTaskError, match="chestmnist.*no AutoAttack track.*clean and corruptions"):
        attack_config(medbench.get_spec("chestmnist"), "Linf", 2 / 255, load_protocol())
    with pytest.raises(UnsupportedTaskError, match="3D.*Linf only.*drop L2"):
        attack_config(medbench.get_spec("adrenalmnist3d"), "L2", 0.25, load_protocol())


def _direct(model, cfg, x, y):
    """pyautoattack called directly with the same configuration, as a user would write it."""
    adversary = AutoAttack(model, attacks=list(cfg.attacks), device="cpu", eps=cfg.eps, norm=cfg.norm,
                           seed=cfg.seed, version="custom")
    for apgd in (adversary.apgd, adversary.apgd_targeted):
        apgd.n_iter, apgd.n_restarts = cfg.n_iter, cfg.n_restarts
        # APGD derives its step-size checkpoints from n_iter in __init__; recompute them for the new count
        apgd.n_iter_2, apgd.n_iter_min, apgd.size_decr = (max(int(f * cfg.n_iter), 1) for f in (0.22, 0.06, 0.03))
    adversary.fab.n_iter, adversary.fab.n_restarts = cfg.n_iter, cfg.n_restarts
    if cfg.n_target_classes:
        adversary.apgd_targeted.n_target_classes = adversary.fab.n_target_classes = cfg.n_target_classes
    if cfg.n_queries:
        adversary.square.n_queries = cfg.n_queries
    x_adv, y_adv = adversary.run_standard_evaluation(x, y, batch_size=len(x))
    return x_adv, y_adv


@pytest.mark.realdata
@pytest.mark.parametrize("name, norm, eps", [
    ("breastmnist", "Linf", 4 / 255),
    pytest.param("breastmnist", "L2", 0.25, marks=pytest.mark.slow),
    pytest.param("retinamnist", "Linf", 8 / 255, marks=pytest.mark.slow)])
def test_adapter_equals_pyautoattack_point_for_point(real_root, request, name, norm, eps):
    need_real(real_root, f"{name}.npz")
    from conftest import train_small_model

    model = (request.getfixturevalue("breast_model") if name == "breastmnist"
             else train_small_model(real_root, name, epochs=2, width=8))
    x, y = _subset(real_root, name)
    cfg = attack_config(medbench.get_spec(name), norm, eps, FAST, batch_size=len(x), seed=0)
    ours = attack_chunk(make_autoattack(model, cfg, "cpu"), cfg, x, y)
    x_direct, y_direct = _direct(model, cfg, x, y)
    direct_robust = (y_direct == y).numpy()
    np.testing.assert_array_equal(ours.robust, direct_robust)
    np.testing.assert_array_equal(ours.adv_pred, y_direct.numpy())
    torch.testing.assert_close(ours.x_adv, x_direct, rtol=0, atol=0)
    assert 0 < ours.robust.sum() < (ours.clean_pred == y.numpy()).sum()  # the attack did something, not everything
    # the perturbations stay inside the eps ball and [0, 1], and the predictions are the model's on x_adv
    delta = (ours.x_adv - x).flatten(1)
    size = delta.abs().amax(1) if norm == "Linf" else delta.norm(dim=1)
    assert float(size.max()) <= cfg.eps + 1e-5
    assert float(ours.x_adv.min()) >= 0 and float(ours.x_adv.max()) <= 1
    with torch.no_grad():
        np.testing.assert_array_equal(model(ours.x_adv).argmax(1).numpy(), ours.adv_pred)


@pytest.mark.realdata
def test_eps_zero_gives_clean_predictions(real_root, breast_model):
    x, y = _subset(real_root, "breastmnist")
    with torch.no_grad():
        clean = breast_model(x).argmax(1)
    cfg = attack_config(medbench.get_spec("breastmnist"), "Linf", 0.0, FAST, batch_size=len(x))
    out = attack_chunk(make_autoattack(breast_model, cfg, "cpu"), cfg, x, y)
    np.testing.assert_array_equal(out.adv_pred, clean.numpy())
    np.testing.assert_array_equal(out.robust, (clean == y).numpy())
    assert out.max_perturbation == 0.0
    np.testing.assert_array_equal(apgd_ce(breast_model, x, y, 0.0, n_iter=5, seed=0, device="cpu").numpy(), clean.numpy())
    np.testing.assert_array_equal(fgsm(breast_model, x, y, 0.0).numpy(), clean.numpy())


class Linear(torch.nn.Module):
    """Two-class linear classifier on 28x28 images: logit margin m(x) = w . x + b."""

    def __init__(self, w: torch.Tensor, b: float):
        super().__init__()
        self.w, self.b = torch.nn.Parameter(w.flatten()), torch.nn.Parameter(torch.tensor(b))

    def forward(self, x):
        m = x.flatten(1) @ self.w + self.b
        return torch.stack([torch.zeros_like(m), m], 1)


def _analytic_linf_robust(model: Linear, x: torch.Tensor, y: torch.Tensor, eps: float) -> tuple[np.ndarray, np.ndarray]:
    """Exact Linf robustness of a linear classifier inside [0, 1]: the largest margin decrease moves every
    pixel by min(eps, room to the box edge) against the sign of its weight. Returns (robust, slack)."""
    w, xf, b = model.w.detach().double(), x.flatten(1).double(), model.b.detach().double()
    s = torch.where(y == 1, 1.0, -1.0).double()[:, None]  # +1: keep m > 0, -1: keep m < 0
    ws = w[None] * s  # increasing x_i helps the true class where ws_i > 0
    room = torch.where(ws > 0, xf, 1 - xf)  # how far the adversary can push pixel i against the true class
    worst = s[:, 0] * (xf @ w + b) - (ws.abs() * room.clamp(max=eps)).sum(1)
    return (worst > 0).numpy(), worst.numpy()


@pytest.mark.realdata
def test_linear_model_attacks_reach_the_exact_robust_accuracy(real_root):
    """For a linear classifier the minimal Linf perturbation is analytic: the attacks must find every
    non-robust point and no robust one (robust accuracy known exactly)."""
    need_real(real_root, "breastmnist.npz")
    x, y = _subset(real_root, "breastmnist", 48)
    g = torch.Generator().manual_seed(0)
    w = torch.randn(784, generator=g) * 0.02
    model = Linear(w, 0.0).eval()
    with torch.no_grad():  # centre the bias so that both classes are predicted
        model.b.fill_(-float((x.flatten(1) @ w).median()))
    eps = 4 / 255
    robust, slack = _analytic_linf_robust(model, x, y, eps)
    assert 0 < robust.sum() < (slack > -1e9).sum()  # neither trivial case
    clear = np.abs(slack) > 1e-4  # points on the boundary are numerically ambiguous
    cfg = attack_config(medbench.get_spec("breastmnist"), "Linf", eps, FAST, batch_size=len(x))
    out = attack_chunk(make_autoattack(model, cfg, "cpu"), cfg, x, y)
    np.testing.assert_array_equal(out.robust[clear], robust[clear])
    apgd_pred = apgd_ce(model, x, y, eps, n_iter=8, seed=0, device="cpu").numpy()
    np.testing.assert_array_equal((apgd_pred == y.numpy())[clear], robust[clear])
    # one signed step, clipped to the box, is optimal for a linear model too
    np.testing.assert_array_equal((fgsm(model, x, y, eps).numpy() == y.numpy())[clear], robust[clear])
