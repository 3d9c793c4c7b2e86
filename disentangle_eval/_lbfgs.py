"""L-BFGS for many independent objectives at once, one state per objective.

Used by the batched logistic regressions of :mod:`._logistic`. Every objective (a
"target") keeps its own curvature history, step length and stopping rule, so each follows
the path a separate fit would take, while one batched evaluation serves all targets still
running.
"""
from __future__ import annotations

import torch

__all__ = ["batched_lbfgs"]


def batched_lbfgs(problem, theta0: torch.Tensor, *, max_iter: int = 500, tol: float = 1e-4,
                  history_size: int = 10, max_line_search: int = 30,
                  ftol: float = 64 * torch.finfo(torch.float64).eps,
                  precondition_after: int | None = 20, precondition_every: int = 20):
    """Minimise independent objectives side by side with L-BFGS.

    ``problem`` supplies ``n_targets``, ``loss_and_grad(theta, rows)`` (per-target losses
    and the gradient, computed for the targets in the boolean mask ``rows`` only),
    ``row_dot(a, b)`` (per-target inner products), ``row_max_abs(g)`` and ``expand(v)``
    (per-target scalars broadcast over the parameters); optionally
    ``curvature(theta, rows)``, an approximate Hessian of each target in factored form
    (``solve(factor, v)`` applies its inverse) or ``None``.

    Stopping rules are scipy's L-BFGS-B rules as scikit-learn sets them: a target stops
    when ``max |grad| <= tol``, when its relative loss decrease falls below ``ftol``, when
    the line search finds no decrease (the optimum up to rounding) or at ``max_iter``.

    The first ``precondition_after`` iterations use the usual scaled-identity initial
    inverse Hessian. Badly conditioned objectives (the multinomial fits of factors with
    many overlapping classes) then crawl along flat valleys for hundreds of iterations,
    stopping wherever ``max |grad|`` first dips below ``tol``, far from the optimum. From
    then on, every ``precondition_every`` iterations (twice as long after each try that no
    target passes), each target's Newton step on the problem's curvature estimate is
    tried: where it achieves at least half the decrease its quadratic model predicts, the
    model is trusted and its inverse becomes that target's initial matrix (the iteration
    becomes nearly Newton's and stops close to the optimum); where it does not (nearly
    separable classes, whose losses have exponential walls beyond flat directions), the
    target continues as plain L-BFGS, on the path the reference solver takes.

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
    max_abs, dot, expand = problem.row_max_abs, problem.row_dot, problem.expand

    s_hist: list = []  # newest last; entries are zero for targets that skipped an update
    y_hist: list = []
    rho: list = []
    gamma = torch.ones(n_rows, dtype=dtype, device=device)
    has_history = torch.zeros(n_rows, dtype=torch.bool, device=device)
    active = max_abs(grad) > tol
    iterations = torch.zeros(n_rows, dtype=torch.int64, device=device)
    curvature = None
    preconditioned = torch.zeros(n_rows, dtype=torch.bool, device=device)
    gamma_pre = torch.ones(n_rows, dtype=dtype, device=device)
    next_check, interval = precondition_after, precondition_every

    for iteration in range(max_iter):
        if not bool(active.any()):
            break
        if next_check is not None and iteration == next_check and hasattr(problem, "curvature"):
            fresh = problem.curvature(theta, active)
            if fresh is not None:
                curvature = fresh
                preconditioned = _newton_step_trusted(problem, fresh, theta, loss, grad, active)
                if y_hist:
                    gamma_pre = _scaling(s_hist[-1], y_hist[-1], problem, curvature, gamma_pre)
            interval = precondition_every if bool(preconditioned.any()) else 2 * interval
            next_check = iteration + interval

        # Two-loop recursion; entries with rho = 0 (no update for that target) are no-ops.
        q = grad.clone()
        alpha = []
        for s, y, r in zip(reversed(s_hist), reversed(y_hist), reversed(rho)):
            alpha.append(r * dot(s, q))
            q -= expand(alpha[-1]) * y
        r_vec = expand(gamma) * q
        if bool(preconditioned.any()):
            r_vec = torch.where(expand(preconditioned),
                                expand(gamma_pre) * problem.solve(curvature, q), r_vec)
        for s, y, r, a in zip(s_hist, y_hist, rho, reversed(alpha)):
            r_vec += s * expand(a - r * dot(y, r_vec))
        direction = -r_vec
        slope = dot(grad, direction)
        not_descent = slope >= 0
        direction = torch.where(expand(not_descent), -grad, direction)
        slope = torch.where(not_descent, -dot(grad, grad), slope)
        direction = direction * expand(active.to(dtype))

        # First step of a target without history: a unit-size first move (as torch's LBFGS).
        step = torch.where(has_history, torch.ones_like(gamma),
                           torch.clamp(1.0 / dot(grad.abs(), torch.ones_like(grad))
                                       .clamp(min=1e-300), max=1.0))
        accepted = ~active
        new_theta, new_loss, new_grad = theta.clone(), loss.clone(), grad.clone()
        for _ in range(max_line_search):
            pending = ~accepted
            trial = theta + expand(step) * direction
            trial_loss, trial_grad = problem.loss_and_grad(trial, pending)
            ok = pending & torch.isfinite(trial_loss) & (trial_loss <= loss + 1e-4 * step * slope)
            columns = expand(ok)
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
        sy = dot(s, y)
        good = active & accepted & (sy > 1e-10 * dot(y, y).clamp(min=1e-300))
        keep = expand(good)
        s_hist.append(torch.where(keep, s, 0.0))
        y_hist.append(torch.where(keep, y, 0.0))
        rho.append(torch.where(good, 1.0 / sy.clamp(min=1e-300), 0.0))
        if len(s_hist) > history_size:
            del s_hist[0], y_hist[0], rho[0]
        gamma = torch.where(good, _scaling(s, y, problem, None, gamma), gamma)
        if bool(preconditioned.any()):
            gamma_pre = torch.where(good, _scaling(s, y, problem, curvature, gamma_pre),
                                    gamma_pre)
        has_history |= good

        relative_decrease = (loss - new_loss) / torch.maximum(
            torch.maximum(loss.abs(), new_loss.abs()), torch.ones_like(loss))
        theta, loss, grad = new_theta, new_loss, new_grad
        active = active & ~stalled & (relative_decrease > ftol) & (max_abs(grad) > tol)

    return theta, int(iterations.max()), not bool(active.any())


def _newton_step_trusted(problem, curvature, theta, loss, grad, rows):
    """Targets (among ``rows``) whose full Newton step on ``curvature`` achieves at least
    half the decrease its quadratic model predicts (a trust-region acceptance test)."""
    newton = problem.solve(curvature, grad)
    predicted = 0.5 * problem.row_dot(grad, newton)
    trial_loss, _ = problem.loss_and_grad(theta - newton, rows)
    achieved = loss - trial_loss
    return rows & torch.isfinite(trial_loss) & (predicted > 0) & (achieved >= 0.5 * predicted)


def _scaling(s, y, problem, curvature, fallback):
    """Scale of the initial inverse Hessian: ``s.y / y.H0 y`` (H0 the curvature estimate's
    inverse, or the identity)."""
    sy = problem.row_dot(s, y)
    yhy = problem.row_dot(y, y if curvature is None else problem.solve(curvature, y))
    return torch.where((sy > 0) & (yhy > 0), sy / yhy.clamp(min=1e-300), fallback)
