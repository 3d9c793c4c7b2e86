"""Batched multinomial logistic regression in torch.

Fits one classifier per target column on a shared design matrix, all targets in one
batched L-BFGS that keeps a separate state (history, step, stopping rule) per target, so
each target converges as a separate scikit-learn fit would, while every evaluation of
the losses and gradients is one tensor computation over the targets still running. Targets
are grouped by class count and padded within a group (classes a target lacks are masked
out of its softmax), so every operation is a dense fused kernel with little waste.
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


class _PaddedProblem:
    """Weighted multinomial log-losses of a group of targets with similar class counts.

    Parameters are one (n_targets, n_features + 1, max_classes) tensor (the last feature
    row holds intercepts); classes a target lacks are masked out of its softmax. Targets
    are grouped by class count before this, so the padding stays small while every
    operation is a fused dense kernel. Gradients are analytic: ``X^T (w * (P - Y))``.
    """

    def __init__(self, design, targets, n_classes, weights, l2):
        device = targets.device
        self.design = design                                     # (N, p)
        self.design_t = design.t().coalesce() if design.is_sparse else design.T.contiguous()
        self.n_samples, self.n_targets = targets.shape
        self.n_features = design.shape[1]
        self.max_classes = max(n_classes)
        sizes = torch.as_tensor(list(n_classes), device=device)
        self.class_mask = torch.arange(self.max_classes, device=device)[None, :] < sizes[:, None]
        # Padded classes get -inf logits: probability 0, no gradient.
        self.logit_mask = torch.zeros(self.n_targets, self.max_classes, dtype=torch.float64,
                                      device=device).masked_fill(~self.class_mask, float("-inf"))
        # Class-major (T, K, N) throughout: the softmax over K then runs along rows of N
        # contiguous samples (twice as fast as over short rows of K), and the products
        # with the design read and write their (T * K, N) operands in place.
        self.targets = targets.T.contiguous()                    # (T, N)
        self.weights = weights                                   # (T, N), rows sum to 1
        self.l2 = l2

    @staticmethod
    def row_dot(a, b):
        return (a * b).sum(dim=(1, 2))

    @staticmethod
    def row_max_abs(a):
        return a.abs().amax(dim=(1, 2))

    @staticmethod
    def expand(per_target):
        return per_target[:, None, None]

    def loss_and_grad(self, theta, rows):
        """Losses (T,) and gradient (like theta); only targets in ``rows`` are computed."""
        every = bool(rows.all())
        kept = torch.nonzero(rows).squeeze(1)
        sub = theta if every else theta[kept]                    # (T', p + 1, K)
        t, _, k = sub.shape
        n, p = self.n_samples, self.n_features
        flat = sub[:, :-1].transpose(1, 2).reshape(t * k, p)
        bias = (sub[:, -1, :] + (self.logit_mask if every else self.logit_mask[kept]))
        if self.design.is_sparse:
            logits = torch.sparse.mm(self.design, flat.T).T.contiguous()
            logits += bias.reshape(t * k, 1)
        else:
            logits = torch.addmm(bias.reshape(t * k, 1), flat, self.design_t)
        proba = torch.softmax(logits.view(t, k, n), dim=1)       # (T', K, N)
        y = (self.targets if every else self.targets[kept]).unsqueeze(1)
        w = (self.weights if every else self.weights[kept]).unsqueeze(1)
        losses = torch.zeros(self.n_targets, dtype=theta.dtype, device=theta.device)
        # Only the true class's log-probability enters the loss: the log of the gathered
        # (T', 1, N) values instead of a log-softmax over all classes (+inf if one
        # underflows to 0, which the line search then rejects as it would any huge loss).
        losses[kept] = -(w * proba.gather(1, y).log()).sum(dim=(1, 2))
        residual = proba.mul_(w)
        residual.scatter_add_(1, y, -w)
        flat_residual = residual.view(t * k, n)
        if self.design.is_sparse:
            grad_w = torch.sparse.mm(self.design_t, flat_residual.T).T
        else:
            grad_w = flat_residual @ self.design                 # (T' * K, p)
        grad_sub = torch.cat([grad_w.reshape(t, k, p).transpose(1, 2),
                              residual.sum(dim=2).unsqueeze(1)], dim=1)
        if self.l2:
            weights_part = sub[:, :-1]
            losses[kept] += 0.5 * self.l2 * weights_part.pow(2).sum(dim=(1, 2))
            grad_sub[:, :-1] += self.l2 * weights_part
        if every:
            return losses, grad_sub
        grad = torch.zeros_like(theta)
        grad[kept] = grad_sub
        return losses, grad


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
        value (scikit-learn's lbfgs ``gtol``).
    row_weights : torch.Tensor of shape (n_samples, n_targets), optional
        Non-negative row counts per target: each target is fitted as if its rows were
        repeated that many times (0 leaves a row out), e.g. bootstrap replicates fitted
        as more targets on one design. ``n_classes`` then counts the classes present.

    Returns
    -------
    LogisticFit
    """
    device = targets.device
    n_samples, n_targets = targets.shape
    n_features = design.shape[1]
    n_classes = [int(k) for k in n_classes]
    sizes = torch.as_tensor(n_classes, device=device)
    max_classes = max(n_classes)
    counts = torch.zeros(n_targets, max_classes, dtype=torch.float64, device=device)
    if row_weights is None:
        counts.scatter_add_(1, targets.T, torch.ones(n_targets, n_samples, dtype=torch.float64,
                                                      device=device))
    else:
        if tuple(row_weights.shape) != tuple(targets.shape):
            raise ValueError(f"row_weights must have the shape of targets {tuple(targets.shape)}"
                             f", got {tuple(row_weights.shape)}")
        row_w = row_weights.T.to(torch.float64)
        counts.scatter_add_(1, targets.T, row_w)
    if sample_weight == "balanced":
        class_w = ((n_samples if row_weights is None else row_w.sum(1, keepdim=True))
                   / (sizes.to(torch.float64)[:, None] * counts.clamp(min=1)))
        weights = class_w.gather(1, targets.T)
    elif sample_weight is None:
        weights = torch.ones(n_targets, n_samples, dtype=torch.float64, device=device)
    else:
        raise ValueError(f"sample_weight must be 'balanced' or None, got {sample_weight!r}")
    if row_weights is not None:
        weights = weights * row_w
    weights = weights / weights.sum(dim=1, keepdim=True)

    # Unregularised fits are invariant to an invertible affine map of the inputs (weights
    # and intercepts absorb it), so they are solved on whitened inputs, where L-BFGS needs
    # several times fewer iterations, and mapped back. Ridge fits are not invariant.
    whitening = None
    if l2 == 0 and not design.is_sparse:
        whitening = _whitening(design)
        solve_design = (design - whitening[0]) @ whitening[1]
    else:
        solve_design = design
    solve_features = solve_design.shape[1]

    coef = torch.zeros(n_targets, solve_features + 1, max_classes, dtype=torch.float64,
                       device=device)
    n_iter, converged = 0, True
    for group in _class_count_groups(n_classes):
        index = torch.as_tensor(group, device=device)
        problem = _PaddedProblem(solve_design, targets[:, index], [n_classes[t] for t in group],
                                 weights[index], l2)
        theta0 = torch.zeros(len(group), solve_features + 1, problem.max_classes,
                             dtype=torch.float64, device=device)
        theta, group_iter, group_converged = batched_lbfgs(problem, theta0, max_iter=max_iter,
                                                           tol=tol)
        coef[index, :, :problem.max_classes] = theta
        n_iter, converged = max(n_iter, group_iter), converged and group_converged
    weights_out, intercepts = coef[:, :-1], coef[:, -1]
    if whitening is not None:
        mean, transform = whitening
        weights_out = torch.einsum("pq,tqk->tpk", transform, weights_out)
        intercepts = intercepts - torch.einsum("p,tpk->tk", mean, weights_out)
    class_mask = torch.arange(max_classes, device=device)[None, :] < sizes[:, None]
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


def batched_lbfgs(problem, theta0: torch.Tensor, *, max_iter: int = 500, tol: float = 1e-4,
                  history_size: int = 10, max_line_search: int = 30,
                  ftol: float = 64 * torch.finfo(torch.float64).eps):
    """Minimise independent objectives side by side with L-BFGS, one state per target.

    ``problem`` supplies ``loss_and_grad(theta, rows)`` (per-target losses and the
    gradient, computed for the targets in the boolean mask ``rows`` only), ``row_dot(a,
    b)`` (per-target inner products) and ``expand(v)`` (per-target scalars broadcast over
    the parameters) and ``row_max_abs(g)``. Every target has its own curvature history, step length
    (backtracking Armijo line search) and stopping rule: ``max |grad| <= tol`` or a
    relative loss decrease below ``ftol`` (scipy's L-BFGS-B rules as scikit-learn sets
    them), so each follows the path a separate fit would take, while one batched
    evaluation serves all targets still running.

    Returns
    -------
    theta : torch.Tensor like ``theta0``
    n_iter : int
        Largest number of iterations any target took.
    converged : bool
        Whether every target met a stopping rule before ``max_iter``.
    """
    theta = theta0.clone()
    n_rows = problem.n_targets
    device, dtype = theta.device, theta.dtype
    every = torch.ones(n_rows, dtype=torch.bool, device=device)
    loss, grad = problem.loss_and_grad(theta, every)

    max_abs = problem.row_max_abs

    s_hist = [None] * history_size  # circular buffers of (s, y, rho), newest last
    y_hist = [None] * history_size
    rho = torch.zeros(history_size, n_rows, dtype=dtype, device=device)
    gamma = torch.ones(n_rows, dtype=dtype, device=device)
    has_history = torch.zeros(n_rows, dtype=torch.bool, device=device)
    active = max_abs(grad) > tol
    iterations = torch.zeros(n_rows, dtype=torch.int64, device=device)

    for _ in range(max_iter):
        if not bool(active.any()):
            break
        # Two-loop recursion; entries with rho = 0 (no update for that target) are no-ops.
        q = grad.clone()
        alpha = [None] * history_size
        for i in reversed(range(history_size)):
            if s_hist[i] is None:
                continue
            alpha[i] = rho[i] * problem.row_dot(s_hist[i], q)
            q -= problem.expand(alpha[i]) * y_hist[i]
        r = problem.expand(gamma) * q
        for i in range(history_size):
            if s_hist[i] is None:
                continue
            beta = rho[i] * problem.row_dot(y_hist[i], r)
            r += s_hist[i] * problem.expand(alpha[i] - beta)
        direction = -r
        slope = problem.row_dot(grad, direction)
        not_descent = slope >= 0
        direction = torch.where(problem.expand(not_descent), -grad, direction)
        slope = torch.where(not_descent, -problem.row_dot(grad, grad), slope)
        direction = direction * problem.expand(active.to(dtype))

        # First step of a target without history: a unit-size first move (as torch's LBFGS).
        step = torch.where(has_history, torch.ones_like(gamma),
                           torch.clamp(1.0 / problem.row_dot(grad.abs(), torch.ones_like(grad))
                                       .clamp(min=1e-300), max=1.0))
        accepted = ~active
        new_theta, new_loss, new_grad = theta.clone(), loss.clone(), grad.clone()
        for _ls in range(max_line_search):
            pending = ~accepted
            trial = theta + problem.expand(step) * direction
            trial_loss, trial_grad = problem.loss_and_grad(trial, pending)
            ok = pending & torch.isfinite(trial_loss) & (trial_loss <= loss + 1e-4 * step * slope)
            columns = problem.expand(ok)
            new_theta = torch.where(columns, trial, new_theta)
            new_grad = torch.where(columns, trial_grad, new_grad)
            new_loss = torch.where(ok, trial_loss, new_loss)
            accepted |= ok
            if bool(accepted.all()):
                break
            step = torch.where(accepted, step, step * 0.5)
        stalled = ~accepted  # no decrease found: at the optimum up to rounding
        iterations += active.long()

        s = new_theta - theta
        y = new_grad - grad
        sy = problem.row_dot(s, y)
        yy = problem.row_dot(y, y)
        good = active & accepted & (sy > 1e-10 * yy.clamp(min=1e-300))
        keep = problem.expand(good)
        s_hist = s_hist[1:] + [torch.where(keep, s, 0.0)]
        y_hist = y_hist[1:] + [torch.where(keep, y, 0.0)]
        rho = torch.cat([rho[1:], torch.where(good, 1.0 / sy.clamp(min=1e-300), 0.0)[None]])
        gamma = torch.where(good, sy / yy.clamp(min=1e-300), gamma)
        has_history |= good

        relative_decrease = (loss - new_loss) / torch.maximum(
            torch.maximum(loss.abs(), new_loss.abs()), torch.ones_like(loss))
        theta, loss, grad = new_theta, new_loss, new_grad
        active = active & ~stalled & (relative_decrease > ftol) & (max_abs(grad) > tol)

    return theta, int(iterations.max()), not bool(active.any())


def log_loss(fit: LogisticFit, design: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Unweighted mean log-loss of each target, shape (n_targets,), float64.

    Probabilities are clipped at float64 machine epsilon as ``sklearn.metrics.log_loss``.
    """
    log_p = fit.log_proba(design).clamp(min=math.log(torch.finfo(torch.float64).eps))
    return -log_p.gather(2, targets.T.unsqueeze(-1)).squeeze(-1).mean(dim=1)
