"""Confidence intervals for every headline value, and paired comparisons.

Every metric of the registry gets intervals without code of its own: its registry entry
says how its rows may be resampled (:class:`~disentangle_eval._resampling.Resampling`),
each replicate is scored by the metric itself on the replicate's rows, and the interval
comes from the replicates' spread (:mod:`disentangle_eval._intervals`). A metric may
also register a batched replicate runner (``BATCHED_RUNNERS``) that scores all
replicates at once; the plain loop (:func:`loop_replicates`) stays its reference. InfoMEC
has one (:mod:`disentangle_eval._replicates_infomec`); DCI's replicates run as separate
refits through the loop until the tree learner takes per-target row weights, when they
can become more targets of one boosting pass registered here.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from ._intervals import Interval, interval
from ._registry import DEFAULT_METRICS, METRICS, SETTING_NAMES, MetricSpec, run_metric
from ._resampling import (Replicate, Resampling, canonical_order, deviation_scale,
                          draw_replicates, joint_scheme, replicate_inputs, replicate_settings)
from ._replicates_infomec import infomec_replicates
from ._results import MetricResult, json_ready
from ._validation import DataError, ScoringInputs, check_inputs

__all__ = ["MetricIntervals", "ScoresWithIntervals", "Comparison", "confidence_intervals",
           "compare_representations", "intervals_from_inputs", "compare_from_inputs",
           "resampling_plan", "rows_order", "draw_metric_replicates", "loop_replicates",
           "BATCHED_RUNNERS"]

# A replicate whose rows cannot be scored (e.g. a factor left with one value) is dropped;
# more than this share of failures means the data are too small to resample.
_MAX_FAILED_SHARE = 0.1

# runner(spec, sides, shared, replicates, *, progress) -> values, as loop_replicates.
ReplicateRunner = Callable[..., np.ndarray]


def resampling_plan(spec: MetricSpec) -> Resampling:
    """The metric's resampling plan: its registry entry's, or the default.

    The default suits any estimator: half-sampling, within the train/test split (with
    the bootstrap, for fitted predictors) when the metric takes a ``split`` setting.
    """
    if spec.resampling is not None:
        return spec.resampling
    if "split" in spec.options:
        return Resampling(discrete="bootstrap", continuous="bootstrap", within_split=True)
    return Resampling()


# --------------------------------------------------------------------------------------
# Replicates


def loop_replicates(spec: MetricSpec, sides: Sequence[ScoringInputs], shared: dict,
                    replicates: Sequence[Replicate], *, progress: bool = False) -> np.ndarray:
    """Headline values of every replicate, one metric call per replicate and side.

    Returns
    -------
    numpy.ndarray of shape (n_replicates, n_sides, n_values)
        NaN where a replicate's rows could not be scored (:class:`DataError`).
    """
    out = None
    bar = tqdm(replicates, desc=f"{spec.name} replicates", unit="replicate", leave=False,
               disable=None if progress else True)
    with warnings.catch_warnings():
        # Split and estimator notes were reported for the point estimate already.
        warnings.simplefilter("ignore")
        for r, replicate in enumerate(bar):
            settings = replicate_settings(shared, replicate)
            try:
                values = [list(run_metric(spec, replicate_inputs(side, replicate), settings)
                               .headline().values()) for side in sides]
            except DataError:
                values = None
            if out is None and values is not None:
                out = np.full((len(replicates), len(sides), len(values[0])), np.nan)
            if values is not None:
                out[r] = values
    if out is None:
        raise DataError(f"{spec.name}: none of the {len(replicates)} resamples of the rows "
                        "could be scored; too few rows to resample")
    return out


# Metric name -> a batched runner with the signature and result of loop_replicates.
BATCHED_RUNNERS: dict[str, ReplicateRunner] = {"infomec": infomec_replicates}


def _run_replicates(spec, sides, shared, replicates, progress) -> np.ndarray:
    runner = BATCHED_RUNNERS.get(spec.name, loop_replicates)
    return runner(spec, sides, shared, replicates, progress=progress)


# --------------------------------------------------------------------------------------
# Results


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


# --------------------------------------------------------------------------------------
# Computation


def _check_resamples(n_resamples) -> None:
    if n_resamples is not None and (isinstance(n_resamples, bool)
                                    or not isinstance(n_resamples, (int, np.integer))
                                    or n_resamples < 2):
        raise ValueError(f"n_resamples must be an integer >= 2, got {n_resamples!r}")


def rows_order(sides: Sequence[ScoringInputs]) -> np.ndarray:
    """Canonical order of the rows of (paired) inputs: by the content of every side."""
    return canonical_order(*[side.raw_latents.cpu().numpy() for side in sides],
                           sides[0].factors.cpu().numpy())


def draw_metric_replicates(spec: MetricSpec, sides: Sequence[ScoringInputs], shared: dict,
                           n_resamples: int | None, seed: int, order: np.ndarray | None = None
                           ) -> tuple[str, list[Replicate], Resampling]:
    """The scheme, replicates and plan of one metric on (paired) inputs.

    ``order`` is :func:`rows_order` of ``sides`` (computed when not given).
    """
    plan = resampling_plan(spec)
    scheme = joint_scheme(plan, [side.discrete for side in sides])
    if order is None:
        order = rows_order(sides)
    replicates = draw_replicates(order, scheme, n_resamples or plan.default_resamples, seed,
                                 within_split=plan.within_split,
                                 split=shared.get("split", "random"),
                                 train_fraction=shared.get("train_fraction", 0.9))
    return scheme, replicates, plan


def _metric_intervals(spec, plan, scheme, sides, values, estimates, seed):
    """Per-side MetricIntervals from replicate values (n_replicates, n_sides, n_values).

    A replicate is failed when no value of it is defined (its rows could not be
    scored); a single undefined value (NaN headline) is left out of that value only.
    """
    failed = np.isnan(values).all(axis=(1, 2))
    n_failed = int(failed.sum())
    if (~failed).sum() < 2 or n_failed > _MAX_FAILED_SHARE * len(values):
        raise DataError(f"{spec.name}: {n_failed} of {len(values)} resamples of the rows "
                        "could not be scored (a factor value too rare to appear in them); "
                        "too few rows for confidence intervals")
    scale = deviation_scale(sides[0].n_samples, scheme)
    out = []
    for s, estimate in enumerate(estimates):
        headline = estimate.headline()
        intervals = {name: interval(value, values[:, s, v], scale,
                                    bias_correction=plan.corrects_bias(scheme),
                                    bounds=plan.value_range)
                     for v, (name, value) in enumerate(headline.items())}
        out.append(MetricIntervals(metric=spec.name, intervals=intervals,
                                   method=plan.describe([side.discrete for side in sides]),
                                   bias_corrected=plan.corrects_bias(scheme),
                                   n_resamples=len(values), n_failed=n_failed, seed=int(seed),
                                   replicates=values[:, s, :]))
    return out


def intervals_from_inputs(inputs: ScoringInputs, metrics: Sequence[str], shared: dict, *,
                          results: dict[str, MetricResult] | None = None,
                          n_resamples: int | None = None, seed: int = 0,
                          progress: bool = False) -> dict[str, MetricIntervals]:
    """Intervals of the chosen metrics on inputs checked once.

    Parameters
    ----------
    inputs : ScoringInputs
    metrics : sequence of str
        Registry names.
    shared : dict
        Scoring settings, as for :func:`~disentangle_eval._registry.run_metric`.
    results : dict of str to MetricResult, optional
        Point estimates already computed with ``shared`` (computed here otherwise).
    n_resamples : int, optional
        Replicates per metric; default: the metric's plan's ``default_resamples``.
    seed : int
        Seeds the resampling (and each replicate's own random steps).
    progress : bool
        Progress bars on stderr.
    """
    _check_resamples(n_resamples)
    results = dict(results or {})
    out = {}
    order = rows_order([inputs])
    for name in metrics:
        spec = METRICS[name]
        if name not in results:
            results[name] = run_metric(spec, inputs, shared)
        scheme, replicates, plan = draw_metric_replicates(spec, [inputs], shared, n_resamples,
                                                          seed, order)
        values = _run_replicates(spec, [inputs], shared, replicates, progress)
        out[name] = _metric_intervals(spec, plan, scheme, [inputs], values, [results[name]],
                                      seed)[0]
    return out


def compare_from_inputs(inputs_a: ScoringInputs, inputs_b: ScoringInputs,
                        metrics: Sequence[str], shared: dict, *,
                        results_a: dict[str, MetricResult] | None = None,
                        results_b: dict[str, MetricResult] | None = None,
                        n_resamples: int | None = None, seed: int = 0,
                        progress: bool = False) -> Comparison:
    """:func:`compare_representations` on inputs checked once (rows aligned)."""
    _check_resamples(n_resamples)
    if inputs_a.n_samples != inputs_b.n_samples or not torch.equal(
            inputs_a.factors.cpu(), inputs_b.factors.cpu()):
        raise DataError("the two representations must score the same rows against the same "
                        f"factors (got {inputs_a.n_samples} and {inputs_b.n_samples} rows)")
    results_a, results_b = dict(results_a or {}), dict(results_b or {})
    intervals_a, intervals_b, differences = {}, {}, {}
    sides = [inputs_a, inputs_b]
    order = rows_order(sides)
    for name in metrics:
        spec = METRICS[name]
        for results, inputs in ((results_a, inputs_a), (results_b, inputs_b)):
            if name not in results:
                results[name] = run_metric(spec, inputs, shared)
        scheme, replicates, plan = draw_metric_replicates(spec, sides, shared, n_resamples, seed,
                                                          order)
        values = _run_replicates(spec, sides, shared, replicates, progress)
        ia, ib = _metric_intervals(spec, plan, scheme, sides, values,
                                   [results_a[name], results_b[name]], seed)
        intervals_a[name], intervals_b[name] = ia, ib
        low, high = plan.value_range
        span = (low - high, high - low)
        a, b = results_a[name].headline(), results_b[name].headline()
        for v, value_name in enumerate(a):
            differences[f"{name}.{value_name}"] = interval(
                a[value_name] - b[value_name], values[:, 0, v] - values[:, 1, v],
                deviation_scale(inputs_a.n_samples, scheme),
                bias_correction=plan.corrects_bias(scheme), bounds=span)
    return Comparison(results_a=results_a, results_b=results_b, intervals_a=intervals_a,
                      intervals_b=intervals_b, differences=differences)


def _shared_settings(settings: dict, *, seed, device, progress, factor_names) -> dict:
    unknown = sorted(set(settings) - set(SETTING_NAMES))
    if unknown:
        raise TypeError(f"unknown metric setting(s) {unknown}; known: {list(SETTING_NAMES)}")
    return {**settings, "seed": seed, "device": device, "progress": progress,
            "factor_names": factor_names}


def _check_metrics(metrics) -> tuple[str, ...]:
    metrics = (metrics,) if isinstance(metrics, str) else tuple(metrics)
    unknown = [m for m in metrics if m not in METRICS]
    if unknown or not metrics:
        raise ValueError(f"metrics must be names from {list(METRICS)}, got {metrics!r}")
    return metrics


def confidence_intervals(latents, factors, *, metrics: Sequence[str] = DEFAULT_METRICS,
                         n_resamples: int | None = None, seed: int = 0,
                         discrete: bool | None = None, device=None, progress: bool = False,
                         factor_names=None, **settings) -> ScoresWithIntervals:
    """Scores of ``latents`` with a 95% confidence interval on every headline value.

    Each metric is computed once on all rows (the point estimate, identical to calling
    it directly) and on ``n_resamples`` resamples of the rows, drawn as the metric's
    registry entry allows (see :mod:`disentangle_eval._resampling`): the bootstrap for
    plug-in estimators and fitted predictors, half-samples for the nearest-neighbour
    estimator, training and test rows resampled apart for metrics with a split. The
    interval is the bias-corrected estimate plus or minus Student's t times the
    replicates' standard error (:mod:`disentangle_eval._intervals`).

    Parameters
    ----------
    latents : array-like or torch.Tensor of shape (n_samples, n_latents)
    factors : array-like or torch.Tensor of shape (n_samples, n_factors)
        Integer ground-truth factor labels.
    metrics : sequence of str, default=("dci", "infomec")
        Registry names (``disentangle_eval._registry.METRICS``).
    n_resamples : int, optional
        Replicates per metric (>= 2); default: the metric's own (100; 20 for DCI).
    seed : int, default=0
        Seeds the metrics (as their ``seed``) and the resampling.
    discrete : bool or None, default=None
        As in :func:`~disentangle_eval.infomec`.
    device : str, torch.device or None, default=None
    progress : bool, default=False
        Progress bars on stderr.
    factor_names : sequence of str, optional
        Used in messages.
    **settings
        Metric settings by their registry names (``n_neighbors``, ``active``,
        ``predictor``, ``backend``, ``split``, ``train_fraction``, ...).

    Returns
    -------
    ScoresWithIntervals
        ``results[name]`` the point estimates, ``intervals[name].intervals[value]`` an
        :class:`~disentangle_eval._intervals.Interval` per headline value.

    Examples
    --------
    >>> import numpy as np
    >>> from disentangle_eval import confidence_intervals
    >>> rng = np.random.default_rng(0)
    >>> factors = rng.integers(0, 4, size=(500, 2))
    >>> latents = factors + 0.5 * rng.standard_normal((500, 2))
    >>> scores = confidence_intervals(latents, factors, metrics=["infomec"],
    ...                               n_resamples=20, device="cpu")
    >>> iv = scores.intervals["infomec"].intervals["infom"]
    >>> bool(iv.low <= scores.results["infomec"].infom <= iv.high)
    True
    """
    metrics = _check_metrics(metrics)
    inputs = check_inputs(latents, factors, discrete=discrete, device=device,
                          factor_names=factor_names)
    shared = _shared_settings(settings, seed=seed, device=inputs.device, progress=progress,
                              factor_names=factor_names)
    results = {name: run_metric(METRICS[name], inputs, shared) for name in metrics}
    intervals = intervals_from_inputs(inputs, metrics, shared, results=results,
                                      n_resamples=n_resamples, seed=seed, progress=progress)
    return ScoresWithIntervals(results=results, intervals=intervals)


def compare_representations(latents_a, latents_b, factors, *,
                            metrics: Sequence[str] = DEFAULT_METRICS,
                            n_resamples: int | None = None, seed: int = 0,
                            discrete: bool | None = None, device=None,
                            progress: bool = False, factor_names=None,
                            **settings) -> Comparison:
    """Paired comparison of two representations of the same rows.

    Both are scored on all rows and on the same resamples of the rows (paired
    replicates: replicate ``r`` of A and of B see the same rows and the same seed), so
    the spread of A - B leaves out what the two share (which rows were drawn).

    Parameters
    ----------
    latents_a, latents_b : array-like or torch.Tensor of shape (n_samples, n_latents_*)
        Row ``i`` of both describes the same sample; widths may differ.
    factors : array-like or torch.Tensor of shape (n_samples, n_factors)
    discrete : bool or None, default=None
        For both; ``None`` infers each from its dtype.
    metrics, n_resamples, seed, device, progress, factor_names, **settings
        As in :func:`confidence_intervals`.

    Returns
    -------
    Comparison
        ``differences["METRIC.VALUE"]``: A - B, its 95% interval and two-sided p-value.

    Examples
    --------
    >>> import numpy as np
    >>> from disentangle_eval import compare_representations
    >>> rng = np.random.default_rng(0)
    >>> factors = rng.integers(0, 4, size=(500, 2))
    >>> clean = factors + 0.1 * rng.standard_normal((500, 2))
    >>> noisy = rng.standard_normal((500, 2))
    >>> c = compare_representations(clean, noisy, factors, metrics=["infomec"],
    ...                             n_resamples=20, device="cpu")
    >>> d = c.differences["infomec.infoe"]
    >>> bool(d.low > 0 and d.p_value < 0.01)
    True
    """
    metrics = _check_metrics(metrics)
    inputs_a = check_inputs(latents_a, factors, discrete=discrete, device=device,
                            factor_names=factor_names)
    inputs_b = check_inputs(latents_b, factors, discrete=discrete, device=device,
                            factor_names=factor_names)
    shared = _shared_settings(settings, seed=seed, device=inputs_a.device, progress=progress,
                              factor_names=factor_names)
    return compare_from_inputs(inputs_a, inputs_b, metrics, shared, n_resamples=n_resamples,
                               seed=seed, progress=progress)
