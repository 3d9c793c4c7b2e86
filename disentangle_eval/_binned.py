"""Pieces shared by the suite metrics (MIG, SAP, Modularity/Explicitness, IRS).

Histogram discretisation and plug-in mutual information (MIG, Modularity; IRS bins the
factors), the gap between a factor's two best latents (MIG, SAP), and the train/test rows
with each factor's classes numbered as the training rows have them (SAP, Explicitness).

disentanglement_lib cuts each latent into ``n_bins`` equal-width bins over its own range
(``np.digitize(x, np.histogram(x, n_bins)[1][:-1])``) and scores every (latent, factor)
pair with ``sklearn.metrics.mutual_info_score`` (plug-in, nats). These are those two steps
for every column and pair at once. IRS cuts the factors the same way. MIG and SAP share
the gap between the two best latents of a factor.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
import torch

from ._split import require_two_classes, split_rows, split_warnings
from ._validation import ScoringInputs

__all__ = ["histogram_bins", "plugin_mutual_information", "plugin_entropy",
           "check_n_bins", "top_two_gaps", "ClassificationSplit", "classification_split"]


def check_n_bins(n_bins) -> int:
    """Validate ``n_bins`` (an integer >= 1); return it as an int."""
    if isinstance(n_bins, bool) or not isinstance(n_bins, int) or n_bins < 1:
        raise ValueError(f"n_bins must be an integer >= 1, got {n_bins!r}")
    return int(n_bins)


def histogram_bins(values: torch.Tensor, n_bins: int) -> torch.Tensor:
    """Equal-width bin of every entry over its column's range, as numpy's histogram cuts it.

    Parameters
    ----------
    values : torch.Tensor of shape (n_samples, n_columns)
        Numbers (any real dtype; computed in float64).
    n_bins : int
        Bins per column.

    Returns
    -------
    torch.Tensor of shape (n_samples, n_columns), int64
        Bin index ``0 .. n_bins - 1``: ``np.digitize(x, np.histogram(x, n_bins)[1][:-1]) - 1``
        of each column ``x``. A constant column falls into one bin (numpy widens its range
        by 0.5 on either side).
    """
    x = values.to(torch.float64)
    low, high = x.amin(dim=0), x.amax(dim=0)
    constant = low == high
    low = torch.where(constant, low - 0.5, low)
    high = torch.where(constant, high + 0.5, high)
    # np.linspace(low, high, n_bins + 1) without its last edge: i * step + low.
    step = (high - low) / n_bins
    steps = torch.arange(n_bins, dtype=torch.float64, device=x.device)
    edges = steps[None, :] * step[:, None] + low[:, None]                  # (columns, n_bins)
    # np.digitize with increasing bins: the number of edges <= x.
    codes = torch.searchsorted(edges, x.T.contiguous(), right=True)       # 1 .. n_bins
    return (codes - 1).T


def plugin_entropy(labels: torch.Tensor, sizes) -> torch.Tensor:
    """Plug-in entropy (nats) of each column of integer labels, shape (n_columns,), float64.

    ``labels[:, j]`` takes values ``0 .. sizes[j] - 1``; equals
    ``sklearn.metrics.mutual_info_score(y, y)`` of each column.
    """
    n, n_columns = labels.shape
    counts = torch.zeros(n_columns, max(sizes), dtype=torch.float64, device=labels.device)
    counts.scatter_add_(1, labels.T, torch.ones(n_columns, n, dtype=torch.float64,
                                                  device=labels.device))
    p = counts / n
    return -torch.where(p > 0, p * torch.log(p.clamp(min=1e-300)), 0.0).sum(dim=1)


def plugin_mutual_information(codes: torch.Tensor, n_codes: int, factors: torch.Tensor,
                              factor_sizes) -> torch.Tensor:
    """Plug-in mutual information (nats) of every (latent, factor) pair from counts.

    Parameters
    ----------
    codes : torch.Tensor of shape (n_samples, n_latents), int64, values 0 .. n_codes - 1
    n_codes : int
    factors : torch.Tensor of shape (n_samples, n_factors), int64, column j in
        ``0 .. factor_sizes[j] - 1``
    factor_sizes : sequence of int

    Returns
    -------
    torch.Tensor of shape (n_latents, n_factors), float64
        ``sklearn.metrics.mutual_info_score(factors[:, j], codes[:, i])`` at ``[i, j]``:
        ``sum_ab p(a, b) log(p(a, b) / (p(a) p(b)))``, clipped at 0.
    """
    n, n_latents = codes.shape
    device = codes.device
    latent_offsets = torch.arange(n_latents, device=device)[None, :] * n_codes
    log_n = math.log(n)
    columns = []
    # One contingency table per factor for all latents at once: memory stays O(n * d).
    for j, size in enumerate(factor_sizes):
        cell = (codes + latent_offsets) * size + factors[:, j:j + 1]
        joint = torch.bincount(cell.reshape(-1), minlength=n_latents * n_codes * size)
        joint = joint.reshape(n_latents, n_codes, size).to(torch.float64)
        log_joint = torch.log(joint.clamp(min=1.0))
        log_code = torch.log(joint.sum(dim=2, keepdim=True).clamp(min=1.0))
        log_factor = torch.log(joint.sum(dim=1, keepdim=True).clamp(min=1.0))
        # Paired so that a latent with one code (joint = factor counts, code count = n)
        # gives exact zeros, as scikit-learn's early return does.
        terms = joint / n * ((log_joint - log_factor) + (log_n - log_code))
        # scikit-learn drops terms below machine epsilon.
        terms = torch.where(terms.abs() < torch.finfo(torch.float64).eps, 0.0, terms)
        columns.append(terms.sum(dim=(1, 2)))
    return torch.stack(columns, dim=1).clamp(min=0.0)


def top_two_gaps(matrix: np.ndarray) -> np.ndarray:
    """Per column of ``matrix`` (latents x factors): largest minus second-largest entry.

    With a single row there is no second entry; it counts as 0 (the reference raises).
    """
    ordered = np.sort(matrix, axis=0)
    second = ordered[-2] if matrix.shape[0] > 1 else np.zeros(matrix.shape[1])
    return ordered[-1] - second


@dataclass(frozen=True)
class ClassificationSplit:
    """Training and test rows of checked inputs, factors as training-class codes.

    Attributes
    ----------
    train_rows : numpy.ndarray of shape (n_train,), int
        Row indices of the training rows (:func:`~disentangle_eval._split.split_rows`).
    x_train, x_test : torch.Tensor of shape (n_train, n_latents), (n_test, n_latents)
        The latents as numbers (``inputs.raw_latents``).
    codes_train : torch.Tensor of shape (n_train, n_factors), int64
        Factor ``f``'s class ``0 .. n_classes[f] - 1`` among the values its training rows
        take (sorted).
    codes_test : torch.Tensor of shape (n_test, n_factors), int64
        The same numbering; -1 for a value the training rows lack (no classifier predicts
        it).
    n_classes : list of int
    warnings : tuple of str
        :func:`~disentangle_eval._split.split_warnings` of the split, already issued.
    """

    train_rows: np.ndarray
    x_train: torch.Tensor
    x_test: torch.Tensor
    codes_train: torch.Tensor
    codes_test: torch.Tensor
    n_classes: list
    warnings: tuple


def classification_split(inputs: ScoringInputs, split: str, train_fraction: float, seed: int,
                         factor_names=None) -> ClassificationSplit:
    """Split the rows, refuse single-class factors, warn about the split, number the classes.

    Raises :class:`~disentangle_eval.DataError` when a factor takes one value in the
    training rows; issues the split's warnings (``UserWarning``).
    """
    train_rows, test_rows = split_rows(inputs.n_samples, split, train_fraction, seed)
    y_np = inputs.factors.cpu().numpy()
    require_two_classes(y_np[train_rows], split, factor_names)
    messages = split_warnings(y_np[train_rows], y_np[test_rows], split, factor_names)
    for message in messages:
        warnings.warn(message, UserWarning, stacklevel=3)
    device = inputs.device
    train = torch.as_tensor(train_rows, device=device)
    test = torch.as_tensor(test_rows, device=device)
    y_train, y_test = inputs.factors[train], inputs.factors[test]
    codes_train, codes_test, n_classes = [], [], []
    for f in range(inputs.n_factors):
        present, code = torch.unique(y_train[:, f], return_inverse=True)
        lookup = torch.full((inputs.factor_sizes[f],), -1, dtype=torch.int64, device=device)
        lookup[present] = torch.arange(present.numel(), device=device)
        codes_train.append(code)
        codes_test.append(lookup[y_test[:, f]])
        n_classes.append(int(present.numel()))
    return ClassificationSplit(
        train_rows=train_rows, x_train=inputs.raw_latents[train], x_test=inputs.raw_latents[test],
        codes_train=torch.stack(codes_train, 1), codes_test=torch.stack(codes_test, 1),
        n_classes=n_classes, warnings=tuple(messages))
