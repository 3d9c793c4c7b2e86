"""Batched multinomial logistic regression in torch.

Fits one classifier per target column on a shared design matrix, all targets in one
batched L-BFGS (:mod:`._lbfgs`) that keeps a separate state per target, so each target
converges as a separate scikit-learn fit would, while every evaluation of the losses and
gradients is one tensor computation over the targets still running. Targets are grouped by
class count and padded within a group (classes a target lacks are masked out of its
softmax). Losses and gradients are sums over samples, computed in blocks of rows so that
memory does not grow with the number of samples.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from ._lbfgs import batched_lbfgs

__all__ = ["LogisticFit", "check_fit_options", "fit_multinomial_logistic",
           "fit_multinomial_logistic_reference", "log_loss", "one_hot_design"]

# Bytes of (targets x classes x rows) scratch one block of rows takes: small enough for the
# block's passes to stay in cache.
_BLOCK_BYTES = 2 * 2**20
# Curvature estimates (for preconditioning) are made for at most this many parameters per
# target, from at most this many rows and the largest classes of each row.
_CURVATURE_MAX_PARAMS = 1024
_CURVATURE_ROWS = 1024
_CURVATURE_TOP_CLASSES = 8


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
        logits = logits.reshape(-1, n_targets, max_classes).permute(1, 0, 2) + self.intercepts[:, None, :]
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


class _RowBlocks:
    """Consecutive blocks of rows of a dense or sparse COO design, for sums over samples.

    A coalesced COO matrix stores its entries sorted by row, so a block of rows is a
    contiguous range of entries. Sparse blocks and their transposes (for the gradient's
    ``X^T R``) are built once and kept, as the design itself.
    """

    def __init__(self, design: torch.Tensor, block: int):
        self.design, self.n_rows = design, design.shape[0]
        self.ranges = [(start, min(self.n_rows, start + block))
                       for start in range(0, self.n_rows, block)]
        self.sparse_blocks = None
        if design.is_sparse:
            design = design.coalesce()
            rows, values = design.indices(), design.values()
            edges = torch.as_tensor([start for start, _ in self.ranges] + [self.n_rows],
                                    device=rows.device)
            bounds = torch.searchsorted(rows[0].contiguous(), edges).tolist()
            self.sparse_blocks = []
            for (start, stop), a, b in zip(self.ranges, bounds[:-1], bounds[1:]):
                indices = rows[:, a:b] - torch.tensor([[start], [0]], device=rows.device)
                block_rows = torch.sparse_coo_tensor(indices, values[a:b],
                                                     (stop - start, design.shape[1]),
                                                     is_coalesced=True)
                self.sparse_blocks.append((block_rows, block_rows.t().coalesce()))

    def __iter__(self):
        for i, (start, stop) in enumerate(self.ranges):
            if self.sparse_blocks is None:
                yield start, stop, (self.design[start:stop], None)
            else:
                yield start, stop, self.sparse_blocks[i]

    @staticmethod
    def times(x_rows, flat):
        """``x @ flat.T`` as (flat rows, block rows)."""
        x, _ = x_rows
        return torch.sparse.mm(x, flat.T).T if x.is_sparse else flat @ x.T

    @staticmethod
    def add_transposed_product(out, residual, x_rows):
        """``out += residual @ x``."""
        x, x_t = x_rows
        if x.is_sparse:
            out += torch.sparse.mm(x_t, residual.T).T
        else:
            out.addmm_(residual, x)


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


class _PaddedProblem:
    """Weighted multinomial log-losses of a group of targets with similar class counts.

    Parameters are one (n_targets, n_features + 1, max_classes) tensor (the last feature
    row holds intercepts); classes a target lacks are masked out of its softmax. A dense
    design carries a trailing column of ones for the intercepts. Gradients are analytic:
    ``X^T (w * (P - Y))``, summed over blocks of rows.
    """

    def __init__(self, design, targets, n_classes, weights, l2):
        device = targets.device
        self.design = design                                     # (N, p + 1) or sparse (N, p)
        self.sparse = design.is_sparse
        self.n_samples, self.n_targets = targets.shape
        self.max_classes = max(n_classes)
        self.n_params = (design.shape[1] + self.sparse) * self.max_classes
        sizes = torch.as_tensor(list(n_classes), device=device)
        self.class_mask = torch.arange(self.max_classes, device=device)[None, :] < sizes[:, None]
        self.padded = not bool(self.class_mask.all())
        # Padded classes get -inf logits: probability 0, no gradient.
        self.logit_mask = torch.zeros(self.n_targets, self.max_classes, dtype=torch.float64,
                                      device=device).masked_fill(~self.class_mask, float("-inf"))
        # Class-major (T, K, rows) throughout: the softmax over K then runs along rows of
        # contiguous samples, and the products with the design write their operands in place.
        self.targets = targets.T.contiguous()                    # (T, N)
        self.weights = weights                                   # (T, N), rows sum to 1
        self.l2 = l2
        self.blocks = _RowBlocks(design, max(1, _BLOCK_BYTES // (8 * self.n_targets
                                                                  * self.max_classes)))
        # The gradient is X^T (w * (P - Y)); its constant part X^T (w * Y), per target and
        # class, is summed once here (dense designs), so each evaluation only forms X^T (w P).
        self.true_class_sums = None
        if not self.sparse:
            sums = torch.zeros(self.n_targets, self.max_classes, design.shape[1],
                               dtype=design.dtype, device=device)
            for start, stop, (x, _) in self.blocks:
                sums.scatter_add_(1, self.targets[:, start:stop, None].expand(-1, -1, x.shape[1]),
                                  self.weights[:, start:stop, None] * x)
            self.true_class_sums = sums

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
        targets = self.targets if every else self.targets[kept]
        weights = self.weights if every else self.weights[kept]
        mask = self.logit_mask if every else self.logit_mask[kept]
        # A sparse design has no column of ones: its intercepts are a separate bias.
        weights_part = sub[:, :-1] if self.sparse else sub
        flat = weights_part.transpose(1, 2).reshape(t * k, -1)
        bias = sub[:, -1, :] + mask if self.sparse else (mask if self.padded else None)
        losses = torch.zeros(t, dtype=theta.dtype, device=theta.device)
        grad_flat = torch.zeros_like(flat)
        grad_bias = torch.zeros(t, k, dtype=theta.dtype, device=theta.device)
        for start, stop, x_rows in self.blocks:
            logits = self.blocks.times(x_rows, flat)
            if bias is not None:
                logits = logits + bias.reshape(-1, 1)
            logits = logits.view(t, k, stop - start)
            y = targets[:, start:stop].unsqueeze(1)
            w = weights[:, start:stop].unsqueeze(1)
            # log p_true = logit_true - top - log(sum exp(logits - top)): no underflow.
            true_logit = logits.gather(1, y)
            top = logits.amax(dim=1, keepdim=True)
            unnormalised = logits.sub_(top).exp_()
            total = unnormalised.sum(dim=1, keepdim=True)
            losses += (w * (top + total.log() - true_logit)).sum(dim=(1, 2))
            # P = unnormalised / total: the per-sample division is folded into the weights.
            scale = w / total                                    # (T', 1, rows)
            if self.sparse:
                residual = unnormalised.mul_(scale)
                residual.scatter_add_(1, y, -w)
                self.blocks.add_transposed_product(grad_flat, residual.view(t * k, -1), x_rows)
                grad_bias += residual.sum(dim=2)
            else:
                x = x_rows[0]
                grad_flat.view(t, k, -1).baddbmm_(unnormalised,
                                                  scale.transpose(1, 2) * x[None])
        if not self.sparse:
            grad_flat -= (self.true_class_sums if every
                          else self.true_class_sums[kept]).reshape(t * k, -1)
        grad_sub = grad_flat.reshape(t, k, -1).transpose(1, 2)
        if self.sparse:
            grad_sub = torch.cat([grad_sub, grad_bias.unsqueeze(1)], dim=1)
        if self.l2:
            penalised = sub[:, :-1]
            losses += 0.5 * self.l2 * penalised.pow(2).sum(dim=(1, 2))
            grad_sub = grad_sub.clone()
            grad_sub[:, :-1] += self.l2 * penalised
        full_losses = torch.zeros(self.n_targets, dtype=theta.dtype, device=theta.device)
        full_losses[kept] = losses
        if every:
            return full_losses, grad_sub.contiguous()
        grad = torch.zeros_like(theta)
        grad[kept] = grad_sub
        return full_losses, grad

    def curvature(self, theta, rows):
        """Cholesky factors (T, P, P) of each target's Hessian, estimated on a fixed subset
        of rows from each row's largest class probabilities; ``None`` when too large.

        The Hessian of the weighted log-loss is ``sum_n w_n (diag(p_n) - p_n p_n^T) (x)
        x_n x_n^T``. The diagonal part is exact on the subset; the outer products keep each
        row's ``_CURVATURE_TOP_CLASSES`` largest probabilities (the rest carry almost no
        mass once a fit is under way). The softmax is unchanged by adding one vector to
        every class, so the Hessian is singular along those directions; the gradient has no
        component there, and they are given the Hessian's mean curvature instead.
        """
        if self.sparse or self.n_params > _CURVATURE_MAX_PARAMS:
            return None
        device, dtype = theta.device, theta.dtype
        kept = torch.nonzero(rows).squeeze(1)
        t, k, n_rows = kept.numel(), self.max_classes, min(self.n_samples, _CURVATURE_ROWS)
        generator = torch.Generator().manual_seed(0)
        subset = torch.randperm(self.n_samples, generator=generator)[:n_rows].to(device)
        x = self.design[subset]                                  # (S, p + 1)
        p1 = x.shape[1]
        w = self.weights[kept][:, subset]
        w = w / w.sum(dim=1, keepdim=True)                       # (T', S)
        flat = theta[kept].transpose(1, 2).reshape(t * k, p1)
        logits = flat @ x.T + self.logit_mask[kept].reshape(-1, 1)
        proba = torch.softmax(logits.view(t, k, n_rows), dim=1)  # (T', K, S)
        outer = (x[:, :, None] * x[:, None, :]).reshape(n_rows, p1 * p1)
        diagonal = (w[:, None, :] * proba) @ outer               # (T', K, p1^2)

        top = min(k, _CURVATURE_TOP_CLASSES)
        values, classes = proba.topk(top, dim=1)                 # (T', top, S)
        coefficient = w[:, None, None, :] * values[:, :, None, :] * values[:, None, :, :]
        pair = (torch.arange(t, device=device)[:, None, None, None] * (k * k)
                + classes[:, :, None, :] * k + classes[:, None, :, :])
        indices = torch.empty(2, pair.numel(), dtype=torch.int64, device=device)
        indices[0] = pair.reshape(-1)
        indices[1].view(-1, n_rows).copy_(torch.arange(n_rows, device=device))
        pairs = torch.sparse_coo_tensor(indices, coefficient.reshape(-1), (t * k * k, n_rows),
                                        check_invariants=False).coalesce()
        blocks = -torch.sparse.mm(pairs, outer).view(t, k, k, p1, p1)
        index = torch.arange(k, device=device)
        blocks[:, index, index] += diagonal.view(t, k, p1, p1)
        hessian = blocks.permute(0, 3, 1, 4, 2).reshape(t, p1 * k, p1 * k)

        mask = self.class_mask[kept].to(dtype)                   # (T', K)
        scale = (hessian.diagonal(dim1=1, dim2=2).sum(dim=1)
                 / (p1 * mask.sum(dim=1))).clamp(min=1e-300)
        unit = mask / mask.sum(dim=1, keepdim=True).sqrt()
        gauge = torch.einsum("ab,tk,tl->takbl", torch.eye(p1, dtype=dtype, device=device),
                             unit, unit).reshape(t, p1 * k, p1 * k)
        extra = ((1 - mask)[:, None, :].expand(t, p1, k).reshape(t, -1)
                 + 1e-10 + (self.l2 / scale)[:, None] * _weight_entries(p1, k, dtype, device))
        hessian = hessian + scale[:, None, None] * (gauge + torch.diag_embed(extra))
        factor, info = torch.linalg.cholesky_ex(hessian)
        identity = torch.eye(p1 * k, dtype=dtype, device=device)
        factor = torch.where((info == 0)[:, None, None], factor, identity)
        full = identity.repeat(self.n_targets, 1, 1)
        full[kept] = factor
        return full

    @staticmethod
    def solve(factor, v):
        """``H^-1 v`` per target, ``v`` shaped like the parameters."""
        return torch.cholesky_solve(v.reshape(v.shape[0], -1, 1), factor).reshape(v.shape)


def _weight_entries(p1, k, dtype, device):
    """1 for the weights, 0 for the intercepts, in the flattened (p1, K) layout."""
    entries = torch.ones(p1, k, dtype=dtype, device=device)
    entries[-1] = 0
    return entries.reshape(-1)


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


def _sample_weights(targets, n_classes, sample_weight):
    """(T, N) per-sample weights, each row summing to 1."""
    n_samples, n_targets = targets.shape
    device = targets.device
    sizes = torch.as_tensor(n_classes, device=device)
    if sample_weight == "balanced":
        counts = torch.zeros(n_targets, max(n_classes), dtype=torch.float64, device=device)
        counts.scatter_add_(1, targets.T, torch.ones(n_targets, n_samples, dtype=torch.float64,
                                                      device=device))
        class_w = n_samples / (sizes.to(torch.float64)[:, None] * counts.clamp(min=1))
        weights = class_w.gather(1, targets.T)
    elif sample_weight is None:
        weights = torch.ones(n_targets, n_samples, dtype=torch.float64, device=device)
    else:
        raise ValueError(f"sample_weight must be 'balanced' or None, got {sample_weight!r}")
    return weights / weights.sum(dim=1, keepdim=True)


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
        value (scikit-learn's lbfgs ``gtol``), or by scipy's other stopping rules (see
        :func:`~disentangle_eval._lbfgs.batched_lbfgs`).

    Returns
    -------
    LogisticFit
    """
    check_fit_options(max_iter=max_iter, tol=tol, l2=l2)
    device = targets.device
    n_samples, n_targets = targets.shape
    n_classes = [int(k) for k in n_classes]
    max_classes = max(n_classes)
    weights = _sample_weights(targets, n_classes, sample_weight)

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
        problem = _PaddedProblem(solve_design, targets[:, index], [n_classes[t] for t in group],
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
    blocks = _RowBlocks(design, max(1, _BLOCK_BYTES // (8 * n_targets * max_classes)))
    for start, stop, x_rows in blocks:
        logits = (blocks.times(x_rows, flat) + bias).view(n_targets, max_classes, stop - start)
        true_logit = logits.gather(1, targets[start:stop].T.unsqueeze(1))
        log_p = true_logit - torch.logsumexp(logits, dim=1, keepdim=True)
        total -= log_p.clamp(min=floor).sum(dim=(1, 2))
    return total / n_samples


def fit_multinomial_logistic_reference(design, targets, n_classes, *,
                                       sample_weight: str | None = "balanced",
                                       l2: float = 0.0, max_iter: int = 500,
                                       tol: float = 1e-4) -> LogisticFit:
    """Plain version of :func:`fit_multinomial_logistic`, for tests: one
    ``scipy.optimize.minimize(method="L-BFGS-B")`` per target on the same objective, in
    numpy, on the inputs as given (no whitening, no batching, no preconditioning)."""
    from scipy.optimize import minimize

    x = design.to_dense().cpu().numpy() if design.is_sparse else design.cpu().numpy()
    x = np.concatenate([x, np.ones((x.shape[0], 1))], axis=1)
    y = targets.cpu().numpy()
    weights = _sample_weights(targets, [int(k) for k in n_classes], sample_weight).cpu().numpy()
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
