"""SAP: Separated Attribute Predictability (Kumar et al., 2018), with discrete factors.

Score matrix ``S`` (rows = latents, columns = factors): the test accuracy of a linear
classifier that predicts factor ``j`` from latent ``i`` alone. SAP is the mean over factors
of the gap between the two largest entries of the factor's column.

The classifier is disentanglement_lib's ``LinearSVC(C=0.01, class_weight="balanced")``,
solved for all (latent, factor) pairs at once by :mod:`~disentangle_eval._linear_svc`.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
import torch

from ._binned import classification_split, top_two_gaps
from ._linear_svc import fit_linear_svc_1d, predict_linear_svc_1d
from ._results import MetricResult
from ._split import check_split_options
from ._validation import ScoringInputs, check_inputs

__all__ = ["SAPResult", "sap", "sap_from_inputs"]


@dataclass(frozen=True)
class SAPResult(MetricResult):
    """SAP score of one representation.

    Attributes
    ----------
    sap : float
        Mean over factors of the gap between the two best latents' test accuracies.
    gaps : numpy.ndarray of shape (n_factors,)
        That gap per factor.
    score_matrix : numpy.ndarray of shape (n_latents, n_factors)
        Rows = latents, columns = factors: test accuracy of the one-latent classifier.
    C : float
        Regularisation parameter of the classifiers.
    split : str
    train_fraction : float
    seed : int
    n_train, n_test : int
    device : str
    notes : tuple of str
        Where a defined value replaces what the reference cannot compute (one latent).
    warnings : tuple of str
        Problems noticed with the split (test rows missing or adding factor values).
    """

    sap: float
    gaps: np.ndarray
    score_matrix: np.ndarray
    C: float
    split: str
    train_fraction: float
    seed: int
    n_train: int
    n_test: int
    device: str
    notes: tuple[str, ...] = field(default=())
    warnings: tuple[str, ...] = field(default=())

    HEADLINE = ("sap",)
    LAYOUTS = {"score_matrix": "rows = latents, columns = factors"}


# --------------------------------------------------------------------------------------
# The metric
# --------------------------------------------------------------------------------------

def sap(latents, factors, *, C: float = 0.01, split: str = "random",
        train_fraction: float = 0.9, seed: int = 0, device=None,
        factor_names=None) -> SAPResult:
    """SAP score of latents, as disentanglement_lib computes it for discrete factors.

    Parameters
    ----------
    latents : array-like or torch.Tensor of shape (n_samples, n_latents)
        The representation, one row per sample; values are used as numbers (integer
        codes too).
    factors : array-like or torch.Tensor of shape (n_samples, n_factors)
        Integer ground-truth factor labels.
    C : float, default=0.01
        Inverse regularisation of the classifiers (the reference's ``LinearSVC(C=0.01)``).
    split : {"random", "contiguous"}, default="random"
        ``"contiguous"``: the first ``ceil(train_fraction * n_samples)`` rows train, the
        rest test (the reference's rule); ``"random"``: the same after a permutation
        seeded by ``seed``.
    train_fraction : float, default=0.9
    seed : int, default=0
        Seed of the split permutation (the fit itself is deterministic).
    device : str, torch.device or None, default=None
        ``None``: CUDA when available, else CPU.
    factor_names : sequence of str, optional
        Used in warnings and error messages.

    Returns
    -------
    SAPResult
        ``score_matrix[i, j]``: test accuracy of ``LinearSVC(C=C,
        class_weight="balanced")`` fitted on latent ``i`` alone for factor ``j``;
        ``sap`` the mean over factors of the gap between the column's two largest entries.

    Raises
    ------
    DataError
        Invalid inputs, or a factor with a single value in the training rows.
    ValueError
        Invalid options.

    Notes
    -----
    The classifiers are liblinear's primal problem ``min 1/2 (w^2 + b^2) + sum_i C_i
    max(0, 1 - y_i (w x_i + b))^2`` with ``C_i = C * n / (K * n_k)`` on the positive class
    and, one-vs-rest, plain ``C`` on the rest (two classes: ``C * n / (2 n_k)`` on both),
    solved to optimality for all (latent, factor, class) problems at once. With a
    single latent there is no second-best latent: its gap is taken against 0 (the
    reference raises) and ``notes`` says so.

    References
    ----------
    .. [1] A. Kumar, P. Sattigeri, A. Balakrishnan, "Variational Inference of Disentangled
       Latent Concepts from Unlabeled Observations", ICLR 2018.
    .. [2] F. Locatello et al., "Challenging Common Assumptions in the Unsupervised
       Learning of Disentangled Representations", ICML 2019; code:
       google-research/disentanglement_lib, ``evaluation/metrics/sap_score.py``.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> factors = rng.integers(0, 2, size=(1000, 2))
    >>> latents = np.column_stack([factors[:, 0] + 0.1 * rng.standard_normal(1000),
    ...                            rng.standard_normal(1000)])
    >>> result = sap(latents, factors, device="cpu")
    >>> result.score_matrix.shape    # rows = latents, columns = factors
    (2, 2)
    >>> float(result.score_matrix[0, 0]), round(result.sap, 1)
    (1.0, 0.3)
    """
    _check_sap_options(C, split, train_fraction)
    inputs = check_inputs(latents, factors, discrete=False, device=device,
                          factor_names=factor_names)
    return sap_from_inputs(inputs, C=C, split=split, train_fraction=train_fraction, seed=seed,
                           factor_names=factor_names)


def _check_sap_options(C, split, train_fraction) -> None:
    if isinstance(C, bool) or not isinstance(C, (int, float)) or not 0 < C < float("inf"):
        raise ValueError(f"C must be a positive number, got {C!r}")
    check_split_options(split, train_fraction)


def sap_from_inputs(inputs: ScoringInputs, *, C: float = 0.01, split: str = "random",
                    train_fraction: float = 0.9, seed: int = 0,
                    factor_names=None) -> SAPResult:
    """:func:`sap` of inputs already checked by
    :func:`~disentangle_eval._validation.check_inputs`; latents are used as numbers
    (``inputs.raw_latents``), on the inputs' device. Parameters are those of :func:`sap`.
    """
    _check_sap_options(C, split, train_fraction)
    train_fraction = float(train_fraction)
    # Classes are those of the training rows (a classifier never predicts another).
    rows = classification_split(inputs, split, train_fraction, seed, factor_names)
    coef, intercept = fit_linear_svc_1d(rows.x_train, rows.codes_train, rows.n_classes,
                                        C=float(C))
    score = torch.stack([(predict_linear_svc_1d(coef[f], intercept[f], rows.x_test)
                          == rows.codes_test[None, :, f]).double().mean(dim=1)
                         for f in range(inputs.n_factors)], dim=1)
    score_matrix = score.cpu().numpy()
    notes = ()
    if inputs.n_latents == 1:
        notes = ("a single latent: no second-best latent, so each factor's gap is its "
                 "score minus 0 (the reference raises)",)
        for note in notes:
            warnings.warn(note, RuntimeWarning, stacklevel=2)
    gaps = top_two_gaps(score_matrix)
    return SAPResult(sap=float(gaps.mean()), gaps=gaps, score_matrix=score_matrix, C=float(C),
                     split=split, train_fraction=train_fraction, seed=int(seed),
                     n_train=rows.x_train.shape[0], n_test=rows.x_test.shape[0],
                     device=str(inputs.device), notes=notes, warnings=rows.warnings)
