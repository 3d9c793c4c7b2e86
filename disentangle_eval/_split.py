"""Train/test splits of the rows, shared by every metric that fits a predictor.

disentanglement_lib's rule: the first ``ceil(train_fraction * N)`` rows of the order
train, the rest test. ``split="contiguous"`` keeps the stored order (needed to reproduce
the reference's numbers); ``split="random"`` permutes the rows with ``seed`` first, because
data stored in factor order would otherwise be tested on unseen factor values.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from ._messages import DataError, factor_label, factor_name

__all__ = ["SPLITS", "check_split_options", "split_rows", "split_warnings",
           "require_two_classes"]

SPLITS = ("random", "contiguous")


def check_split_options(split: str, train_fraction) -> float:
    """Validate ``split`` and ``train_fraction``; return the fraction as a float."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    if isinstance(train_fraction, bool) or not isinstance(train_fraction, (int, float)) \
            or not 0.0 < float(train_fraction) < 1.0:
        raise ValueError(f"train_fraction must be a number in (0, 1), got {train_fraction!r}")
    return float(train_fraction)


def split_rows(n_samples: int, split: str, train_fraction: float,
               seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Row indices (train, test): the first ceil(train_fraction * N) rows of the order."""
    n_train = int(math.ceil(n_samples * train_fraction))  # disentanglement_lib's rule
    n_test = n_samples - n_train
    if n_test < 1 or n_train < 2:
        raise ValueError(
            f"train_fraction={train_fraction} leaves {n_train} training and {n_test} test "
            f"rows of {n_samples}; at least 2 training rows and 1 test row are needed")
    if split == "contiguous":
        order = np.arange(n_samples)
    else:
        order = np.random.default_rng(seed).permutation(n_samples)
    return order[:n_train], order[n_train:]


def require_two_classes(y_train: np.ndarray, split: str,
                        factor_names: Sequence[str] | None = None) -> None:
    """Refuse a factor that takes a single value in the training rows (no fit possible)."""
    for j in range(y_train.shape[1]):
        if np.unique(y_train[:, j]).size < 2:
            raise DataError(
                f"factor {factor_label(j, factor_names)} takes a single value in the "
                f"{len(y_train)} training rows (split={split!r}); no classifier can be "
                "fitted. Data stored in factor order needs split='random'")


def split_warnings(y_train: np.ndarray, y_test: np.ndarray, split: str,
                   factor_names: Sequence[str] | None = None) -> list[str]:
    """Messages about test rows that miss, or hold unseen, factor values."""
    messages = []
    missing, unseen = [], []
    for j in range(y_train.shape[1]):
        train_values = np.unique(y_train[:, j])
        test_values = np.unique(y_test[:, j])
        name = factor_name(j, factor_names)
        n_missing = np.setdiff1d(train_values, test_values).size
        n_unseen = np.setdiff1d(test_values, train_values).size
        if n_missing:
            missing.append(f"{name} ({n_missing} of {train_values.size} values)")
        if n_unseen:
            unseen.append(f"{name} ({n_unseen} values)")
    if missing and split == "contiguous":
        messages.append(
            "contiguous split: the test rows miss factor values that the training rows "
            f"have: {', '.join(missing)}; the test accuracy covers only part of each "
            "factor's range (split='random' avoids this for data stored in factor order)")
    if unseen:
        messages.append(
            "the test rows hold factor values absent from the training rows, which no "
            f"classifier can predict: {', '.join(unseen)}")
    return messages
