"""The plain references of the suite metrics, computed with scikit-learn, one fit per pair.

Each function computes what a fast metric computes, the slow and obvious way that
disentanglement_lib does (its estimators, its loops), so that the tests and benchmarks can
compare the two. Nothing in the package imports this module: scikit-learn takes about a
second to import, which ``import disentangle_eval`` does not pay.
"""
from __future__ import annotations

import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import mutual_info_score, roc_auc_score
from sklearn.preprocessing import MultiLabelBinarizer
from sklearn.svm import LinearSVC

__all__ = ["reference_explicitness", "reference_mig", "reference_score_matrix"]


def reference_mig(latents: np.ndarray, factors: np.ndarray, *,
                  n_bins: int = 20) -> tuple[float, np.ndarray]:
    """MIG and MI matrix computed the plain way, one scikit-learn call per pair.

    The slow reference of :func:`~disentangle_eval.mig` (tests and benchmarks compare the two):
    disentanglement_lib's computation on the rows given (its training rows), with
    ``np.histogram``/``np.digitize`` per latent and ``sklearn.metrics.mutual_info_score``
    per (latent, factor) pair.
    """
    binned = np.stack([np.digitize(column, np.histogram(column, n_bins)[1][:-1])
                       for column in np.asarray(latents, dtype=np.float64).T])
    mi = np.array([[mutual_info_score(y, z) for y in factors.T] for z in binned])
    entropy = np.array([mutual_info_score(y, y) for y in factors.T])
    ordered = np.sort(mi, axis=0)
    return float(np.mean((ordered[-1] - ordered[-2]) / entropy)), mi


def reference_score_matrix(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray,
                           y_test: np.ndarray, *, C: float = 0.01) -> np.ndarray:
    """SAP score matrix computed the plain way, one scikit-learn fit per pair.

    The slow reference of :func:`~disentangle_eval.sap` (tests and benchmarks compare the two):
    ``LinearSVC(C=C, class_weight="balanced")`` on each latent alone for each factor,
    fitted on the training rows, accuracy on the test rows; rows = latents, columns =
    factors.
    """
    matrix = np.zeros((x_train.shape[1], y_train.shape[1]))
    for i in range(x_train.shape[1]):
        for j in range(y_train.shape[1]):
            model = LinearSVC(C=C, class_weight="balanced").fit(x_train[:, [i]], y_train[:, j])
            matrix[i, j] = np.mean(model.predict(x_test[:, [i]]) == y_test[:, j])
    return matrix


def reference_explicitness(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray,
                           y_test: np.ndarray) -> np.ndarray:
    """Explicitness per factor computed the plain way, one scikit-learn fit per factor.

    The slow reference of :func:`~disentangle_eval.modularity_explicitness` (tests and
    benchmarks compare the two): latents standardised with the training mean and standard deviation
    (constant ones set to 0), ``LogisticRegression()`` per factor, macro ROC-AUC of its
    probabilities against the one-hot classes on the training and on the test rows.
    Returns shape (n_factors, 2): columns (train, test).
    """
    mean, std = x_train.mean(axis=0), x_train.std(axis=0)
    scale = np.where(std > 0, std, 1.0)
    z_train = np.where(std > 0, (x_train - mean) / scale, 0.0)
    z_test = np.where(std > 0, (x_test - mean) / scale, 0.0)
    out = np.zeros((y_train.shape[1], 2))
    for j in range(y_train.shape[1]):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            model = LogisticRegression().fit(z_train, y_train[:, j])
        for column, (z, y) in enumerate(((z_train, y_train[:, j]), (z_test, y_test[:, j]))):
            one_hot = MultiLabelBinarizer().fit_transform(y[:, None])
            out[j, column] = roc_auc_score(one_hot, model.predict_proba(z))
    return out
