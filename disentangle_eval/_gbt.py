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
gradients (samples, trees) of each left child, with histogram subtraction (only left
children are accumulated; right = parent - left, taken on the cumulative histograms). The
sums are exact: gradients (|g| <= 1) are rounded to integer multiples of 2**-b, with b
as large as keeps every bin's sum an integer the product's dtype holds exactly: float32
(the faster kernel) with b = 24 - bits(largest bin) when that leaves b >= 16 (bins of
fewer than 256 rows, as continuous latents give), else float64 with b = 30 (fewer than
2**22 training rows); the cumulative sums over bins are taken in float64, in units of
2**-b. The 0/1 node masks of several trees share one count column as base-2**k digits
(k bits hold the largest bin's count). On CPU the
targets are shared out to worker threads (``workers``), whole targets each: two
single-threaded fits of half the trees each beat one fit whose small element-wise steps
are split over two threads. The dense operand is stored in blocks of at most about 48
trees, each a contiguous (samples, block) matrix; it, the products, the routing and the
split-search temporaries live in buffers reused across levels and stages, and the views
and index tensors a stage needs are made once per fit (:class:`_Histograms`,
:class:`_Workspace`): a stage is some 500 small torch calls, so Python overhead and
page faults of fresh temporaries would otherwise cost as much as the arithmetic. Each
worker's buffers (tens of megabytes) exceed the shared cache, so the arithmetic is
mostly memory traffic, and the two workers slow each other by competing for it: fewer
and smaller buffers matter as much as fewer operations. Hence the node masks are
written straight into the product operands and multiplied by the gradients in place,
histograms are copied into the cumulative-sum buffers and summed there, count digits
are packed by one small matrix product, and buffers serve several steps in turn.
As the histogram sums are exact, results do not depend on the device, thread count or
summation order, and two features that induce the same partition of a node have bitwise
equal gains: a tie. Ties are broken pseudo-randomly (scikit-learn draws a random feature
order per node) by a hash of the seed, the stage, the node, and the *content* of the
feature column and of the tree's target, so permuting the latents or relabelling a
factor's classes changes no choice.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from types import SimpleNamespace

import torch

__all__ = ["GBTFit", "fit_gbt_classifiers", "bin_features", "MAX_TRAIN_ROWS"]

# Histogram sums stay exact in float64 below this many training rows (see the docstring).
MAX_TRAIN_ROWS = 2 ** 22 - 1


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
    # One sort of every column serves the distinct values and the quantile edges.
    sorted_x = torch.sort(x, dim=0).values
    edges, active = [], []
    for j in range(d):
        column = sorted_x[:, j]
        values = torch.unique_consecutive(column)
        if values.numel() < 2:
            continue
        edges.append(values if values.numel() <= max_bins
                     else _gap_quantile_edges(column, max_bins))
        active.append(j)
    if not active:
        return BinnedFeatures(bins=torch.zeros(0, n, dtype=torch.int64, device=device),
                              active=torch.zeros(0, dtype=torch.int64, device=device),
                              bin_min=torch.full((0, 1), math.inf, dtype=torch.float64,
                                                 device=device),
                              bin_max=torch.full((0, 1), -math.inf, dtype=torch.float64,
                                                 device=device), n_bins=1)
    # All columns at once: edges padded with +inf (values are finite, so never above).
    padded = torch.full((len(edges), max(e.numel() for e in edges)), math.inf,
                        dtype=torch.float64, device=device)
    for k, e in enumerate(edges):
        padded[k, :e.numel()] = e
    active = torch.as_tensor(active, dtype=torch.int64, device=device)
    columns = x.T[active].contiguous()                              # (n_active, n)
    bins = torch.searchsorted(padded, columns, side="left")
    n_bins = int(bins.max()) + 1
    flat = (bins + n_bins * torch.arange(len(edges), device=device)[:, None]).view(-1)
    low = torch.full((len(edges) * n_bins,), math.inf, dtype=torch.float64, device=device)
    high = torch.full((len(edges) * n_bins,), -math.inf, dtype=torch.float64, device=device)
    low.scatter_reduce_(0, flat, columns.view(-1), reduce="amin")
    high.scatter_reduce_(0, flat, columns.view(-1), reduce="amax")
    return BinnedFeatures(bins=bins, active=active, bin_min=low.view(len(edges), n_bins),
                          bin_max=high.view(len(edges), n_bins), n_bins=n_bins)


def _gap_quantile_edges(values: torch.Tensor, max_bins: int) -> torch.Tensor:
    """Bin edges of a column (``values``, sorted) with more than ``max_bins`` distinct values.

    The sorted values are cut into ``max_bins`` runs of equal length; each cut is moved to
    the widest gap between consecutive values within half a run of it, and the edge is
    that gap's midpoint. Equal-mass bins like plain quantiles, but a gap in the data (the
    boundary between two clusters of a code-like latent) becomes a bin edge whenever it
    is the widest gap nearby, so the split that scikit-learn finds there is available.
    """
    n = values.numel()
    gaps = values[1:] - values[:-1]                                  # (n - 1,)
    cuts = torch.round(torch.arange(1, max_bins, dtype=torch.float64, device=values.device)
                       * (n / max_bins)).long() - 1                  # position left of cut
    half = max(1, n // (2 * max_bins))
    window = (cuts[:, None] + torch.arange(-half + 1, half + 1, device=values.device)[None])
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
    cols = cols[order]
    if d * n < 2 ** 31:  # int32 indices: MKL's own index type, no conversion per product
        crow, cols = crow.to(torch.int32), cols.to(torch.int32)
    with warnings.catch_warnings():  # torch's one-time "CSR support is in beta" notice
        warnings.filterwarnings("ignore", message=".*[Ss]parse.*")
        return torch.sparse_csr_tensor(crow, cols,
                                       torch.ones(d * n, dtype=dtype, device=device),
                                       (d * binned.n_bins, n), check_invariants=False)


def _bin_counts(binned: BinnedFeatures) -> torch.Tensor:
    """Training rows in each bin, shape (n_active, n_bins), int64."""
    d = binned.bins.shape[0]
    offsets = binned.n_bins * torch.arange(d, device=binned.bins.device)[:, None]
    return torch.bincount((binned.bins + offsets).reshape(-1),
                          minlength=d * binned.n_bins).view(d, binned.n_bins)


def _gradient_bits(largest_bin: int, dtype: torch.dtype) -> int:
    """Fractional bits of the rounded gradients: a bin's sum of at most ``largest_bin``
    values of magnitude <= 2**bits stays an integer below 2**24 (float32) or, with fewer
    than 2**22 rows, below 2**52 (float64; 30 bits)."""
    if dtype == torch.float64:
        return 30
    return min(30, 24 - int(largest_bin).bit_length())


def _histogram_dtype(largest_bin: int) -> torch.dtype:
    """float32 (the faster product) while its exact sums leave the gradients at least 16
    fractional bits (bins of fewer than 256 rows: continuous latents), else float64."""
    return torch.float32 if _gradient_bits(largest_bin, torch.float32) >= 16 else torch.float64


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


def _softmax_groups(slices: list[tuple[int, int]]) -> list[tuple[int, int, int]]:
    """Runs of adjacent targets with equally many trees: (first tree, end, trees each).

    ``k == 1`` marks binomial targets (one tree, sigmoid); a run of multinomial targets is
    one softmax over a (rows, targets, k) view.
    """
    groups = []
    for a, b in slices:
        if groups and groups[-1][2] == b - a and groups[-1][1] == a:
            groups[-1] = (groups[-1][0], b, b - a)
        else:
            groups.append((a, b, b - a))
    return groups


class _Workspace:
    """Named flat buffers reused across levels and stages.

    Fresh multi-megabyte temporaries are page-faulted in on every allocation on CPU (the
    allocator returns them to the system), which costs as much as the arithmetic.
    """

    def __init__(self, device):
        self.device = device
        self._buffers = {}
        self._views = {}

    def reserve(self, name: str, numel: int, dtype: torch.dtype) -> None:
        """Allocate ``name`` for its largest use before any view of it is taken: a buffer
        that has to grow later is replaced, and views taken before no longer share it."""
        buffer = self._buffers.get(name)
        if buffer is None or buffer.numel() < numel or buffer.dtype != dtype:
            self._buffers[name] = torch.empty(numel, dtype=dtype, device=self.device)

    def get(self, name: str, shape, dtype: torch.dtype) -> torch.Tensor:
        # The same view object for the same request: a stage asks for the same few
        # hundred views every time, and making a view costs as much as a small kernel.
        key = (name, tuple(shape), dtype)
        view = self._views.get(key)
        if view is not None:
            return view
        numel = math.prod(shape)
        self.reserve(name, numel, dtype)
        view = self._views[key] = self._buffers[name][:numel].view(shape)
        return view

    def cached(self, key, make):
        """``make()`` once per ``key``: constant index tensors and views of the buffers."""
        value = self._views.get(key)
        if value is None:
            value = self._views[key] = make()
        return value


class _Histograms:
    """Exact gradient and count histograms per (feature * bin, node, tree), on reused buffers.

    The rounded gradients (n, T) (integers, see :func:`fit_gbt_classifiers`) live in a
    block-major buffer of the one-hot matrix's dtype, float32 or float64: blocks of
    ``block`` trees, each a contiguous (n, block) matrix, so that every sparse product
    has a cache-sized contiguous dense operand and a preallocated output. Trees are
    padded to
    ``n_trees_pad`` (a multiple of ``block`` and ``pack``) with zero gradients and masks.
    The caller writes a level's 0/1 node masks into :meth:`masks` (the product operands'
    buffer: no separate mask array); a call then makes the count histograms from them
    (the masks of ``pack`` trees share one column as base-2**count_bits digits: a bin
    holds at most 2**count_bits - 1 rows, so the digit sums are exact and do not carry),
    multiplies them by the gradients in place, and makes the gradient histograms.
    """

    def __init__(self, onehot, n_trees, pack, count_bits, max_nodes, workspace,
                 chunk_columns=48):
        self.workspace = workspace
        rows, n = onehot.shape
        device = onehot.device
        n_blocks = max(1, -(-n_trees // chunk_columns))
        block = -(-n_trees // n_blocks)
        block = -(-block // pack) * pack
        self.onehot = onehot
        self.n_trees = n_trees
        self.pack, self.count_bits, self.n_blocks, self.block = pack, count_bits, n_blocks, block
        dtype = onehot.dtype
        # Packed count sums are integers below 2**24 (float32) or 2**53 (float64).
        self.digit_dtype = torch.int32 if dtype == torch.float32 else torch.int64
        self.digit_shifts = count_bits * torch.arange(pack, device=device,
                                                      dtype=self.digit_dtype)
        self.n_trees_pad = n_blocks * block
        self._grad = torch.zeros(n_blocks, n, block, dtype=dtype, device=device)
        # Zeros: padded trees' columns are never written and must stay zero masks.
        self._dense = torch.zeros(max_nodes, n_blocks, n, block, dtype=dtype, device=device)
        columns = block // pack                                      # packed, per block
        self._counts = torch.empty(max_nodes, n_blocks, n, columns, dtype=dtype, device=device)
        self._sums = torch.empty(max_nodes, n_blocks, rows, block, dtype=dtype,
                                 device=device)
        self._count_sums = torch.empty(max_nodes, n_blocks, rows, columns, dtype=dtype,
                                       device=device)
        self._packed = torch.empty(self._count_sums.numel(), dtype=self.digit_dtype,
                                   device=device)
        self._digits = torch.empty(self._packed.numel() * pack, dtype=self.digit_dtype,
                                   device=device)
        # Packing ``pack`` adjacent masks into base-2**count_bits digits is one small
        # matrix product (a third of the time of strided adds), exact unless float32
        # products may run in reduced precision (TF32, bfloat16).
        self.digit_weights = (2.0 ** (count_bits * torch.arange(pack, device=device))).to(
            dtype).view(pack, 1)
        self.pack_by_product = (dtype == torch.float64
                                or torch.get_float32_matmul_precision() == "highest")

    def set_gradients(self, q: torch.Tensor) -> None:
        """Store the rounded gradients q (n, T) in the blocks; padded trees stay zero."""
        for s in range(self.n_blocks):
            start = s * self.block
            width = min(self.block, self.n_trees - start)
            self._grad[s, :, :width].copy_(q[:, start:start + width])

    def masks(self, nodes: int) -> list[list[tuple[int, torch.Tensor]]]:
        """Per node, per block: (first tree, (n, trees of the block) view) into which the
        caller writes that node's 0/1 row masks before calling with ``nodes``."""
        return self.workspace.cached(("masks", nodes), lambda: [
            [(s * self.block, self._dense[m, s, :, :min(self.block,
                                                        self.n_trees - s * self.block)])
             for s in range(self.n_blocks)] for m in range(nodes)])

    def __call__(self, nodes: int | None, out_g: torch.Tensor,
                 out_c: torch.Tensor | None = None) -> None:
        """Sums over the rows of each node: ``nodes`` nodes whose masks were written into
        :meth:`masks`, or ``None`` for the root (every row; no counts). Writes the
        gradient sums, in units of 2**-bits, into ``out_g`` (R, nodes, T) float64 and the
        counts into ``out_c`` (R, nodes, T) float32 (not for the root): the caller's
        cumulative-sum buffers, summed in place there (no histogram arrays of their own).
        """
        root = nodes is None
        plan = self.workspace.cached(
            ("histograms", root, nodes, out_g.data_ptr()),
            lambda: self._plan(root, 1 if root else nodes, out_g, out_c))
        onehot = self.onehot
        if not root:
            if self.pack_by_product:
                torch.mm(plan.masks_by_pack, self.digit_weights, out=plan.counts_column)
            else:
                grouped = plan.grouped_masks
                plan.counts.copy_(grouped[..., 0])
                for i in range(1, self.pack):
                    plan.counts.add_(grouped[..., i], alpha=2.0 ** (self.count_bits * i))
            for operand, sums in plan.count_products:
                torch.mm(onehot, operand, out=sums)
            plan.operands.mul_(self._grad)                           # masked gradients
        for operand, sums in plan.products:
            torch.mm(onehot, operand, out=sums)
        # (nodes, S, R, W) -> (R, nodes, T) in float64, still in integer units: scaling
        # by a power of two would change no split and, after normalisation, no importance.
        for source, target in plan.g_copies:
            target.copy_(source)
        if root:
            return
        plan.packed.copy_(plan.count_sums_packed)
        # Unpacked in integers: CUDA has no bitwise kernels that write float outputs.
        torch.bitwise_right_shift(plan.packed, self.digit_shifts, out=plan.digits)
        plan.digits.bitwise_and_(2 ** self.count_bits - 1)
        out_c.copy_(plan.digits_trees)

    def _plan(self, root: bool, nodes: int, out_g, out_c) -> SimpleNamespace:
        """The views one call with ``nodes`` nodes works on (made once, then reused)."""
        rows, n = self.onehot.shape
        n_blocks, block = self.n_blocks, self.block
        plan = SimpleNamespace()
        operand = self._grad[None] if root else self._dense[:nodes]
        sums = self._sums[:nodes]
        plan.products = [(operand[m, s], sums[m, s])
                         for m in range(nodes) for s in range(n_blocks)]
        plan.g_copies = []
        for s in range(n_blocks):
            start = s * block
            width = min(block, self.n_trees - start)
            plan.g_copies.append((sums[:, s, :, :width].permute(1, 0, 2),
                                  out_g[:, :, start:start + width]))
        if root:
            return plan
        plan.operands = operand
        columns = block // self.pack
        # The masks as (nodes, blocks, n, packed columns, pack) and as rows of ``pack``.
        plan.grouped_masks = operand.view(nodes, n_blocks, n, columns, self.pack)
        plan.masks_by_pack = operand.view(-1, self.pack)
        plan.counts = self._counts[:nodes]                          # (nodes, S, n, columns)
        plan.counts_column = plan.counts.view(-1, 1)
        count_sums = self._count_sums[:nodes]                       # (nodes, S, R, columns)
        plan.count_products = [(plan.counts[m, s], count_sums[m, s])
                               for m in range(nodes) for s in range(n_blocks)]
        plan.count_sums_packed = count_sums.permute(2, 0, 1, 3)[..., None]
        packed_shape = (rows, nodes, n_blocks, columns, 1)
        plan.packed = self._packed[:math.prod(packed_shape)].view(packed_shape)
        plan.digits = self._digits[:plan.packed.numel() * self.pack].view(
            rows, nodes, n_blocks, columns, self.pack)
        plan.digits_trees = plan.digits.view(rows, nodes, self.n_trees_pad)[:, :, :self.n_trees]
        return plan


def _best_splits(cum_g, cum_c, binned, importance, priority, tree_index, workspace):
    """Best split of every (node, tree) from cumulative histograms (d, nb, nodes, T) of the
    gradients (float64, in any fixed power-of-two unit) and counts (float32, exact); adds
    the importances (in the square of that unit: only their normalised values are used).

    Returns the feature (nodes, T), the value threshold (nodes, T; +inf: no split) and the
    bin threshold (nodes, T; rows with a larger bin go right).
    """
    d, nb, n_nodes, n_trees = cum_g.shape
    device = cum_g.device
    f64 = torch.float64
    # For "bin <= b goes left" the squared-error decrease is n * dev^2 / (n_left * n_right),
    # dev = sum_left - n_left * mean: no cancellation, so it is ranked in float32 (bitwise
    # equal inputs, e.g. two features inducing the same partition, give equal scores).
    tot_c = cum_c[:, -1:]
    mean = cum_g[:, -1:] / tot_c.to(f64).clamp(min=1)
    dev = workspace.get("dev", cum_g.shape, f64)                     # (d, nb, nodes, T)
    if n_nodes == 1:  # the root: its counts, hence these, are the same at every stage
        counts64, denom = workspace.cached(
            ("root counts", cum_c.data_ptr()),
            lambda: (cum_c.to(f64), (cum_c[:, -1:] - cum_c).mul_(cum_c).clamp_(min=0.25)))
        torch.addcmul(cum_g, counts64, mean, value=-1, out=dev)
    else:
        dev.copy_(cum_c)  # the counts in float64 first: mixed-dtype addcmul is ~4x slower
        torch.addcmul(cum_g, dev, mean, value=-1, out=dev)
        denom = workspace.get("denom", cum_c.shape, torch.float32)  # tot_c broadcasts
        torch.sub(tot_c, cum_c, out=denom).mul_(cum_c).clamp_(min=0.25)
    score = workspace.get("score", cum_g.shape, torch.float32)
    score.copy_(dev).square_().div_(denom)
    # Maxima without indices (~10x faster than max(dim) with them); the best bin is then
    # looked up for the chosen feature only.
    best_score = score.amax(1)                                       # (d, nodes, T)
    feat = torch.where(best_score == best_score.amax(0), priority, -1).argmax(0)  # (nodes, T)
    # Scores and cumulative counts of the chosen feature, (nodes, T, nb).
    const = workspace.cached(("split constants", d, nb, n_nodes, n_trees),
                             lambda: _split_constants(d, nb, n_nodes, tree_index))
    at = torch.add(const.cells, feat[:, :, None], alpha=nb * n_nodes * n_trees)
    at = at.view(-1)  # index_select on the flat views: as take, ~2x faster
    b = score.view(-1).index_select(0, at).view(n_nodes, n_trees, nb).argmax(
        2, keepdim=True)                                             # first best: lowest bin
    cc = cum_c.view(-1).index_select(0, at).view(n_nodes, n_trees, nb)
    n_left = cc.gather(2, b)                                         # (nodes, T, 1)
    n_node = cc[:, :, -1:]
    split = (n_left >= 1) & (n_left < n_node)
    # Last non-empty bin on the left, first non-empty bin on the right (in the node).
    b_left = torch.searchsorted(cc, n_left, side="left")
    b_right = torch.searchsorted(cc, n_left, side="right").clamp_(max=nb - 1)
    n_left, n_node = n_left.to(f64), n_node.to(f64)
    dev_best = dev[feat, b.squeeze(2), const.m_index, const.t_index].unsqueeze(2)
    gain = torch.where(split, n_node * dev_best.square()
                       / (n_left * (n_node - n_left)).clamp_(min=1), 0.0).squeeze(2)
    split, b_left, b_right = split.squeeze(2), b_left.squeeze(2), b_right.squeeze(2)
    # Accumulated tree by tree, node by node (a fixed order of the float64 sums).
    importance.index_put_((const.t_index_by_tree, feat.T.contiguous()), gain.T.contiguous(),
                          accumulate=True)
    lo = binned.bin_max[feat, b_left]
    hi = binned.bin_min[feat, b_right]
    threshold = lo / 2 + hi / 2                                      # scikit-learn's midpoint
    threshold = torch.where(threshold == hi, lo, threshold)
    threshold = torch.where(split, threshold, math.inf)
    bin_threshold = torch.where(split, b_left, nb - 1)
    return feat, threshold, bin_threshold


def _split_constants(d, nb, n_nodes, tree_index) -> SimpleNamespace:
    """Index tensors of :func:`_best_splits` that depend on the level's shape only."""
    device, n_trees = tree_index.device, tree_index.numel()
    cell = (torch.arange(n_nodes, device=device)[:, None] * n_trees
            + torch.arange(n_trees, device=device))                  # (nodes, T)
    t_index = tree_index[None, :].expand(n_nodes, -1)
    return SimpleNamespace(
        # Flat offsets of (bin, node, tree) in a (d, nb, nodes, T) tensor, (nodes, T, nb).
        cells=cell[:, :, None] + torch.arange(nb, device=device) * (n_nodes * n_trees),
        m_index=torch.arange(n_nodes, device=device)[:, None].expand(-1, n_trees),
        t_index=t_index, t_index_by_tree=t_index.T.contiguous())


def _level_views(level, d, nb, n_trees, tree_ids, node, histograms,
                 workspace) -> SimpleNamespace:
    """Buffers and views of one level below the root (made once per fit): where its
    left-child masks go, and the cumulative histograms (d, nb, nodes, T) with their left
    and right children's halves."""
    n_nodes, half = 2 ** level, 2 ** (level - 1)
    device = tree_ids.device
    cum_g = workspace.get(f"cum_g{level % 2}", (d, nb, half, 2, n_trees), torch.float64)
    cum_c = workspace.get(f"cum_c{level % 2}", (d, nb, half, 2, n_trees), torch.float32)
    # Global ids of the left children (even local ids) of each parent, (half, T). One
    # comparison per parent: broadcasting over parents is ~2x slower than these.
    left_ids = ((tree_ids * n_nodes)[None, :]
                + 2 * torch.arange(half, device=device, dtype=torch.int32)[:, None])
    return SimpleNamespace(
        parents=half,
        # (node ids, left-child ids, mask) of each parent and block of trees.
        left_masks=[(node[:, start:start + mask.shape[1]],
                     left_ids[j, start:start + mask.shape[1]], mask)
                    for j, blocks in enumerate(histograms.masks(half))
                    for start, mask in blocks],
        # The left children's histograms by (feature * bin) row, summed in place.
        hist_g_left=cum_g[:, :, :, 0].view(d * nb, half, n_trees),
        hist_c_left=cum_c[:, :, :, 0].view(d * nb, half, n_trees),
        cum_g_left=cum_g[:, :, :, 0], cum_g_right=cum_g[:, :, :, 1],
        cum_c_left=cum_c[:, :, :, 0], cum_c_right=cum_c[:, :, :, 1],
        cum_g=cum_g.view(d, nb, n_nodes, n_trees), cum_c=cum_c.view(d, nb, n_nodes, n_trees))


# Workspace names of buffers that serve several purposes per stage: fewer live
# multi-megabyte buffers, less cache traffic when two workers share the caches.
# Probabilities, then rounded gradients, then the leaf steps of the training rows, then
# of the test rows:
_SCRATCH_F64 = "scratch_f64"
# Split feature of each row (training, then test rows), then the leaf of each row:
_TRAIN_FEATURES = "train_features"
# Routing temporaries: the test rows reuse the training rows' buffers and, for their
# float32 values and thresholds, the split search's (all free while routing).
_TRAIN_ROUTE = (_TRAIN_FEATURES, "train_threshold", "train_value", "right")
_TEST_ROUTE = (_TRAIN_FEATURES, "denom", "score", "right")


def _route(node, values, feat, threshold, level, workspace, names, start):
    """Send rows one level down: ``node`` (n, T) int32 global node ids, updated in place
    to the child's id (2 * node + go right; at level 0 the ids are ``start``, the tree
    ids, and ``node`` is only written). A row goes right when its value of the node's
    feature exceeds the node's threshold; ``values`` (n, d) are training bins or test
    values, ``feat`` and ``threshold`` (T * nodes,) tables per global node id. All
    temporaries live in ``workspace`` buffers (fresh multi-megabyte tensors are
    page-faulted in), ``names`` (features, threshold, value, right).
    """
    n, n_trees = node.shape
    if level == 0:  # the node id is the tree id (``start``)
        feat_of_row, threshold_of_row = feat.expand(n, n_trees), threshold
    else:
        ids = node.view(-1)
        feat_of_row = torch.index_select(
            feat, 0, ids, out=workspace.get(names[0], (n * n_trees,), feat.dtype))
        threshold_of_row = torch.index_select(
            threshold, 0, ids, out=workspace.get(names[1], (n * n_trees,), threshold.dtype))
        feat_of_row = feat_of_row.view(n, n_trees)
        threshold_of_row = threshold_of_row.view(n, n_trees)
    value = torch.gather(values, 1, feat_of_row,
                         out=workspace.get(names[2], (n, n_trees), values.dtype))
    # int32 like the node ids: a bool here would be cast to a fresh tensor in the add.
    right = torch.gt(value, threshold_of_row,
                     out=workspace.get(names[3], (n, n_trees), torch.int32))
    torch.add(right, start if level == 0 else node, alpha=2, out=node)


def _floor_float32(x: torch.Tensor) -> torch.Tensor:
    """The largest float32 <= each float64 value: for a float32 v, v > x iff v > floor."""
    down = x.to(torch.float32)
    return torch.where(down.to(x.dtype) > x, torch.nextafter(down, down.new_tensor(-math.inf)),
                       down)


def _tie_priorities(seed_key, stages, max_depth, target_key, feature_key):
    """Tie-breaking priority of each feature at each (node, tree) of every level of the
    given ``stages``: a hash of the seed, the stage, the level, the node, and the tree's
    target and feature contents. Returns a (d, stages, levels, T, 2 ** (levels - 1))
    int64 table; level ``l`` uses the first 2 ** l nodes."""
    device = target_key.device
    n_nodes = 2 ** torch.arange(max_depth, device=device)                   # per level
    by_level = _mix(_mix(seed_key, stages[:, None] * 64 + n_nodes)[:, :, None],
                    target_key)                                              # (S, L, T)
    by_node = by_level[..., None] + torch.arange(2 ** (max_depth - 1), device=device)
    return _mix(by_node, feature_key[:, None, None, None, None])


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
                        progress: bool = False, workers: int | None = None) -> GBTFit:
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
    workers : int, optional
        CPU threads that fit disjoint groups of targets side by side, sharing the torch
        threads (default: ``torch.get_num_threads()`` on CPU, 1 on other devices). The
        targets' classifiers are independent, so the result is the same for any value;
        on CPU two single-threaded fits of half the trees each are faster than one fit
        whose small element-wise operations are split over two threads.

    Returns
    -------
    GBTFit
    """
    fit_options = dict(n_estimators=n_estimators, learning_rate=learning_rate,
                       max_depth=max_depth, seed=seed)
    if workers is None:
        workers = torch.get_num_threads() if x_train.device.type == "cpu" else 1
    n_targets = y_train.shape[1]
    n_classes = [int(torch.unique(y_train[:, f]).numel()) for f in range(n_targets)]
    for f, k in enumerate(n_classes):
        if k < 2:
            raise ValueError(f"target column {f} has a single class in the training rows")
    trees = [1 if k == 2 else k for k in n_classes]
    if x_train.shape[0] > MAX_TRAIN_ROWS:
        raise ValueError(f"too many training rows for exact float64 histograms "
                         f"({x_train.shape[0]}, at most {MAX_TRAIN_ROWS})")
    # Binning and the one-hot bin matrix depend on the features only: built once, here
    # on the calling thread, and shared by the workers.
    x_train = x_train.to(torch.float32).to(torch.float64)  # scikit-learn's trees: float32
    binned = bin_features(x_train, max_bins)
    onehot = None
    if binned.bins.shape[0]:
        onehot = _bin_matrix(binned, _histogram_dtype(int(_bin_counts(binned).max())))
    fit_options.update(binned=binned, onehot=onehot)
    groups = _balanced_groups(trees, max(1, min(int(workers), n_targets)))
    if len(groups) == 1:
        return _fit_targets(x_train, y_train, x_test, progress=progress, **fit_options)

    from concurrent.futures import ThreadPoolExecutor

    threads = torch.get_num_threads()
    largest = max(range(len(groups)), key=lambda i: sum(trees[f] for f in groups[i]))

    def fit_group(i: int) -> GBTFit:
        torch.set_num_threads(max(1, threads // len(groups)))
        return _fit_targets(x_train, y_train[:, groups[i]], x_test,
                            progress=progress and i == largest, **fit_options)

    try:
        with ThreadPoolExecutor(max_workers=len(groups)) as pool:
            parts = list(pool.map(fit_group, range(len(groups))))
    finally:
        torch.set_num_threads(threads)  # set_num_threads in a worker also sets the default
    importance = x_train.new_zeros((x_train.shape[1], n_targets), dtype=torch.float64)
    predict_train = y_train.new_zeros(y_train.shape)
    predict_test = y_train.new_zeros((x_test.shape[0], n_targets))
    for columns, part in zip(groups, parts):
        importance[:, columns] = part.importance
        predict_train[:, columns] = part.predict_train
        predict_test[:, columns] = part.predict_test
    return GBTFit(importance=importance, predict_train=predict_train,
                  predict_test=predict_test)


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


def _fit_targets(x_train: torch.Tensor, y_train: torch.Tensor, x_test: torch.Tensor, *,
                 n_estimators: int, learning_rate: float, max_depth: int, seed: int,
                 progress: bool, binned: BinnedFeatures,
                 onehot: torch.Tensor | None) -> GBTFit:
    """:func:`fit_gbt_classifiers` of all targets in one batched fit on the current thread,
    on the training features' ``binned`` columns and their one-hot matrix ``onehot``."""
    from tqdm.auto import tqdm

    device = x_train.device
    f64 = torch.float64
    # scikit-learn's trees see float32 features (x_train is converted by the caller).
    x_test = x_test.to(device=device, dtype=torch.float32)
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
    # _content_key of the 0/1 targets (and of 1 - y for binomial targets, whose single
    # tree does not depend on which class is "1"), as an exact float64 product.
    weights = _row_weights(n, device)
    ones_weight = (y @ weights.to(f64)).long()                       # (T,)
    target_key = torch.where(
        binomial, torch.minimum(ones_weight + n, weights.sum() - ones_weight + n),
        ones_weight + n) & _MASK31
    del y
    slices = []                                                      # trees of each target
    start = 0
    for k in n_cls:
        slices.append((start, start + (1 if k == 2 else k)))
        start = slices[-1][1]
    # Positions (row * T + tree) where the one-vs-rest target is 1: the gradient y - p is
    # -p plus one there (bitwise the same), without an (n, T) target array per stage.
    rows = torch.arange(n, device=device) * n_trees
    positive = torch.cat([
        rows[codes[:, f] == 1] + a if n_cls[f] == 2 else rows + a + codes[:, f]
        for f, (a, _) in enumerate(slices)])

    d, nb = binned.bins.shape[0], binned.n_bins
    workspace = _Workspace(device)  # buffers reused across levels and stages
    importance = torch.zeros(n_trees, max(d, 1), dtype=f64, device=device)
    if d:
        bins = binned.bins.T.to(torch.uint8 if nb <= 256 else torch.int64).contiguous()
        # Test values are float32 (as scikit-learn's trees see them), so comparing them
        # in float32 with thresholds rounded down to float32 decides exactly as float64.
        x_test_active = x_test[:, binned.active].contiguous()
        # Histogram sums are exact: the negative gradients (|g| <= 1) are rounded to
        # integer multiples of 2**-bits, with bits chosen so that no bin's sum leaves the
        # integers the histogram dtype holds exactly (see _histogram_dtype); the
        # cumulative sums over bins are then taken in float64, also exactly.
        dtype = onehot.dtype
        counts = _bin_counts(binned)
        largest_bin = int(counts.max())
        bits = _gradient_bits(largest_bin, dtype)
        scale = 2.0 ** bits
        cum_c0 = counts.to(torch.float32).view(d, nb, 1, 1).cumsum(1).expand(
            d, nb, 1, n_trees).contiguous()                          # root counts
        # Count histograms: the 0/1 node masks of ``pack`` trees share one column as
        # base-2**count_bits digits (a bin holds at most ``largest_bin`` rows).
        count_bits = max(1, int(largest_bin).bit_length())
        mantissa = 24 if dtype == torch.float32 else 53
        pack = max(1, min(8, mantissa // count_bits))  # sums < 2**mantissa: exact
        half_max = max(1, 2 ** (max_depth - 2))
        histograms = _Histograms(onehot, n_trees, pack, count_bits, half_max,
                                 workspace)
        # Tie-breaking keys from content, not position: permuting the features or
        # relabelling the classes leaves every choice unchanged.
        feature_key = _content_key(binned.bins, _row_weights(n, device))
        seed_key = _mix(torch.tensor(int(seed) & _MASK31, device=device), 0x5EED)
    tree_index = torch.arange(n_trees, device=device)
    tree_ids = tree_index.to(torch.int32)
    groups = _softmax_groups(slices)
    raw_groups = [raw[:, a:b].reshape(n, -1, k).contiguous() for a, b, k in groups]
    g = torch.empty_like(raw)
    h = torch.empty_like(raw)
    one = torch.ones((), dtype=f64, device=device)
    ones_at_positive = torch.ones(positive.numel(), dtype=f64, device=device)
    step = workspace.get(_SCRATCH_F64, (n * n_trees,), f64)
    # Per softmax group: k, raw scores, probabilities, and its views of g and h. The
    # probabilities are contiguous pieces of the scratch buffer: dead once g and h are
    # made, before the scratch takes the rounded gradients.
    softmax_groups = [(k, raw_k, step[n * a:n * b].view(raw_k.shape), g[:, a:b].view(n, -1, k),
                       h[:, a:b].view(n, -1, k)) for (a, b, k), raw_k in zip(groups, raw_groups)]
    n_slots = n_trees * 2 ** max_depth
    leaf_of_row = workspace.get(_TRAIN_FEATURES, (n * n_trees,), torch.int64)
    sum_g = workspace.get("sum_g", (n_slots,), f64)
    sum_h = workspace.get("sum_h", (n_slots,), f64)
    step_groups = [step.view(n, n_trees)[:, a:b].view(n, -1, k) for a, b, k in groups]
    step_test = workspace.get(_SCRATCH_F64, (n_test * n_trees,), f64)  # after step's use
    # Global node ids t * n_nodes + m: children of node k are 2k and 2k + 1.
    node = workspace.get("node", (n, n_trees), torch.int32)
    node_test = workspace.get("node_test", (n_test, n_trees), torch.int32)
    if d:  # buffers used at several sizes, reserved at their largest (see _Workspace)
        cells = d * nb * 2 ** (max_depth - 1) * n_trees              # the deepest level
        for name, dtype_ in (("cum_g0", f64), ("cum_g1", f64), ("dev", f64),
                             ("cum_c0", torch.float32), ("cum_c1", torch.float32),
                             ("score", torch.float32), ("denom", torch.float32)):
            workspace.reserve(name, max(cells, n_test * n_trees), dtype_)
    levels = [_level_views(level, d, nb, n_trees, tree_ids, node, histograms, workspace)
              for level in range(1, max_depth)] if d else []
    stage_chunk = 25  # tie priorities are hashed for this many stages at a time

    for stage in tqdm(range(n_estimators), desc="DCI gradient boosting", unit="stage",
                      disable=None if progress else True, leave=False):
        # Probabilities: sigmoid (binomial) or softmax over each target's trees.
        # g: negative gradient y - p; h = p (1 - p).
        for k, raw_k, p, g_k, h_k in softmax_groups:
            if k == 1:
                torch.sigmoid(raw_k, out=p)
            else:  # softmax over the short last axis, written out: ~1.7x torch.softmax
                torch.sub(raw_k, raw_k.amax(dim=2, keepdim=True), out=p).exp_()
                p.div_(p.sum(dim=2, keepdim=True))
            torch.neg(p, out=g_k)
            torch.sub(one, p, out=h_k).mul_(p)                        # p (1 - p)
        g.view(-1).scatter_add_(0, positive, ones_at_positive)       # g = y - p
        if d:
            # The rounding scratch is the leaf step's buffer, free until the leaves.
            q = step.view(n, n_trees)
            histograms.set_gradients(torch.mul(g, scale, out=q).round_())
            if stage % stage_chunk == 0:
                stages = torch.arange(stage, min(stage + stage_chunk, n_estimators),
                                      device=device)
                priorities = _tie_priorities(seed_key, stages, max_depth, target_key,
                                             feature_key)
        for level in range(max_depth if d else 0):
            n_nodes = 2 ** level
            # Cumulative histograms over the bins, (d, nb, nodes, T): exact sums, so the
            # right child's is the parent's minus the left child's.
            if level == 0:
                cum_g = workspace.get("cum_g0", (d, nb, 1, n_trees), f64)
                histograms(None, cum_g.view(d * nb, 1, n_trees))
                cum_g.cumsum_(1)
                cum_c = cum_c0
            else:
                lv = levels[level - 1]
                for node_ids, left_id, mask in lv.left_masks:  # left children
                    torch.eq(node_ids, left_id, out=mask)
                histograms(lv.parents, lv.hist_g_left, lv.hist_c_left)
                lv.cum_g_left.cumsum_(1)
                lv.cum_c_left.cumsum_(1)
                torch.sub(cum_g, lv.cum_g_left, out=lv.cum_g_right)
                torch.sub(cum_c, lv.cum_c_left, out=lv.cum_c_right)
                cum_g, cum_c = lv.cum_g, lv.cum_c
            priority = priorities[:, stage % stage_chunk, level, :, :n_nodes].transpose(1, 2)
            feat, threshold, bin_threshold = _best_splits(
                cum_g, cum_c, binned, importance, priority, tree_index, workspace)

            # Route: training rows by bin, test rows by value; tables per (tree, node).
            feat = feat.T.reshape(-1)
            _route(node, bins, feat, bin_threshold.T.reshape(-1).to(bins.dtype), level,
                   workspace, _TRAIN_ROUTE, tree_ids)
            _route(node_test, x_test_active, feat, _floor_float32(threshold.T.reshape(-1)),
                   level, workspace, _TEST_ROUTE, tree_ids)
        if not d:  # no usable feature: every tree is a single leaf
            torch.mul(tree_ids.expand(n, n_trees), 2 ** max_depth, out=node)
            torch.mul(tree_ids.expand(n_test, n_trees), 2 ** max_depth, out=node_test)

        # Leaf values: one Newton step.
        leaf_of_row.copy_(node.view(-1))  # scatter_add_ takes int64 indices only
        # scatter_add_ rather than index_add_: the same sums, ~2x faster on CPU.
        sum_g.zero_().scatter_add_(0, leaf_of_row, g.view(-1))
        sum_h.zero_().scatter_add_(0, leaf_of_row, h.view(-1))
        value = torch.where(sum_h.abs() < 1e-150, 0.0,
                            newton_leaf * sum_g / torch.where(sum_h == 0, 1.0, sum_h))
        value = value.mul_(learning_rate)
        torch.index_select(value, 0, leaf_of_row, out=step)
        for (k, raw_k, *_), step_k in zip(softmax_groups, step_groups):
            raw_k += step_k
        raw_test += torch.index_select(value, 0, node_test.view(-1), out=step_test).view(
            n_test, n_trees)

    # Importance per target: sum over its trees, normalised.
    imp = torch.zeros(n_targets, n_features, dtype=f64, device=device)
    if d:
        per_target = torch.zeros(n_targets, d, dtype=f64, device=device).index_add_(
            0, tree_target, importance[:, :d])
        imp[:, binned.active] = per_target.abs()
    total = imp.sum(1, keepdim=True)
    imp = torch.where(total > 0, imp / torch.where(total > 0, total, 1.0), 0.0)

    raw = torch.cat([raw_k.view(n, -1) for raw_k in raw_groups], 1)

    def predict(raw_values):
        out = []
        for f, (a, b) in enumerate(slices):
            mine = raw_values[:, a:b]
            index = (mine[:, 0] >= 0).long() if n_cls[f] == 2 else mine.argmax(1)
            out.append(classes[f][index])
        return torch.stack(out, 1)

    return GBTFit(importance=imp.T.contiguous(), predict_train=predict(raw),
                  predict_test=predict(raw_test))
