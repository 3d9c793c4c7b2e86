"""Confidence intervals for every headline value, and paired comparisons.

Every metric of the registry gets intervals without code of its own: its registry entry
says how its rows may be resampled (:class:`~disentangle_eval._resampling.Resampling`),
each replicate is scored by the metric itself on the replicate's rows, and the interval
comes from the replicates' spread (:mod:`disentangle_eval._intervals`, which also holds
the result classes). A metric may also register a batched replicate runner
(``BATCHED_RUNNERS``) that gives the values of all replicates at less cost; the plain
loop (:func:`~disentangle_eval._replicates.loop_replicates`) stays its reference.
InfoMEC's fits the replicates' logistic regressions together
(:mod:`disentangle_eval._replicates_infomec`); DCI's fits each bootstrap replicate's
trees on its distinct rows with their counts, bitwise the separate refit
(:mod:`disentangle_eval._replicates_dci`).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from ._intervals import Comparison, MetricIntervals, ScoresWithIntervals, interval
from ._registry import DEFAULT_METRICS, METRICS, SETTING_NAMES, MetricSpec, run_metric
from ._replicates import ReplicateRunner, loop_replicates
from ._replicates_dci import dci_replicates
from ._replicates_infomec import infomec_replicates
from ._resampling import (Replicate, Resampling, canonical_order, deviation_scale,
                          draw_replicates, joint_scheme)
from ._results import MetricResult
from ._validation import DataError, ScoringInputs, check_inputs

__all__ = ["MetricIntervals", "ScoresWithIntervals", "Comparison", "confidence_intervals",
           "compare_representations", "intervals_from_inputs", "compare_from_inputs",
           "resampling_plan", "rows_order", "draw_metric_replicates", "loop_replicates",
           "BATCHED_RUNNERS"]

# A replicate whose rows cannot be scored (e.g. a factor left with one value) is dropped;
# more than this share of failures means the data are too small to resample.
_MAX_FAILED_SHARE = 0.1


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

# Metric name -> a batched runner with the signature and result of loop_replicates.
BATCHED_RUNNERS: dict[str, ReplicateRunner] = {"infomec": infomec_replicates,
                                               "dci": dci_replicates}


def _run_replicates(spec, sides, shared, replicates, progress) -> np.ndarray:
    runner = BATCHED_RUNNERS.get(spec.name, loop_replicates)
    return runner(spec, sides, shared, replicates, progress=progress)


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
