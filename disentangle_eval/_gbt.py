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
  samples differ in a feature, ties between features broken at random (scikit-learn uses a
  random feature order per node), ties between thresholds of one feature by the lowest;
- leaf values: one Newton step, ``(K - 1) / K * sum(g) / sum(p (1 - p))`` (multinomial) or
  ``sum(g) / sum(p (1 - p))`` (binomial), zero when the denominator is below 1e-150;
- prediction thresholds at the midpoint between the adjacent training values on either
  side of a split (``a / 2 + b / 2``), features rounded to float32 as scikit-learn does;
- impurity importances: per tree the decrease of the summed squared error over its splits,
  summed over all trees of a classifier and normalised to sum to one (scikit-learn's mean
  over trees followed by normalisation is the same, since every tree is divided by the
  same number of training samples).

What differs: thresholds are searched over at most ``max_bins`` bins per feature. A
feature with at most ``max_bins`` distinct training values (code indices, discrete
latents) is binned exactly and its splits are scikit-learn's; a continuous feature gets
equal-mass bins whose edges sit in the widest local gaps of its training values (see
:func:`_gap_quantile_edges`), so a split can only fall between bins.

Speed: a level's gradient histograms for (tree, node, feature, bin) are one sparse-dense
product, the transposed one-hot bin matrix (features x bins, samples) times the masked
gradients (samples, trees x nodes), with histogram subtraction (only left children are
accumulated, right = parent - left). Gradients are rounded to a multiple of
``2 ** -(52 - ceil(log2 n))`` before accumulation, so every histogram sum is exact in
float64 whatever the summation order: results do not depend on the device or thread
count, and two features that induce the same partition of a node have bitwise equal gains
(a tie, broken at random as in scikit-learn).
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import torch

__all__ = ["GBTFit", "fit_gbt_classifiers", "bin_features"]


@dataclass(frozen=True)
class BinnedFeatures:
    """Features of the training rows mapped to bins.

    Attributes
    ----------
    bins : torch.Tensor of shape (n_active, n_samples), int64
        Bin index of each training value, for the active (non-constant) features.
    active : torch.Tensor of shape (n_active,), int64
        Column indices of the active features in the input.
    bin_min, bin_max : torch.Tensor of shape (n_active, n_bins), float64
        Smallest and largest training value in each bin (+inf / -inf for empty bins).
    n_bins : int
        Number of bins of the widest feature (the padded bin axis).
    """

    bins: torch.Tensor
    active: torch.Tensor
    bin_min: torch.Tensor
    bin_max: torch.Tensor
    n_bins: int


def bin_features(x: torch.Tensor, max_bins: int = 256) -> BinnedFeatures:
    """Bin each column of ``x`` (n_samples, n_features) into at most ``max_bins`` bins.

    A column with at most ``max_bins`` distinct values gets one bin per value (exact);
    otherwise equal-mass bins with edges in the widest local gaps
    (:func:`_gap_quantile_edges`).
    Constant columns are left out (``active``).
    """
    n, d = x.shape
    device = x.device
    bins, active, lows, highs = [], [], [], []
    for j in range(d):
        col = x[:, j].contiguous()
        values = torch.unique(col)
        if values.numel() < 2:
            continue
        edges = values if values.numel() <= max_bins else _gap_quantile_edges(col, max_bins)
        b = torch.searchsorted(edges, col, side="left")
        nb = int(b.max()) + 1
        low = torch.full((nb,), math.inf, dtype=torch.float64, device=device)
        high = torch.full((nb,), -math.inf, dtype=torch.float64, device=device)
        low.scatter_reduce_(0, b, col, reduce="amin")
        high.scatter_reduce_(0, b, col, reduce="amax")
        bins.append(b)
        active.append(j)
        lows.append(low)
        highs.append(high)
    n_bins = max((low.numel() for low in lows), default=1)

    def pad(values, fill):
        out = torch.full((len(values), n_bins), fill, dtype=torch.float64, device=device)
        for k, v in enumerate(values):
            out[k, : v.numel()] = v
        return out

    return BinnedFeatures(
        bins=torch.stack(bins) if bins else torch.zeros(0, n, dtype=torch.int64, device=device),
        active=torch.as_tensor(active, dtype=torch.int64, device=device),
        bin_min=pad(lows, math.inf), bin_max=pad(highs, -math.inf), n_bins=n_bins)


def _gap_quantile_edges(col: torch.Tensor, max_bins: int) -> torch.Tensor:
    """Bin edges of a column with more than ``max_bins`` distinct values.

    The sorted values are cut into ``max_bins`` runs of equal length; each cut is moved to
    the widest gap between consecutive values within half a run of it, and the edge is
    that gap's midpoint. Equal-mass bins like plain quantiles, but a gap in the data (the
    boundary between two clusters of a code-like latent) becomes a bin edge whenever it
    is the widest gap nearby, so the split that scikit-learn finds there is available.
    """
    values = torch.sort(col).values
    n = values.numel()
    gaps = values[1:] - values[:-1]                                  # (n - 1,)
    cuts = torch.round(torch.arange(1, max_bins, dtype=torch.float64, device=col.device)
                       * (n / max_bins)).long() - 1                  # position left of cut
    half = max(1, n // (2 * max_bins))
    window = (cuts[:, None] + torch.arange(-half + 1, half + 1, device=col.device)[None])
    window = window.clamp_(0, n - 2)
    best = window.gather(1, gaps[window].argmax(1, keepdim=True)).squeeze(1)
    edges = values[best] / 2 + values[best + 1] / 2
    return torch.unique(edges)


def _bin_matrix(binned: BinnedFeatures, dtype: torch.dtype) -> torch.Tensor:
    """Sparse CSR one-hot matrix of shape (n_active * n_bins, n_samples)."""
    d, n = binned.bins.shape
    device = binned.bins.device
    rows = (binned.bins + binned.n_bins * torch.arange(d, device=device)[:, None]).reshape(-1)
    cols = torch.arange(n, device=device).repeat(d)
    order = torch.argsort(rows, stable=True)  # stable: samples in order within a bin
    counts = torch.bincount(rows, minlength=d * binned.n_bins)
    crow = torch.zeros(d * binned.n_bins + 1, dtype=torch.int64, device=device)
    crow[1:] = torch.cumsum(counts, 0)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*[Ss]parse.*")
        return torch.sparse_csr_tensor(crow, cols[order],
                                       torch.ones(d * n, dtype=dtype, device=device),
                                       (d * binned.n_bins, n))


def _spmm(matrix: torch.Tensor, dense: torch.Tensor, chunk: int = 128) -> torch.Tensor:
    """``matrix @ dense`` in column chunks (keeps the dense operand cache-sized on CPU)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*[Ss]parse.*")
        if dense.shape[1] <= chunk or dense.device.type != "cpu":
            return torch.sparse.mm(matrix, dense)
        return torch.cat([torch.sparse.mm(matrix, dense[:, k:k + chunk].contiguous())
                          for k in range(0, dense.shape[1], chunk)], dim=1)


_MASK31 = 0x7FFFFFFF


def _mix(h: torch.Tensor, c) -> torch.Tensor:
    """Hash-combine 31-bit integers (two LCG rounds; products stay below 2**62)."""
    h = ((h ^ c) * 1103515245 + 12345) & _MASK31
    return ((h ^ (h >> 16)) * 1103515245 + 12345) & _MASK31


def _row_weights(n: int, device) -> torch.Tensor:
    generator = torch.Generator(device="cpu").manual_seed(20180430)
    return torch.randint(1, 2 ** 23, (n,), generator=generator).to(device)


def _content_key(rows: torch.Tensor, row_weights: torch.Tensor) -> torch.Tensor:
    """A 31-bit key of each row of an integer matrix (values < 2**8 keep sums exact)."""
    return (((rows & 0xFF) * row_weights).sum(1) + rows.shape[1]) & _MASK31


@dataclass(frozen=True)
class GBTFit:
    """Result of :func:`fit_gbt_classifiers`.

    Attributes
    ----------
    importance : torch.Tensor of shape (n_features, n_targets), float64
        Impurity importances; each column sums to 1 (0 where no tree of that target split).
    predict_train : torch.Tensor of shape (n_train, n_targets), int64
        Predicted labels of the training rows.
    predict_test : torch.Tensor of shape (n_test, n_targets), int64
        Predicted labels of the test rows.
    """

    importance: torch.Tensor
    predict_train: torch.Tensor
    predict_test: torch.Tensor


def fit_gbt_classifiers(x_train: torch.Tensor, y_train: torch.Tensor, x_test: torch.Tensor,
                        *, n_estimators: int = 100, learning_rate: float = 0.1,
                        max_depth: int = 3, max_bins: int = 256, seed: int = 0,
                        progress: bool = False) -> GBTFit:
    """Fit one gradient-boosted tree classifier per column of ``y_train``, all at once.

    Parameters
    ----------
    x_train : torch.Tensor of shape (n_train, n_features), float
    y_train : torch.Tensor of shape (n_train, n_targets), int64
        Labels; every column needs at least two distinct values.
    x_test : torch.Tensor of shape (n_test, n_features), float
    n_estimators, learning_rate, max_depth : scikit-learn's defaults 100, 0.1, 3
    max_bins : int, default=256
        Most bins per feature for split finding (exact for features with fewer values).
    seed : int, default=0
        Seeds the random tie-breaking between equally good features.
    progress : bool, default=False
        Show a tqdm bar over boosting stages on stderr.

    Returns
    -------
    GBTFit
    """
    from tqdm.auto import tqdm

    device = x_train.device
    f64 = torch.float64
    # scikit-learn's trees see float32 features.
    x_train = x_train.to(torch.float32).to(f64)
    x_test = x_test.to(device=device, dtype=torch.float32).to(f64)
    n, n_features = x_train.shape
    n_test = x_test.shape[0]
    n_targets = y_train.shape[1]

    # Classes seen in training, per target; trees: K per target (K > 2) or 1 (K == 2).
    classes, codes = [], []
    for f in range(n_targets):
        cls, inv = torch.unique(y_train[:, f], return_inverse=True)
        if cls.numel() < 2:
            raise ValueError(f"target column {f} has a single class in the training rows")
        classes.append(cls)
        codes.append(inv)
    n_cls = [c.numel() for c in classes]
    tree_target, tree_class = [], []
    for f, k in enumerate(n_cls):
        trees = [1] if k == 2 else list(range(k))
        tree_target += [f] * len(trees)
        tree_class += trees
    n_trees = len(tree_target)
    tree_target = torch.as_tensor(tree_target, device=device)
    tree_class = torch.as_tensor(tree_class, device=device)
    binomial = torch.as_tensor([n_cls[f] == 2 for f in tree_target.tolist()], device=device)
    codes = torch.stack(codes, 1)                                    # (n, F)
    y = (codes.T[tree_target] == tree_class[:, None]).to(f64)        # (T, n) one-vs-rest
    newton = torch.as_tensor([1.0 if n_cls[f] == 2 else (n_cls[f] - 1) / n_cls[f]
                              for f in tree_target.tolist()], dtype=f64, device=device)

    # Initial raw predictions: log prior (multinomial), log-odds of the prior (binomial).
    eps = torch.finfo(f64).eps
    prior = y.mean(1).clamp(eps, 1 - eps)
    init = torch.where(binomial, torch.log(prior / (1 - prior)), torch.log(prior))
    raw = init[:, None].expand(n_trees, n).clone()
    raw_test = init[:, None].expand(n_trees, n_test).clone()

    binned = bin_features(x_train, max_bins)
    d, nb = binned.bins.shape[0], binned.n_bins
    bins_rows = binned.bins                                         # (d, n)
    x_test_active = x_test[:, binned.active].T.contiguous()         # (d, n_test)
    importance = torch.zeros(n_trees, max(d, 1), dtype=f64, device=device)
    count_dtype = torch.float32 if n < 2 ** 24 else f64              # exact counts
    if d:
        onehot_g = _bin_matrix(binned, f64)
        onehot_c = onehot_g if count_dtype == f64 else _bin_matrix(binned, count_dtype)
    # Quantum that makes every sum of n rounded gradients (|g| <= 1) exact in float64.
    quantum = 2.0 ** -(52 - max(1, math.ceil(math.log2(n + 1))))
    # Tie-breaking keys from content, not position: permuting the features or relabelling
    # the classes leaves every choice unchanged.
    row_weights = _row_weights(n, device)
    feature_key = _content_key(bins_rows, row_weights) if d else None
    target_key = _content_key(y.long(), row_weights)
    target_key = torch.where(binomial, torch.minimum(
        target_key, _content_key(1 - y.long(), row_weights)), target_key)
    seed_key = _mix(torch.tensor(int(seed) & _MASK31, device=device), 0x5EED)
    n_leaves = 2 ** max_depth
    tree_index = torch.arange(n_trees, device=device)
    if d:  # root counts are the same for every tree and stage
        ones = torch.ones(n, 1, dtype=count_dtype, device=device)
        hist_c0 = _spmm(onehot_c, ones).to(f64).view(d, nb, 1, 1)
        cum_c0 = hist_c0.cumsum(1)
        cum_c0_clamped = cum_c0.clamp(min=0.5)

    for stage in tqdm(range(n_estimators), desc="DCI gradient boosting", unit="stage",
                  disable=None if progress else True, leave=False):
        # Probabilities: sigmoid (binomial) or softmax over each target's trees.
        peak = torch.full((n_targets, n), -math.inf, dtype=f64, device=device)
        peak.scatter_reduce_(0, tree_target[:, None].expand(-1, n), raw, reduce="amax")
        e = torch.exp(raw - peak[tree_target])
        total = torch.zeros(n_targets, n, dtype=f64, device=device).index_add_(0, tree_target, e)
        p = torch.where(binomial[:, None], torch.sigmoid(raw), e / total[tree_target])
        g = y - p                                                   # negative gradient
        h = p * (1 - p)
        gq = torch.round(g / quantum) * quantum

        node = torch.zeros(n_trees, n, dtype=torch.int64, device=device)
        node_test = torch.zeros(n_trees, n_test, dtype=torch.int64, device=device)
        hist_g = hist_c = None
        for level in range(max_depth if d else 0):
            n_nodes = 2 ** level
            if level == 0:
                hist_g = _spmm(onehot_g, gq.T.contiguous()).view(d, nb, n_trees, 1)
                hist_c = hist_c0.expand(d, nb, n_trees, 1)
            else:
                # Left children only (even node ids); right = parent - left.
                half = n_nodes // 2
                left = ((node & 1) == 0).T                           # (n, T)
                slot = (node >> 1).T.unsqueeze(2)                    # (n, T, 1)
                cols_g = torch.zeros(n, n_trees, half, dtype=f64, device=device)
                cols_g.scatter_(2, slot, (gq.T * left).unsqueeze(2))
                cols_c = torch.zeros(n, n_trees, half, dtype=count_dtype, device=device)
                cols_c.scatter_(2, slot, left.to(count_dtype).unsqueeze(2))
                left_g = _spmm(onehot_g, cols_g.view(n, -1)).view(d, nb, n_trees, half)
                left_c = _spmm(onehot_c, cols_c.view(n, -1)).to(f64).view(d, nb, n_trees, half)
                hist_g = torch.stack([left_g, hist_g - left_g], -1).view(d, nb, n_trees, n_nodes)
                hist_c = torch.stack([left_c, hist_c - left_c], -1).view(d, nb, n_trees, n_nodes)

            # Split search: the score of "bin <= b goes left" for every (feature, bin),
            # sum_left^2 / n_left + sum_right^2 / n_right (the squared-error decrease plus
            # a per-node constant). Counts are clamped at 0.5 so an empty side scores
            # 0 (its gradient sum is exactly 0): such a candidate is never better than a
            # real split and is recognised as "no split" below.
            cum_g = hist_g.cumsum(1)
            cum_c = cum_c0 if level == 0 else hist_c.cumsum(1)
            tot_g = cum_g[:, -1:].clone()
            tot_c = cum_c[:, -1:].clone()
            right = torch.sub(tot_g, cum_g).square_().div_(torch.sub(tot_c, cum_c).clamp_(min=0.5))
            cum_c = cum_c0_clamped if level == 0 else cum_c.clamp_(min=0.5)
            score = cum_g.square_().div_(cum_c).add_(right)
            del right
            best_score, best_bin = score.max(1)                      # (d, T, nodes)
            del score
            top = best_score.max(0).values                           # (T, nodes)
            tied = best_score == top
            priority = _mix(_mix(_mix(seed_key, stage * 64 + n_nodes), target_key)[:, None]
                            + torch.arange(n_nodes, device=device), feature_key[:, None, None])
            feat = torch.where(tied, priority, -1).argmax(0)       # (T, nodes)
            b = best_bin.gather(0, feat[None]).squeeze(0)
            # Cumulative counts of the chosen feature: (T, nodes, nb).
            sel = feat[None, None].expand(1, nb, -1, -1)
            cc = cum_c.expand(d, nb, n_trees, n_nodes).gather(0, sel).squeeze(0)
            cc = cc.permute(1, 2, 0).contiguous()
            node_tot_g = tot_g[0, 0].expand(n_trees, n_nodes)        # (T, nodes)
            node_tot_c = tot_c[0, 0].expand(n_trees, n_nodes)
            node_c = cc.gather(2, b.unsqueeze(2))                    # left count
            split = (node_c.squeeze(2) >= 1) & (node_c.squeeze(2) < node_tot_c)
            # Last non-empty bin on the left, first non-empty bin on the right (in node).
            b_left = torch.searchsorted(cc, node_c, side="left").squeeze(2)
            b_right = torch.searchsorted(cc, node_c, side="right").squeeze(2)
            b_right = b_right.clamp(max=nb - 1)
            gain = top - node_tot_g.square() / node_tot_c
            gain = torch.where(split, gain, 0.0)
            importance.index_put_((tree_index[:, None].expand(-1, n_nodes), feat), gain,
                                  accumulate=True)
            lo = binned.bin_max[feat, b_left]
            hi = binned.bin_min[feat, b_right]
            threshold = lo / 2 + hi / 2
            threshold = torch.where(threshold == hi, lo, threshold)
            threshold = torch.where(split, threshold, math.inf)
            bin_threshold = torch.where(split, b_left, nb)

            # Route training rows by bin, test rows by value.
            f_row = feat.gather(1, node)
            go_right = bins_rows.gather(0, f_row) > bin_threshold.gather(1, node)
            f_test = feat.gather(1, node_test)
            go_right_test = x_test_active.gather(0, f_test) > threshold.gather(1, node_test)
            node = 2 * node + go_right
            node_test = 2 * node_test + go_right_test
        if not d:  # no usable feature: every tree is a single leaf
            node = node * 0
            node_test = node_test * 0

        # Leaf values: one Newton step.
        sum_g = torch.zeros(n_trees, n_leaves, dtype=f64, device=device).scatter_add_(1, node, g)
        sum_h = torch.zeros(n_trees, n_leaves, dtype=f64, device=device).scatter_add_(1, node, h)
        value = torch.where(sum_h.abs() < 1e-150, 0.0,
                            newton[:, None] * sum_g / torch.where(sum_h == 0, 1.0, sum_h))
        raw += learning_rate * value.gather(1, node)
        raw_test += learning_rate * value.gather(1, node_test)

    # Importance per target: sum over its trees, normalised.
    imp = torch.zeros(n_targets, n_features, dtype=f64, device=device)
    if d:
        per_target = torch.zeros(n_targets, d, dtype=f64, device=device).index_add_(
            0, tree_target, importance[:, :d])
        imp[:, binned.active] = per_target.abs()
    total = imp.sum(1, keepdim=True)
    imp = torch.where(total > 0, imp / torch.where(total > 0, total, 1.0), 0.0)

    def predict(raw_values):
        out = []
        for f in range(n_targets):
            mine = raw_values[tree_target == f]
            index = (mine[0] >= 0).long() if n_cls[f] == 2 else mine.argmax(0)
            out.append(classes[f][index])
        return torch.stack(out, 1)

    return GBTFit(importance=imp.T.contiguous(), predict_train=predict(raw),
                  predict_test=predict(raw_test))
