"""Sharpness of a model's training loss: adaptive m-sharpness (Kwon et al., ICML 2021) and the
top Hessian eigenvalue (power iteration on Hessian-vector products).

Both measure the model in eval mode (BatchNorm normalises with its running statistics and leaves
them as they are; dropout is off), restore its weights and train/eval mode afterwards, and are
deterministic for a given ``seed`` (on one torch build and thread count). ``inputs`` are what the
model takes (MedMNIST images as floats in [0, 1], see ``medbench.inference.to_float``);
``loss_fn`` maps ``(outputs, targets)`` to the mean loss of the batch.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["TopEigenvalue", "adaptive_m_sharpness", "top_hessian_eigenvalue"]

Loss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
NORM_EPS = 1e-12


@dataclass(frozen=True)
class TopEigenvalue:
    """Power iteration's result: the Rayleigh quotient at the last iterate, the iterations it took,
    and whether successive values agreed within the tolerance before the iteration limit."""

    value: float
    iterations: int
    converged: bool


def adaptive_m_sharpness(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor, *,
                         rho: float = 0.5, eta: float = 0.01, m: int = 128, steps: int = 5,
                         n_batches: int | None = None, seed: int = 0,
                         loss_fn: Loss = F.cross_entropy) -> float:
    """Adaptive m-sharpness: the mean over batches ``B`` of ``m`` samples of
    ``max_{||T_w^-1 e||_2 <= rho} L_B(w + e) - L_B(w)``, with ``T_w = |w| + eta`` element-wise
    (Kwon et al.'s adaptive sharpness, the maximum taken per m-sized batch as in Foret et al.'s
    m-sharpness).

    The maximum is estimated by ``steps`` steps of projected, normalised gradient ascent on
    ``d = T_w^-1 e`` (steps of length ``rho``) from a seeded random point on the sphere
    ``||d|| = rho``; the largest increase seen counts, and ``d = 0`` is among the points seen, so
    the result is ``>= 0`` (a lower bound of the true maximum). Batches come from a seeded
    permutation of the samples: ``n_batches`` of them (default: all full batches, or the one
    partial batch when there are fewer than ``m`` samples). Defaults: ``rho``, ``eta`` are ASAM's
    training values (Kwon et al., CIFAR-10), ``m`` medbench's training batch size. Raises
    ``ValueError`` for a non-positive ``rho``, ``m``, ``steps`` or ``n_batches``, or a negative
    ``eta``.
    """
    if rho <= 0 or m < 1 or steps < 1 or eta < 0 or (n_batches is not None and n_batches < 1):
        raise ValueError(f"need rho > 0, m >= 1, steps >= 1, eta >= 0 and n_batches >= 1; got "
                         f"rho={rho}, m={m}, steps={steps}, eta={eta}, n_batches={n_batches}.")
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(targets), generator=generator)
    batches = list(order.split(m))
    if len(batches) > 1 and len(batches[-1]) < m:
        batches.pop()
    batches = batches[:n_batches]
    params = [p for p in model.parameters() if p.requires_grad]
    with _measuring(model, params) as origin:
        scale = [w.abs() + eta for w in origin]
        increases = [_ascent(model, params, origin, scale, inputs[idx], targets[idx], rho, steps,
                             generator, loss_fn) for idx in batches]
    return float(sum(increases) / len(increases))


def top_hessian_eigenvalue(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor, *,
                           n_samples: int | None = 1024, batch_size: int = 256,
                           iterations: int = 100, tol: float = 1e-4, seed: int = 0,
                           loss_fn: Loss = F.cross_entropy) -> TopEigenvalue:
    """The eigenvalue of largest magnitude (at a minimum: the top one) of the Hessian, with
    respect to the trainable parameters, of the mean loss over ``n_samples`` samples (a seeded
    subset; all when ``None`` or larger than the data), by power iteration from a seeded random
    vector.

    Hessian-vector products use double backward, ``batch_size`` samples at a time (weighted by
    batch size, so the result does not depend on ``batch_size`` beyond rounding). Stops when two
    successive Rayleigh quotients differ by at most ``tol`` times the latest one, or after
    ``iterations``. Raises ``ValueError`` for a non-positive ``n_samples``, ``batch_size``,
    ``iterations`` or ``tol``.
    """
    if batch_size < 1 or iterations < 1 or tol <= 0 or (n_samples is not None and n_samples < 1):
        raise ValueError(f"need n_samples >= 1, batch_size >= 1, iterations >= 1 and tol > 0; got "
                         f"{n_samples}, {batch_size}, {iterations}, {tol}.")
    generator = torch.Generator().manual_seed(seed)
    chosen = torch.randperm(len(targets), generator=generator)[:n_samples]
    chunks = [(inputs[idx], targets[idx], len(idx) / len(chosen))
              for idx in chosen.split(batch_size)]
    params = [p for p in model.parameters() if p.requires_grad]
    with _measuring(model, params):
        vector = _normalised([torch.randn(p.shape, generator=generator, dtype=p.dtype).to(p.device)
                              for p in params])
        value = None
        for iteration in range(1, iterations + 1):
            product = _hessian_vector_product(model, params, chunks, vector, loss_fn)
            latest = float(sum(torch.sum(v * h) for v, h in zip(vector, product)))
            if _norm(product) == 0:
                return TopEigenvalue(0.0, iteration, True)
            vector = _normalised(product)
            if value is not None and abs(latest - value) <= tol * abs(latest):
                return TopEigenvalue(latest, iteration, True)
            value = latest
    return TopEigenvalue(value, iterations, False)


@contextmanager
def _measuring(model: nn.Module, params: list[torch.Tensor]):
    """Eval mode while measuring; yields the weights, which are put back (and the mode) on exit."""
    was_training = model.training
    origin = [p.detach().clone() for p in params]
    model.eval()
    try:
        yield origin
    finally:
        with torch.no_grad():
            for p, w in zip(params, origin):
                p.copy_(w)
        model.train(was_training)


def _ascent(model, params, origin, scale, x, y, rho, steps, generator, loss_fn) -> float:
    """The largest loss increase seen by projected gradient ascent in the adaptive ball."""
    with torch.no_grad():
        for p, w in zip(params, origin):
            p.copy_(w)
        base = float(loss_fn(model(x), y))
    start = _normalised([torch.randn(w.shape, generator=generator, dtype=w.dtype).to(w.device)
                         for w in origin])
    delta = [d * rho for d in start]
    best = 0.0
    for step in range(steps + 1):
        with torch.no_grad():
            for p, w, t, d in zip(params, origin, scale, delta):
                p.copy_(w + t * d)
        loss = loss_fn(model(x), y)
        best = max(best, float(loss.detach()) - base)
        if step == steps:
            break
        grads = torch.autograd.grad(loss, params, materialize_grads=True)
        ascent = [t * g for t, g in zip(scale, grads)]  # the gradient with respect to d
        length = rho / (_norm(ascent) + NORM_EPS)
        delta = [d + length * a for d, a in zip(delta, ascent)]
        shrink = min(1.0, rho / (_norm(delta) + NORM_EPS))
        delta = [d * shrink for d in delta]
    return best


def _hessian_vector_product(model, params, chunks, vector, loss_fn) -> list[torch.Tensor]:
    product = [torch.zeros_like(p) for p in params]
    for x, y, weight in chunks:
        loss = loss_fn(model(x), y)
        grads = torch.autograd.grad(loss, params, create_graph=True, materialize_grads=True)
        curved = [g.requires_grad for g in grads]  # False: a gradient constant in the weights
        if not any(curved):
            continue
        parts = torch.autograd.grad([g for g, keep in zip(grads, curved) if keep], params,
                                    grad_outputs=[v for v, keep in zip(vector, curved) if keep],
                                    materialize_grads=True)
        for total, part in zip(product, parts):
            total.add_(part, alpha=weight)
    return product


def _norm(tensors: list[torch.Tensor]) -> float:
    return float(torch.sqrt(sum(torch.sum(t * t) for t in tensors)))


def _normalised(tensors: list[torch.Tensor]) -> list[torch.Tensor]:
    length = _norm(tensors)
    return [t / length for t in tensors]
