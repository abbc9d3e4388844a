"""Sharpness measures: the Hessian's top eigenvalue of a quadratic is A's; adaptive m-sharpness is
non-negative, zero for a flat loss, larger for a sharper one, near its closed form at a minimum;
both are seeded, measure in eval mode and leave the model as it was."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from medbench.sharpness import adaptive_m_sharpness, top_hessian_eigenvalue

from conftest import need_real


class Quadratic(nn.Module):
    """A model whose parameters (a 2-vector "weight" and a 1-vector "bias") are the output: with
    :func:`quadratic_loss` the loss is ``0.5 (w - c)' A (w - c)`` whatever the data."""

    def __init__(self, w: np.ndarray):
        super().__init__()
        self.weight = nn.Parameter(torch.tensor(w[:2]))
        self.bias = nn.Parameter(torch.tensor(w[2:]))

    def forward(self, x):
        return torch.cat([self.weight, self.bias]).expand(len(x), 3)


def quadratic_loss(a: np.ndarray, c: np.ndarray):
    a, c = torch.tensor(a), torch.tensor(c)

    def loss(out, y):
        d = out[0] - c
        return 0.5 * d @ a @ d
    return loss


def spd(seed: int, eigenvalues=(5.0, 2.0, 0.5)) -> np.ndarray:
    q, _ = np.linalg.qr(np.random.default_rng(seed).normal(size=(3, 3)))
    return q @ np.diag(eigenvalues) @ q.T


DATA = (torch.zeros(16, 1), torch.zeros(16, dtype=torch.long))
C = np.array([0.8, -1.2, 0.4])


@pytest.mark.parametrize("seed", [0, 1])
def test_top_hessian_eigenvalue_of_a_quadratic_is_the_largest_eigenvalue_of_a(seed):
    a = spd(seed, eigenvalues=np.random.default_rng(seed + 10).uniform(0.1, 4.0, 3))
    model = Quadratic(np.array([0.3, 0.1, -0.7]))
    top = top_hessian_eigenvalue(model, *DATA, loss_fn=quadratic_loss(a, C), batch_size=5,
                                 iterations=500, tol=1e-12, seed=seed)
    assert top.converged
    assert top.value == pytest.approx(np.linalg.eigvalsh(a).max(), rel=1e-6)


def test_hessian_power_iteration_reports_when_it_did_not_converge():
    a = spd(0, eigenvalues=(1.0, 0.999, 0.1))  # nearly tied: slow
    top = top_hessian_eigenvalue(Quadratic(C), *DATA, loss_fn=quadratic_loss(a, C), iterations=3,
                                 tol=1e-12)
    assert not top.converged and top.iterations == 3


def test_m_sharpness_is_zero_for_a_constant_loss():
    model = Quadratic(np.array([0.3, 0.1, -0.7]))
    flat = adaptive_m_sharpness(model, *DATA, m=4, loss_fn=lambda out, y: out.sum() * 0 + 1.0)
    assert flat == 0.0


def test_m_sharpness_is_larger_for_a_sharper_quadratic_and_near_its_closed_form_at_a_minimum():
    """At the minimum c the adaptive maximum is 0.5 rho^2 lambda_max(T A T), T = diag(|c| + eta)."""
    rho, eta = 0.5, 0.01
    model = Quadratic(C)
    a = spd(3)
    values = [adaptive_m_sharpness(model, *DATA, rho=rho, eta=eta, m=8, steps=50,
                                   loss_fn=quadratic_loss(k * a, C)) for k in (1, 4)]
    t = np.diag(np.abs(C) + eta)
    exact = 0.5 * rho**2 * np.linalg.eigvalsh(t @ a @ t).max()
    assert 0.95 * exact <= values[0] <= exact * (1 + 1e-9)  # a lower bound, close with enough steps
    assert values[1] == pytest.approx(4 * values[0], rel=1e-6)


def test_m_sharpness_respects_the_adaptive_ball():
    """Larger rho, larger maximum: the estimate grows as rho^2 at a quadratic minimum."""
    a = spd(4)
    small, large = (adaptive_m_sharpness(Quadratic(C), *DATA, rho=rho, m=8, steps=50,
                                         loss_fn=quadratic_loss(a, C)) for rho in (0.1, 0.2))
    assert large == pytest.approx(4 * small, rel=0.05)


@pytest.mark.parametrize("kwargs", [{"rho": 0.0}, {"m": 0}, {"steps": 0}, {"eta": -1.0},
                                    {"n_batches": 0}])
def test_m_sharpness_refuses_bad_options(kwargs):
    with pytest.raises(ValueError, match="need rho > 0"):
        adaptive_m_sharpness(Quadratic(C), *DATA, **kwargs)


@pytest.mark.parametrize("kwargs", [{"n_samples": 0}, {"batch_size": 0}, {"iterations": 0},
                                    {"tol": 0.0}])
def test_hessian_eigenvalue_refuses_bad_options(kwargs):
    with pytest.raises(ValueError, match="need n_samples >= 1"):
        top_hessian_eigenvalue(Quadratic(C), *DATA, **kwargs)


@pytest.fixture(scope="module")
def breast_batch(real_root):
    need_real(real_root, "breastmnist.npz")
    from medbench.data import load_dataset
    from medbench.inference import to_float

    split = load_dataset("breastmnist", "train", root=real_root)
    return to_float(split.images[:256], "cpu"), torch.as_tensor(split.labels[:256])


def _bn_model():
    from medbench.models.architectures import build_architecture

    torch.manual_seed(0)
    return build_architecture("resnet8", in_channels=1, num_classes=2, width=4)


@pytest.mark.realdata
def test_measures_on_a_real_model_are_seeded_and_leave_the_model_as_it_was(breast_batch):
    torch.set_num_threads(1)
    x, y = breast_batch
    model = _bn_model().train()
    assert any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    before = {k: v.clone() for k, v in model.state_dict().items()}
    kw = dict(m=64, steps=3, n_batches=2)
    sharp = [adaptive_m_sharpness(model, x, y, seed=s, **kw) for s in (0, 0, 1)]
    top = [top_hessian_eigenvalue(model, x, y, n_samples=128, batch_size=64, iterations=5,
                                  seed=s).value for s in (0, 0, 1)]
    assert sharp[0] == sharp[1] > 0 and sharp[2] != sharp[0]
    assert top[0] == top[1] and top[2] != top[0] and top[0] > 0
    assert model.training  # the mode is restored
    after = model.state_dict()  # weights and BatchNorm running statistics untouched (eval mode)
    assert all(torch.equal(before[k], after[k]) for k in before)


@pytest.mark.realdata
def test_hessian_eigenvalue_does_not_depend_on_the_batch_size(breast_batch):
    torch.set_num_threads(1)
    x, y = breast_batch
    model = _bn_model().double()
    values = [top_hessian_eigenvalue(model, x.double(), y, n_samples=64, batch_size=b,
                                     iterations=4).value for b in (64, 16)]
    assert values[0] == pytest.approx(values[1], rel=1e-8)
