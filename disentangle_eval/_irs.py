"""IRS: Interventional Robustness Score (Suter et al., 2019), as disentanglement_lib computes it.

On the training rows, each factor is cut into ``n_bins`` equal-width bins (the factors, not
the latents); latents that are constant there are dropped. For active latent ``i`` and
factor ``j``, with the rows grouped by the factor's bin ``v``:

- ``dev_ij = mean_v quantile_q(|z_i - E[z_i | v]|)`` over the rows of each group
  (numpy's linear quantile, ``q = diff_quantile``);
- ``IRS_ij = 1 - dev_ij / max |z_i - mean z_i|``.

A latent's score is its best factor's ``IRS_ij``; IRS is the average of those scores
weighted by the latents' largest deviations ``max |z_i - mean z_i|``.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
import torch

from ._binned import check_n_bins, histogram_bins
from ._results import MetricResult
from ._split import check_split_options, split_rows
from ._validation import ScoringInputs, check_inputs

__all__ = ["IRSResult", "irs", "irs_from_inputs", "group_quantile_deviation",
           "reference_irs_matrix"]

# Bytes of float64/int64 scratch the per-factor deviations may take at once.
_MEMORY_BUDGET = 256 * 2**20


@dataclass(frozen=True)
class IRSResult(MetricResult):
    """Interventional Robustness Score of one representation.

    Attributes
    ----------
    irs : float
        Average of ``per_latent`` over the active latents, weighted by ``max_deviations``
        (0 when no latent is active, as the reference returns).
    per_latent : numpy.ndarray of shape (n_latents,)
        Each active latent's score (the largest entry of its ``irs_matrix`` row); NaN
        (null in JSON) for inactive latents.
    irs_matrix : numpy.ndarray of shape (n_latents, n_factors)
        Rows = latents, columns = factors: ``1 - dev_ij / max_deviation_i``; NaN rows for
        inactive latents.
    parents : numpy.ndarray of shape (n_latents,), int
        Each active latent's best factor; -1 for inactive latents.
    max_deviations : numpy.ndarray of shape (n_latents,)
        ``max |z_i - mean z_i|`` on the training rows (0 for inactive latents).
    active_latents : numpy.ndarray of shape (n_latents,), bool
        Latents that are not constant on the training rows.
    n_active_latents : int
        Their number (the reference's ``num_active_dims`` sums their values instead).
    diff_quantile : float
    n_bins : int
    split : str
    train_fraction : float
    seed : int
    n_train : int
        Rows the score is computed on (the test rows are not used).
    device : str
    notes : tuple of str
    """

    irs: float
    per_latent: np.ndarray
    irs_matrix: np.ndarray
    parents: np.ndarray
    max_deviations: np.ndarray
    active_latents: np.ndarray
    n_active_latents: int
    diff_quantile: float
    n_bins: int
    split: str
    train_fraction: float
    seed: int
    n_train: int
    device: str
    notes: tuple[str, ...] = field(default=())

    HEADLINE = ("irs",)
    LAYOUTS = {"irs_matrix": "rows = latents, columns = factors"}


def group_quantile_deviation(x: torch.Tensor, groups: torch.Tensor, n_groups: int,
                             q: float) -> torch.Tensor:
    """Mean over groups of the ``q``-quantile of ``|x - group mean|``, per column.

    Parameters
    ----------
    x : torch.Tensor of shape (n_samples, n_columns), float64
    groups : torch.Tensor of shape (n_samples, n_groupings), int64
        Group ``0 .. n_groups - 1`` of each row under each grouping (here: a factor's bins).
    n_groups : int
    q : float
        Quantile in [0, 1], interpolated linearly (numpy's default method).

    Returns
    -------
    torch.Tensor of shape (n_columns, n_groupings), float64
        For each column and grouping, the mean over non-empty groups of the quantile of
        the absolute deviations from the group's mean.
    """
    return torch.stack([_one_grouping(x, groups[:, j], n_groups, q)
                        for j in range(groups.shape[1])], dim=1)


def _one_grouping(x, g, n_groups, q):
    """:func:`group_quantile_deviation` of one grouping, shape (n_columns,).

    The rows are laid out as (group, column, slot) with -inf padding, and the few
    largest deviations of every group and column that the quantile needs come from one
    ``topk`` (a selection, not a sort: for q = 0.99 about 1% of the rows).
    """
    n, d = x.shape
    counts = torch.bincount(g, minlength=n_groups)
    occupied = counts > 0
    group = (torch.cumsum(occupied, 0) - 1)[g]                            # 0 .. B' - 1
    counts = counts[occupied]
    n_occupied, width = counts.numel(), int(counts.max())
    means = torch.zeros(n_occupied, d, dtype=x.dtype, device=x.device).index_add_(0, group, x)
    deviation = (x - (means / counts[:, None])[group]).abs()              # (n, d)
    # Row r of the sorted order goes to slot (group, position within the group).
    order = torch.argsort(group, stable=True)
    sorted_group = group[order]
    position = torch.arange(n, device=x.device) - (torch.cumsum(counts, 0) - counts)[sorted_group]
    target = sorted_group * width + position
    deviation = deviation[order]
    # numpy's "linear" quantile: virtual index q (c - 1), lerp between its neighbours, which
    # are the (c - 1 - lo)-th and (c - 1 - hi)-th largest.
    c = counts.to(x.dtype)
    virtual = (c * q + (1.0 + q * (1.0 - 1.0 - 1.0))) - 1.0
    below = torch.floor(virtual).clamp(min=0)
    gamma = (virtual - below)[:, None]
    lo = below.long()
    hi = torch.minimum(lo + 1, counts - 1)
    k = int((counts - lo).max())
    chunk = max(1, min(d, _MEMORY_BUDGET // (8 * n_occupied * width + 1)))
    out = []
    for start in range(0, d, chunk):
        cols = slice(start, min(d, start + chunk))
        padded = torch.full((n_occupied * width, cols.stop - start), -torch.inf,
                            dtype=x.dtype, device=x.device)
        padded.index_copy_(0, target, deviation[:, cols])
        padded = padded.view(n_occupied, width, -1).transpose(1, 2)
        top = torch.topk(padded, k, dim=2).values                          # (B', c, k)
        a = top.gather(2, (counts - 1 - lo)[:, None, None].expand(-1, top.shape[1], 1))[..., 0]
        b = top.gather(2, (counts - 1 - hi)[:, None, None].expand(-1, top.shape[1], 1))[..., 0]
        diff = b - a
        quantile = torch.where(gamma >= 0.5, b - diff * (1 - gamma), a + diff * gamma)
        out.append(quantile.mean(dim=0))
    return torch.cat(out)


def irs(latents, factors, *, diff_quantile: float = 0.99, n_bins: int = 20,
        split: str = "random", train_fraction: float = 0.9, seed: int = 0, device=None,
        factor_names=None) -> IRSResult:
    """Interventional Robustness Score of latents, as disentanglement_lib computes it.

    Parameters
    ----------
    latents : array-like or torch.Tensor of shape (n_samples, n_latents)
        The representation, one row per sample; values are used as numbers.
    factors : array-like or torch.Tensor of shape (n_samples, n_factors)
        Integer ground-truth factor labels.
    diff_quantile : float, default=0.99
        Quantile of the absolute deviations within a factor bin (1.0 is the paper's
        maximum; 0.99 the reference's default).
    n_bins : int, default=20
        Equal-width bins per factor over its training range (the reference's gin
        default). Factors are binned by their codes ``0 .. K-1`` (the sorted distinct
        labels), which equals binning the labels when they are the indices ``0 .. K-1``
        that datasets store; factors with at most ``n_bins`` values keep one bin per
        value.
    split : {"random", "contiguous"}, default="random"
        Which rows are the training rows (the score uses only those): ``"contiguous"``
        the first ``ceil(train_fraction * n_samples)`` (the reference's rule),
        ``"random"`` the same count after a permutation seeded by ``seed``.
    train_fraction : float, default=0.9
    seed : int, default=0
        Seed of the split permutation.
    device : str, torch.device or None, default=None
        ``None``: CUDA when available, else CPU.
    factor_names : sequence of str, optional
        Unused; accepted so that every metric takes the same scoring settings.

    Returns
    -------
    IRSResult

    Raises
    ------
    DataError
        Invalid inputs.
    ValueError
        Invalid options.

    Notes
    -----
    Inactive latents are those constant on the training rows. The reference decides this
    on float32 values, where a constant that float32 cannot represent exactly can get a
    variance of ~1e-15 and count as active with a weight of ~1e-8; here the values are
    compared exactly, so such a latent is inactive (the score moves by ~1e-7).

    References
    ----------
    .. [1] R. Suter, D. Miladinovic, B. Schoelkopf, S. Bauer, "Robustly Disentangled
       Causal Mechanisms: Validating Deep Representations for Interventional
       Robustness", ICML 2019.
    .. [2] F. Locatello et al., "Challenging Common Assumptions in the Unsupervised
       Learning of Disentangled Representations", ICML 2019; code:
       google-research/disentanglement_lib, ``evaluation/metrics/irs.py``.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> factors = rng.integers(0, 5, size=(2000, 2))
    >>> latents = np.column_stack([factors[:, 0] + 0.01 * rng.standard_normal(2000),
    ...                            np.zeros(2000)])          # the second latent is dead
    >>> result = irs(latents, factors, device="cpu")
    >>> round(result.irs, 2), result.n_active_latents, result.parents.tolist()
    (0.99, 1, [0, -1])
    """
    _check_options(diff_quantile, n_bins, split, train_fraction)
    inputs = check_inputs(latents, factors, discrete=False, device=device,
                          factor_names=factor_names)
    return irs_from_inputs(inputs, diff_quantile=diff_quantile, n_bins=n_bins, split=split,
                           train_fraction=train_fraction, seed=seed)


def _check_options(diff_quantile, n_bins, split, train_fraction) -> None:
    if isinstance(diff_quantile, bool) or not isinstance(diff_quantile, (int, float)) \
            or not 0.0 <= diff_quantile <= 1.0:
        raise ValueError(f"diff_quantile must be a number in [0, 1], got {diff_quantile!r}")
    check_n_bins(n_bins)
    check_split_options(split, train_fraction)


def irs_from_inputs(inputs: ScoringInputs, *, diff_quantile: float = 0.99, n_bins: int = 20,
                    split: str = "random", train_fraction: float = 0.9, seed: int = 0,
                    factor_names=None) -> IRSResult:
    """:func:`irs` of inputs already checked by
    :func:`~disentangle_eval._validation.check_inputs`; latents are used as numbers
    (``inputs.raw_latents``), on the inputs' device. Parameters are those of :func:`irs`.
    """
    _check_options(diff_quantile, n_bins, split, train_fraction)
    train_fraction = float(train_fraction)
    train_rows, _ = split_rows(inputs.n_samples, split, train_fraction, seed)
    index = torch.as_tensor(train_rows, device=inputs.device)
    x = inputs.raw_latents[index]
    bins = histogram_bins(inputs.factors[index], n_bins)
    active = x.amax(dim=0) > x.amin(dim=0)
    active_np = active.cpu().numpy()
    d, n_factors = inputs.n_latents, inputs.n_factors
    irs_matrix = np.full((d, n_factors), np.nan)
    max_deviations = np.zeros(d)
    notes = ()
    if not bool(active.any()):
        notes = ("no active latent (every latent is constant on the training rows): IRS "
                 "is 0, as the reference returns",)
    else:
        z = x[:, active]
        deviation = (z - z.mean(dim=0)).abs().amax(dim=0)
        spread = group_quantile_deviation(z, bins, n_bins, float(diff_quantile))
        irs_matrix[active_np] = (1.0 - spread / deviation[:, None]).cpu().numpy()
        max_deviations[active_np] = deviation.cpu().numpy()
    for note in notes:
        warnings.warn(note, RuntimeWarning, stacklevel=2)
    per_latent = np.full(d, np.nan)
    parents = np.full(d, -1, dtype=np.int64)
    if active_np.any():
        per_latent[active_np] = irs_matrix[active_np].max(axis=1)
        parents[active_np] = irs_matrix[active_np].argmax(axis=1)
        score = float(np.average(per_latent[active_np], weights=max_deviations[active_np]))
    else:
        score = 0.0
    return IRSResult(irs=score, per_latent=per_latent, irs_matrix=irs_matrix, parents=parents,
                     max_deviations=max_deviations, active_latents=active_np,
                     n_active_latents=int(active_np.sum()), diff_quantile=float(diff_quantile),
                     n_bins=int(n_bins), split=split, train_fraction=train_fraction,
                     seed=int(seed), n_train=len(train_rows), device=str(inputs.device),
                     notes=notes)


def reference_irs_matrix(latents: np.ndarray, factors: np.ndarray, *, diff_quantile: float = 0.99,
                         n_bins: int = 20) -> np.ndarray:
    """IRS matrix (active latents x factors) computed the plain way, group by group.

    The slow reference of :func:`irs` (tests and benchmarks compare the two): factors cut
    by ``np.histogram``/``np.digitize``, constant latents dropped, and for every factor
    and bin a boolean mask, a mean and ``np.quantile``.
    """
    z = np.asarray(latents, dtype=np.float64)
    z = z[:, z.max(axis=0) > z.min(axis=0)]
    matrix = np.zeros((z.shape[1], factors.shape[1]))
    for j, y in enumerate(factors.T):
        binned = np.digitize(y, np.histogram(y, n_bins)[1][:-1])
        values = np.unique(binned)
        for value in values:
            group = z[binned == value]
            matrix[:, j] += np.quantile(np.abs(group - group.mean(axis=0)), diff_quantile,
                                        axis=0)
        matrix[:, j] /= len(values)
    return 1.0 - matrix / np.abs(z - z.mean(axis=0)).max(axis=0)[:, None]
