"""Batched multinomial logistic regression in torch.

Fits one classifier per target column on a shared design matrix, all targets in one
batched L-BFGS that keeps a separate state (history, step, stopping rule) per target, so
each target converges as a separate scikit-learn fit would, while every evaluation of
the losses and gradients is one tensor computation over all targets. Classes of targets with fewer than ``max(n_classes)`` classes are padded and
masked out of the softmax.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch

__all__ = ["LogisticFit", "fit_multinomial_logistic", "one_hot_design"]


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
        return _log_proba(design, self.weights.permute(1, 0, 2).reshape(design.shape[1], -1),
                          self.intercepts, self.class_mask)


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


def _log_proba(design, flat_weights, intercepts, class_mask):
    n_targets, max_classes = intercepts.shape
    if design.is_sparse:
        logits = torch.sparse.mm(design, flat_weights)
    else:
        logits = design @ flat_weights
    logits = logits.reshape(-1, n_targets, max_classes).permute(1, 0, 2) + intercepts[:, None, :]
    logits = logits.masked_fill(~class_mask[:, None, :], float("-inf"))
    return torch.log_softmax(logits, dim=-1)


def fit_multinomial_logistic(design: torch.Tensor, targets: torch.Tensor,
                             n_classes: Sequence[int], *,
                             sample_weight: str | None = "balanced", l2: float = 0.0,
                             max_iter: int = 500, tol: float = 1e-4) -> LogisticFit:
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
        value (scikit-learn's lbfgs ``gtol``).

    Returns
    -------
    LogisticFit
    """
    device = targets.device
    n_samples, n_targets = targets.shape
    n_features = design.shape[1]
    max_classes = max(n_classes)
    sizes = torch.as_tensor(list(n_classes), device=device)
    class_mask = torch.arange(max_classes, device=device)[None, :] < sizes[:, None]

    # Per-target sample weights, normalised so each target's objective is a weighted mean.
    counts = torch.zeros(n_targets, max_classes, dtype=torch.float64, device=device)
    counts.scatter_add_(1, targets.T, torch.ones(n_targets, n_samples, dtype=torch.float64,
                                                  device=device))
    if sample_weight == "balanced":
        class_w = n_samples / (sizes.to(torch.float64)[:, None] * counts.clamp(min=1))
        weights = class_w.gather(1, targets.T)
    elif sample_weight is None:
        weights = torch.ones(n_targets, n_samples, dtype=torch.float64, device=device)
    else:
        raise ValueError(f"sample_weight must be 'balanced' or None, got {sample_weight!r}")
    weights = weights / weights.sum(dim=1, keepdim=True)
    target_index = targets.T.unsqueeze(-1)
    n_weights = n_features * max_classes

    def unpack(theta):
        w = theta[:, :n_weights].reshape(n_targets, n_features, max_classes)
        return w.permute(1, 0, 2).reshape(n_features, -1), theta[:, n_weights:]

    def loss_and_grad(theta):
        theta = theta.detach().requires_grad_(True)
        flat_w, b = unpack(theta)
        nll = -_log_proba(design, flat_w, b, class_mask).gather(2, target_index).squeeze(-1)
        losses = (weights * nll).sum(dim=1)
        if l2:
            losses = losses + 0.5 * l2 * theta[:, :n_weights].pow(2).sum(dim=1)
        (grad,) = torch.autograd.grad(losses.sum(), theta)
        return losses.detach(), grad

    theta0 = torch.zeros(n_targets, n_weights + max_classes, dtype=torch.float64, device=device)
    theta, n_iter, converged = batched_lbfgs(loss_and_grad, theta0, max_iter=max_iter, tol=tol)
    w = theta[:, :n_weights].reshape(n_targets, n_features, max_classes)
    return LogisticFit(weights=w, intercepts=theta[:, n_weights:], class_mask=class_mask,
                       n_iter=n_iter, converged=converged)


def batched_lbfgs(loss_and_grad, theta0: torch.Tensor, *, max_iter: int = 500,
                  tol: float = 1e-4, history_size: int = 10, max_line_search: int = 30,
                  ftol: float = 64 * torch.finfo(torch.float64).eps):
    """Minimise independent objectives side by side with L-BFGS, one state per row.

    ``loss_and_grad(theta)`` maps parameters of shape (n_problems, n_params) to per-row
    losses (n_problems,) and gradients (n_problems, n_params); rows must not interact.
    Every row has its own curvature history, step length (backtracking Armijo line
    search) and stopping rule: ``max |grad| <= tol`` or a relative loss decrease below
    ``ftol`` (scipy's L-BFGS-B rules as scikit-learn sets them), so each row follows the
    path a separate fit would take, while one batched evaluation serves all rows.

    Returns
    -------
    theta : torch.Tensor of shape (n_problems, n_params)
    n_iter : int
        Largest number of iterations any row took.
    converged : bool
        Whether every row met a stopping rule before ``max_iter``.
    """
    theta = theta0.clone()
    n_rows, n_params = theta.shape
    device, dtype = theta.device, theta.dtype
    loss, grad = loss_and_grad(theta)
    s_hist = torch.zeros(n_rows, history_size, n_params, dtype=dtype, device=device)
    y_hist = torch.zeros_like(s_hist)
    rho = torch.zeros(n_rows, history_size, dtype=dtype, device=device)
    gamma = torch.ones(n_rows, dtype=dtype, device=device)
    has_history = torch.zeros(n_rows, dtype=torch.bool, device=device)
    active = grad.abs().amax(dim=1) > tol
    iterations = torch.zeros(n_rows, dtype=torch.int64, device=device)

    for _ in range(max_iter):
        if not bool(active.any()):
            break
        # Two-loop recursion over the circular history (newest entry at the end).
        q = grad.clone()
        alpha = torch.zeros(n_rows, history_size, dtype=dtype, device=device)
        for i in reversed(range(history_size)):
            alpha[:, i] = rho[:, i] * (s_hist[:, i] * q).sum(dim=1)
            q -= alpha[:, i, None] * y_hist[:, i]
        r = gamma[:, None] * q
        for i in range(history_size):
            beta = rho[:, i] * (y_hist[:, i] * r).sum(dim=1)
            r += s_hist[:, i] * (alpha[:, i] - beta)[:, None]
        direction = -r
        slope = (grad * direction).sum(dim=1)
        not_descent = slope >= 0
        direction[not_descent] = -grad[not_descent]
        slope = torch.where(not_descent, -(grad * grad).sum(dim=1), slope)
        direction[~active] = 0

        # First step of a row without history: scale to a unit first move (as torch's LBFGS).
        step = torch.where(has_history, torch.ones_like(gamma),
                           torch.clamp(1.0 / grad.abs().sum(dim=1).clamp(min=1e-300), max=1.0))
        accepted = ~active
        new_theta, new_loss, new_grad = theta.clone(), loss.clone(), grad.clone()
        for _ls in range(max_line_search):
            trial = theta + step[:, None] * direction
            trial_loss, trial_grad = loss_and_grad(trial)
            ok = ~accepted & (trial_loss <= loss + 1e-4 * step * slope) & torch.isfinite(trial_loss)
            new_theta[ok], new_loss[ok], new_grad[ok] = trial[ok], trial_loss[ok], trial_grad[ok]
            accepted |= ok
            if bool(accepted.all()):
                break
            step = torch.where(accepted, step, step * 0.5)
        stalled = ~accepted  # no decrease found: at the optimum up to rounding
        iterations += active.long()

        s = new_theta - theta
        y = new_grad - grad
        sy = (s * y).sum(dim=1)
        good = active & accepted & (sy > 1e-10 * (y * y).sum(dim=1).clamp(min=1e-300))
        s_hist = torch.where(good[:, None, None], torch.roll(s_hist, -1, dims=1), s_hist)
        y_hist = torch.where(good[:, None, None], torch.roll(y_hist, -1, dims=1), y_hist)
        rho = torch.where(good[:, None], torch.roll(rho, -1, dims=1), rho)
        s_hist[good, -1] = s[good]
        y_hist[good, -1] = y[good]
        rho[good, -1] = 1.0 / sy[good]
        gamma = torch.where(good, sy / (y * y).sum(dim=1).clamp(min=1e-300), gamma)
        has_history |= good

        relative_decrease = (loss - new_loss) / torch.maximum(
            torch.maximum(loss.abs(), new_loss.abs()), torch.ones_like(loss))
        theta, loss, grad = new_theta, new_loss, new_grad
        active = active & ~stalled & (relative_decrease > ftol) & (grad.abs().amax(dim=1) > tol)

    converged = not bool(active.any())
    return theta, int(iterations.max()), converged


def log_loss(fit: LogisticFit, design: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Unweighted mean log-loss of each target, shape (n_targets,), float64.

    Probabilities are clipped at float64 machine epsilon as ``sklearn.metrics.log_loss``.
    """
    log_p = fit.log_proba(design).clamp(min=math.log(torch.finfo(torch.float64).eps))
    return -log_p.gather(2, targets.T.unsqueeze(-1)).squeeze(-1).mean(dim=1)
