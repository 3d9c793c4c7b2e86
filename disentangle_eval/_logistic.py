"""Batched multinomial logistic regression in torch.

Fits one classifier per target column on a shared design matrix, all targets in one
batched L-BFGS (:mod:`._lbfgs`) that keeps a separate state per target, so each target
converges as a separate scikit-learn fit would, while every evaluation of the losses and
gradients (:mod:`._logistic_loss`) is one tensor computation over the targets still
running. Targets are grouped by class count and padded within a group (classes a target
lacks are masked out of its softmax).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from ._lbfgs import batched_lbfgs
from ._logistic_loss import BLOCK_BYTES, PaddedProblem, RowBlocks

__all__ = ["LogisticFit", "check_fit_options", "fit_multinomial_logistic", "log_loss",
           "one_hot_design", "sample_weights"]


@dataclass(frozen=True)
class LogisticFit:
    """Fitted weights of ``n_targets`` multinomial classifiers.

    Attributes
    ----------
    weights : torch.Tensor of shape (n_targets, n_features, max_classes)
    intercepts : torch.Tensor of shape (n_targets, max_classes)
    class_mask : torch.Tensor of shape (n_targets, max_classes), bool
        ``True`` where the class exists for that target.
    n_iter : int
        L-BFGS iterations taken.
    converged : bool
        Whether ``max |gradient| <= tol`` was reached before ``max_iter``.
    """

    weights: torch.Tensor
    intercepts: torch.Tensor
    class_mask: torch.Tensor
    n_iter: int
    converged: bool

    def log_proba(self, design: torch.Tensor) -> torch.Tensor:
        """Log class probabilities, shape (n_targets, n_samples, max_classes)."""
        flat = self.weights.permute(1, 0, 2).reshape(design.shape[1], -1)
        logits = torch.sparse.mm(design, flat) if design.is_sparse else design @ flat
        n_targets, max_classes = self.intercepts.shape
        logits = (logits.reshape(-1, n_targets, max_classes).permute(1, 0, 2)
                  + self.intercepts[:, None, :])
        logits = logits.masked_fill(~self.class_mask[:, None, :], float("-inf"))
        return torch.log_softmax(logits, dim=-1)


def one_hot_design(codes: torch.Tensor) -> torch.Tensor:
    """Sparse one-hot design matrix of integer code columns (scikit-learn's OneHotEncoder).

    Parameters
    ----------
    codes : torch.Tensor of shape (n_samples, n_columns), int64, each column 0..u_j-1

    Returns
    -------
    torch.Tensor, sparse COO of shape (n_samples, sum_j u_j), float64
    """
    n, d = codes.shape
    sizes = codes.max(dim=0).values + 1
    offsets = torch.cumsum(sizes, 0) - sizes
    cols = (codes + offsets).reshape(-1)
    rows = torch.arange(n, device=codes.device).repeat_interleave(d)
    values = torch.ones(n * d, dtype=torch.float64, device=codes.device)
    return torch.sparse_coo_tensor(torch.stack([rows, cols]), values,
                                   (n, int(sizes.sum())), device=codes.device,
                                   check_invariants=False).coalesce()


def check_fit_options(*, max_iter=None, tol=None, l2=None) -> None:
    """Raise ``ValueError`` naming the argument for an iteration cap, tolerance or ridge
    strength that would make a fit meaningless (NaN, negative, a non-positive cap)."""
    if max_iter is not None and (isinstance(max_iter, bool)
                                 or not isinstance(max_iter, (int, np.integer)) or max_iter < 1):
        raise ValueError(f"max_iter must be a positive integer, got {max_iter!r}")
    for name, value in (("tol", tol), ("l2", l2)):
        if value is None:
            continue
        if (isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating))
                or not math.isfinite(value) or value < 0):
            raise ValueError(f"{name} must be a finite non-negative number, got {value!r}")


def _class_count_groups(n_classes: Sequence[int]) -> list[list[int]]:
    """Targets grouped so that padding to a group's largest class count at most doubles it."""
    order = sorted(range(len(n_classes)), key=lambda t: n_classes[t])
    groups: list[list[int]] = []
    for t in order:
        if groups and n_classes[t] <= 2 * n_classes[groups[-1][0]]:
            groups[-1].append(t)
        else:
            groups.append([t])
    return groups


def sample_weights(targets, n_classes, sample_weight, row_weights=None):
    """(T, N) per-sample weights, each row summing to 1.

    ``row_weights`` (N, T), when given, counts each row that many times per target (as
    when rows of a bootstrap replicate are repeated), class balance included.
    """
    n_samples, n_targets = targets.shape
    device = targets.device
    ones = torch.ones(n_targets, n_samples, dtype=torch.float64, device=device)
    if row_weights is None:
        row_w, total = ones, n_samples
    else:
        if tuple(row_weights.shape) != tuple(targets.shape):
            raise ValueError(f"row_weights must have the shape of targets {tuple(targets.shape)}"
                             f", got {tuple(row_weights.shape)}")
        row_w = row_weights.T.to(torch.float64)
        total = row_w.sum(1, keepdim=True)
    if sample_weight == "balanced":
        sizes = torch.as_tensor(n_classes, device=device)
        counts = torch.zeros(n_targets, max(n_classes), dtype=torch.float64, device=device)
        counts.scatter_add_(1, targets.T, row_w)
        class_w = total / (sizes.to(torch.float64)[:, None] * counts.clamp(min=1))
        weights = class_w.gather(1, targets.T)
    elif sample_weight is None:
        weights = ones
    else:
        raise ValueError(f"sample_weight must be 'balanced' or None, got {sample_weight!r}")
    if row_weights is not None:
        weights = weights * row_w
    return weights / weights.sum(dim=1, keepdim=True)


def fit_multinomial_logistic(design: torch.Tensor, targets: torch.Tensor,
                             n_classes: Sequence[int], *,
                             sample_weight: str | None = "balanced", l2: float = 0.0,
                             max_iter: int = 500, tol: float = 1e-4,
                             row_weights: torch.Tensor | None = None) -> LogisticFit:
    """Fit one multinomial logistic regression per target column, all at once.

    Each target's objective is the sample-weighted mean log-loss plus
    ``l2 / 2 * ||W||^2`` (no penalty on intercepts), as scikit-learn's
    ``LogisticRegression(solver="lbfgs")`` with ``C = 1 / (l2 * n_samples)``.

    Parameters
    ----------
    design : torch.Tensor of shape (n_samples, n_features), float64, dense or sparse COO
        Shared inputs of every classifier.
    targets : torch.Tensor of shape (n_samples, n_targets), int64
        Class codes ``0 .. n_classes[t] - 1`` of each target.
    n_classes : sequence of int, length n_targets
    sample_weight : {"balanced", None}, default="balanced"
        ``"balanced"`` weighs each sample by ``n_samples / (K * count(class))`` as
        scikit-learn's ``class_weight="balanced"``.
    l2 : float, default=0.0
        Ridge strength on the mean-loss scale; 0 fits unregularised.
    max_iter : int, default=500
        Iteration cap per target (scikit-learn's ``max_iter``).
    tol : float, default=1e-4
        A target is done when every entry of its gradient is at most ``tol`` in absolute
        value (scikit-learn's lbfgs ``gtol``), or by scipy's other stopping rules (see
        :func:`~disentangle_eval._lbfgs.batched_lbfgs`).
    row_weights : torch.Tensor of shape (n_samples, n_targets), optional
        Non-negative row counts per target: each target is fitted as if its rows were
        repeated that many times (0 leaves a row out), e.g. bootstrap replicates fitted
        as more targets on one design. ``n_classes`` then counts the classes present.

    Returns
    -------
    LogisticFit
    """
    check_fit_options(max_iter=max_iter, tol=tol, l2=l2)
    device = targets.device
    n_samples, n_targets = targets.shape
    n_classes = [int(k) for k in n_classes]
    max_classes = max(n_classes)
    weights = sample_weights(targets, n_classes, sample_weight, row_weights)

    # Unregularised fits are invariant to an invertible affine map of the inputs (weights
    # and intercepts absorb it), so they are solved on whitened inputs, where L-BFGS needs
    # several times fewer iterations, and mapped back. Ridge fits are not invariant.
    whitening = None
    if design.is_sparse:
        solve_design = design
    else:
        if l2 == 0:
            whitening = _whitening(design)
            solve_design = (design - whitening[0]) @ whitening[1]
        else:
            solve_design = design
        solve_design = torch.cat([solve_design, torch.ones(n_samples, 1, dtype=design.dtype,
                                                           device=device)], dim=1)
    n_params = solve_design.shape[1] + design.is_sparse           # features + intercept

    coef = torch.zeros(n_targets, n_params, max_classes, dtype=torch.float64, device=device)
    n_iter, converged = 0, True
    for group in _class_count_groups(n_classes):
        index = torch.as_tensor(group, device=device)
        problem = PaddedProblem(solve_design, targets[:, index], [n_classes[t] for t in group],
                                 weights[index], l2)
        theta0 = torch.zeros(len(group), n_params, problem.max_classes, dtype=torch.float64,
                             device=device)
        theta, group_iter, group_converged = batched_lbfgs(problem, theta0, max_iter=max_iter,
                                                           tol=tol)
        coef[index, :, :problem.max_classes] = theta
        n_iter, converged = max(n_iter, group_iter), converged and group_converged
    weights_out, intercepts = coef[:, :-1], coef[:, -1]
    if whitening is not None:
        mean, transform = whitening
        weights_out = torch.einsum("pq,tqk->tpk", transform, weights_out)
        intercepts = intercepts - torch.einsum("p,tpk->tk", mean, weights_out)
    class_mask = (torch.arange(max_classes, device=device)[None, :]
                  < torch.as_tensor(n_classes, device=device)[:, None])
    return LogisticFit(weights=weights_out.contiguous(), intercepts=intercepts.contiguous(),
                       class_mask=class_mask, n_iter=n_iter, converged=converged)


def _whitening(design: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean (p,) and map (p, r) taking centred inputs to unit covariance on their span.

    Directions without variance (constant or collinear inputs) are dropped: no weight on
    them changes any prediction.
    """
    mean = design.mean(dim=0)
    centred = design - mean
    covariance = centred.T @ centred / design.shape[0]
    eigenvalues, eigenvectors = torch.linalg.eigh(covariance)
    keep = eigenvalues > 1e-10 * eigenvalues.max().clamp(min=1e-300)
    return mean, eigenvectors[:, keep] / eigenvalues[keep].sqrt()


def log_loss(fit: LogisticFit, design: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Unweighted mean log-loss of each target, shape (n_targets,), float64.

    Probabilities are clipped at float64 machine epsilon as ``sklearn.metrics.log_loss``.
    Computed in blocks of rows, classes along the middle axis as in the fits.
    """
    n_samples = targets.shape[0]
    n_targets, max_classes = fit.intercepts.shape
    flat = fit.weights.transpose(1, 2).reshape(n_targets * max_classes, -1)
    bias = fit.intercepts.masked_fill(~fit.class_mask, float("-inf")).reshape(-1, 1)
    floor = math.log(torch.finfo(torch.float64).eps)
    total = torch.zeros(n_targets, dtype=torch.float64, device=targets.device)
    blocks = RowBlocks(design, max(1, BLOCK_BYTES // (8 * n_targets * max_classes)))
    for start, stop, x_rows in blocks:
        logits = (blocks.times(x_rows, flat) + bias).view(n_targets, max_classes, stop - start)
        true_logit = logits.gather(1, targets[start:stop].T.unsqueeze(1))
        log_p = true_logit - torch.logsumexp(logits, dim=1, keepdim=True)
        total -= log_p.clamp(min=floor).sum(dim=(1, 2))
    return total / n_samples
