"""Learning-rate and temperature schedules of the paper's Appendix A.

- learning rate: cosine annealing from ``lr`` (1e-3) to ``lr_min`` (1.25e-6) over the first
  ``cosine_steps`` (50k) iterations, then constant (the paper's text) or, with
  ``after="periodic"``, on along the cosine as torch's ``CosineAnnealingLR`` goes when it is
  stepped past its period (the authors' code for the models without a discriminator);
- Gumbel-softmax temperature: ``tau = exp(-rate * t)`` with ``rate = 1e-5``.

Both are plain functions of the iteration ``t`` (0-based: the value used by the update
of iteration ``t``), so a resumed run recomputes them from the step it resumes at.
"""
from __future__ import annotations

import math
from typing import Callable


def cosine_lr(step: int, *, lr: float = 1e-3, lr_min: float = 1.25e-6,
              cosine_steps: int = 50_000, after: str = "hold") -> float:
    """Learning rate at iteration ``step``: a half cosine from ``lr`` to ``lr_min``, then flat.

    Parameters
    ----------
    step : int
        Iteration, starting at 0.
    lr : float, default 1e-3
        Rate at step 0.
    lr_min : float, default 1.25e-6
        Rate reached at ``cosine_steps`` and kept afterwards.
    cosine_steps : int, default 50_000
        Length of the annealing; 0 gives a constant ``lr_min``.
    after : {"hold", "periodic"}, default "hold"
        After ``cosine_steps``: stay at ``lr_min``, or follow the cosine on (period
        ``2 * cosine_steps``, back at ``lr`` at ``2 * cosine_steps``), the closed form of
        torch's ``CosineAnnealingLR(T_max=cosine_steps, eta_min=lr_min)`` at any step.

    Returns
    -------
    float

    Examples
    --------
    >>> cosine_lr(0), cosine_lr(50_000), cosine_lr(100_000)
    (0.001, 1.25e-06, 1.25e-06)
    >>> cosine_lr(100_000, after="periodic")
    0.001
    """
    if step < 0:
        raise ValueError(f"step must be non-negative: got {step}")
    if after not in ("hold", "periodic"):
        raise ValueError(f"after must be 'hold' or 'periodic': got {after!r}")
    if cosine_steps == 0 or (step >= cosine_steps and after == "hold"):
        return lr_min
    return lr_min + 0.5 * (lr - lr_min) * (1.0 + math.cos(math.pi * step / cosine_steps))


def cosine_lr_factor(*, lr: float = 1e-3, lr_min: float = 1.25e-6, cosine_steps: int = 50_000,
                     after: str = "hold") -> Callable[[int], float]:
    """Multiplicative factor for ``torch.optim.lr_scheduler.LambdaLR``.

    The optimiser must be built with learning rate ``lr``; the scheduler then sets
    ``cosine_lr(step, ...)`` before the update of iteration ``step``.

    Examples
    --------
    >>> import torch
    >>> opt = torch.optim.Adam([torch.zeros(1, requires_grad=True)], lr=1e-3)
    >>> sched = torch.optim.lr_scheduler.LambdaLR(opt, cosine_lr_factor(lr=1e-3))
    """
    if lr <= 0:
        raise ValueError(f"lr must be positive: got {lr}")
    cosine_lr(0, lr=lr, lr_min=lr_min, cosine_steps=cosine_steps, after=after)  # check `after`

    def factor(step: int) -> float:
        return cosine_lr(step, lr=lr, lr_min=lr_min, cosine_steps=cosine_steps, after=after) / lr

    return factor


def temperature(step: int, *, rate: float = 1e-5, minimum: float = 0.0) -> float:
    """Gumbel-softmax temperature ``max(exp(-rate * step), minimum)``.

    Parameters
    ----------
    step : int
        Iteration, starting at 0.
    rate : float, default 1e-5
        Decay rate (the paper's 1e-5 gives tau = exp(-1) ~ 0.368 at 100k iterations).
    minimum : float, default 0.0
        Floor, for short runs with a fast decay; 0 (no floor) in the paper.

    Returns
    -------
    float

    Examples
    --------
    >>> temperature(0)
    1.0
    """
    if step < 0:
        raise ValueError(f"step must be non-negative: got {step}")
    return max(math.exp(-rate * step), minimum)
