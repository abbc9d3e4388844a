"""Post-hoc temperature scaling: one temperature T > 0 for all classes (all labels for multi-label),
fitted on validation logits by minimising the negative log-likelihood of ``logits / T``.

The NLL of ``logits / T`` is convex in 1/T, so a bounded scalar search over log T finds the optimum.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import log_expit, log_softmax

from .. import metrics

T_MIN, T_MAX = 0.01, 100.0

__all__ = ["T_MAX", "T_MIN", "fit_temperature", "logits_nll"]


def logits_nll(logits: np.ndarray, labels: np.ndarray, task: str) -> float:
    """Mean NLL computed from logits (log-softmax; log-sigmoid per label for multi-label, averaged
    over labels), without clipping."""
    logits = np.asarray(logits, dtype=np.float64)
    labels = np.asarray(labels)
    if task == metrics.MULTILABEL:
        return float(-np.mean(np.where(labels == 1, log_expit(logits), log_expit(-logits))))
    labels = labels.reshape(-1).astype(np.int64)
    return float(-np.mean(log_softmax(logits, axis=1)[np.arange(len(labels)), labels]))


def fit_temperature(logits: np.ndarray, labels: np.ndarray, task: str) -> float:
    """The temperature in [:data:`T_MIN`, :data:`T_MAX`] that minimises :func:`logits_nll` of
    ``logits / T`` on these (validation) ``logits`` (N x K) and ``labels`` ((N,) or (N, L)).

    Raises ValueError on empty input or mismatched lengths.
    """
    logits, labels = np.asarray(logits, dtype=np.float64), np.asarray(labels)
    if logits.ndim != 2 or len(logits) == 0 or len(logits) != len(labels):
        raise ValueError(f"Expected non-empty logits (N x K) and N labels; got {logits.shape} and "
                         f"{labels.shape}.")
    found = minimize_scalar(lambda log_t: logits_nll(logits / np.exp(log_t), labels, task),
                            bounds=(np.log(T_MIN), np.log(T_MAX)), method="bounded",
                            options={"xatol": 1e-6})
    return float(np.exp(found.x))
