"""Batched gradient-boosted trees in torch: scikit-learn's ``GradientBoostingClassifier()``.

One call fits one classifier per target column (factor), all of them at once: every
boosting stage grows the regression trees of all targets and all classes together, level
by level, with histogram split finding on pre-binned features.

What is reproduced from scikit-learn (``sklearn/ensemble/_gb.py``, ``sklearn/tree``):

- initial raw predictions: log class priors (multinomial) or the log-odds of the prior
  (binomial, 2 classes);
- per stage, the negative gradient ``y_k - p_k`` of the multinomial log-loss is computed
  once, and one regression tree per class (K > 2) or a single tree (K = 2) is fitted to it;
- trees: squared-error splits (``friedman_mse`` picks the same split for unit weights),
  best split over all features, depth ``max_depth``, a node is split whenever two of its
  samples differ in a feature, ties between features broken pseudo-randomly (scikit-learn
  uses a random feature order per node), ties between thresholds of one feature by the
  lowest;
- leaf values: one Newton step, ``(K - 1) / K * sum(g) / sum(p (1 - p))`` (multinomial) or
  ``sum(g) / sum(p (1 - p))`` (binomial), zero when the denominator is below 1e-150;
- prediction thresholds at the midpoint between the adjacent training values on either
  side of a split (``a / 2 + b / 2``), features rounded to float32 as scikit-learn does;
- impurity importances: per tree the decrease of the summed squared error over its splits,
  summed over all trees of a classifier and normalised to sum to one (scikit-learn's mean
  over trees followed by normalisation is the same, since every tree is divided by the
  same number of training samples).

What differs: thresholds are searched over at most ``max_bins`` bins per feature
(:mod:`~disentangle_eval._gbt_binning`), exact for features with fewer distinct values.
The split sums are exact (gradients rounded to integer multiples of a power of two), so
the result does not depend on the device, the thread count or the summation order.

The steps live in their own modules: binning and histogram precision
(:mod:`._gbt_binning`), histograms (:mod:`._gbt_histograms`), split search and tie-breaking
(:mod:`._gbt_splits`), tree growth and routing (:mod:`._gbt_trees`), the boosting loop of
a group of targets (:mod:`._gbt_boosting`) and the memory a fit needs (:mod:`._gbt_memory`).
This module bins the features once and fits groups of targets on worker threads, side by
side where memory allows, one group after another where it does not.
:mod:`._gbt_reference` computes the same thing plainly, one tree at a time, and the tests
compare the two bit for bit. ``docs/gbt-performance.md`` records what was measured and
tried for speed.
"""
from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import torch

from ._gbt_binning import (MAX_TRAIN_ROWS, bin_counts, bin_features, histogram_precision,
                           one_hot_bins)
from ._gbt_boosting import GBTFit, RowCounts, fit_targets
from ._gbt_memory import FitShape, FitTooLarge, fit_bytes, shared_bytes

__all__ = ["GBTFit", "RowCounts", "fit_gbt_classifiers", "bin_features", "MAX_TRAIN_ROWS",
           "FitTooLarge"]


def fit_gbt_classifiers(x_train: torch.Tensor, y_train: torch.Tensor, x_test: torch.Tensor,
                        *, n_estimators: int = 100, learning_rate: float = 0.1,
                        max_depth: int = 3, max_bins: int = 256, seed: int = 0,
                        progress: bool = False, workers: int | None = None,
                        block_rows: int | None = None, max_bytes: int | None = None,
                        rows: RowCounts | None = None) -> GBTFit:
    """Fit one gradient-boosted tree classifier per column of ``y_train``, all at once.

    Parameters
    ----------
    x_train : torch.Tensor of shape (n_train, n_features), float
    y_train : torch.Tensor of shape (n_train, n_targets), int64
        Labels; every column needs at least two distinct values (the caller checks).
    x_test : torch.Tensor of shape (n_test, n_features), float
    n_estimators, learning_rate, max_depth : scikit-learn's defaults 100, 0.1, 3
    max_bins : int, default=256
        Most bins per feature for split finding (exact for features with fewer values).
    seed : int, default=0
        Seeds the random tie-breaking between equally good features.
    progress : bool, default=False
        Show a tqdm bar over boosting stages on stderr.
    workers : int, optional
        CPU threads that fit disjoint groups of targets side by side, sharing the torch
        threads (default: ``torch.get_num_threads()`` on CPU, 1 on other devices). The
        targets' classifiers are independent, so the result is the same for any value;
        on CPU two single-threaded fits of half the trees each are faster than one fit
        whose small element-wise operations are split over two threads.
    block_rows : int, optional
        Training rows per block of the histogram products (any value gives the same
        result). Default: 4096 on CPU, whose operands then fit in cache and the cost per
        row stays constant; all rows in one block on other devices.
    max_bytes : int, optional
        Memory the fit may use (see :func:`~disentangle_eval._gbt_memory.fit_bytes`).
        Groups of targets that do not fit side by side are fitted one after another
        (the same result).
    rows : RowCounts, optional
        The training rows stand for repeated samples (a bootstrap replicate on its
        distinct rows): the fit is bitwise that on the samples written out, in the
        order of ``rows.positions``, at the cost of the distinct rows.

    Returns
    -------
    GBTFit

    Raises
    ------
    FitTooLarge
        A single target's fit needs more than ``max_bytes``.
    ValueError
        More than :data:`MAX_TRAIN_ROWS` training rows.
    """
    n_samples = x_train.shape[0] if rows is None else rows.n_samples
    if n_samples > MAX_TRAIN_ROWS:
        raise ValueError(f"too many training rows for exact histogram counts "
                         f"({n_samples}, at most {MAX_TRAIN_ROWS})")
    counts_of_rows = None if rows is None else rows.counts
    on_cpu = x_train.device.type == "cpu"
    if workers is None:
        workers = torch.get_num_threads() if on_cpu else 1
    if block_rows is None:
        block_rows = 4096 if on_cpu else max(1, x_train.shape[0])
    n_targets = y_train.shape[1]
    trees = [1 if k == 2 else k
             for k in (int(torch.unique(y_train[:, f]).numel()) for f in range(n_targets))]
    # Binning and the one-hot bin matrix depend on the features only: built once, here
    # on the calling thread, and shared by the workers.
    x_train = x_train.to(torch.float32).to(torch.float64)  # scikit-learn's trees: float32
    x_test = x_test.to(device=x_train.device, dtype=torch.float32)
    binned = bin_features(x_train, max_bins, counts_of_rows)
    counts = bin_counts(binned, counts_of_rows)
    d = binned.bins.shape[0]
    largest_bin = int(counts.max()) if d else 1
    dtype, bits = histogram_precision(largest_bin, n_samples)
    mantissa = 24 if dtype == torch.float32 else 53
    shape = FitShape(n_train=x_train.shape[0], n_test=x_test.shape[0],
                     n_features=x_train.shape[1], n_active=d, n_bins=binned.n_bins,
                     max_depth=max_depth, histogram_itemsize=dtype.itemsize,
                     pack=max(1, min(8, mantissa // largest_bin.bit_length())),
                     n_samples=0 if rows is None else n_samples)
    waves = _schedule(trees, shape, max(1, min(int(workers), n_targets)), max_bytes)
    onehot = one_hot_bins(binned, dtype, block_rows, counts_of_rows) if d else None
    context = dict(binned=binned, onehot=onehot, counts=counts, bits=bits, x_test=x_test,
                   n_features=x_train.shape[1], n_estimators=n_estimators,
                   learning_rate=learning_rate, max_depth=max_depth, seed=seed, rows=rows)
    largest = max(range(n_targets), key=lambda f: trees[f])
    importance = x_train.new_zeros((x_train.shape[1], n_targets), dtype=torch.float64)
    predict_train = y_train.new_zeros(y_train.shape)
    predict_test = y_train.new_zeros((x_test.shape[0], n_targets))
    for wave in waves:
        fits = _run_side_by_side(
            [lambda stop, g=group: fit_targets(y_train[:, g], progress=progress and largest in g,
                                               stop=stop, **context) for group in wave])
        for columns, part in zip(wave, fits):
            importance[:, columns] = part.importance
            predict_train[:, columns] = part.predict_train
            predict_test[:, columns] = part.predict_test
    return GBTFit(importance=importance, predict_train=predict_train,
                  predict_test=predict_test)


def _schedule(trees: list[int], shape: FitShape, workers: int,
              max_bytes: int | None) -> list[list[list[int]]]:
    """Waves of groups of targets: the groups of a wave are fitted side by side, the
    waves one after another. All targets in one wave of ``workers`` groups of similar
    numbers of trees when that fits in ``max_bytes``; else one group at a time, each of
    as many targets as fit."""
    groups = _balanced_groups(trees, workers)
    if max_bytes is None:
        return [groups]
    fixed = shared_bytes(shape)
    if fixed + sum(fit_bytes(shape, sum(trees[f] for f in g), len(g)) for g in groups) \
            <= max_bytes:
        return [groups]
    budget = max_bytes - fixed
    sequential: list[list[int]] = []
    for f in sorted(range(len(trees)), key=lambda f: (-trees[f], f)):
        need = fit_bytes(shape, trees[f], 1)
        if need > budget:
            raise FitTooLarge(
                f"the trees of target column {f} ({trees[f]} per stage) need about "
                f"{(fixed + need) / 2 ** 30:.1f} GiB, {max_bytes / 2 ** 30:.1f} GiB are "
                f"available", needed=fixed + need, available=max_bytes, target=f)
        for group in sequential:
            if fit_bytes(shape, sum(trees[g] for g in group) + trees[f],
                         len(group) + 1) <= budget:
                group.append(f)
                break
        else:
            sequential.append([f])
    return [[sorted(group)] for group in sequential]


def _run_side_by_side(fits: list) -> list[GBTFit]:
    """Run each ``fit(stop)`` of ``fits`` on its own thread, sharing the torch threads (a
    single fit runs on the calling thread). If one fails or the caller is interrupted (Ctrl-C),
    ``stop`` is set and the others end at their next boosting stage."""
    if len(fits) == 1:
        return [fits[0](None)]
    threads = torch.get_num_threads()
    stop = threading.Event()

    def run(fit):
        torch.set_num_threads(max(1, threads // len(fits)))
        return fit(stop)

    pool = ThreadPoolExecutor(max_workers=len(fits))
    try:
        futures = [pool.submit(run, fit) for fit in fits]
        return [future.result() for future in futures]  # interruptible wait
    except BaseException:
        stop.set()
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        torch.set_num_threads(threads)  # set_num_threads in a worker also sets the default


def _balanced_groups(costs: list[int], n_groups: int) -> list[list[int]]:
    """Split item indices into ``n_groups`` non-empty groups of similar total cost
    (largest first, each to the lightest group), each group in ascending order."""
    groups: list[list[int]] = [[] for _ in range(n_groups)]
    loads = [0] * n_groups
    for item in sorted(range(len(costs)), key=lambda i: (-costs[i], i)):
        lightest = min(range(n_groups), key=lambda g: (loads[g], g))
        groups[lightest].append(item)
        loads[lightest] += costs[item]
    return [sorted(group) for group in groups if group]
