"""One-latent linear SVMs, every (latent, factor, class) problem solved at once.

scikit-learn's ``LinearSVC(C=C, class_weight="balanced")`` on one latent: liblinear's
primal L2-regularised squared-hinge loss with the bias as a regularised extra weight
(``intercept_scaling=1``), one-vs-rest for more than two classes. On one latent each
binary problem has two unknowns, so every problem of every (latent, factor) pair is solved
at once by a batched Newton method whose sums over the rows with a positive hinge come
from prefix sums over the sorted latent values (a few binary searches per iteration instead
of a pass over the rows). SAP (:mod:`~disentangle_eval._sap`) scores these classifiers.
"""
from __future__ import annotations

import torch

__all__ = ["fit_linear_svc_1d", "predict_linear_svc_1d"]

# Bytes of float64/int64 scratch the prefix sums of one chunk of latents may take.
_MEMORY_BUDGET = 256 * 2**20


class _SortedMoments:
    """Sums of ``[1, x, x^2]`` over the rows of a class whose latent value lies in a range.

    For a chunk of latents (``x`` of shape (n, c)) and the factors' class codes, each
    latent's rows are ranked by value, and the rows of factor ``f``'s class ``k`` get the
    key ``(f * K + k) * n + rank``: one sorted key array per latent, with prefix sums of
    the moments in that order, answers "moments of class ``k`` among the ranks ``[r0,
    r1)``" by two binary searches. The same over all rows needs no keys.
    """

    def __init__(self, x: torch.Tensor, classes: torch.Tensor, max_classes: int):
        n, c = x.shape
        n_factors = classes.shape[1]
        self.n = n
        self.sorted_x, order = torch.sort(x.T.contiguous(), dim=1)           # (c, n)
        # Each factor's classes in the order of each latent's values; a stable sort by
        # class then lists every class's rows by rank (position in that order).
        ranked = classes.T[None].expand(c, -1, -1).gather(
            2, order[:, None, :].expand(-1, n_factors, -1))                  # (c, F, n)
        ranked, rank = torch.sort(ranked, dim=2, stable=True)
        factor_base = torch.arange(n_factors, device=x.device)[None, :, None] * max_classes
        self.keys = ((factor_base + ranked) * n + rank).reshape(c, -1)        # sorted
        values = self.sorted_x.gather(1, rank.reshape(c, -1))                 # (c, F * n)
        self.class_cum = self._prefix(values)                                 # (c, F*n+1, 3)
        self.all_cum = self._prefix(self.sorted_x)                            # (c, n + 1, 3)

    @staticmethod
    def _prefix(values: torch.Tensor) -> torch.Tensor:
        moments = torch.stack([torch.ones_like(values), values, values * values], dim=-1)
        cum = torch.cumsum(moments, dim=1)
        return torch.cat([torch.zeros_like(cum[:, :1]), cum], dim=1)

    def windows(self, w: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Rank windows ``[r0, r1)`` (each (c, 2, Q)) of the rows with ``w x + b < 1``
        (index 0: the hinge of a positive row is positive) and ``w x + b > -1`` (index 1:
        that of a negative row)."""
        flat = w == 0
        w_safe = torch.where(flat, torch.ones_like(w), w)
        threshold = torch.stack([(1.0 - b) / w_safe, (-1.0 - b) / w_safe], dim=1)  # (c, 2, Q)
        threshold = torch.nan_to_num(threshold)
        # Rows with x < t and rows with x <= t (= x < nextafter(t)) in one search.
        query = torch.cat([threshold, torch.nextafter(threshold, threshold.new_tensor(
            float("inf")))], dim=1).reshape(threshold.shape[0], -1)
        counts = torch.searchsorted(self.sorted_x, query).reshape(threshold.shape[0], 4, -1)
        below, up_to = counts[:, :2], counts[:, 2:]           # x < t, x <= t
        n = self.n
        # w > 0: positives active below their threshold, negatives above theirs; w < 0:
        # the reverse.
        low_side = torch.stack([w > 0, w < 0], dim=1)
        r0 = torch.where(low_side, 0, up_to)
        r1 = torch.where(low_side, below, n)
        # w = 0: every row of a side or none, by the sign of its hinge at b.
        everything = torch.stack([b < 1, b > -1], dim=1)
        flat2 = flat[:, None, :]
        r0 = torch.where(flat2, 0, r0)
        r1 = torch.where(flat2, torch.where(everything, n, 0), r1)
        return r0, r1

    def active(self, problem_key: torch.Tensor, w: torch.Tensor, b: torch.Tensor):
        """Moments (c, Q, 3) of the active positive rows (class ``problem_key``, ``w x + b
        < 1``) and of the active negative rows (the other classes, ``w x + b > -1``)."""
        r0, r1 = self.windows(w, b)
        # Class rows of both windows by one search of the keys; all rows of the negatives'.
        base = (problem_key * self.n)[:, None, :]
        found = torch.searchsorted(self.keys, torch.cat([base + r0, base + r1], dim=1)
                                   .reshape(r0.shape[0], -1)).reshape(r0.shape[0], 4, -1)
        in_class = _window(self.class_cum, found[:, :2].reshape(r0.shape[0], -1),
                           found[:, 2:].reshape(r0.shape[0], -1)).reshape(*r0.shape, 3)
        everyone = _window(self.all_cum, r0[:, 1], r1[:, 1])
        return in_class[:, 0], everyone - in_class[:, 1]


def _window(cum: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor) -> torch.Tensor:
    """Sums of the rows ``[lo, hi)`` from prefix sums ``cum`` (c, rows + 1, 3)."""
    index_hi = hi.unsqueeze(-1).expand(*hi.shape, 3)
    index_lo = lo.unsqueeze(-1).expand(*lo.shape, 3)
    return cum.gather(1, index_hi) - cum.gather(1, index_lo)


def _objective(moments, problem_key, cp, cn, w, b):
    pos, neg = moments.active(problem_key, w, b)
    a, c = 1.0 - b, 1.0 + b
    loss = (0.5 * (w * w + b * b)
            + cp * (a * a * pos[..., 0] - 2 * a * w * pos[..., 1] + w * w * pos[..., 2])
            + cn * (c * c * neg[..., 0] + 2 * c * w * neg[..., 1] + w * w * neg[..., 2]))
    return loss, pos, neg


def fit_linear_svc_1d(x: torch.Tensor, classes: torch.Tensor, n_classes, *, C: float = 0.01,
                      max_iter: int = 100) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """``LinearSVC(C=C, class_weight="balanced")`` on each latent alone, for each factor.

    Parameters
    ----------
    x : torch.Tensor of shape (n_samples, n_latents), float64
        Training rows.
    classes : torch.Tensor of shape (n_samples, n_factors), int64
        Class code ``0 .. n_classes[f] - 1`` of each row, every class present.
    n_classes : sequence of int
        Classes per factor (each >= 2).
    C : float, default=0.01
    max_iter : int, default=100
        Newton iterations (the fit is exact once the set of rows with a positive hinge
        stops changing, usually after a handful).

    Returns
    -------
    coef, intercept : lists over factors of torch.Tensor of shape (n_latents, n_problems)
        ``n_problems`` is 1 for a two-class factor (decision ``> 0`` means class 1) and
        ``n_classes[f]`` otherwise (one-vs-rest; the largest decision wins).
    """
    n, d = x.shape
    n_factors = classes.shape[1]
    device = x.device
    max_classes = max(n_classes)
    counts = torch.zeros(n_factors, max_classes, dtype=torch.float64, device=device)
    counts.scatter_add_(1, classes.T, torch.ones(n_factors, n, dtype=torch.float64,
                                                  device=device))
    # Problems of all factors side by side: (factor, positive class, C+, C-).
    keys, cps, cns, owner = [], [], [], []
    for f, k_f in enumerate(n_classes):
        balanced = n / (k_f * counts[f, :k_f])
        if k_f == 2:   # liblinear: class 1 positive (C * w1), class 0 negative (C * w0)
            keys.append(torch.tensor([f * max_classes + 1], device=device))
            cps.append(C * balanced[1:2])
            cns.append(C * balanced[0:1])
        else:          # one-vs-rest: C * w_k on the class, plain C on the rest
            keys.append(f * max_classes + torch.arange(k_f, device=device))
            cps.append(C * balanced)
            cns.append(torch.full((k_f,), C, dtype=torch.float64, device=device))
        owner += [f] * len(keys[-1])
    problem_key = torch.cat(keys)
    cp, cn = torch.cat(cps), torch.cat(cns)
    n_problems = problem_key.numel()

    per_latent_bytes = 8 * n * (n_factors * 6 + 8) + 8 * n_problems * 64
    chunk = max(1, min(d, _MEMORY_BUDGET // max(per_latent_bytes, 1)))
    coef = torch.empty(d, n_problems, dtype=torch.float64, device=device)
    intercept = torch.empty_like(coef)
    for start in range(0, d, chunk):
        stop = min(d, start + chunk)
        moments = _SortedMoments(x[:, start:stop], classes, max_classes)
        c = stop - start
        keys_c = problem_key.expand(c, n_problems).contiguous()
        w, b = _newton(moments, keys_c, cp.expand(c, -1), cn.expand(c, -1), max_iter)
        coef[start:stop], intercept[start:stop] = w, b
    owner_t = torch.as_tensor(owner, device=device)
    return ([coef[:, owner_t == f] for f in range(n_factors)],
            [intercept[:, owner_t == f] for f in range(n_factors)])


def _newton(moments, problem_key, cp, cn, max_iter, rtol=1e-8, max_halvings=16):
    """Generalised Newton with Armijo backtracking on every problem at once.

    The objective is piecewise quadratic, so a full step is exact once the active rows stop
    changing. A problem stops when its largest gradient entry falls to ``rtol`` times the
    one at the start (liblinear stops at about 1e-6 of it), when the Newton decrement
    ``g' H^-1 g`` (twice the objective left to gain) is below ``1e-20 (1 + loss)`` (a
    gradient that starts at rounding level, e.g. a constant latent and balanced classes),
    or when ``max_halvings`` halved steps do not decrease it.
    """
    w = torch.zeros_like(cp)
    b = torch.zeros_like(cp)
    loss, pos, neg = _objective(moments, problem_key, cp, cn, w, b)
    running = torch.ones_like(w, dtype=torch.bool)
    g_start = None
    for _ in range(max_iter):
        a, c = 1.0 - b, 1.0 + b
        g_w = w + 2 * (cp * (w * pos[..., 2] - a * pos[..., 1])
                       + cn * (w * neg[..., 2] + c * neg[..., 1]))
        g_b = b + 2 * (cp * (w * pos[..., 1] - a * pos[..., 0])
                       + cn * (w * neg[..., 1] + c * neg[..., 0]))
        g_max = torch.maximum(g_w.abs(), g_b.abs())
        g_start = g_max if g_start is None else g_start
        running &= g_max > rtol * g_start
        if not bool(running.any()):
            break
        h_ww = 1 + 2 * (cp * pos[..., 2] + cn * neg[..., 2])
        h_wb = 2 * (cp * pos[..., 1] + cn * neg[..., 1])
        h_bb = 1 + 2 * (cp * pos[..., 0] + cn * neg[..., 0])
        det = h_ww * h_bb - h_wb * h_wb   # >= 1: the Hessian is I plus a PSD matrix
        d_w = -(h_bb * g_w - h_wb * g_b) / det
        d_b = -(h_ww * g_b - h_wb * g_w) / det
        slope = g_w * d_w + g_b * d_b
        running &= -slope > 1e-20 * (1 + loss.abs())
        if not bool(running.any()):
            break
        step = torch.ones_like(w)
        accepted = ~running
        new_w, new_b, new_loss, new_pos, new_neg = w, b, loss, pos, neg
        for _halving in range(max_halvings):
            trial_w, trial_b = w + step * d_w, b + step * d_b
            t_loss, t_pos, t_neg = _objective(moments, problem_key, cp, cn, trial_w, trial_b)
            ok = ~accepted & (t_loss <= loss + 1e-4 * step * slope)
            new_w = torch.where(ok, trial_w, new_w)
            new_b = torch.where(ok, trial_b, new_b)
            new_loss = torch.where(ok, t_loss, new_loss)
            new_pos = torch.where(ok[..., None], t_pos, new_pos)
            new_neg = torch.where(ok[..., None], t_neg, new_neg)
            accepted |= ok
            if bool(accepted.all()):
                break
            step = torch.where(accepted, step, 0.5 * step)
        running &= accepted  # no decrease left: at the minimum up to rounding
        w, b, loss, pos, neg = new_w, new_b, new_loss, new_pos, new_neg
    return w, b


def predict_linear_svc_1d(coef: torch.Tensor, intercept: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Class codes (n_latents, n_samples) of one factor's classifiers on each latent alone."""
    # (problems, latents, samples): the argmax runs across whole rows of samples, several
    # times faster than along a short last axis of classes. Ties go to the first class,
    # as numpy's argmax in scikit-learn's predict.
    decision = torch.addcmul(intercept.T[:, :, None], coef.T[:, :, None], x.T[None])
    if coef.shape[1] == 1:
        return (decision[0] > 0).long()
    return decision.argmax(dim=0)
