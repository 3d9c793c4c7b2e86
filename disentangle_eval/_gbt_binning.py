"""Binning of the tree learner's features, and the precision of its exact histograms.

Each feature (latent) is mapped to at most ``max_bins`` bins of its training values; a
tree's split "bin <= b goes left" is then searched over bins instead of values. A
feature with at most ``max_bins`` distinct training values (code indices, discrete
latents) gets one bin per value, so its splits are exactly scikit-learn's; a continuous
feature gets equal-mass bins whose edges sit in the widest local gaps of its values
(:func:`_gap_quantile_edges`), so a split can only fall between bins.

The histograms of a node (sums of the gradients and counts of its rows per bin) are
products of the one-hot bin matrix (:func:`one_hot_bins`) with the rounded gradients,
and are exact: the gradients (``|g| <= 1``) are rounded to integer multiples of
``2**-bits``, with ``bits`` as large as keeps every bin's sum an integer that the
product's dtype holds exactly (:func:`histogram_precision`).
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import torch

__all__ = ["BinnedFeatures", "bin_features", "bin_counts", "one_hot_bins",
           "histogram_precision", "MAX_TRAIN_ROWS"]

# Cumulative counts are float32, exact up to 2**24 rows.
MAX_TRAIN_ROWS = 2 ** 24 - 1


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


def bin_features(x: torch.Tensor, max_bins: int = 256,
                 counts: torch.Tensor | None = None) -> BinnedFeatures:
    """Bin each column of ``x`` (n_samples, n_features) into at most ``max_bins`` bins.

    A column with at most ``max_bins`` distinct values gets one bin per value (exact);
    otherwise equal-mass bins with edges in the widest local gaps
    (:func:`_gap_quantile_edges`). Constant columns are left out (``active``).
    ``counts`` (n_samples,) int64, optional: row ``i`` stands for ``counts[i]`` equal
    rows; the bins are those of the rows repeated.
    """
    n, d = x.shape
    device = x.device
    # One sort of every column serves the distinct values and the quantile edges.
    sorted_x, order = torch.sort(x, dim=0)
    edges, active = [], []
    for j in range(d):
        column = sorted_x[:, j]
        values = torch.unique_consecutive(column)
        if values.numel() < 2:
            continue
        if values.numel() > max_bins and counts is not None:
            column = torch.repeat_interleave(column, counts[order[:, j]])
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


def bin_counts(binned: BinnedFeatures, counts: torch.Tensor | None = None) -> torch.Tensor:
    """Training rows in each bin, shape (n_active, n_bins), int64 (each row counted
    ``counts[i]`` times when given)."""
    d, n = binned.bins.shape
    offsets = binned.n_bins * torch.arange(d, device=binned.bins.device)[:, None]
    flat = (binned.bins + offsets).reshape(-1)
    if counts is None:
        return torch.bincount(flat, minlength=d * binned.n_bins).view(d, binned.n_bins)
    out = torch.zeros(d * binned.n_bins, dtype=torch.int64, device=flat.device)
    return out.index_add_(0, flat, counts.repeat(d)).view(d, binned.n_bins)


def one_hot_bins(binned: BinnedFeatures, dtype: torch.dtype, block_rows: int = 4096,
                 counts: torch.Tensor | None = None) -> list[tuple[int, int, torch.Tensor]]:
    """The one-hot bin matrix of shape (n_active * n_bins, n_samples), in blocks of at most
    ``block_rows`` training rows: a list of (first row, end row, sparse CSR matrix of the
    block's columns). Row ``j * n_bins + b`` of a block's matrix has a one (or the row's
    count, with ``counts``) for each of its training rows whose feature ``j`` is in bin
    ``b``: a product with it sums every row as often as it is counted.

    A product with a block reads only that block's rows of the dense operand, which then
    stay in cache while the one-hot matrix visits them in bin order.
    """
    d, n = binned.bins.shape
    return [(start, min(n, start + block_rows),
             _one_hot(binned.bins[:, start:start + block_rows], binned.n_bins, dtype,
                      None if counts is None else counts[start:start + block_rows]))
            for start in range(0, n, block_rows)]


def _one_hot(bins: torch.Tensor, n_bins: int, dtype: torch.dtype,
             row_counts: torch.Tensor | None = None) -> torch.Tensor:
    """Sparse CSR one-hot matrix (d * n_bins, n) of bins (d, n), ``row_counts`` as values."""
    d, n = bins.shape
    device = bins.device
    rows = (bins + n_bins * torch.arange(d, device=device)[:, None]).reshape(-1)
    cols = torch.arange(n, device=device).repeat(d)
    order = torch.argsort(rows, stable=True)  # stable: samples in order within a bin
    counts = torch.bincount(rows, minlength=d * n_bins)
    crow = torch.zeros(d * n_bins + 1, dtype=torch.int64, device=device)
    crow[1:] = torch.cumsum(counts, 0)
    cols = cols[order]
    values = (torch.ones(d * n, dtype=dtype, device=device) if row_counts is None
              else row_counts.to(dtype)[cols])
    if d * n < 2 ** 31:  # int32 indices: MKL's own index type, no conversion per product
        crow, cols = crow.to(torch.int32), cols.to(torch.int32)
    with warnings.catch_warnings():  # torch's one-time "CSR support is in beta" notice
        warnings.filterwarnings("ignore", message=".*[Ss]parse.*")
        return torch.sparse_csr_tensor(crow, cols, values, (d * n_bins, n),
                                       check_invariants=False)


def histogram_precision(largest_bin: int, n_rows: int) -> tuple[torch.dtype, int]:
    """The histogram dtype and the gradients' fractional bits for ``n_rows`` training rows
    whose largest bin holds ``largest_bin`` rows.

    A bin's sum of at most ``largest_bin`` integers of magnitude <= 2**bits must stay
    below 2**24 (float32) or 2**53 (float64), and so must the sum over all rows (the
    cumulative sums, taken in float64). float32, the faster product, is used while that
    leaves at least 16 bits (bins of fewer than 256 rows, as continuous latents give);
    else float64 with 30 bits (fewer below 2**23 rows).
    """
    bits32 = min(30, 24 - int(largest_bin).bit_length())
    if bits32 >= 16:
        return torch.float32, bits32
    return torch.float64, min(30, 53 - int(n_rows).bit_length())
