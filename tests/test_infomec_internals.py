"""The optimised InfoMEC estimators against their plain references, and their edge cases."""
import math
import warnings

import numpy as np
import pytest
import torch
from sklearn.metrics import mutual_info_score

from conftest import load_case
from disentangle_eval._infomec_reference import (fit_multinomial_logistic_reference,
                                                 knn_mi_column_reference)
from disentangle_eval._lbfgs import batched_lbfgs
from disentangle_eval._logistic import (check_fit_options, fit_multinomial_logistic, log_loss,
                                        one_hot_design)
from disentangle_eval._logistic_loss import PaddedProblem
from disentangle_eval._nmi import jittered_column, knn_mi_column, plugin_mutual_information
from disentangle_eval._scaling import (ColumnStandardizer, power_of_two_scale,
                                       standardize_columns)
from disentangle_eval._validation import check_inputs


def _relabel(factors):
    return np.stack([np.unique(c, return_inverse=True)[1] for c in factors.T], axis=1)


def _random_problem(rng, kind):
    n = int(rng.integers(2, 250))
    factors = _relabel(np.stack([rng.integers(0, rng.integers(1, 12), n)
                                 for _ in range(int(rng.integers(1, 4)))], axis=1))
    if kind == "continuous":
        x = rng.standard_normal(n)
    elif kind == "ties":
        x = rng.integers(0, 5, n).astype(float)
    else:  # values on a coarse grid: many ties and distances equal up to rounding
        x = np.round(rng.standard_normal(n), 1)
    return x, factors


@pytest.mark.parametrize("n_neighbors", [1, 2, 3, 8, 9, 10, 1000])
@pytest.mark.parametrize("kind", ["continuous", "ties", "grid"])
def test_knn_mi_matches_plain_reference(n_neighbors, kind):
    # Direct windows (k <= 8) and the binary search (k > 8), singletons, runs shorter than
    # k and exact ties all give the plain O(n^2) estimator's value.
    rng = np.random.default_rng(n_neighbors * 7 + len(kind))
    for _ in range(12):
        x, factors = _random_problem(rng, kind)
        sizes = [int(c.max()) + 1 for c in factors.T]
        fast = knn_mi_column(torch.tensor(x), torch.tensor(factors), sizes, n_neighbors)
        np.testing.assert_allclose(fast.numpy(), knn_mi_column_reference(x, factors, n_neighbors),
                                   rtol=0, atol=1e-12)


def test_knn_mi_factor_blocks_do_not_change_values():
    rng = np.random.default_rng(1)
    factors = _relabel(rng.integers(0, 6, (400, 5)))
    x = torch.tensor(rng.standard_normal(400))
    sizes = [int(c.max()) + 1 for c in factors.T]
    whole = knn_mi_column(x, torch.tensor(factors), sizes, 3)
    one_by_one = knn_mi_column(x, torch.tensor(factors), sizes, 3, budget=1)
    assert torch.equal(whole, one_by_one)


def test_jitter_is_seeded_and_scale_free():
    column = torch.tensor(np.random.default_rng(2).standard_normal(300))
    a = jittered_column(column, torch.Generator().manual_seed(5))
    b = jittered_column(column * 2.0**300, torch.Generator().manual_seed(5))
    assert torch.equal(a, b)
    c = jittered_column(column, torch.Generator().manual_seed(6))
    assert not torch.equal(a, c) and (a - c).abs().max() < 1e-8


def test_plugin_mi_dense_and_sparse_tables_match_sklearn():
    rng = np.random.default_rng(3)
    factors = _relabel(np.stack([rng.integers(0, 3, 600), rng.integers(0, 500, 600)], axis=1))
    codes = _relabel(np.stack([rng.integers(0, 4, 600), rng.integers(0, 900, 600),
                               (factors[:, 0] + rng.integers(0, 2, 600)) % 3], axis=1))
    sizes = [int(c.max()) + 1 for c in factors.T]
    mi = plugin_mutual_information(torch.tensor(codes), torch.tensor(factors), sizes).numpy()
    for i in range(2):
        for j in range(3):
            # factor 1 x latent 1 has 500 x 900 cells for 600 samples: counted sparsely
            assert mi[i, j] == pytest.approx(mutual_info_score(factors[:, i], codes[:, j]),
                                             abs=1e-12)


def test_standardize_columns_exact_under_power_of_two_scaling():
    rng = np.random.default_rng(4)
    x = torch.tensor(rng.standard_normal((200, 3)))
    base = standardize_columns(x)
    for scale in (2.0**500, 2.0**-500, 2.0**1000):
        assert torch.equal(standardize_columns(x * scale), base)
    huge = standardize_columns(x * 1e154)       # squares overflow without the rescaling
    assert torch.isfinite(huge).all()
    torch.testing.assert_close(huge, base, rtol=1e-12, atol=1e-12)
    constant = standardize_columns(torch.full((50, 2), 0.3, dtype=torch.float64))
    assert torch.equal(constant, torch.zeros(50, 2, dtype=torch.float64))
    assert torch.equal(power_of_two_scale(torch.zeros(3, 2, dtype=torch.float64)),
                       torch.zeros(3, 2, dtype=torch.float64))


def test_standardizer_applies_the_training_statistics_to_other_rows():
    rng = np.random.default_rng(5)
    train = torch.tensor(rng.standard_normal((300, 3)) * [1.0, 1e-170, 4.0] + [0.0, 0.0, 7.0])
    train[:, 2] = 7.0                       # constant on the training rows
    test = torch.tensor(rng.standard_normal((40, 3)))
    fitted = ColumnStandardizer.fit(train)
    assert fitted.constant.tolist() == [False, False, True]
    z_train, z_test = fitted.transform(train), fitted.transform(test)
    assert torch.equal(z_train, standardize_columns(train))
    mean, std = train[:, 0].mean(), train[:, 0].std(unbiased=False)
    torch.testing.assert_close(z_test[:, 0], (test[:, 0] - mean) / std, rtol=1e-13, atol=0)
    # a tiny column keeps its spread (its squares underflow without the rescaling) ...
    assert z_train[:, 1].std(unbiased=False).item() == pytest.approx(1.0, abs=1e-12)
    # ... and a column constant on the training rows is 0 everywhere, test rows too
    assert torch.equal(z_test[:, 2], torch.zeros(40, dtype=torch.float64))


def _overlapping_classes(n=3000, n_classes=12, seed=5):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, n_classes, n)
    x = np.stack([y / n_classes + 0.15 * rng.standard_normal(n),
                  np.cos(2 * y / n_classes) + 0.3 * rng.standard_normal(n),
                  rng.standard_normal(n)], axis=1)
    return torch.tensor(x), torch.tensor(np.stack([y, (y * 7) % 5], axis=1))


@pytest.mark.parametrize("sample_weight,l2", [("balanced", 0.0), (None, 0.01)])
def test_fit_matches_plain_reference_at_the_optimum(sample_weight, l2):
    x, y = _overlapping_classes()
    sizes = [12, 5]
    kwargs = dict(sample_weight=sample_weight, l2=l2, max_iter=5000, tol=1e-9)
    fast = fit_multinomial_logistic(x, y, sizes, **kwargs)
    plain = fit_multinomial_logistic_reference(x, y, sizes, **kwargs)
    # The optimum is unique up to a constant per feature across classes: compare predictions.
    torch.testing.assert_close(fast.log_proba(x).exp(), plain.log_proba(x).exp(),
                               rtol=0, atol=1e-5)
    torch.testing.assert_close(log_loss(fast, x, y), log_loss(plain, x, y), rtol=0, atol=1e-7)


def test_fit_on_sparse_one_hot_design_matches_plain_reference():
    rng = np.random.default_rng(6)
    codes = torch.tensor(rng.integers(0, 4, (800, 3)))
    y = torch.stack([(codes[:, 0] + torch.tensor(rng.integers(0, 2, 800))) % 4,
                     codes[:, 1] % 2], dim=1)
    design = one_hot_design(codes)
    kwargs = dict(max_iter=5000, tol=1e-9)
    fast = fit_multinomial_logistic(design, y, [4, 2], **kwargs)
    plain = fit_multinomial_logistic_reference(design, y, [4, 2], **kwargs)
    torch.testing.assert_close(log_loss(fast, design, y), log_loss(plain, design, y),
                               rtol=0, atol=1e-8)


def test_default_tolerance_lands_at_least_as_low_as_the_reference_solver():
    # Many overlapping classes: plain L-BFGS crawls along flat valleys and stops where
    # |grad| first dips below tol; the preconditioned fit gets (much) closer to the optimum.
    x, y = _overlapping_classes(n=4000, n_classes=30, seed=7)
    y = y[:, :1]
    fast = fit_multinomial_logistic(x, y, [30])
    plain = fit_multinomial_logistic_reference(x, y, [30])
    optimum = fit_multinomial_logistic(x, y, [30], max_iter=5000, tol=1e-9)
    best = log_loss(optimum, x, y)
    assert log_loss(fast, x, y) - best <= max(1e-5, 0.5 * float(log_loss(plain, x, y) - best))
    assert fast.converged


def _problem(x, y, sizes):
    design = torch.cat([x, torch.ones(x.shape[0], 1, dtype=x.dtype)], dim=1)
    weights = torch.ones(y.shape[1], y.shape[0], dtype=torch.float64) / y.shape[0]
    return PaddedProblem(design, y, sizes, weights, 0.0)


def test_curvature_is_the_exact_hessian_on_all_rows_and_classes(monkeypatch):
    import disentangle_eval._logistic_loss as loss_module

    monkeypatch.setattr(loss_module, "_CURVATURE_ROWS", 10**6)
    monkeypatch.setattr(loss_module, "_CURVATURE_TOP_CLASSES", 10**6)
    rng = np.random.default_rng(8)
    x = torch.tensor(rng.standard_normal((300, 2)))
    y = torch.tensor(np.stack([rng.integers(0, 4, 300), rng.integers(0, 3, 300)], axis=1))
    problem = _problem(x, y, [4, 3])
    theta = torch.tensor(rng.standard_normal((2, 3, 4)))
    theta[1, :, 3] = 0
    every = torch.ones(2, dtype=torch.bool)
    factor = problem.curvature(theta, every)
    for t, k in enumerate([4, 3]):
        # A direction without the softmax's free constant (no class-independent part).
        v = torch.zeros(2, 3, 4, dtype=torch.float64)
        v[t, :, :k] = torch.tensor(rng.standard_normal((3, k)))
        v[t, :, :k] -= v[t, :, :k].mean(dim=1, keepdim=True)
        eps = 1e-6
        hv = (problem.loss_and_grad(theta + eps * v, every)[1]
              - problem.loss_and_grad(theta - eps * v, every)[1]) / (2 * eps)
        estimate = (factor[t] @ factor[t].T @ v[t].reshape(-1)).reshape(3, 4)
        torch.testing.assert_close(estimate, hv[t], rtol=0, atol=1e-7)


def test_untrusted_newton_steps_keep_the_plain_path(monkeypatch):
    # Nearly separable classes (the identity fixture): the Newton step overshoots its
    # quadratic model, so the trust test keeps every target on the reference solver's
    # path, bit for bit.
    arrays, _ = load_case("identity")
    inputs = check_inputs(arrays["latents"], arrays["factors"], device="cpu")
    design = standardize_columns(inputs.latents)
    checked = fit_multinomial_logistic(design, inputs.factors, inputs.factor_sizes)
    assert checked.n_iter > 20  # past the first check
    monkeypatch.setitem(batched_lbfgs.__kwdefaults__, "precondition_after", None)
    plain = fit_multinomial_logistic(design, inputs.factors, inputs.factor_sizes)
    assert torch.equal(checked.weights, plain.weights)
    assert torch.equal(checked.intercepts, plain.intercepts)


@pytest.mark.parametrize("kwargs,match", [
    (dict(tol=math.nan), "tol must be a finite non-negative number, got nan"),
    (dict(tol=-1e-4), "tol must be a finite non-negative number, got -0.0001"),
    (dict(l2=-1.0), "l2 must be a finite non-negative number, got -1.0"),
    (dict(l2=math.nan), "l2 must be a finite non-negative number, got nan"),
    (dict(max_iter=-1), "max_iter must be a positive integer, got -1"),
    (dict(max_iter=0), "max_iter must be a positive integer, got 0"),
    (dict(max_iter=2.5), "max_iter must be a positive integer, got 2.5"),
])
def test_fit_option_errors(kwargs, match):
    x, y = _overlapping_classes(n=100)
    with pytest.raises(ValueError, match=match):
        fit_multinomial_logistic(x, y, [12, 5], **kwargs)
    with pytest.raises(ValueError, match=match):
        check_fit_options(**kwargs)


def test_warnings_free_fit():
    x, y = _overlapping_classes(n=500)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fit_multinomial_logistic(x, y, [12, 5])
        fit_multinomial_logistic(one_hot_design(y), y, [12, 5])


def test_nmi_and_infoe_side_by_side_match_one_after_the_other():
    import disentangle_eval._infomec as infomec_module
    from disentangle_eval._infoe import predictive_information_from_inputs
    from disentangle_eval._nmi import nmi_matrix

    rng = np.random.default_rng(13)
    factors = rng.integers(0, 5, size=(3000, 3))
    latents = factors + 0.5 * rng.standard_normal((3000, 3))
    inputs = check_inputs(latents, factors, device="cpu")
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)  # two threads: the side-by-side path
        (nmi, nmi_notes), (infoe, _) = infomec_module._nmi_and_infoe(
            inputs, n_neighbors=3, seed=0, max_iter=500, tol=1e-4)
        assert torch.get_num_threads() == 2  # restored
    finally:
        torch.set_num_threads(threads)
    expected_nmi, expected_notes = nmi_matrix(inputs, n_neighbors=3, seed=0)
    torch.testing.assert_close(nmi, expected_nmi, rtol=0, atol=1e-12)
    assert nmi_notes == expected_notes
    expected_infoe, _ = predictive_information_from_inputs(inputs)
    np.testing.assert_allclose(infoe, expected_infoe, rtol=0, atol=1e-6)


def test_a_stopped_nmi_returns_early():
    import threading

    from disentangle_eval._nmi import knn_mutual_information

    stop = threading.Event()
    stop.set()
    rng = np.random.default_rng(14)
    latents = torch.tensor(rng.standard_normal((500, 4)))
    factors = torch.tensor(rng.integers(0, 3, (500, 2)))
    mi = knn_mutual_information(latents, factors, [3, 3], n_neighbors=3, seed=0, stop=stop)
    assert mi.shape == (2, 4) and torch.isnan(mi).all()
