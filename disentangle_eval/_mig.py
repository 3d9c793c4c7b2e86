"""MIG: Mutual Information Gap (Chen et al., 2018), as disentanglement_lib computes it.

Mutual information matrix ``I`` (rows = latents, columns = factors): each latent cut into
``n_bins`` equal-width bins over its range on the training rows, plug-in MI with each
factor in nats. For factor ``j`` with plug-in entropy ``H_j`` the gap is
``(I_(1)j - I_(2)j) / H_j`` (largest minus second largest MI in its column); MIG is the
mean gap over factors.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
import torch

from ._binned import (check_n_bins, histogram_bins, plugin_entropy, plugin_mutual_information,
                      top_two_gaps)
from ._results import MetricResult
from ._split import check_split_options, require_two_classes, split_rows
from ._validation import ScoringInputs, check_inputs

__all__ = ["MIGResult", "mig", "mig_from_inputs", "binned_mutual_information"]


@dataclass(frozen=True)
class MIGResult(MetricResult):
    """Mutual Information Gap of one representation.

    Attributes
    ----------
    mig : float
        Mean over factors of ``gaps``.
    gaps : numpy.ndarray of shape (n_factors,)
        Per factor: (largest - second largest MI in its column) / factor entropy.
    mutual_information : numpy.ndarray of shape (n_latents, n_factors)
        Rows = latents, columns = factors: plug-in MI (nats) of the binned latent and the
        factor on the training rows.
    factor_entropies : numpy.ndarray of shape (n_factors,)
        Plug-in entropy (nats) of each factor on the training rows.
    n_bins : int
    split : str
    train_fraction : float
    seed : int
    n_train : int
        Rows the MI is estimated on (the test rows are not used).
    device : str
    notes : tuple of str
        Where a defined value replaces what the reference cannot compute (one latent).
    """

    mig: float
    gaps: np.ndarray
    mutual_information: np.ndarray
    factor_entropies: np.ndarray
    n_bins: int
    split: str
    train_fraction: float
    seed: int
    n_train: int
    device: str
    notes: tuple[str, ...] = field(default=())

    HEADLINE = ("mig",)
    LAYOUTS = {"mutual_information": "rows = latents, columns = factors"}


def binned_mutual_information(inputs: ScoringInputs, rows: np.ndarray,
                              n_bins: int) -> tuple[torch.Tensor, torch.Tensor]:
    """MI matrix (n_latents, n_factors) and factor entropies (n_factors,) on ``rows``.

    Latents are binned as numbers (``inputs.raw_latents``), discrete codes too, as the
    reference does; factors are their codes ``0 .. K-1``.
    """
    index = torch.as_tensor(rows, device=inputs.device)
    codes = histogram_bins(inputs.raw_latents[index], n_bins)
    factors = inputs.factors[index]
    mi = plugin_mutual_information(codes, n_bins, factors, inputs.factor_sizes)
    return mi, plugin_entropy(factors, inputs.factor_sizes)


def mig(latents, factors, *, n_bins: int = 20, split: str = "random",
        train_fraction: float = 0.9, seed: int = 0, device=None,
        factor_names=None) -> MIGResult:
    """Mutual Information Gap of latents, as disentanglement_lib computes it.

    Parameters
    ----------
    latents : array-like or torch.Tensor of shape (n_samples, n_latents)
        The representation, one row per sample; values are binned as numbers (integer
        codes too, as the reference does).
    factors : array-like or torch.Tensor of shape (n_samples, n_factors)
        Integer ground-truth factor labels.
    n_bins : int, default=20
        Equal-width bins per latent over its range on the training rows (the reference's
        gin default).
    split : {"random", "contiguous"}, default="random"
        Which rows are the training rows (the MI uses only those): ``"contiguous"`` the
        first ``ceil(train_fraction * n_samples)`` (the reference's rule), ``"random"``
        the same count after a permutation seeded by ``seed``.
    train_fraction : float, default=0.9
    seed : int, default=0
        Seed of the split permutation.
    device : str, torch.device or None, default=None
        ``None``: CUDA when available, else CPU.
    factor_names : sequence of str, optional
        Used in error messages.

    Returns
    -------
    MIGResult

    Raises
    ------
    DataError
        Invalid inputs, or a factor with a single value in the training rows (zero
        entropy).
    ValueError
        Invalid options.

    Notes
    -----
    A bin is ``np.digitize(z, np.histogram(z, n_bins)[1][:-1])`` of the training rows'
    latent column ``z``; MI is ``sklearn.metrics.mutual_info_score``. With a single
    latent the second-largest MI is taken as 0 (the reference raises) and ``notes``
    says so.

    References
    ----------
    .. [1] R. T. Q. Chen, X. Li, R. Grosse, D. Duvenaud, "Isolating Sources of
       Disentanglement in Variational Autoencoders", NeurIPS 2018.
    .. [2] F. Locatello et al., "Challenging Common Assumptions in the Unsupervised
       Learning of Disentangled Representations", ICML 2019; code:
       google-research/disentanglement_lib, ``evaluation/metrics/mig.py``.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> factors = rng.integers(0, 4, size=(2000, 2))
    >>> latents = np.column_stack([factors[:, 0], factors[:, 1], factors[:, 1]])
    >>> result = mig(latents.astype(float), factors, device="cpu")
    >>> result.mutual_information.shape    # rows = latents, columns = factors
    (3, 2)
    >>> [round(float(g), 2) for g in result.gaps]  # factor 1 is split over two latents
    [1.0, 0.0]
    """
    n_bins = check_n_bins(n_bins)
    check_split_options(split, train_fraction)
    inputs = check_inputs(latents, factors, discrete=False, device=device,
                          factor_names=factor_names)
    return mig_from_inputs(inputs, n_bins=n_bins, split=split, train_fraction=train_fraction,
                           seed=seed, factor_names=factor_names)


def mig_from_inputs(inputs: ScoringInputs, *, n_bins: int = 20, split: str = "random",
                    train_fraction: float = 0.9, seed: int = 0,
                    factor_names=None) -> MIGResult:
    """:func:`mig` of inputs already checked by
    :func:`~disentangle_eval._validation.check_inputs`, on the inputs' device. Parameters
    are those of :func:`mig`.
    """
    n_bins = check_n_bins(n_bins)
    train_fraction = check_split_options(split, train_fraction)
    train_rows, _ = split_rows(inputs.n_samples, split, train_fraction, seed)
    require_two_classes(inputs.factors.cpu().numpy()[train_rows], split, factor_names)
    mi, entropy = binned_mutual_information(inputs, train_rows, n_bins)
    mi_np = mi.cpu().numpy()
    entropy_np = entropy.cpu().numpy()
    notes = ()
    if inputs.n_latents == 1:
        notes = ("a single latent: no second-largest MI, so each factor's gap is its MI "
                 "minus 0 (the reference raises)",)
        for note in notes:
            warnings.warn(note, RuntimeWarning, stacklevel=2)
    gaps = top_two_gaps(mi_np) / entropy_np
    return MIGResult(mig=float(gaps.mean()), gaps=gaps, mutual_information=mi_np,
                     factor_entropies=entropy_np, n_bins=n_bins, split=split,
                     train_fraction=train_fraction, seed=int(seed), n_train=len(train_rows),
                     device=str(inputs.device), notes=notes)
