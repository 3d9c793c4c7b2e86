"""The objective of the batched multinomial logistic regressions (:mod:`._logistic`).

Weighted log-losses of a group of targets, their gradients, and a curvature estimate for
preconditioning, all as sums over blocks of rows of a dense or sparse design, so memory
does not grow with the number of samples.
"""
from __future__ import annotations

import torch

__all__ = ["BLOCK_BYTES", "PaddedProblem", "RowBlocks"]

# Bytes of (targets x classes x rows) scratch one block of rows takes: small enough for the
# block's passes to stay in cache.
BLOCK_BYTES = 2 * 2**20
# Curvature estimates (for preconditioning) are made for at most this many parameters per
# target, from at most this many rows and the largest classes of each row.
_CURVATURE_MAX_PARAMS = 1024
_CURVATURE_ROWS = 1024
_CURVATURE_TOP_CLASSES = 8


class RowBlocks:
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
                                                     is_coalesced=True, check_invariants=False)
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


class PaddedProblem:
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
        self.blocks = RowBlocks(design, max(1, BLOCK_BYTES // (8 * self.n_targets
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
