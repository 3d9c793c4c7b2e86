"""Per-column standardisation that neither overflows nor underflows.

The one standardisation of the metrics: the nearest-neighbour MI estimator and the InfoE
regressions standardise the latents they fit, DCI's logistic probe and the explicitness
regressions standardise training and test rows with the training rows' statistics.
scikit-learn's ``StandardScaler`` squares the values, so columns near 1e154 overflow to
``inf`` and columns near 1e-160 underflow to a zero standard deviation. Each column is
first multiplied by a power of two that brings its largest magnitude into [0.5, 1): that
is exact, and the standardised result does not depend on the column's scale, so the output
is the one an exact computation gives. The standard deviation is computed in two passes
(mean, then mean squared deviation), which lands on the correctly rounded value more often
than torch's one-pass ``std``.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["ColumnStandardizer", "power_of_two_scale", "standardize_columns"]


def _power_of_two_exponent(x: torch.Tensor, dim: int | None) -> torch.Tensor:
    """The exponent ``e`` with the largest ``|x|`` along ``dim`` in [2^(e-1), 2^e); 0 for
    all-zero columns."""
    peak = x.abs().amax() if dim is None else x.abs().amax(dim=dim, keepdim=True)
    _, exponent = torch.frexp(peak)
    return torch.where(peak > 0, exponent, torch.zeros_like(exponent))


def power_of_two_scale(x: torch.Tensor, dim: int | None = 0) -> torch.Tensor:
    """``x`` times the power of two that brings the largest ``|x|`` along ``dim`` into [0.5, 1).

    ``dim=None`` scales the whole tensor by one factor (for comparisons across columns).
    All-zero columns are left as they are.
    """
    return torch.ldexp(x, -_power_of_two_exponent(x, dim))


@dataclass(frozen=True)
class ColumnStandardizer:
    """Per-column ``(x - mean) / std`` with the statistics of the rows it was fitted on.

    As scikit-learn's ``StandardScaler`` (population std), except that columns constant
    on the fitted rows become exactly 0 in every transformed row (``StandardScaler``
    centres them and leaves them unscaled, up to the rounding of their mean), and that
    any finite input gives a finite output (see the module docstring).

    Attributes
    ----------
    exponent : torch.Tensor of shape (1, n_columns), int
        Each column is multiplied by ``2 ** -exponent`` before the statistics.
    mean, std : torch.Tensor of shape (n_columns,)
        Of the rescaled columns; ``std`` is 1 where it is 0.
    constant : torch.Tensor of shape (n_columns,), bool
        Columns that take a single value in the fitted rows.
    """

    exponent: torch.Tensor
    mean: torch.Tensor
    std: torch.Tensor
    constant: torch.Tensor

    @classmethod
    def fit(cls, x: torch.Tensor) -> "ColumnStandardizer":
        """The statistics of ``x`` (n_samples, n_columns), floating."""
        exponent = _power_of_two_exponent(x, 0)
        scaled = torch.ldexp(x, -exponent)
        constant = scaled.amax(dim=0) == scaled.amin(dim=0)
        mean = scaled.mean(dim=0)
        centred = torch.where(constant, 0.0, scaled - mean)
        std = centred.pow(2).mean(dim=0).sqrt()
        return cls(exponent=exponent, mean=mean, std=torch.where(std > 0, std,
                                                                  torch.ones_like(std)),
                   constant=constant)

    def transform(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` (any rows, the fitted columns) standardised with the fitted statistics."""
        return torch.where(self.constant, 0.0, torch.ldexp(x, -self.exponent) - self.mean) \
            / self.std


def standardize_columns(x: torch.Tensor) -> torch.Tensor:
    """Each column of ``x`` standardised with its own mean and population std.

    :class:`ColumnStandardizer` fitted on ``x`` and applied to it: constant columns become
    exactly 0, and any finite input gives a finite output.

    Parameters
    ----------
    x : torch.Tensor of shape (n_samples, n_columns), floating

    Returns
    -------
    torch.Tensor of the same shape and dtype
    """
    return ColumnStandardizer.fit(x).transform(x)
