"""DCI: disentanglement, completeness and informativeness (Eastwood & Williams, 2018).

One classifier per factor predicts the factor's value from all latents; its feature
importances form one column of the importance matrix ``R`` (rows = latents, columns =
factors, each column summing to one). From ``R``, disentanglement and completeness
(:mod:`disentangle_eval._dci_scores`, disentanglement_lib's entropy formulas);
informativeness is the classifiers' mean accuracy on the training and on the test rows.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
import torch

from disentangle_eval._dci_scores import (completeness, completeness_per_factor, disentanglement,
                                          disentanglement_per_code)
from disentangle_eval._results import MetricResult
from disentangle_eval._split import (check_split_options, require_two_classes, split_rows,
                                     split_warnings)
from disentangle_eval._validation import (DataError, ScoringInputs, check_inputs,
                                          resolve_device)

__all__ = ["DCIResult", "dci", "dci_from_inputs", "disentanglement", "completeness",
           "disentanglement_per_code", "completeness_per_factor", "PREDICTORS", "BACKENDS"]

PREDICTORS = ("gbt", "random_forest", "logistic")
BACKENDS = ("torch", "sklearn")


# --------------------------------------------------------------------------------------
# Result
# --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class DCIResult(MetricResult):
    """DCI scores and the importance matrix they come from.

    Attributes
    ----------
    disentanglement, completeness : float
        D and C of ``importance`` (see :func:`disentanglement`, :func:`completeness`).
    informativeness_train, informativeness_test : float
        Mean over factors of the classifiers' accuracy on the training / test rows.
    importance : numpy.ndarray of shape (n_latents, n_factors)
        Rows = latents, columns = factors; each column sums to 1 (0 for a factor whose
        classifier uses no latent at all, e.g. when every latent is constant).
    per_code_disentanglement : numpy.ndarray of shape (n_latents,)
    per_factor_completeness : numpy.ndarray of shape (n_factors,)
    per_factor_accuracy_train, per_factor_accuracy_test : numpy.ndarray of shape (n_factors,)
    predictor, backend, split : str
        What was run (``backend`` is the one actually used: random forests always run
        in scikit-learn).
    train_fraction : float
    seed : int
    n_train, n_test : int
        Rows used for fitting and for the test accuracy.
    device : str
        Device of the torch computations (``"cpu"`` for the scikit-learn backend).
    warnings : tuple of str
        Problems noticed with the data or split, also issued with ``warnings.warn``.
    """

    disentanglement: float
    completeness: float
    informativeness_train: float
    informativeness_test: float
    importance: np.ndarray
    per_code_disentanglement: np.ndarray
    per_factor_completeness: np.ndarray
    per_factor_accuracy_train: np.ndarray
    per_factor_accuracy_test: np.ndarray
    predictor: str
    backend: str
    split: str
    train_fraction: float
    seed: int
    n_train: int
    n_test: int
    device: str
    warnings: tuple[str, ...] = field(default=())

    HEADLINE = ("disentanglement", "completeness", "informativeness_train",
                "informativeness_test")
    LAYOUTS = {"importance": "rows = latents, columns = factors"}


# --------------------------------------------------------------------------------------
# Predictors
# --------------------------------------------------------------------------------------

def _sklearn_per_factor(make_model, x_train, y_train, x_test, y_test, n_jobs, progress):
    """Fit ``make_model()`` once per factor in parallel; return importance and accuracies."""
    from joblib import Parallel, delayed
    from tqdm.auto import tqdm

    def fit_one(j):
        model = make_model()
        model.fit(x_train, y_train[:, j])
        return (np.abs(model.feature_importances_),
                float(np.mean(model.predict(x_train) == y_train[:, j])),
                float(np.mean(model.predict(x_test) == y_test[:, j])))

    n_factors = y_train.shape[1]
    jobs = (delayed(fit_one)(j) for j in range(n_factors))
    parallel = Parallel(n_jobs=n_jobs, backend="loky", return_as="generator")
    results = list(tqdm(parallel(jobs), total=n_factors, desc="DCI classifiers",
                        unit="factor", disable=None if progress else True, leave=False))
    importance = np.stack([r[0] for r in results], axis=1)
    return (importance, np.array([r[1] for r in results]), np.array([r[2] for r in results]))


def _fit_gbt_torch(x_train, y_train, x_test, y_test, seed, progress, max_bins):
    from disentangle_eval._gbt import MAX_TRAIN_ROWS, fit_gbt_classifiers

    if x_train.shape[0] > MAX_TRAIN_ROWS:
        raise DataError(f"the torch GBT takes at most {MAX_TRAIN_ROWS} training rows "
                        f"(got {x_train.shape[0]}); use backend='sklearn' or fewer rows")
    fit = fit_gbt_classifiers(x_train, y_train, x_test, seed=seed, progress=progress,
                              max_bins=max_bins)
    acc_train = (fit.predict_train == y_train).double().mean(0)
    acc_test = (fit.predict_test == y_test).double().mean(0)
    return (fit.importance.cpu().numpy(), acc_train.cpu().numpy(), acc_test.cpu().numpy())


def _fit_logistic_torch(x_train, y_train, x_test, y_test, l2):
    from disentangle_eval._logistic import fit_multinomial_logistic

    mean = x_train.mean(0)
    std = x_train.std(0, unbiased=False)
    std = torch.where(std > 0, std, torch.ones_like(std))
    z_train = (x_train - mean) / std
    z_test = (x_test - mean) / std
    # Relabel every factor to the classes present in the training rows.
    codes, classes = [], []
    for j in range(y_train.shape[1]):
        cls, inv = torch.unique(y_train[:, j], return_inverse=True)
        classes.append(cls)
        codes.append(inv)
    codes = torch.stack(codes, 1)
    n_classes = [c.numel() for c in classes]
    fit = fit_multinomial_logistic(z_train, codes, n_classes, sample_weight=None, l2=l2)
    weights = fit.weights.abs() * fit.class_mask[:, None, :]          # (F, d, K)
    importance = weights.sum(2).T                                      # (d, F)
    total = importance.sum(0, keepdim=True)
    importance = torch.where(total > 0, importance / torch.where(total > 0, total, 1.0), 0.0)
    acc = []
    for z, y in ((z_train, y_train), (z_test, y_test)):
        pred = fit.log_proba(z).argmax(-1)                             # (F, n)
        labels = torch.stack([classes[j][pred[j]] for j in range(len(classes))], 1)
        acc.append((labels == y).double().mean(0).cpu().numpy())
    return importance.cpu().numpy(), acc[0], acc[1]


# --------------------------------------------------------------------------------------
# The metric
# --------------------------------------------------------------------------------------

def dci(latents, factors, *, predictor: str = "gbt", backend: str = "torch",
        split: str = "random", train_fraction: float = 0.9, seed: int = 0,
        device=None, progress: bool = False, n_jobs: int | None = -1,
        max_bins: int = 256, l2: float = 1e-2, factor_names=None) -> DCIResult:
    """DCI disentanglement, completeness and informativeness of latents.

    Parameters
    ----------
    latents : array-like or torch.Tensor of shape (n_samples, n_latents)
        The representation, one row per sample. Values are used as numbers (also for
        integer codes), as the reference does.
    factors : array-like or torch.Tensor of shape (n_samples, n_factors)
        Integer ground-truth factor labels.
    predictor : {"gbt", "random_forest", "logistic"}, default="gbt"
        The per-factor classifier whose feature importances form the matrix:

        - ``"gbt"``: gradient-boosted trees with scikit-learn ``GradientBoostingClassifier()``
          defaults (100 stages, depth 3, learning rate 0.1, log-loss), impurity importances;
          disentanglement_lib's DCI.
        - ``"random_forest"``: scikit-learn ``RandomForestClassifier(n_estimators=100,
          criterion="entropy", max_depth=10, random_state=seed)`` on the raw latents,
          impurity importances (the tripod / QLAE authors' DCI, here on this function's
          split; tripod standardises the latents, which leaves the trees unchanged, and
          uses its own shuffled 90/10 split with test accuracy only).
        - ``"logistic"``: multinomial logistic regression with an L2 penalty ``l2`` on
          standardised latents; importance = absolute weights summed over classes,
          normalised per factor (a fast linear probe, not comparable to the tree scores).
    backend : {"torch", "sklearn"}, default="torch"
        ``"torch"``: the batched implementation in :mod:`disentangle_eval._gbt`, which fits
        all factors' trees at once on ``device`` and reproduces the scikit-learn numbers
        within a few hundredths (split search over at most ``max_bins`` bins per latent).
        ``"sklearn"``: the reference path, one scikit-learn fit per factor, run in parallel
        (``n_jobs``). Random forests always use scikit-learn.
    split : {"random", "contiguous"}, default="random"
        ``"contiguous"``: the first ``ceil(train_fraction * n_samples)`` rows train, the
        rest test (disentanglement_lib's convention, needed to reproduce its numbers);
        ``"random"``: the same cut after a permutation seeded by ``seed`` (data stored in
        factor order would otherwise be tested on a single value of the slowest factor).
    train_fraction : float, default=0.9
        In (0, 1); at least one test row must remain.
    seed : int, default=0
        Seeds the split permutation, the random tie-breaking between equally good
        features in tree splits (scikit-learn draws a random feature order per node) and
        the scikit-learn estimators' ``random_state``.
    device : str, torch.device or None, default=None
        Device of the torch backend; ``None``: CUDA when available, else CPU.
    progress : bool, default=False
        Show a progress bar on stderr (tqdm; off when stderr is not a terminal).
    n_jobs : int or None, default=-1
        joblib workers of the scikit-learn backend (one factor per task).
    max_bins : int, default=256
        Most bins per latent in the torch GBT's split search (exact for latents with at
        most that many distinct values).
    l2 : float, default=1e-2
        Ridge strength of ``predictor="logistic"`` (on the mean-loss scale).
    factor_names : sequence of str, optional
        Used in warnings and error messages.

    Returns
    -------
    DCIResult

    Raises
    ------
    DataError
        Invalid latents or factors, or a factor with a single value in the training rows.
    ValueError
        An unknown ``predictor``, ``backend`` or ``split``, or ``train_fraction`` outside
        (0, 1) or leaving no test row.

    Warns
    -----
    UserWarning
        A contiguous split whose test rows miss factor values that the training rows
        have, or test rows with factor values never seen in training.

    References
    ----------
    .. [1] C. Eastwood and C. K. I. Williams, "A Framework for the Quantitative
       Evaluation of Disentangled Representations", ICLR 2018.
    .. [2] F. Locatello et al., "Challenging Common Assumptions in the Unsupervised
       Learning of Disentangled Representations", ICML 2019; code:
       google-research/disentanglement_lib, ``evaluation/metrics/dci.py``.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> factors = rng.integers(0, 4, size=(600, 2))
    >>> latents = factors + 0.05 * rng.standard_normal((600, 2))
    >>> result = dci(latents, factors, device="cpu")
    >>> print(f"D={result.disentanglement:.2f} C={result.completeness:.2f} "
    ...       f"I_test={result.informativeness_test:.2f}")
    D=1.00 C=1.00 I_test=1.00
    >>> result.importance.shape   # rows = latents, columns = factors
    (2, 2)
    """
    backend, dev = _check_dci_options(predictor, backend, split, train_fraction, max_bins,
                                      device)
    # Latents are numbers for the classifiers (as in the reference), never categories.
    inputs = check_inputs(latents, factors, discrete=False, device=dev,
                          factor_names=factor_names)
    return dci_from_inputs(inputs, predictor=predictor, backend=backend, split=split,
                           train_fraction=train_fraction, seed=seed, device=dev,
                           progress=progress, n_jobs=n_jobs, max_bins=max_bins, l2=l2,
                           factor_names=factor_names)


def _check_dci_options(predictor, backend, split, train_fraction, max_bins, device):
    """Validate the options of :func:`dci`; return the backend and device to use."""
    if predictor not in PREDICTORS:
        raise ValueError(f"predictor must be one of {PREDICTORS}, got {predictor!r}")
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    check_split_options(split, train_fraction)
    if isinstance(max_bins, bool) or not isinstance(max_bins, int) or not 2 <= max_bins:
        raise ValueError(f"max_bins must be an integer >= 2, got {max_bins!r}")
    if predictor == "random_forest":
        backend = "sklearn"
    dev = resolve_device(device) if backend == "torch" else torch.device("cpu")
    return backend, dev


def dci_from_inputs(inputs: ScoringInputs, *, predictor: str = "gbt", backend: str = "torch",
                    split: str = "random", train_fraction: float = 0.9, seed: int = 0,
                    device=None, progress: bool = False, n_jobs: int | None = -1,
                    max_bins: int = 256, l2: float = 1e-2, factor_names=None) -> DCIResult:
    """:func:`dci` of inputs already checked by :func:`~disentangle_eval._validation.check_inputs`.

    The latents are used as numbers (``inputs.raw_latents``) whether or not the inputs
    were checked as discrete codes. Parameters are those of :func:`dci`.
    """
    backend, dev = _check_dci_options(predictor, backend, split, train_fraction, max_bins,
                                      device if device is not None else inputs.device)
    train_fraction = float(train_fraction)
    use_torch = backend == "torch"
    n_samples = inputs.n_samples
    train_rows, test_rows = split_rows(n_samples, split, train_fraction, seed)
    y_all = inputs.factors.cpu().numpy()
    y_train_np, y_test_np = y_all[train_rows], y_all[test_rows]
    require_two_classes(y_train_np, split, factor_names)
    messages = split_warnings(y_train_np, y_test_np, split, factor_names)
    for message in messages:
        warnings.warn(message, UserWarning, stacklevel=3)

    if use_torch:
        index_train = torch.as_tensor(train_rows, device=dev)
        index_test = torch.as_tensor(test_rows, device=dev)
        x_all, y_all_t = inputs.raw_latents.to(dev), inputs.factors.to(dev)
        x_train, x_test = x_all[index_train], x_all[index_test]
        y_train, y_test = y_all_t[index_train], y_all_t[index_test]
        if predictor == "gbt":
            importance, acc_train, acc_test = _fit_gbt_torch(
                x_train, y_train, x_test, y_test, seed, progress, max_bins)
        else:
            importance, acc_train, acc_test = _fit_logistic_torch(
                x_train, y_train, x_test, y_test, l2)
    else:
        x_all = inputs.raw_latents.cpu().numpy()
        x_train, x_test = x_all[train_rows], x_all[test_rows]
        if predictor == "gbt":
            from sklearn.ensemble import GradientBoostingClassifier

            def make_model():
                return GradientBoostingClassifier(random_state=seed)
        elif predictor == "random_forest":
            from sklearn.ensemble import RandomForestClassifier

            def make_model():
                return RandomForestClassifier(n_estimators=100, criterion="entropy",
                                              max_depth=10, random_state=seed)
        else:
            from sklearn.linear_model import LogisticRegression

            x_mean, x_std = x_train.mean(0), x_train.std(0)
            x_std = np.where(x_std > 0, x_std, 1.0)
            x_train, x_test = (x_train - x_mean) / x_std, (x_test - x_mean) / x_std

            class _LogisticProbe(LogisticRegression):
                @property
                def feature_importances_(self):
                    weights = np.abs(self.coef_).sum(0)
                    return weights / weights.sum() if weights.sum() > 0 else weights

            def make_model():
                return _LogisticProbe(C=1.0 / (l2 * len(train_rows)), max_iter=500)
        importance, acc_train, acc_test = _sklearn_per_factor(
            make_model, x_train, y_train_np, x_test, y_test_np, n_jobs, progress)

    importance = np.asarray(importance, dtype=np.float64)
    return DCIResult(
        disentanglement=disentanglement(importance),
        completeness=completeness(importance),
        informativeness_train=float(np.mean(acc_train)),
        informativeness_test=float(np.mean(acc_test)),
        importance=importance,
        per_code_disentanglement=disentanglement_per_code(importance),
        per_factor_completeness=completeness_per_factor(importance),
        per_factor_accuracy_train=np.asarray(acc_train, dtype=np.float64),
        per_factor_accuracy_test=np.asarray(acc_test, dtype=np.float64),
        predictor=predictor, backend=backend, split=split, train_fraction=train_fraction,
        seed=int(seed), n_train=len(train_rows), n_test=len(test_rows), device=str(dev),
        warnings=tuple(messages))
