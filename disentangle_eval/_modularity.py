"""Modularity and Explicitness (Ridgeway & Mozer, 2018), as disentanglement_lib computes them.

- Modularity from the binned mutual information matrix ``I`` (rows = latents, columns =
  factors, the MIG one): per latent ``1 - (sum_j I_ij^2 - max_j I_ij^2) / (max_j I_ij^2
  (F - 1))``, 0 for a latent with no MI, averaged over latents.
- Explicitness per factor: macro ROC-AUC (one column per class) of a multinomial logistic
  regression (L2, ``C = 1``, lbfgs) on all latents standardised with the training rows'
  mean and standard deviation, scored on the training and on the test rows; averaged
  over factors.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
import torch

from ._binned import check_n_bins, classification_split
from ._logistic import fit_multinomial_logistic
from ._messages import factor_name
from ._mig import binned_mutual_information
from ._results import MetricResult
from ._scaling import ColumnStandardizer
from ._split import check_split_options
from ._validation import ScoringInputs, check_inputs

__all__ = ["ModularityExplicitnessResult", "modularity_explicitness",
           "modularity_explicitness_from_inputs", "modularity_per_latent", "macro_roc_auc"]


@dataclass(frozen=True)
class ModularityExplicitnessResult(MetricResult):
    """Modularity and explicitness of one representation.

    Attributes
    ----------
    modularity : float
        Mean of ``modularity_per_latent``.
    explicitness_train, explicitness_test : float
        Mean over factors of the classifiers' macro ROC-AUC on the training / test rows
        (factors whose test AUC is undefined are left out; NaN if all are).
    modularity_per_latent : numpy.ndarray of shape (n_latents,)
    explicitness_per_factor : numpy.ndarray of shape (n_factors, 2)
        Rows = factors, columns = (train, test) macro ROC-AUC.
    mutual_information : numpy.ndarray of shape (n_latents, n_factors)
        Rows = latents, columns = factors: binned plug-in MI (nats) on the training rows,
        as :class:`~disentangle_eval.MIGResult` has it.
    n_bins : int
    C : float
        Inverse L2 strength of the logistic regressions.
    split : str
    train_fraction : float
    seed : int
    n_train, n_test : int
    device : str
    notes : tuple of str
        Where a defined value replaces what the reference cannot compute (constant
        latents, a single factor, classes missing from the test rows) and whether a fit
        hit its iteration cap.
    warnings : tuple of str
        Problems noticed with the split.
    """

    modularity: float
    explicitness_train: float
    explicitness_test: float
    modularity_per_latent: np.ndarray
    explicitness_per_factor: np.ndarray
    mutual_information: np.ndarray
    n_bins: int
    C: float
    split: str
    train_fraction: float
    seed: int
    n_train: int
    n_test: int
    device: str
    notes: tuple[str, ...] = field(default=())
    warnings: tuple[str, ...] = field(default=())

    HEADLINE = ("modularity", "explicitness_train", "explicitness_test")
    LAYOUTS = {"mutual_information": "rows = latents, columns = factors",
               "explicitness_per_factor": "rows = factors, columns = (train, test)"}


def modularity_per_latent(mutual_information) -> tuple[np.ndarray, tuple[str, ...]]:
    """Modularity of each latent from an MI matrix (rows = latents, columns = factors).

    Returns the scores (n_latents,) and notes: a latent with no MI scores 0 (as in the
    reference); with a single factor every latent with MI is modular by definition and
    scores 1 (the reference divides 0 by 0).
    """
    squared = np.square(np.asarray(mutual_information, dtype=np.float64))
    largest = squared.max(axis=1)
    n_factors = squared.shape[1]
    notes = ()
    if n_factors == 1:
        notes = ("a single factor: modularity is 1 for every latent with non-zero MI (the "
                 "reference divides 0 by 0)",)
        return np.where(largest > 0, 1.0, 0.0), notes
    with np.errstate(divide="ignore", invalid="ignore"):
        delta = (squared.sum(axis=1) - largest) / (largest * (n_factors - 1))
    return np.where(largest > 0, 1.0 - delta, 0.0), notes


def macro_roc_auc(scores: torch.Tensor, labels: torch.Tensor,
                  class_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Macro ROC-AUC of every target: the mean over its classes of one-vs-rest AUCs.

    Parameters
    ----------
    scores : torch.Tensor of shape (n_targets, n_samples, n_classes)
        Class scores (probabilities).
    labels : torch.Tensor of shape (n_targets, n_samples), int64
        True class codes; a code outside ``0 .. n_classes - 1`` (e.g. -1) is no class's
        positive.
    class_mask : torch.Tensor of shape (n_targets, n_classes), bool
        Classes that exist for the target.

    Returns
    -------
    auc : torch.Tensor of shape (n_targets,), float64
        Mean over the scored classes (NaN if none).
    scored : torch.Tensor of shape (n_targets, n_classes), bool
        Classes with both positive and negative rows, whose AUC enters the mean.

    Each class's AUC is the Mann-Whitney statistic with ties counted one half, which is
    what ``sklearn.metrics.roc_auc_score`` computes from the trapezoidal ROC curve.
    """
    n_targets, n, n_classes = scores.shape
    # Only the classes that exist (targets with few classes are padded to the most).
    target, klass = torch.nonzero(class_mask, as_tuple=True)
    values = scores.permute(0, 2, 1)[target, klass]                      # (pairs, n)
    positive = labels[target] == klass[:, None]
    ordered, order = torch.sort(values, dim=1)
    position = torch.arange(n, device=values.device).expand_as(ordered)
    starts = torch.ones_like(ordered, dtype=torch.bool)
    starts[:, 1:] = ordered[:, 1:] != ordered[:, :-1]
    # Average 1-based rank of each tie group: first position + (group size + 1) / 2.
    first = torch.cummax(torch.where(starts, position, 0), dim=1).values
    group = torch.cumsum(starts.long(), dim=1) - 1
    size = torch.zeros_like(group).scatter_add_(1, group, torch.ones_like(group))
    rank = first.double() + (size.gather(1, group).double() + 1.0) / 2.0
    pos_sorted = positive.gather(1, order).double()
    n_pos = pos_sorted.sum(dim=1)
    n_neg = n - n_pos
    rank_sum = (rank * pos_sorted).sum(dim=1)
    ok = (n_pos > 0) & (n_neg > 0)
    pair_auc = (rank_sum - n_pos * (n_pos + 1) / 2) / torch.where(ok, n_pos * n_neg, 1.0)
    scored = torch.zeros_like(class_mask)
    scored[target, klass] = ok
    auc = torch.zeros(n_targets, n_classes, dtype=torch.float64, device=scores.device)
    auc[target, klass] = torch.where(ok, pair_auc, 0.0)
    count = scored.sum(dim=1)
    mean = auc.sum(dim=1) / count.clamp(min=1)
    return torch.where(count > 0, mean, torch.nan), scored


def _fit_and_score(z_train, codes_train, n_classes, z_evals, labels_evals, C, max_iter, tol):
    """Logistic regressions of the given targets; macro AUC on each (design, labels) pair.

    Two-class targets get the binomial fit that scikit-learn uses for them: a two-class
    softmax with the L2 strength doubled has the same optimum (the penalty on two
    opposite weight vectors is half that on their difference).
    """
    n = z_train.shape[0]
    fit = fit_multinomial_logistic(z_train, codes_train, n_classes, sample_weight=None,
                                   l2=(2.0 if max(n_classes) == 2 else 1.0) / (C * n),
                                   max_iter=max_iter, tol=tol)
    aucs, scored = [], []
    for design, labels in zip(z_evals, labels_evals):
        proba = fit.log_proba(design).exp()
        auc, ok = macro_roc_auc(proba, labels.T, fit.class_mask)
        aucs.append(auc)
        scored.append(ok)
    return aucs, scored, fit.converged


def modularity_explicitness(latents, factors, *, n_bins: int = 20, C: float = 1.0,
                            max_iter: int = 100, tol: float = 1e-4, split: str = "random",
                            train_fraction: float = 0.9, seed: int = 0, device=None,
                            factor_names=None) -> ModularityExplicitnessResult:
    """Modularity and explicitness of latents, as disentanglement_lib computes them.

    Parameters
    ----------
    latents : array-like or torch.Tensor of shape (n_samples, n_latents)
        The representation, one row per sample; values are used as numbers.
    factors : array-like or torch.Tensor of shape (n_samples, n_factors)
        Integer ground-truth factor labels.
    n_bins : int, default=20
        Equal-width bins per latent of the MI matrix (as :func:`mig`).
    C : float, default=1.0
        Inverse L2 strength of the logistic regressions (scikit-learn's default
        ``LogisticRegression()``, which the reference uses).
    max_iter : int, default=100
        L-BFGS iteration cap per factor (scikit-learn's default).
    tol : float, default=1e-4
        Gradient tolerance of the fits (scikit-learn's default).
    split : {"random", "contiguous"}, default="random"
        ``"contiguous"``: the first ``ceil(train_fraction * n_samples)`` rows train, the
        rest test (the reference's rule); ``"random"``: the same after a permutation
        seeded by ``seed``. The MI matrix uses the training rows only.
    train_fraction : float, default=0.9
    seed : int, default=0
        Seed of the split permutation.
    device : str, torch.device or None, default=None
        ``None``: CUDA when available, else CPU.
    factor_names : sequence of str, optional
        Used in warnings and error messages.

    Returns
    -------
    ModularityExplicitnessResult

    Raises
    ------
    DataError
        Invalid inputs, or a factor with a single value in the training rows.
    ValueError
        Invalid options.

    Notes
    -----
    Where the reference raises, a defined value is returned and ``notes`` says so:
    latents constant on the training rows (their standard deviation is 0; the reference
    divides by it and the classifier refuses the NaN) are set to 0 after standardising,
    which is the same as leaving them out, since an all-zero column keeps weight 0 in an
    L2-penalised fit. Classes missing from the rows being scored are left out of that
    macro average.

    References
    ----------
    .. [1] K. Ridgeway, M. C. Mozer, "Learning Deep Disentangled Embeddings With the
       F-Statistic Loss", NeurIPS 2018.
    .. [2] F. Locatello et al., "Challenging Common Assumptions in the Unsupervised
       Learning of Disentangled Representations", ICML 2019; code:
       google-research/disentanglement_lib, ``evaluation/metrics/modularity_explicitness.py``.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> factors = rng.integers(0, 3, size=(1000, 2))
    >>> latents = factors + 0.1 * rng.standard_normal((1000, 2))
    >>> result = modularity_explicitness(latents, factors, device="cpu")
    >>> round(result.modularity, 2), round(result.explicitness_test, 2)
    (1.0, 1.0)
    >>> result.explicitness_per_factor.shape   # rows = factors, columns = (train, test)
    (2, 2)
    """
    _check_options(n_bins, C, max_iter, tol, split, train_fraction)
    inputs = check_inputs(latents, factors, discrete=False, device=device,
                          factor_names=factor_names)
    return modularity_explicitness_from_inputs(
        inputs, n_bins=n_bins, C=C, max_iter=max_iter, tol=tol, split=split,
        train_fraction=train_fraction, seed=seed, factor_names=factor_names)


def _check_options(n_bins, C, max_iter, tol, split, train_fraction) -> None:
    check_n_bins(n_bins)
    for name, value in (("C", C), ("tol", tol)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) \
                or not 0 < value < float("inf"):
            raise ValueError(f"{name} must be a positive number, got {value!r}")
    if isinstance(max_iter, bool) or not isinstance(max_iter, int) or max_iter < 1:
        raise ValueError(f"max_iter must be an integer >= 1, got {max_iter!r}")
    check_split_options(split, train_fraction)


def modularity_explicitness_from_inputs(
        inputs: ScoringInputs, *, n_bins: int = 20, C: float = 1.0, max_iter: int = 100,
        tol: float = 1e-4, split: str = "random", train_fraction: float = 0.9, seed: int = 0,
        factor_names=None) -> ModularityExplicitnessResult:
    """:func:`modularity_explicitness` of inputs already checked by
    :func:`~disentangle_eval._validation.check_inputs`; latents are used as numbers
    (``inputs.raw_latents``), on the inputs' device. Parameters are those of
    :func:`modularity_explicitness`.
    """
    _check_options(n_bins, C, max_iter, tol, split, train_fraction)
    train_fraction = float(train_fraction)
    # Classes are those of the training rows; a test row of another class is no class's
    # positive (the reference would fail on it).
    rows = classification_split(inputs, split, train_fraction, seed, factor_names)
    mi, _ = binned_mutual_information(inputs, rows.train_rows, n_bins)
    mi_np = mi.cpu().numpy()
    per_latent, notes = modularity_per_latent(mi_np)
    notes = list(notes)

    device = inputs.device
    standardizer = ColumnStandardizer.fit(rows.x_train)
    constant = standardizer.constant
    if bool(constant.any()):
        notes.append(f"latent(s) {torch.nonzero(constant).flatten().tolist()} are constant "
                     "on the training rows: set to 0 after standardising (left out of the "
                     "explicitness fits; the reference divides by their zero standard "
                     "deviation and raises)")
    z_train, z_test = standardizer.transform(rows.x_train), standardizer.transform(rows.x_test)
    codes_train, codes_test, n_classes = rows.codes_train, rows.codes_test, rows.n_classes

    explicitness = torch.full((inputs.n_factors, 2), torch.nan, dtype=torch.float64,
                              device=device)
    converged = True
    binary = [f for f in range(inputs.n_factors) if n_classes[f] == 2]
    multi = [f for f in range(inputs.n_factors) if n_classes[f] > 2]
    for group in (binary, multi):
        if not group:
            continue
        index = torch.as_tensor(group, device=device)
        (auc_train, auc_test), (_, scored_test), group_converged = _fit_and_score(
            z_train, codes_train[:, index], [n_classes[f] for f in group],
            (z_train, z_test), (codes_train[:, index], codes_test[:, index]), C, max_iter, tol)
        explicitness[index, 0], explicitness[index, 1] = auc_train, auc_test
        converged = converged and group_converged
        for row, f in enumerate(group):
            n_scored = int(scored_test[row].sum())
            if n_scored < n_classes[f]:
                name = factor_name(f, factor_names)
                notes.append(f"explicitness (test) of {name}: {n_classes[f] - n_scored} of "
                             f"its {n_classes[f]} training classes have no positive or no "
                             "negative test row and are left out of its macro ROC-AUC (the "
                             "reference raises)")
    if not converged:
        notes.append(f"explicitness: a logistic regression hit max_iter={max_iter} before "
                     "its gradient fell to tol (as scikit-learn's would warn)")
    for note in notes:
        warnings.warn(note, RuntimeWarning, stacklevel=2)
    per_factor = explicitness.cpu().numpy()
    return ModularityExplicitnessResult(
        modularity=float(per_latent.mean()),
        explicitness_train=float(np.nanmean(per_factor[:, 0])),
        explicitness_test=float(np.nanmean(per_factor[:, 1])) if np.isfinite(
            per_factor[:, 1]).any() else float("nan"),
        modularity_per_latent=per_latent, explicitness_per_factor=per_factor,
        mutual_information=mi_np, n_bins=int(n_bins), C=float(C), split=split,
        train_fraction=train_fraction, seed=int(seed), n_train=rows.x_train.shape[0],
        n_test=rows.x_test.shape[0], device=str(device), notes=tuple(notes),
        warnings=rows.warnings)
