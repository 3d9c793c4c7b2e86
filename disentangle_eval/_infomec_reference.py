"""Plain references of InfoMEC's optimised estimators, for the tests that compare them.

Each computes the same quantity as its optimised counterpart in the most direct way
(every pairwise distance; one scipy L-BFGS-B fit per target), slowly. Not imported by the
package, so scipy.optimize costs nothing at import time.
"""
from __future__ import annotations

import numpy as np
import torch
from scipy.optimize import minimize
from scipy.special import digamma

from ._logistic import LogisticFit, sample_weights

__all__ = ["fit_multinomial_logistic_reference", "knn_mi_column_reference"]


def knn_mi_column_reference(x: np.ndarray, factors: np.ndarray, n_neighbors: int) -> np.ndarray:
    """Plain O(n^2) version of :func:`knn_mi_column`, for tests: every distance, sorted.

    Parameters are those of :func:`knn_mi_column` as numpy arrays; returns (n_factors,).
    """
    x = np.asarray(x, dtype=np.float64)
    n = x.shape[0]
    distance = np.abs(x[:, None] - x[None, :])
    out = []
    for labels in np.asarray(factors).T:
        count = np.bincount(labels)[labels]
        kept = count > 1
        if not kept.any():
            out.append(0.0)
            continue
        same = (labels[:, None] == labels[None, :]) & ~np.eye(n, dtype=bool)
        k = np.minimum(n_neighbors, count - 1)
        ranked = np.sort(np.where(same, distance, np.inf), axis=1)
        radius = np.nextafter(ranked[np.arange(n), np.maximum(k, 1) - 1], 0)
        m = (distance[:, kept] <= radius[:, None]).sum(axis=1)
        mi = (digamma(kept.sum()) + digamma(k[kept]).mean() - digamma(count[kept]).mean()
              - digamma(m[kept]).mean())
        out.append(max(mi, 0.0))
    return np.array(out)


def fit_multinomial_logistic_reference(design, targets, n_classes, *,
                                       sample_weight: str | None = "balanced",
                                       l2: float = 0.0, max_iter: int = 500,
                                       tol: float = 1e-4) -> LogisticFit:
    """Plain version of :func:`fit_multinomial_logistic`, for tests: one
    ``scipy.optimize.minimize(method="L-BFGS-B")`` per target on the same objective, in
    numpy, on the inputs as given (no whitening, no batching, no preconditioning)."""
    x = design.to_dense().cpu().numpy() if design.is_sparse else design.cpu().numpy()
    x = np.concatenate([x, np.ones((x.shape[0], 1))], axis=1)
    y = targets.cpu().numpy()
    weights = sample_weights(targets, [int(k) for k in n_classes], sample_weight).cpu().numpy()
    max_classes = max(n_classes)
    coef = np.zeros((y.shape[1], x.shape[1], max_classes))
    n_iter, converged = 0, True
    for t, k in enumerate(n_classes):
        onehot = np.eye(k)[y[:, t]]

        def objective(theta, t=t, k=k, onehot=onehot):
            w = theta.reshape(x.shape[1], k)
            logits = x @ w
            logits -= logits.max(axis=1, keepdims=True)
            log_p = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
            loss = -(weights[t] * (onehot * log_p).sum(axis=1)).sum()
            grad = x.T @ (weights[t][:, None] * (np.exp(log_p) - onehot))
            loss += 0.5 * l2 * (w[:-1] ** 2).sum()
            grad[:-1] += l2 * w[:-1]
            return loss, grad.ravel()

        result = minimize(objective, np.zeros(x.shape[1] * k), jac=True, method="L-BFGS-B",
                          options={"maxiter": max_iter, "gtol": tol,
                                   "ftol": 64 * np.finfo(float).eps})
        coef[t, :, :k] = result.x.reshape(x.shape[1], k)
        n_iter, converged = max(n_iter, result.nit), converged and result.success
    coef_t = torch.as_tensor(coef, device=targets.device)
    class_mask = (torch.arange(max_classes, device=targets.device)[None, :]
                  < torch.as_tensor(list(n_classes), device=targets.device)[:, None])
    return LogisticFit(weights=coef_t[:, :-1].contiguous(), intercepts=coef_t[:, -1].contiguous(),
                       class_mask=class_mask, n_iter=n_iter, converged=converged)
