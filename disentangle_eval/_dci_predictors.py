"""The per-factor classifiers of DCI: each returns the importance matrix and accuracies.

Every predictor fits one classifier per factor on the training rows and returns
``(importance (n_latents, n_factors), accuracy_train (n_factors,), accuracy_test
(n_factors,))`` as numpy arrays. Before fitting, the memory the fit needs is compared
with what is available, so that a factor with thousands of classes (each a tree per
boosting stage, or a column of every logit array) is refused with one line instead of
failing halfway through an allocation.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from ._gbt import FitTooLarge, fit_gbt_classifiers
from ._logistic import fit_multinomial_logistic
from ._device import available_memory
from ._messages import DataError, factor_label
from ._scaling import ColumnStandardizer

__all__ = ["fit_gbt_torch", "fit_logistic_torch", "fit_sklearn", "check_predictor_memory"]


def _too_large(j: int, n_classes: int, n_train: int, needed: int, available: int,
               what: str, factor_names) -> DataError:
    if n_classes > n_train / 2:
        advice = ("a factor with more distinct values than half the rows is almost "
                  "certainly continuous or an id column: discretise it or leave it out")
    else:
        advice = "fit fewer training rows (max_train_rows) or leave the factor out"
    return DataError(
        f"factor {factor_label(j, factor_names)} has {n_classes} distinct values in the "
        f"{n_train} training rows: {what} need about {needed / 2 ** 30:.1f} GiB, "
        f"{available / 2 ** 30:.1f} GiB are available; {advice}")


def fit_gbt_torch(x_train, y_train, x_test, y_test, *, seed, progress, max_bins,
                  factor_names=None):
    """The batched torch GBT (:func:`~disentangle_eval._gbt.fit_gbt_classifiers`)."""
    available = available_memory(x_train.device)
    try:
        fit = fit_gbt_classifiers(x_train, y_train, x_test, seed=seed, progress=progress,
                                  max_bins=max_bins, max_bytes=available)
    except FitTooLarge as exc:
        j = exc.target
        raise _too_large(j, int(torch.unique(y_train[:, j]).numel()), x_train.shape[0],
                         exc.needed, exc.available, "its boosted trees", factor_names) \
            from None
    acc_train = (fit.predict_train == y_train).double().mean(0)
    acc_test = (fit.predict_test == y_test).double().mean(0)
    return (fit.importance.cpu().numpy(), acc_train.cpu().numpy(), acc_test.cpu().numpy())


def fit_logistic_torch(x_train, y_train, x_test, y_test, *, l2):
    """Multinomial logistic regression on latents standardised with the training rows'
    statistics (latents constant there are 0); importance = absolute weights summed over
    classes, normalised per factor."""
    standardizer = ColumnStandardizer.fit(x_train)
    z_train, z_test = standardizer.transform(x_train), standardizer.transform(x_test)
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


def fit_sklearn(predictor, x_train, y_train, x_test, y_test, *, seed, l2, n_jobs, progress):
    """One scikit-learn fit per factor, run in parallel (``n_jobs`` joblib workers)."""
    # scikit-learn and joblib are imported here: only this backend needs them, and
    # they take about a second to import.
    from joblib import Parallel, delayed

    make_model = _sklearn_model(predictor, seed, l2, len(x_train))
    if predictor == "logistic":
        x_mean, x_std = x_train.mean(0), x_train.std(0)
        x_std = np.where(x_std > 0, x_std, 1.0)
        x_train, x_test = (x_train - x_mean) / x_std, (x_test - x_mean) / x_std

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


def _sklearn_model(predictor, seed, l2, n_train):
    """A factory of the scikit-learn estimator of ``predictor``."""
    if predictor == "gbt":
        from sklearn.ensemble import GradientBoostingClassifier

        return lambda: GradientBoostingClassifier(random_state=seed)
    if predictor == "random_forest":
        from sklearn.ensemble import RandomForestClassifier

        return lambda: RandomForestClassifier(n_estimators=100, criterion="entropy",
                                              max_depth=10, random_state=seed)
    from sklearn.linear_model import LogisticRegression

    class _LogisticProbe(LogisticRegression):
        @property
        def feature_importances_(self):
            weights = np.abs(self.coef_).sum(0)
            return weights / weights.sum() if weights.sum() > 0 else weights

    return lambda: _LogisticProbe(C=1.0 / (l2 * n_train), max_iter=500)


def check_predictor_memory(predictor: str, backend: str, n_train: int, n_test: int,
                           n_classes: Sequence[int], device: torch.device, n_jobs,
                           factor_names=None) -> None:
    """Refuse, before fitting, a factor whose classifier cannot fit in memory.

    The torch GBT measures itself (:mod:`disentangle_eval._gbt_memory`); the others are
    bounded by their arrays of (rows, classes): scikit-learn's boosting keeps raw
    predictions, gradients and probabilities per class (a few (rows, classes) float64
    arrays per parallel job), its forests a (nodes, classes) value array per tree, and
    the torch logistic regression a few (rows, classes) logit arrays per factor.
    """
    if predictor == "gbt" and backend == "torch":
        return
    rows = n_train + n_test
    if predictor == "gbt":
        per_factor = [4 * rows * k * 8 for k in n_classes]
        what = "scikit-learn's boosted trees"
    elif predictor == "random_forest":
        per_factor = [100 * min(2 ** 11, 2 * n_train) * k * 8 for k in n_classes]
        what = "scikit-learn's forest"
    else:
        per_factor = [6 * rows * k * 8 for k in n_classes]
        what = "the logistic regression's arrays"
    parallel = 1
    if backend == "sklearn":
        cpus = torch.get_num_threads() if n_jobs in (None, -1) else max(1, int(n_jobs))
        parallel = max(1, min(cpus, len(n_classes)))
    needed = sum(sorted(per_factor, reverse=True)[:parallel])
    available = available_memory(device)
    if needed > available:
        j = int(np.argmax(per_factor))
        raise _too_large(j, n_classes[j], n_train, needed, available, what, factor_names)
