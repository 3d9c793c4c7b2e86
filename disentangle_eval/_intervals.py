"""Confidence intervals and paired p-values from the values of resampling replicates.

With ``R`` replicates ``theta*_r`` of an estimate ``theta`` and the plan's scale ``c``
(:func:`disentangle_eval._resampling.deviation_scale`):

- standard error ``se = c * sd(theta*)``;
- bias ``b = c**2 * (mean(theta*) - theta)`` where the metric's plan asks for it
  (bootstrap replicates of information estimates, see
  :class:`~disentangle_eval._resampling.Resampling`), else ``b = 0``. Plug-in
  information estimates are biased by as much as their spread on a thousand rows, and
  the bootstrap measures that bias well. Half-sample means do not: for InfoM and InfoC
  (maxima of ratios of information estimates clipped at 0) they track the estimate's
  own error, and correcting by them doubled it in the coverage experiments;
- interval ``theta - b +- t * se`` with ``t`` the 97.5% point of Student's t with
  ``R - 1`` degrees of freedom (the standard error itself comes from ``R`` replicates),
  cut to the range the value can take;
- for a paired difference, the two-sided p-value of ``theta - b = 0`` under the same
  t distribution, so that the 95% interval excludes 0 exactly when ``p < 0.05``.

Normal-theory intervals need far fewer replicates than percentile intervals (whose 2.5%
tails rest on a handful of replicates when ``R`` is 20-100).

:func:`mean_interval` is the t-interval of a mean over independent runs (e.g. training
seeds, or their paired differences), for tables over runs.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.special

__all__ = ["Interval", "interval", "mean_interval", "LEVEL"]

LEVEL = 0.95


@dataclass(frozen=True)
class Interval:
    """Interval estimate of one value.

    Attributes
    ----------
    estimate : float
        The value on all rows (the point estimate as the metric reports it).
    low, high : float
        The 95% confidence interval.
    std_error : float
        Resampling standard error of ``estimate``.
    bias : float
        Resampling estimate of the bias of ``estimate`` (the interval is centred on
        ``estimate - bias``).
    p_value : float
        Two-sided p-value of the hypothesis that the value is 0 (meaningful for
        differences; 1.0 when every replicate equals the estimate and it is 0).
    n_resamples : int
        Replicates the interval rests on.
    """

    estimate: float
    low: float
    high: float
    std_error: float
    bias: float
    p_value: float
    n_resamples: int


def interval(estimate: float, replicates, scale: float, *, bias_correction: bool = True,
             bounds: tuple[float, float] = (-np.inf, np.inf)) -> Interval:
    """95% interval of ``estimate`` from replicate values (see the module docstring).

    Parameters
    ----------
    estimate : float
    replicates : array-like of shape (n_resamples,)
        Replicate values; NaN where a replicate leaves the value undefined (left out).
    scale : float
        Deviation scale of the resampling scheme.
    bias_correction : bool, default=True
        Centre the interval on the estimate minus the replicates' bias estimate.
    bounds : (float, float)
        Range the value can take; the interval is cut to it.

    Returns
    -------
    Interval
        NaN bounds, standard error and p-value where the estimate is undefined (NaN) or
        fewer than 2 replicates define the value.
    """
    values = np.asarray(replicates, dtype=np.float64).ravel()
    values = values[np.isfinite(values)]
    n = values.size
    if n < 2 or not np.isfinite(estimate):
        nan = float("nan")
        return Interval(estimate=float(estimate), low=nan, high=nan, std_error=nan, bias=0.0,
                        p_value=nan, n_resamples=n)
    mean = float(values.mean())
    std_error = scale * float(values.std(ddof=1))
    bias = scale ** 2 * (mean - float(estimate)) if bias_correction else 0.0
    centre = float(estimate) - bias
    t = float(scipy.special.stdtrit(n - 1, 0.5 + LEVEL / 2))
    low = min(max(centre - t * std_error, bounds[0]), bounds[1])
    high = max(min(centre + t * std_error, bounds[1]), bounds[0])
    if std_error > 0:
        p_value = float(2 * scipy.special.stdtr(n - 1, -abs(centre) / std_error))
    else:
        p_value = 1.0 if centre == 0 else 0.0
    return Interval(estimate=float(estimate), low=float(low), high=float(high),
                    std_error=std_error, bias=bias, p_value=min(1.0, p_value), n_resamples=n)


def mean_interval(values, *, bounds: tuple[float, float] = (-np.inf, np.inf)) -> Interval:
    """95% t-interval of the mean of independent values (e.g. one per training seed).

    ``mean +- t * sd / sqrt(n)`` with Student's t at ``n - 1`` degrees of freedom, cut to
    ``bounds`` (the range the values can take); the p-value is that of a zero mean (for
    per-seed paired differences). NaN values are left out; with fewer than 2 values left
    the interval is undefined (NaN).
    """
    values = np.asarray(values, dtype=np.float64).ravel()
    values = values[np.isfinite(values)]
    mean = float(values.mean()) if values.size else float("nan")
    # Pseudo-replicates whose spread is the standard error of the mean.
    return interval(mean, mean + (values - mean) / np.sqrt(max(values.size, 1)), 1.0,
                    bias_correction=False, bounds=bounds)
