"""The plain replicate runner: one metric call per replicate and side.

It is the reference of the batched runners (:mod:`disentangle_eval._replicates_infomec`,
:mod:`disentangle_eval._replicates_dci`), which have its signature and result, and the
runner of every metric without one.
"""
from __future__ import annotations

import warnings
from typing import Callable, Sequence

import numpy as np
from tqdm.auto import tqdm

from ._registry import MetricSpec, run_metric
from ._resampling import Replicate, replicate_inputs, replicate_settings
from ._validation import DataError, ScoringInputs

__all__ = ["loop_replicates", "ReplicateRunner", "ReplicateRefused"]

# runner(spec, sides, shared, replicates, *, progress) -> values, as loop_replicates.
ReplicateRunner = Callable[..., np.ndarray]


class ReplicateRefused(DataError):
    """A replicate that cannot be computed for want of resources (not for its rows):
    raised, never dropped as a replicate whose rows cannot be scored."""


def _metric_values(spec: MetricSpec, side: ScoringInputs, replicate: Replicate,
                   settings: dict) -> list[float]:
    return list(run_metric(spec, replicate_inputs(side, replicate), settings)
                .headline().values())


def loop_replicates(spec: MetricSpec, sides: Sequence[ScoringInputs], shared: dict,
                    replicates: Sequence[Replicate], *, progress: bool = False,
                    values_of: Callable[..., list[float]] = _metric_values) -> np.ndarray:
    """Headline values of every replicate, one metric call per replicate and side.

    ``values_of(spec, side, replicate, settings)`` gives one replicate's values on one
    side (default: the metric called on the replicate's rows); a batched runner may pass
    its own.

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
                values = [values_of(spec, side, replicate, settings) for side in sides]
            except ReplicateRefused:
                raise
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
