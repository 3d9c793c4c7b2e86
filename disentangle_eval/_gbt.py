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

What differs: thresholds are searched over at most ``max_bins`` bins per feature. A
feature with at most ``max_bins`` distinct training values (code indices, discrete
latents) is binned exactly and its splits are scikit-learn's; a continuous feature gets
equal-mass bins whose edges sit in the widest local gaps of its training values (see
:func:`_gap_quantile_edges`), so a split can only fall between bins.

Speed: a level's gradient histograms for (tree, node, feature, bin) are sparse-dense
products, the transposed one-hot bin matrix (features x bins, samples) times the masked
gradients (samples, one block of trees per left child), with histogram subtraction (only
left children are accumulated, right = parent - left). The sums are exact: gradients
(|g| <= 1) are rounded to a multiple of about 2**-30 and split into two or three small
balanced digits whose per-bin sums stay below 2**24, so the fast float32 kernel adds them
without rounding and they are recombined in float64. Hence results do not depend on the
device, thread count or summation order, and two features that induce the same partition
of a node have bitwise equal gains: a tie. Ties are broken pseudo-randomly (scikit-learn
draws a random feature order per node) by a hash of the seed, the stage, the node, and
the *content* of the feature column and of the tree's target, so permuting the latents or
relabelling a factor's classes changes no choice.
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


def _spmm(matrix: torch.Tensor, dense: torch.Tensor, chunk: int = 96) -> torch.Tensor:
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


def _combine(limb_sums: list[torch.Tensor], weights: list[float]) -> torch.Tensor:
    """Float64 sum of float32 digit sums times their weights (exact: integer multiples)."""
    out = limb_sums[0].to(torch.float64).mul_(weights[0])
    for part, weight in zip(limb_sums[1:], weights[1:]):
        out.add_(part, alpha=weight)
    return out


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
    newton_leaf = newton.repeat_interleave(2 ** max_depth)

    # Initial raw predictions: log prior (multinomial), log-odds of the prior (binomial).
    # Per-sample arrays are (samples, trees): the layout the histogram product wants.
    eps = torch.finfo(f64).eps
    prior = y.mean(1).clamp(eps, 1 - eps)
    init = torch.where(binomial, torch.log(prior / (1 - prior)), torch.log(prior))
    raw = init[None, :].expand(n, n_trees).contiguous()
    raw_test = init[None, :].expand(n_test, n_trees).contiguous()
    target_key = _content_key(y.long(), _row_weights(n, device))
    target_key = torch.where(binomial, torch.minimum(
        target_key, _content_key(1 - y.long(), _row_weights(n, device))), target_key)
    y = y.T.contiguous()                                             # (n, T)
    slices = []                                                      # trees of each target
    start = 0
    for k in n_cls:
        slices.append((start, start + (1 if k == 2 else k)))
        start = slices[-1][1]

    binned = bin_features(x_train, max_bins)
    d, nb = binned.bins.shape[0], binned.n_bins
    importance = torch.zeros(n_trees, max(d, 1), dtype=f64, device=device)
    if d:
        bins = binned.bins.T.to(torch.uint8 if nb <= 256 else torch.int64).contiguous()
        bin_bits = max(1, int(nb).bit_length())
        x_test_active = x_test[:, binned.active].contiguous()        # (n_test, d)
        # Histogram sums are exact, in float32 (the fast sparse kernel): the negative
        # gradients (|g| <= 1) are rounded to multiples of 2**-(bits * limbs - 1) and
        # split into ``limbs`` balanced base-2**bits digits, small enough that a bin's
        # sum stays below 2**24; the digit sums are recombined in float64.
        onehot = _bin_matrix(binned, torch.float32)
        hist_c0 = _spmm(onehot, torch.ones(n, 1, dtype=torch.float32, device=device))
        hist_c0 = hist_c0.view(d, nb, 1, 1)                          # root counts
        largest_bin = int(hist_c0.max())
        bits = min(15, 24 - math.ceil(math.log2(largest_bin + 1)))
        limbs = math.ceil(30 / bits)
        if largest_bin >= 2 ** 20 or bits * limbs + math.log2(n + 1) > 52:
            raise ValueError("too many training rows for exact float32 histograms "
                             f"({largest_bin} in one bin)")
        scale = 2.0 ** (bits * limbs - 1)
        limb_weights = [2.0 ** (bits * k) / scale for k in range(limbs)]
        # Tie-breaking keys from content, not position: permuting the features or
        # relabelling the classes leaves every choice unchanged.
        feature_key = _content_key(binned.bins, _row_weights(n, device))
        seed_key = _mix(torch.tensor(int(seed) & _MASK31, device=device), 0x5EED)
    tree_ids = torch.arange(n_trees, device=device, dtype=torch.int32)

    for stage in tqdm(range(n_estimators), desc="DCI gradient boosting", unit="stage",
                      disable=None if progress else True, leave=False):
        # Probabilities: sigmoid (binomial) or softmax over each target's trees.
        p = torch.empty_like(raw)
        for a, b in slices:
            if b - a == 1:
                torch.sigmoid(raw[:, a:b], out=p[:, a:b])
            else:
                p[:, a:b] = torch.softmax(raw[:, a:b], dim=1)
        g = y - p                                                    # negative gradient
        h = p.mul_(1 - p)
        if d:
            q = torch.round(g * scale)
            digits = []                                              # (n, T) float32 each
            for _ in range(limbs - 1):
                high = torch.round(q * 2.0 ** -bits)
                digits.append(q.sub_(high * 2.0 ** bits).float())
                q = high
            digits.append(q.float())

        # Global node ids t * n_nodes + m: children of node k are 2k and 2k + 1.
        node = tree_ids[None, :].expand(n, n_trees)
        node_test = tree_ids[None, :].expand(n_test, n_trees)
        for level in range(max_depth if d else 0):
            n_nodes = 2 ** level
            if level == 0:
                hist_g = _combine([_spmm(onehot, digit) for digit in digits], limb_weights)
                hist_g = hist_g.view(d, nb, n_trees, 1)
                hist_c = hist_c0
            else:
                # Left children only (even ids); right = parent - left.
                half = n_nodes // 2
                left_slot = torch.where((node & 1) == 0, node >> 1, -1)   # (n, T)
                # One block of T columns per left child: 1 where the row is in the left
                # child of node (t, m) (blocks of T columns keep the product cache-sized).
                sums_g, sums_c = [], []
                for m in range(half):
                    mask = (left_slot == tree_ids * half + m).float()       # (n, T)
                    sums_g.append(_combine([_spmm(onehot, digit * mask) for digit in digits],
                                           limb_weights))
                    sums_c.append(_spmm(onehot, mask))
                left_g = torch.stack(sums_g, -1).view(d, nb, n_trees, half)
                left_c = torch.stack(sums_c, -1).view(d, nb, n_trees, half)
                hist_g = torch.stack([left_g, hist_g - left_g], -1).view(d, nb, n_trees, n_nodes)
                hist_c = torch.stack([left_c, hist_c - left_c], -1).view(d, nb, n_trees, n_nodes)

            # Split search. For "bin <= b goes left" the squared-error decrease is
            # n * dev^2 / (n_left * n_right), dev = sum_left - n_left * mean: no
            # cancellation, so it is ranked in float32 (bitwise equal inputs, e.g. two
            # features inducing the same partition, still give bitwise equal scores).
            cum_g = hist_g.cumsum(1)                                 # exact, float64
            cum_c = hist_c.cumsum(1)                                 # exact, float32
            tot_c = cum_c[:, -1:]
            mean = cum_g[:, -1:] / tot_c.to(f64).clamp(min=1)
            dev = cum_g.addcmul_(cum_c, mean, value=-1)              # (d, nb, T, nodes)
            denom = (tot_c - cum_c).mul_(cum_c).clamp_(min=0.25)
            score = dev.float().square_().div_(denom)
            best_score, best_bin = score.max(1)                      # (d, T, nodes)
            del score, denom
            top = best_score.max(0).values                           # (T, nodes)
            tied = best_score == top
            priority = _mix(_mix(_mix(seed_key, stage * 64 + n_nodes), target_key)[:, None]
                            + torch.arange(n_nodes, device=device), feature_key[:, None, None])
            feat = torch.where(tied, priority, -1).argmax(0)         # (T, nodes)
            b = best_bin.gather(0, feat[None]).squeeze(0)
            # Cumulative counts of the chosen feature, (T, nodes, nb).
            cc = cum_c.expand(d, nb, n_trees, n_nodes).gather(
                0, feat[None, None].expand(1, nb, -1, -1)).squeeze(0)
            cc = cc.permute(1, 2, 0).contiguous()
            n_left = cc.gather(2, b.unsqueeze(2))                    # (T, nodes, 1)
            n_node = cc[:, :, -1:]
            split = ((n_left >= 1) & (n_left < n_node)).squeeze(2)
            # Last non-empty bin on the left, first non-empty bin on the right (in node).
            b_left = torch.searchsorted(cc, n_left, side="left").squeeze(2)
            b_right = torch.searchsorted(cc, n_left, side="right").squeeze(2).clamp(max=nb - 1)
            t_index = tree_ids[:, None].long().expand(-1, n_nodes)
            m_index = torch.arange(n_nodes, device=device)[None, :].expand(n_trees, -1)
            dev_best = dev[feat, b, t_index, m_index]
            n_left, n_node = n_left.squeeze(2).to(f64), n_node.squeeze(2).to(f64)
            gain = n_node * dev_best.square() / (n_left * (n_node - n_left)).clamp(min=1)
            gain = torch.where(split, gain, 0.0)
            importance.index_put_((t_index, feat), gain, accumulate=True)
            lo = binned.bin_max[feat, b_left]
            hi = binned.bin_min[feat, b_right]
            threshold = lo / 2 + hi / 2                              # scikit-learn's midpoint
            threshold = torch.where(threshold == hi, lo, threshold)
            threshold = torch.where(split, threshold, math.inf).view(-1)
            bin_threshold = torch.where(split, b_left, nb - 1).view(-1)
            feat = feat.view(-1)
            del dev, cum_g, cum_c

            # Route: training rows by bin, test rows by value.
            key = ((feat << bin_bits) | bin_threshold).to(torch.int32)   # one lookup per row
            key = key.index_select(0, node.reshape(-1)).view(n, n_trees)
            go_right = bins.gather(1, (key >> bin_bits).long()) > (key & (2 ** bin_bits - 1))
            flat_test = node_test.reshape(-1)
            f_test = feat.index_select(0, flat_test).view(n_test, n_trees)
            go_right_test = (x_test_active.gather(1, f_test)
                             > threshold.index_select(0, flat_test).view(n_test, n_trees))
            node = (node << 1) | go_right
            node_test = (node_test << 1) | go_right_test
        if not d:  # no usable feature: every tree is a single leaf
            node = tree_ids[None, :].expand(n, n_trees) * 2 ** max_depth
            node_test = tree_ids[None, :].expand(n_test, n_trees) * 2 ** max_depth

        # Leaf values: one Newton step.
        n_slots = n_trees * 2 ** max_depth
        flat = node.reshape(-1).long()
        sum_g = torch.zeros(n_slots, dtype=f64, device=device).index_add_(0, flat, g.view(-1))
        sum_h = torch.zeros(n_slots, dtype=f64, device=device).index_add_(0, flat, h.view(-1))
        value = torch.where(sum_h.abs() < 1e-150, 0.0,
                            newton_leaf * sum_g / torch.where(sum_h == 0, 1.0, sum_h))
        value = value.mul_(learning_rate)
        raw += value.index_select(0, flat).view(n, n_trees)
        raw_test += value.index_select(0, node_test.reshape(-1)).view(n_test, n_trees)

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
        for f, (a, b) in enumerate(slices):
            mine = raw_values[:, a:b]
            index = (mine[:, 0] >= 0).long() if n_cls[f] == 2 else mine.argmax(1)
            out.append(classes[f][index])
        return torch.stack(out, 1)

    return GBTFit(importance=imp.T.contiguous(), predict_train=predict(raw),
                  predict_test=predict(raw_test))
