"""The batched torch tree learner against its plain numpy reference, bit for bit.

:mod:`disentangle_eval._gbt_reference` grows one tree at a time with exact histograms;
the fast learner must give bitwise the same importances and predictions.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from disentangle_eval._gbt import RowCounts, fit_gbt_classifiers
from disentangle_eval._gbt_reference import reference_fit


def _factors(rng, n, sizes):
    return np.stack([rng.integers(0, k, n) for k in sizes], 1)


def continuous_problem(n, sizes=(2, 3, 7), seed=0):
    """Noisy continuous codes of the factors, an entangled pair, noise, a dead unit."""
    rng = np.random.default_rng(seed)
    f = _factors(rng, n, sizes)
    u = f / (np.asarray(sizes) - 1.0)
    latents = np.stack([u[:, 0] + 0.3 * rng.standard_normal(n),
                        np.tanh(3 * u[:, 1] - 1) + 0.2 * rng.standard_normal(n),
                        u[:, 2] + u[:, 1] + 0.1 * rng.standard_normal(n),
                        np.sin(4 * u[:, 2]) + 0.05 * rng.standard_normal(n),
                        rng.standard_normal(n),
                        np.zeros(n)], 1)
    return latents.astype(np.float32), f


def code_problem(n, sizes=(2, 4, 5), seed=0):
    """Integer codes with few values (crowded bins) and a duplicated code: exact ties."""
    rng = np.random.default_rng(seed)
    f = _factors(rng, n, sizes)
    codes = np.stack([f[:, 0] + rng.integers(0, 2, n),
                      (f[:, 1] * 2 + rng.integers(0, 3, n)) % 7,
                      f[:, 2] // 2 + rng.integers(0, 2, n),
                      f[:, 2] // 2 + rng.integers(0, 2, n),
                      rng.integers(0, 3, n)], 1)
    codes = np.concatenate([codes, codes[:, 1:2]], 1)            # an exact duplicate
    return codes.astype(np.float64), f


def _compare(latents, factors, n_train, block_rows=None, **options):
    x = torch.as_tensor(latents)
    y = torch.as_tensor(factors)
    fast = fit_gbt_classifiers(x[:n_train], y[:n_train], x[n_train:], block_rows=block_rows,
                               **options)
    importance, predict_train, predict_test = reference_fit(
        latents[:n_train], factors[:n_train], latents[n_train:], **options)
    np.testing.assert_array_equal(fast.predict_train.numpy(), predict_train)
    np.testing.assert_array_equal(fast.predict_test.numpy(), predict_test)
    np.testing.assert_array_equal(fast.importance.numpy(), importance)
    return importance


@pytest.mark.parametrize("max_depth, block_rows", [(1, 4096), (3, 4096), (3, 64)])
def test_continuous_latents_match_the_reference(max_depth, block_rows):
    latents, factors = continuous_problem(400)
    # 16 bins: the columns are binned by gap quantiles, not exactly. 64 rows per block:
    # the histograms are summed over five blocks of rows.
    importance = _compare(latents, factors, 300, n_estimators=12, max_depth=max_depth,
                          max_bins=16, seed=1, block_rows=block_rows)
    assert importance[:, 2].max() > 0.2 and np.all(importance[5] == 0)


@pytest.mark.parametrize("max_depth", [1, 3])
def test_code_latents_with_crowded_bins_match_the_reference(max_depth):
    latents, factors = code_problem(700)
    # More than 255 training rows in one bin: the float64 histogram path.
    assert max(np.bincount(c.astype(int)).max() for c in latents[:600].T) >= 256
    _compare(latents, factors, 600, n_estimators=12, max_depth=max_depth, seed=0,
             block_rows=250)


def test_many_classes_match_the_reference():
    latents, factors = continuous_problem(500, sizes=(3, 2, 24), seed=2)
    _compare(latents, factors, 420, n_estimators=6, max_depth=3, max_bins=64)


def test_exactly_binned_continuous_latents_and_other_seeds_match_the_reference():
    latents, factors = continuous_problem(250, sizes=(2, 2, 9), seed=4)
    for seed in (0, 7):
        _compare(latents, factors, 170, n_estimators=8, seed=seed)


# --------------------------------------------------------------------------------------
# Rows with counts (a bootstrap replicate on its distinct rows) against the samples
# written out: bitwise the same fit.


@pytest.mark.parametrize("problem, max_depth, max_bins, block_rows", [
    ("continuous", 3, 256, None), ("continuous", 1, 256, None),
    ("continuous", 3, 16, 64),            # quantile bins of the repeated samples
    ("codes", 3, 256, None), ("codes", 1, 256, 64)])
def test_rows_with_counts_are_the_samples_written_out(problem, max_depth, max_bins,
                                                      block_rows):
    make = continuous_problem if problem == "continuous" else code_problem
    latents, factors = make(500, sizes=(2, 3, 9), seed=3)
    x, y = torch.as_tensor(latents[:400]), torch.as_tensor(factors[:400])
    x_test = torch.as_tensor(latents[400:])
    samples = torch.as_tensor(np.random.default_rng(1).integers(0, 400, 400))
    options = dict(max_depth=max_depth, max_bins=max_bins, n_estimators=25, seed=5,
                   block_rows=block_rows)
    written_out = fit_gbt_classifiers(x[samples], y[samples], x_test, **options)
    distinct, of_sample = torch.unique(samples, return_inverse=True)
    assert distinct.numel() < 300                  # the fit works on fewer rows
    counted = fit_gbt_classifiers(x[distinct], y[distinct], x_test, **options,
                                  rows=RowCounts.of_samples(of_sample, distinct.numel()))
    assert torch.equal(counted.importance, written_out.importance)
    assert torch.equal(counted.predict_train[of_sample], written_out.predict_train)
    assert torch.equal(counted.predict_test, written_out.predict_test)
