"""DCI of many bootstrap replicates: each replicate's trees fitted on its distinct rows.

A bootstrap replicate of DCI's training rows holds N samples of about 0.63 N distinct
rows. A separate refit (:func:`~disentangle_eval._replicates.loop_replicates`, one
``dci_from_inputs`` call per replicate) grows its trees on all N samples; here they are
grown on the distinct rows, each standing for its samples
(:class:`~disentangle_eval._gbt.RowCounts`): the bins are those of the samples (bins of
values absent from the replicate do not exist, so thresholds are midpoints of values
present in it), histograms and bin counts sum each row as often as it was drawn (exact
integer sums), the tie-break keys are those of the samples in their order, and the leaf
sums add the samples in the refit's order. Importances and accuracies are therefore
bitwise those of the separate refit (tested), at the cost of the distinct rows. Test rows
are routed once per distinct row.

Why not more targets of one boosting pass over all rows, as the learner fits all factors
and classes? Every replicate bins its own samples (continuous latents: quantile edges of
its own values), so the replicates share no histogram operand; and the pass would work
on the union of the replicates' rows, which with ``split="random"`` (each replicate
draws its own split) is every row: 1.5x the rows of a separate refit and 2.4x the
distinct rows of one replicate, on every tree. On CPU, where the cost is proportional to
rows x trees, that loses; the overhead one pass saves matters on a GPU.

Each replicate's fit is held to the memory the device has free, by the learner's own
schedule (groups of targets one after another); one that cannot fit even so is refused
with one line.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from ._dci import _check_dci_options, dci_rows
from ._dci_scores import completeness, disentanglement
from ._gbt import FitTooLarge, RowCounts, fit_gbt_classifiers
from ._replicates import ReplicateRefused, loop_replicates
from ._resampling import Replicate, replicate_inputs
from ._validation import ScoringInputs, available_memory

__all__ = ["dci_replicates"]

_DEFAULTS = dict(predictor="gbt", backend="torch", max_train_rows=100_000,
                 max_test_rows=50_000)


def dci_replicates(spec, sides: Sequence[ScoringInputs], shared: dict,
                   replicates: Sequence[Replicate], *, progress: bool = False) -> np.ndarray:
    """Headline values (D, C, I train, I test) of every replicate and side.

    Same signature and result as :func:`~disentangle_eval._replicates.loop_replicates`:
    an array (n_replicates, n_sides, 4), NaN where a replicate's rows cannot be scored.
    Other predictors and backends than the torch GBT run through the loop.
    """
    options = {**_DEFAULTS, **{k: shared[k] for k in _DEFAULTS if k in shared}}
    if (options["predictor"], options["backend"]) != ("gbt", "torch") or any(
            replicate.n_train is None for replicate in replicates):
        return loop_replicates(spec, sides, shared, replicates, progress=progress)
    return loop_replicates(
        spec, sides, shared, replicates, progress=progress,
        values_of=lambda spec, side, replicate, settings: _replicate_values(
            side, replicate, settings, options))


def _distinct(samples: np.ndarray, device) -> tuple[torch.Tensor, torch.Tensor]:
    """Distinct values of ``samples`` (original row ids) and, per distinct value, one
    position holding it; and the distinct index of every sample."""
    ids = torch.as_tensor(samples, device=device)
    distinct, inverse = torch.unique(ids, return_inverse=True)
    first = torch.empty(distinct.numel(), dtype=torch.int64, device=device)
    first.scatter_(0, inverse, torch.arange(ids.numel(), device=device))
    return first, inverse


def _replicate_values(inputs: ScoringInputs, replicate: Replicate, settings: dict,
                      options: dict) -> list[float]:
    """D, C, I train, I test of one replicate: what ``dci_from_inputs`` gives on the
    replicate's rows with ``settings``, fitted on its distinct training rows."""
    sub = replicate_inputs(inputs, replicate)
    _, dev = _check_dci_options("gbt", "torch", settings["split"], settings["train_fraction"],
                                256, options["max_train_rows"], options["max_test_rows"],
                                settings.get("device") or sub.device)
    factor_names = settings.get("factor_names")
    rows = dci_rows(sub, split=settings["split"], train_fraction=settings["train_fraction"],
                    seed=settings["seed"], max_train_rows=options["max_train_rows"],
                    max_test_rows=options["max_test_rows"], factor_names=factor_names)
    x_all, y_all = rows.latents.to(dev), sub.factors.to(dev)
    train_first, train_of = _distinct(replicate.rows[rows.train], dev)
    test_first, test_of = _distinct(replicate.rows[rows.test], dev)
    train = torch.as_tensor(rows.train, device=dev)
    test = torch.as_tensor(rows.test, device=dev)
    y_train, y_test = y_all[train], y_all[test]
    try:
        fit = fit_gbt_classifiers(x_all[train[train_first]], y_train[train_first],
                                  x_all[test[test_first]], seed=settings["seed"],
                                  max_bytes=available_memory(dev),
                                  rows=RowCounts.of_samples(train_of, train_first.numel()))
    except FitTooLarge as exc:
        raise ReplicateRefused(
            f"DCI replicate: the trees of factor {exc.target} need about "
            f"{exc.needed / 2 ** 30:.1f} GiB, {exc.available / 2 ** 30:.1f} GiB are "
            "available; fit fewer training rows (max_train_rows)") from None
    # Accuracies over the samples, as the refit computes them.
    acc_train = (fit.predict_train[train_of] == y_train).double().mean(0).cpu().numpy()
    acc_test = (fit.predict_test[test_of] == y_test).double().mean(0).cpu().numpy()
    importance = np.asarray(fit.importance.cpu().numpy(), dtype=np.float64)
    return [disentanglement(importance), completeness(importance),
            float(np.mean(acc_train)), float(np.mean(acc_test))]
