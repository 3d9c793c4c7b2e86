"""Per-column standardisation that neither overflows nor underflows.

Shared by the estimators that standardise their inputs (the nearest-neighbour MI
estimator and the InfoE regressions): scikit-learn's ``StandardScaler`` squares the values,
so columns near 1e154 overflow to ``inf`` and columns near 1e-160 underflow to a zero
standard deviation. Each column is first multiplied by a power of two that brings its
largest magnitude into [0.5, 1): that is exact, and the standardised result does not depend
on the column's scale, so the output is the one an exact computation gives.
"""
from __future__ import annotations

import torch

__all__ = ["power_of_two_scale", "standardize_columns"]


def power_of_two_scale(x: torch.Tensor, dim: int | None = 0) -> torch.Tensor:
    """``x`` times the power of two that brings the largest ``|x|`` along ``dim`` into [0.5, 1).

    ``dim=None`` scales the whole tensor by one factor (for comparisons across columns).
    All-zero columns are left as they are.
    """
    peak = x.abs().amax() if dim is None else x.abs().amax(dim=dim, keepdim=True)
    _, exponent = torch.frexp(peak)
    exponent = torch.where(peak > 0, exponent, torch.zeros_like(exponent))
    return torch.ldexp(x, -exponent)


def standardize_columns(x: torch.Tensor) -> torch.Tensor:
    """Per-column ``(x - mean) / std`` (population std), as scikit-learn's ``StandardScaler``.

    Constant columns become exactly 0 (``StandardScaler`` centres them and leaves them
    unscaled, up to the rounding of their mean). Each column is first rescaled exactly by
    a power of two (see the module docstring), so any finite input gives a finite output.

    Parameters
    ----------
    x : torch.Tensor of shape (n_samples, n_columns), floating

    Returns
    -------
    torch.Tensor of the same shape and dtype
    """
    scaled = power_of_two_scale(x, dim=0)
    constant = scaled.amax(dim=0) == scaled.amin(dim=0)
    centred = torch.where(constant, 0.0, scaled - scaled.mean(dim=0))
    std = centred.pow(2).mean(dim=0).sqrt()
    return centred / torch.where(std > 0, std, torch.ones_like(std))
