"""DCI: disentanglement, completeness and informativeness (Eastwood & Williams, 2018).

One classifier per factor predicts the factor's value from all latents; its feature
importances form one column of the importance matrix ``R`` (rows = latents, columns =
factors, each column summing to one). From ``R``, disentanglement and completeness
(:mod:`disentangle_eval._dci_scores`, disentanglement_lib's entropy formulas);
informativeness is the classifiers' mean accuracy on the training and on the test rows.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
import torch

from ._dci_predictors import (check_predictor_memory, fit_gbt_torch, fit_logistic_torch,
                              fit_sklearn)
from ._dci_scores import (completeness, completeness_per_factor, disentanglement,
                          disentanglement_per_code)
from ._gbt import MAX_TRAIN_ROWS
from ._results import MetricResult
from ._split import check_split_options, require_two_classes, split_rows, split_warnings
from ._validation import DataError, ScoringInputs, check_inputs, resolve_device

__all__ = ["DCIResult", "DCIRows", "dci", "dci_from_inputs", "dci_rows", "disentanglement", "completeness",
           "disentanglement_per_code", "completeness_per_factor", "PREDICTORS", "BACKENDS"]

PREDICTORS = ("gbt", "random_forest", "logistic")
BACKENDS = ("torch", "sklearn")
# At most this many training and test rows are used, a seeded subsample of the split's:
# ten times the reference's 10000 + 5000, beyond which the scores hardly change while the
# fit's time and memory keep growing with the rows.
DEFAULT_MAX_TRAIN_ROWS = 100_000
DEFAULT_MAX_TEST_ROWS = 50_000


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
    n_train_available, n_test_available : int
        Rows of the split before the ``max_train_rows`` / ``max_test_rows`` subsample.
    max_train_rows, max_test_rows : int or None
        The caps in force (``None``: no cap).
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
    n_train_available: int
    n_test_available: int
    max_train_rows: int | None
    max_test_rows: int | None
    device: str
    warnings: tuple[str, ...] = field(default=())

    HEADLINE = ("disentanglement", "completeness", "informativeness_train",
                "informativeness_test")
    LAYOUTS = {"importance": "rows = latents, columns = factors"}


# --------------------------------------------------------------------------------------
# The metric
# --------------------------------------------------------------------------------------

def dci(latents, factors, *, predictor: str = "gbt", backend: str = "torch",
        split: str = "random", train_fraction: float = 0.9, seed: int = 0,
        max_train_rows: int | None = DEFAULT_MAX_TRAIN_ROWS,
        max_test_rows: int | None = DEFAULT_MAX_TEST_ROWS, device=None,
        progress: bool = False, n_jobs: int | None = -1, max_bins: int = 256,
        l2: float = 1e-2, factor_names=None) -> DCIResult:
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
        Seeds the split permutation, the row subsamples, the random tie-breaking between
        equally good features in tree splits (scikit-learn draws a random feature order
        per node) and the scikit-learn estimators' ``random_state``.
    max_train_rows, max_test_rows : int or None, default=100000, 50000
        Most training / test rows used: a split with more is subsampled (seeded by
        ``seed``, uniformly, in the split's order), and the result's ``warnings`` say so.
        ``None``: all rows. The reference fits 10000 rows and tests 5000; the caps keep
        the time and memory of a million-row dataset bounded (the fit's cost grows with
        the rows, the scores hardly change beyond some ten thousand).
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
        A factor whose classifier needs more memory than is available (e.g. thousands
        of distinct values: a tree per value and boosting stage).
    ValueError
        An unknown ``predictor``, ``backend`` or ``split``, or ``train_fraction`` outside
        (0, 1) or leaving no test row.

    Warns
    -----
    UserWarning
        A contiguous split whose test rows miss factor values that the training rows
        have, test rows with factor values never seen in training, a subsample of the
        rows (``max_train_rows``, ``max_test_rows``), or latents beyond float32's range,
        which are scaled by a power of two per column first (the trees see float32
        values, as scikit-learn's do; the scaling changes no split).

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
    options = dict(predictor=predictor, backend=backend, split=split,
                   train_fraction=train_fraction, seed=seed, max_train_rows=max_train_rows,
                   max_test_rows=max_test_rows, progress=progress, n_jobs=n_jobs,
                   max_bins=max_bins, l2=l2, factor_names=factor_names)
    backend, dev = _check_dci_options(predictor, backend, split, train_fraction, max_bins,
                                      max_train_rows, max_test_rows, device)
    # Latents are numbers for the classifiers (as in the reference), never categories.
    inputs = check_inputs(latents, factors, discrete=False, device=dev,
                          factor_names=factor_names)
    return dci_from_inputs(inputs, device=dev, **options)


def _check_dci_options(predictor, backend, split, train_fraction, max_bins, max_train_rows,
                       max_test_rows, device):
    """Validate the options of :func:`dci`; return the backend and device to use."""
    if predictor not in PREDICTORS:
        raise ValueError(f"predictor must be one of {PREDICTORS}, got {predictor!r}")
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    check_split_options(split, train_fraction)
    if isinstance(max_bins, bool) or not isinstance(max_bins, int) or not 2 <= max_bins:
        raise ValueError(f"max_bins must be an integer >= 2, got {max_bins!r}")
    for name, value in (("max_train_rows", max_train_rows), ("max_test_rows", max_test_rows)):
        if value is not None and (isinstance(value, bool)
                                  or not isinstance(value, (int, np.integer)) or value < 1):
            raise ValueError(f"{name} must be a positive integer or None, got {value!r}")
    if predictor == "random_forest":
        backend = "sklearn"
    dev = resolve_device(device) if backend == "torch" else torch.device("cpu")
    return backend, dev


def dci_from_inputs(inputs: ScoringInputs, *, predictor: str = "gbt", backend: str = "torch",
                    split: str = "random", train_fraction: float = 0.9, seed: int = 0,
                    max_train_rows: int | None = DEFAULT_MAX_TRAIN_ROWS,
                    max_test_rows: int | None = DEFAULT_MAX_TEST_ROWS, device=None,
                    progress: bool = False, n_jobs: int | None = -1, max_bins: int = 256,
                    l2: float = 1e-2, factor_names=None) -> DCIResult:
    """:func:`dci` of inputs already checked by :func:`~disentangle_eval._validation.check_inputs`.

    The latents are used as numbers (``inputs.raw_latents``) whether or not the inputs
    were checked as discrete codes. Parameters are those of :func:`dci`.
    """
    backend, dev = _check_dci_options(predictor, backend, split, train_fraction, max_bins,
                                      max_train_rows, max_test_rows,
                                      device if device is not None else inputs.device)
    train_fraction = float(train_fraction)
    rows = dci_rows(inputs, split=split, train_fraction=train_fraction, seed=seed,
                    max_train_rows=max_train_rows, max_test_rows=max_test_rows,
                    factor_names=factor_names,
                    torch_trees=predictor == "gbt" and backend == "torch")
    for message in rows.messages:
        warnings.warn(message, UserWarning, stacklevel=3)
    train_rows, test_rows, available, messages = (rows.train, rows.test, rows.available,
                                                  rows.messages)
    x_all, y_train, y_test = rows.latents, rows.y_train, rows.y_test
    check_predictor_memory(predictor, backend, len(train_rows), len(test_rows),
                           [len(np.unique(y_train[:, j])) for j in range(y_train.shape[1])],
                           dev, n_jobs, factor_names)

    if backend == "torch":
        index_train = torch.as_tensor(train_rows, device=dev)
        index_test = torch.as_tensor(test_rows, device=dev)
        x_all, y_all_t = x_all.to(dev), inputs.factors.to(dev)
        x_train, x_test = x_all[index_train], x_all[index_test]
        y_train_t, y_test_t = y_all_t[index_train], y_all_t[index_test]
        if predictor == "gbt":
            importance, acc_train, acc_test = fit_gbt_torch(
                x_train, y_train_t, x_test, y_test_t, seed=seed, progress=progress,
                max_bins=max_bins, factor_names=factor_names)
        else:
            importance, acc_train, acc_test = fit_logistic_torch(
                x_train, y_train_t, x_test, y_test_t, l2=l2)
    else:
        x_all = x_all.cpu().numpy()
        importance, acc_train, acc_test = fit_sklearn(
            predictor, x_all[train_rows], y_train, x_all[test_rows], y_test, seed=seed, l2=l2,
            n_jobs=n_jobs, progress=progress)

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
        seed=int(seed), n_train=len(train_rows), n_test=len(test_rows),
        n_train_available=available[0], n_test_available=available[1],
        max_train_rows=max_train_rows, max_test_rows=max_test_rows, device=str(dev),
        warnings=tuple(messages))


class DCIRows(NamedTuple):
    """The rows one DCI computation fits and tests (see :func:`dci_rows`)."""

    train: np.ndarray          # indices of the training rows
    test: np.ndarray           # indices of the test rows
    available: tuple[int, int]  # the split's training and test rows before subsampling
    latents: torch.Tensor      # all rows' latents as the classifiers see them
    y_train: np.ndarray
    y_test: np.ndarray
    messages: list[str]        # warnings about the split, subsample and scaling


def dci_rows(inputs: ScoringInputs, *, split: str, train_fraction: float, seed: int,
             max_train_rows: int | None, max_test_rows: int | None, factor_names=None,
             torch_trees: bool = True) -> DCIRows:
    """The split, subsample and latents of :func:`dci_from_inputs` (options as there).

    Raises :class:`DataError` for a factor with one value in the training rows, or
    more training rows than the torch trees take (``torch_trees``).
    """
    train_rows, test_rows = split_rows(inputs.n_samples, split, train_fraction, seed)
    available = (len(train_rows), len(test_rows))
    train_rows = _subsample(train_rows, max_train_rows, seed, 1)
    test_rows = _subsample(test_rows, max_test_rows, seed, 2)
    messages = []
    if (len(train_rows), len(test_rows)) != available:
        messages.append(
            f"DCI used a seeded subsample of the rows: {len(train_rows)} of "
            f"{available[0]} training rows (max_train_rows={max_train_rows}) and "
            f"{len(test_rows)} of {available[1]} test rows (max_test_rows={max_test_rows})")
    if len(train_rows) > MAX_TRAIN_ROWS and torch_trees:
        raise DataError(f"the torch trees take at most {MAX_TRAIN_ROWS} training rows (got "
                        f"{len(train_rows)}); set max_train_rows")
    y_all = inputs.factors.cpu().numpy()
    y_train, y_test = y_all[train_rows], y_all[test_rows]
    require_two_classes(y_train, split, factor_names)
    messages += split_warnings(y_train, y_test, split, factor_names)
    x_all, scaled = _within_float32(inputs.raw_latents)
    if scaled:
        messages.append(
            f"latent column(s) {', '.join(map(str, scaled))} exceed float32's range, in "
            "which the trees compare values; scaled by a power of two per column (exact, "
            "and a tree split compares values within a column only)")
    return DCIRows(train=train_rows, test=test_rows, available=available, latents=x_all,
                   y_train=y_train, y_test=y_test, messages=messages)


def _subsample(rows: np.ndarray, most: int | None, seed: int, stream: int) -> np.ndarray:
    """At most ``most`` of ``rows``, drawn uniformly (seeded), in their given order."""
    if most is None or len(rows) <= most:
        return rows
    keep = np.random.default_rng([int(seed), stream]).choice(len(rows), most, replace=False)
    return rows[np.sort(keep)]


# Columns whose largest magnitude reaches this are scaled: float32's largest finite value
# is just below 2**128, and values near it round to infinity.
_FLOAT32_SAFE = 2.0 ** 127


def _within_float32(latents: torch.Tensor) -> tuple[torch.Tensor, list[int]]:
    """``latents`` with every column whose values would overflow float32 scaled by a power
    of two into range (exact in float64), and the indices of those columns."""
    largest = latents.abs().amax(0).tolist()
    scaled = [j for j, m in enumerate(largest) if m >= _FLOAT32_SAFE]
    if not scaled:
        return latents, []
    latents = latents.clone()
    for j in scaled:
        exponent = math.frexp(largest[j])[1]                      # largest < 2**exponent
        latents[:, j] *= 2.0 ** (127 - exponent)
    return latents, scaled
