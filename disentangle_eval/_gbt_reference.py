"""A plain reference of the batched tree learner (:mod:`disentangle_eval._gbt`), in numpy.

One target, one stage, one tree, one node at a time, with exact histograms made by
``np.bincount`` for every node (no histogram subtraction, no packed counts, no shared
buffers), training rows routed by value, and the fast learner's rules written out
once: the binning, the gradient rounding, the split score, the tie-break hash, the
Newton leaf step. The tests require the fast learner to give **bitwise** the same
importances and predictions on small problems, so every optimisation of the fast path
is checked against this file.

It is slow (a Python loop over nodes and features) and meant for tests only.

A few float operations are done with torch's kernels because numpy rounds them
differently in the last bit, and bitwise agreement needs the same function, not just
the same formula: ``exp`` and ``log`` (torch uses its own vectorised implementations),
the sum over a row (torch adds in a blocked order, numpy pairwise) and the split
search's ``cum_g - cum_c * mean``, which torch's ``addcmul`` computes as one fused
multiply-add. The tie-break hash weighs rows with torch's seeded generator.
"""
from __future__ import annotations

import math

import numpy as np
import torch

__all__ = ["reference_fit", "reference_bins"]

_MASK31 = 0x7FFFFFFF


# --- float operations as torch rounds them ------------------------------------------

def _exp(a: np.ndarray) -> np.ndarray:
    return torch.from_numpy(np.ascontiguousarray(a)).exp().numpy()


def _log(a: np.ndarray) -> np.ndarray:
    return torch.from_numpy(np.ascontiguousarray(a)).log().numpy()


def _row_sums(a: np.ndarray) -> np.ndarray:
    """Sum of each row of a 2-D array, in torch's order."""
    return torch.from_numpy(np.ascontiguousarray(a)).sum(1).numpy()


def _fused_sub_product(c: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``c - a * b`` rounded once (a fused multiply-add)."""
    c, a, b = (torch.from_numpy(np.ascontiguousarray(v)) for v in np.broadcast_arrays(c, a, b))
    return torch.addcmul(c, a, b, value=-1).numpy()


# --- binning --------------------------------------------------------------------------

def _gap_edges(values: np.ndarray, max_bins: int) -> np.ndarray:
    """Edges of a sorted column with more than ``max_bins`` distinct values: ``max_bins``
    runs of equal length, each cut moved to the widest gap within half a run of it."""
    n = values.size
    gaps = values[1:] - values[:-1]
    half = max(1, n // (2 * max_bins))
    edges = []
    for i in range(1, max_bins):
        cut = int(np.round(i * (n / max_bins))) - 1           # position left of the cut
        window = np.clip(np.arange(cut - half + 1, cut + half + 1), 0, n - 2)
        best = window[np.argmax(gaps[window])]                 # the first widest gap
        edges.append(values[best] / 2 + values[best + 1] / 2)
    return np.unique(edges)


def reference_bins(x: np.ndarray, max_bins: int):
    """Bins of the columns of ``x`` (n, d): one per distinct value where there are at
    most ``max_bins``, else :func:`_gap_edges`; constant columns are left out.

    Returns (bins (n_active, n), active column indices, smallest and largest training
    value of each bin (n_active, n_bins), with +inf / -inf for empty bins, n_bins).
    """
    columns, active = [], []
    for j in range(x.shape[1]):
        values = np.unique(x[:, j])
        if values.size < 2:
            continue
        edges = values if values.size <= max_bins else _gap_edges(np.sort(x[:, j]), max_bins)
        columns.append(np.searchsorted(edges, x[:, j], side="left"))
        active.append(j)
    n_bins = max([int(b.max()) + 1 for b in columns], default=1)
    bin_min = np.full((len(active), n_bins), math.inf)
    bin_max = np.full((len(active), n_bins), -math.inf)
    for k, (j, bins) in enumerate(zip(active, columns)):
        for b in range(n_bins):
            members = x[bins == b, j]
            if members.size:
                bin_min[k, b], bin_max[k, b] = members.min(), members.max()
    bins = np.array(columns, dtype=np.int64).reshape(len(active), x.shape[0])
    return bins, active, bin_min, bin_max, n_bins


def _gradient_bits(bins: np.ndarray, n_bins: int) -> int:
    """Fractional bits of the rounded gradients (see ``_gbt_binning.histogram_precision``):
    24 - bits(largest bin) when that leaves at least 16 (float32 histograms), else 30
    or as many as keep the sum over all rows below 2**53 (float64)."""
    largest = max((np.bincount(row, minlength=n_bins).max() for row in bins), default=1)
    bits = 24 - int(largest).bit_length()
    return bits if bits >= 16 else min(30, 53 - bins.shape[1].bit_length())


# --- tie-breaking ---------------------------------------------------------------------

def _mix(h, c):
    h = ((h ^ c) * 1103515245 + 12345) & _MASK31
    return ((h ^ (h >> 16)) * 1103515245 + 12345) & _MASK31


def _row_weights(n: int) -> np.ndarray:
    generator = torch.Generator(device="cpu").manual_seed(20180430)
    return torch.randint(1, 2 ** 23, (n,), generator=generator).numpy()


def _priority(seed: int, stage: int, level: int, node: int, target_key: int,
              feature_keys: np.ndarray) -> np.ndarray:
    """Tie-break priority of each feature at one node: a hash of the seed, the stage, the
    level, the node's index in its level, and the tree's target and feature contents."""
    seed_key = _mix(np.int64(seed & _MASK31), 0x5EED)
    by_level = _mix(_mix(seed_key, np.int64(stage * 64 + 2 ** level)), np.int64(target_key))
    return _mix(by_level + node, feature_keys)


# --- one tree -------------------------------------------------------------------------

def _best_split(q, rows, bins, n_bins, priority):
    """The split of one node: (feature, bin, n_left, n_node, dev) or None.

    For "bin <= b goes left" the squared-error decrease is n dev^2 / (n_left n_right),
    dev = sum_left - n_left * mean, ranked in float32; the best feature by score, ties
    by the highest priority; its lowest best bin.
    """
    d = bins.shape[0]
    cum_g = np.stack([np.cumsum(np.bincount(bins[j, rows], weights=q[rows],
                                            minlength=n_bins)) for j in range(d)])
    cum_c = np.stack([np.cumsum(np.bincount(bins[j, rows], minlength=n_bins))
                      for j in range(d)]).astype(np.float64)
    n_node = cum_c[0, -1]
    mean = cum_g[:, -1:] / max(n_node, 1.0)
    dev = _fused_sub_product(cum_g, cum_c, mean)
    c32 = cum_c.astype(np.float32)
    denom = np.maximum((np.float32(n_node) - c32) * c32, np.float32(0.25))
    dev32 = dev.astype(np.float32)
    score = dev32 * dev32 / denom
    best = score.max(1)
    feature = int(np.argmax(np.where(best == best.max(), priority, -1)))
    b = int(np.argmax(score[feature]))
    return feature, b, cum_c[feature], dev[feature, b]


def _grow_tree(q, bins, n_bins, bin_min, bin_max, values, test_values, max_depth, priority_of):
    """Grow one tree of depth ``max_depth`` on the rounded gradients ``q`` (n,).

    Every node of a level is searched for a split; a node without one sends all its rows
    left. Returns the leaf of each training and test row and the gain of each split
    as (feature, gain) in node order.
    """
    n, n_test = q.size, test_values.shape[0]
    node = np.zeros(n, dtype=np.int64)
    node_test = np.zeros(n_test, dtype=np.int64)
    gains = []
    for level in range(max_depth):
        next_node, next_test = 2 * node, 2 * node_test
        for m in range(2 ** level):
            rows = node == m
            feature, b, cum_c, dev = _best_split(q, rows, bins, n_bins, priority_of(level, m))
            n_left, n_node = cum_c[b], cum_c[-1]
            if not 1 <= n_left < n_node:
                continue
            b_left = int(np.searchsorted(cum_c, n_left, side="left"))    # last bin, left
            b_right = min(int(np.searchsorted(cum_c, n_left, side="right")), n_bins - 1)
            lo, hi = bin_max[feature, b_left], bin_min[feature, b_right]
            threshold = lo / 2 + hi / 2                        # scikit-learn's midpoint
            if threshold == hi:
                threshold = lo
            gains.append((feature, n_node * (dev * dev) / (n_left * (n_node - n_left))))
            next_node[rows] += values[rows, feature] > threshold
            at_test = node_test == m
            next_test[at_test] += test_values[at_test, feature] > threshold
        node, node_test = next_node, next_test
    return node, node_test, gains


# --- one classifier -------------------------------------------------------------------

def _fit_target(y, x_active, x_test_active, bins, n_bins, bin_min, bin_max, bits,
                feature_keys, weights, *, n_estimators, learning_rate, max_depth, seed):
    """Boost one target: returns importance (n_active,) and the predicted labels."""
    n = y.size
    classes, codes = np.unique(y, return_inverse=True)
    k = classes.size
    tree_class = [1] if k == 2 else list(range(k))
    targets = np.stack([codes == c for c in tree_class], 1).astype(np.float64)  # (n, T)
    newton = 1.0 if k == 2 else (k - 1) / k
    ones = targets.T.astype(np.int64) @ weights                 # weights of the positives
    if k == 2:
        target_keys = np.minimum(ones + n, weights.sum() - ones + n) & _MASK31
    else:
        target_keys = (ones + n) & _MASK31

    eps = np.finfo(np.float64).eps
    prior = np.clip(targets.mean(0), eps, 1 - eps)
    init = _log(prior / (1 - prior)) if k == 2 else _log(prior)
    raw = np.repeat(init[None, :], n, 0)
    raw_test = np.repeat(init[None, :], x_test_active.shape[0], 0)
    importance = np.zeros((len(tree_class), bins.shape[0]))
    for stage in range(n_estimators):
        if k == 2:
            p = 1.0 / (1.0 + _exp(-raw))
        else:
            e = _exp(raw - raw.max(1, keepdims=True))
            p = e / _row_sums(e)[:, None]
        g = targets - p
        h = (1.0 - p) * p
        for t in range(len(tree_class)):
            if bins.shape[0]:
                q = np.round(g[:, t] * 2.0 ** bits)
                leaf, leaf_test, gains = _grow_tree(
                    q, bins, n_bins, bin_min, bin_max, x_active, x_test_active, max_depth,
                    lambda level, m: _priority(seed, stage, level, m, target_keys[t],
                                               feature_keys))
                for feature, gain in gains:
                    importance[t, feature] += gain
            else:
                leaf, leaf_test = np.zeros(n, np.int64), np.zeros(raw_test.shape[0], np.int64)
            sum_g = np.bincount(leaf, weights=g[:, t], minlength=2 ** max_depth)
            sum_h = np.bincount(leaf, weights=h[:, t], minlength=2 ** max_depth)
            with np.errstate(divide="ignore", invalid="ignore"):
                value = np.where(np.abs(sum_h) < 1e-150, 0.0, newton * sum_g / sum_h)
            value = value * learning_rate
            raw[:, t] += value[leaf]
            raw_test[:, t] += value[leaf_test]

    def predict(r):
        return classes[(r[:, 0] >= 0).astype(np.int64) if k == 2 else np.argmax(r, 1)]

    per_target = np.zeros(bins.shape[0])
    for t in range(len(tree_class)):
        per_target = per_target + importance[t]
    return np.abs(per_target), predict(raw), predict(raw_test)


def reference_fit(x_train, y_train, x_test, *, n_estimators: int = 100,
                  learning_rate: float = 0.1, max_depth: int = 3, max_bins: int = 256,
                  seed: int = 0):
    """What ``fit_gbt_classifiers`` computes, one target at a time.

    Parameters
    ----------
    x_train : array-like of shape (n_train, n_features)
    y_train : array-like of shape (n_train, n_targets), integer labels
    x_test : array-like of shape (n_test, n_features)
    n_estimators, learning_rate, max_depth, max_bins, seed
        As in :func:`~disentangle_eval._gbt.fit_gbt_classifiers`.

    Returns
    -------
    importance : numpy.ndarray of shape (n_features, n_targets)
    predict_train : numpy.ndarray of shape (n_train, n_targets)
    predict_test : numpy.ndarray of shape (n_test, n_targets)
    """
    # The trees see float32 features, as scikit-learn's do.
    x = np.asarray(x_train, dtype=np.float32).astype(np.float64)
    x_test = np.asarray(x_test, dtype=np.float32).astype(np.float64)
    y_train = np.asarray(y_train, dtype=np.int64)
    n, n_features = x.shape
    bins, active, bin_min, bin_max, n_bins = reference_bins(x, max_bins)
    bits = _gradient_bits(bins, n_bins)
    weights = _row_weights(n)
    feature_keys = (((bins & 0xFF) * weights).sum(1) + n) & _MASK31
    importance = np.zeros((n_features, y_train.shape[1]))
    predict_train = np.zeros(y_train.shape, dtype=np.int64)
    predict_test = np.zeros((x_test.shape[0], y_train.shape[1]), dtype=np.int64)
    for f in range(y_train.shape[1]):
        per_target, predict_train[:, f], predict_test[:, f] = _fit_target(
            y_train[:, f], x[:, active], x_test[:, active], bins, n_bins, bin_min, bin_max,
            bits, feature_keys, weights, n_estimators=n_estimators,
            learning_rate=learning_rate, max_depth=max_depth, seed=seed)
        column = np.zeros(n_features)
        column[active] = per_target
        total = _row_sums(column[None])[0]
        importance[:, f] = column / total if total > 0 else 0.0
    return importance, predict_train, predict_test
