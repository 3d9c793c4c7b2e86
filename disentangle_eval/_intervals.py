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

from dataclasses import dataclass, field

import numpy as np
import scipy.special

from ._results import MetricResult, json_ready

__all__ = ["Interval", "interval", "mean_interval", "LEVEL", "MetricIntervals",
           "ScoresWithIntervals", "Comparison"]

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


# --------------------------------------------------------------------------------------
# Results of confidence_intervals and compare_representations


@dataclass(frozen=True)
class MetricIntervals:
    """95% intervals of the headline values of one metric.

    Attributes
    ----------
    metric : str
        Registry name of the metric.
    intervals : dict of str to Interval
        One per headline value, keyed as ``MetricResult.headline()``.
    method : str
        How the rows were resampled (e.g. ``"half-sampling"``).
    bias_corrected : bool
        Whether the intervals are centred on the bias-corrected estimate.
    n_resamples : int
        Replicates asked for.
    n_failed : int
        Replicates whose rows could not be scored (dropped).
    seed : int
    replicates : numpy.ndarray of shape (n_resamples, n_values)
        Headline values of every replicate (NaN where one failed), columns as
        ``intervals``.
    """

    metric: str
    intervals: dict[str, Interval]
    method: str
    bias_corrected: bool
    n_resamples: int
    n_failed: int
    seed: int
    replicates: np.ndarray = field(repr=False)

    def ci95(self) -> dict[str, list[float]]:
        """``{value name: [low, high]}``."""
        return {name: [iv.low, iv.high] for name, iv in self.intervals.items()}

    def settings(self) -> dict:
        return {"method": self.method, "bias_corrected": self.bias_corrected,
                "n_resamples": self.n_resamples, "n_failed": self.n_failed, "seed": self.seed}


@dataclass(frozen=True)
class ScoresWithIntervals:
    """Metric results with 95% intervals on their headline values.

    Attributes
    ----------
    results : dict of str to MetricResult
        Point estimates, as the metrics return them.
    intervals : dict of str to MetricIntervals
    """

    results: dict[str, MetricResult]
    intervals: dict[str, MetricIntervals]

    def to_dict(self) -> dict:
        """Each metric's ``to_dict()`` with ``"ci95": {value: [low, high]}`` added."""
        return {name: {**result.to_dict(), "ci95": json_ready(self.intervals[name].ci95())}
                for name, result in self.results.items()}


@dataclass(frozen=True)
class Comparison:
    """Two representations of the same rows, scored and compared.

    Attributes
    ----------
    results_a, results_b : dict of str to MetricResult
    intervals_a, intervals_b : dict of str to MetricIntervals
        Each side's own intervals (from the same paired replicates).
    differences : dict of str to Interval
        Keyed ``"METRIC.VALUE"``: ``estimate`` is A - B, ``low``/``high`` its 95%
        interval from paired replicates, ``p_value`` the two-sided p-value of no
        difference.
    """

    results_a: dict[str, MetricResult]
    results_b: dict[str, MetricResult]
    intervals_a: dict[str, MetricIntervals]
    intervals_b: dict[str, MetricIntervals]
    differences: dict[str, Interval]

    def to_dict(self) -> dict:
        """``{"a": ..., "b": ..., "metrics": {"METRIC.VALUE": {"a", "b", "difference",
        "ci95", "p_value"}}}``."""
        def side(results, intervals):
            return ScoresWithIntervals(results, intervals).to_dict()

        metrics = {}
        for key, diff in self.differences.items():
            metric, value = key.split(".", 1)
            metrics[key] = {"a": self.results_a[metric].headline()[value],
                            "b": self.results_b[metric].headline()[value],
                            "difference": diff.estimate, "ci95": [diff.low, diff.high],
                            "p_value": diff.p_value}
        return {"a": side(self.results_a, self.intervals_a),
                "b": side(self.results_b, self.intervals_b),
                "metrics": json_ready(metrics)}
