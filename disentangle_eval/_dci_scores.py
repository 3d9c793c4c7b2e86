"""Scores of a DCI importance matrix: disentanglement and completeness.

From an importance matrix ``R`` (rows = latents, columns = factors, non-negative):

- disentanglement ``D = sum_i rho_i (1 - H_F(P_i.))`` with ``P_i. = R_i. / sum_j R_ij`` and
  ``rho_i = sum_j R_ij / sum_ij R_ij`` (entropy base = number of factors);
- completeness ``C = sum_j rho_j (1 - H_d(P~_.j))`` with the column distributions
  (entropy base = number of latents).

The entropies follow disentanglement_lib exactly (``1e-11`` added before normalising,
weights uniform when ``R`` is all zero), so these functions return its numbers for any
importance matrix.
"""
from __future__ import annotations

import numpy as np
import scipy.special

__all__ = ["disentanglement", "completeness", "disentanglement_per_code",
           "completeness_per_factor"]



def _importance_matrix(importance) -> np.ndarray:
    matrix = np.asarray(importance, dtype=np.float64)
    if matrix.ndim != 2:
        raise ValueError(f"importance must be 2-D (n_latents, n_factors): shape is {matrix.shape}")
    if matrix.size == 0:
        raise ValueError(f"importance must not be empty: shape is {matrix.shape}")
    if not np.all(np.isfinite(matrix)) or np.any(matrix < 0):
        raise ValueError("importance must hold finite non-negative values")
    return matrix


def _one_minus_entropy(distributions: np.ndarray, base: int) -> np.ndarray:
    """``1 - H_base`` of each column of ``distributions`` (+1e-11, then normalised).

    The reference's ``scipy.stats.entropy(p + 1e-11, base=base)``, written out with the
    same operations (``scipy.stats`` alone takes about a second to import).
    """
    if base == 1:  # a single outcome: zero entropy (scipy would divide by log 1 = 0)
        return np.ones(distributions.shape[1])
    p = distributions + 1e-11
    p = p / np.sum(p, axis=0, keepdims=True)
    return 1.0 - np.sum(scipy.special.entr(p), axis=0) / np.log(base)


def disentanglement_per_code(importance) -> np.ndarray:
    """Disentanglement ``1 - H_F(P_i.)`` of each latent, shape (n_latents,)."""
    matrix = _importance_matrix(importance)
    return _one_minus_entropy(matrix.T, matrix.shape[1])


def completeness_per_factor(importance) -> np.ndarray:
    """Completeness ``1 - H_d(P~_.j)`` of each factor, shape (n_factors,)."""
    matrix = _importance_matrix(importance)
    return _one_minus_entropy(matrix, matrix.shape[0])


def disentanglement(importance) -> float:
    """Disentanglement score of an importance matrix, as disentanglement_lib computes it.

    Parameters
    ----------
    importance : array-like of shape (n_latents, n_factors)
        Non-negative importances, rows = latents, columns = factors.

    Returns
    -------
    float
        ``sum_i rho_i (1 - H_F(P_i.))``; code weights ``rho_i`` are the row sums over the
        total (uniform when the matrix is all zero).

    Examples
    --------
    >>> import numpy as np
    >>> round(disentanglement(np.eye(3)), 6)
    1.0
    >>> round(disentanglement(np.hstack([np.eye(5), np.eye(5)])), 6)  # 1 - log 2 / log 10
    0.69897
    """
    return _weighted_score(_importance_matrix(importance), axis=1)


def completeness(importance) -> float:
    """Completeness score of an importance matrix, as disentanglement_lib computes it.

    Parameters
    ----------
    importance : array-like of shape (n_latents, n_factors)
        Non-negative importances, rows = latents, columns = factors.

    Returns
    -------
    float
        ``sum_j rho_j (1 - H_d(P~_.j))``; factor weights are the column sums over the
        total (uniform when the matrix is all zero).

    Examples
    --------
    >>> import numpy as np
    >>> round(completeness(np.vstack([np.eye(5), np.eye(5)])), 6)  # 1 - log 2 / log 10
    0.69897
    """
    return _weighted_score(_importance_matrix(importance), axis=0)


def _weighted_score(matrix: np.ndarray, axis: int) -> float:
    """``sum_k rho_k (1 - H(P_k))`` over the rows (``axis=1``, D) or columns (``axis=0``,
    C) ``k`` of ``matrix``, each weighted by its share of the total."""
    scores = _one_minus_entropy(matrix.T if axis == 1 else matrix, matrix.shape[axis])
    if matrix.sum() == 0.0:
        matrix = np.ones_like(matrix)
    weights = matrix.sum(axis=axis) / matrix.sum()
    return float(np.sum(scores * weights))
