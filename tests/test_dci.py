"""Tests of DCI: analytic importance matrices, conformance with disentanglement_lib, API."""
from __future__ import annotations

import doctest
import io
import sys

import numpy as np
import pytest
import torch

from disentangle_eval._validation import DataError
from disentangle_eval import (DCIResult, completeness, completeness_per_factor, dci,
                              disentanglement, disentanglement_per_code)

from conftest import CONFORMANCE_CASES, load_case
from limits import default_sigint

LOG2_LOG10 = 1.0 - np.log(2) / np.log(10)


# --- analytic cases (disentanglement_lib's dci_test.py) -------------------------------

DIAG = np.diag(5.0 * np.ones(5))
ANALYTIC = {
    # name: (importance matrix, expected D, expected C)
    "diagonal": (DIAG, 1.0, 1.0),
    "diagonal_empty_codes": (np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]]), 1.0, 1.0),
    "zero": (np.zeros((10, 10)), 0.0, 0.0),
    "redundant_codes": (np.vstack([DIAG, DIAG]), 1.0, LOG2_LOG10),
    "missed_factors": (DIAG[:2, :], 1.0, 1.0),
    "one_code_two_factors": (np.hstack([DIAG, DIAG]), LOG2_LOG10, 1.0),
}


@pytest.mark.parametrize("name", sorted(ANALYTIC))
def test_analytic_importance_matrices(name):
    matrix, expected_d, expected_c = ANALYTIC[name]
    np.testing.assert_allclose(disentanglement(matrix), expected_d, atol=1e-7)
    np.testing.assert_allclose(completeness(matrix), expected_c, atol=1e-7)


def test_entropy_is_scipy_stats_entropy_bit_for_bit():
    import scipy.stats

    from disentangle_eval._dci_scores import _one_minus_entropy

    rng = np.random.default_rng(0)
    for shape in [(12, 6), (14, 7), (5, 40)]:
        matrix = rng.random(shape) * (rng.random(shape) > 0.3)
        expected = 1 - scipy.stats.entropy(matrix + 1e-11, base=shape[0])
        assert np.array_equal(_one_minus_entropy(matrix, shape[0]), expected)


def test_per_code_and_per_factor_scores():
    matrix = np.hstack([DIAG, DIAG])                 # every code serves two factors
    np.testing.assert_allclose(disentanglement_per_code(matrix), LOG2_LOG10, atol=1e-7)
    np.testing.assert_allclose(completeness_per_factor(matrix), 1.0, atol=1e-7)
    assert disentanglement_per_code(matrix).shape == (5,)
    assert completeness_per_factor(matrix).shape == (10,)


def test_single_factor_or_single_latent_is_not_nan():
    assert disentanglement(np.array([[1.0], [2.0]])) == pytest.approx(1.0)
    assert completeness(np.array([[1.0, 2.0]])) == pytest.approx(1.0)


@pytest.mark.parametrize("bad, match", [
    (np.ones(3), "must be 2-D"),
    (-np.eye(2), "non-negative"),
    (np.full((2, 2), np.nan), "finite"),
])
def test_importance_matrix_errors(bad, match):
    with pytest.raises(ValueError, match=match):
        disentanglement(bad)


# --- conformance with disentanglement_lib (metrics.dci_dlib_gbt) -----------------------

def _reference(case):
    arrays, expected = load_case(case)
    return arrays, expected["metrics"]["dci_dlib_gbt"]["values"]


def _check(result: DCIResult, reference: dict, tol_dc: float, tol_i: float):
    deviations = {
        "disentanglement": (result.disentanglement, tol_dc),
        "completeness": (result.completeness, tol_dc),
        "informativeness_train": (result.informativeness_train, tol_i),
        "informativeness_test": (result.informativeness_test, tol_i),
    }
    bad = {key: (value, reference[key]) for key, (value, tol) in deviations.items()
           if abs(value - reference[key]) > tol}
    assert not bad, f"(ours, reference) beyond tolerance: {bad}"


@pytest.mark.slow
@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs a CUDA device"))])
@pytest.mark.parametrize("case", CONFORMANCE_CASES)
def test_torch_backend_reproduces_disentanglement_lib(case, device):
    arrays, reference = _reference(case)
    result = dci(arrays["latents"], arrays["factors"], backend="torch", split="contiguous",
                 train_fraction=0.9, device=device)
    assert result.n_train == 5400 and result.n_test == 600
    _check(result, reference, tol_dc=0.03, tol_i=0.02)


# The scikit-learn path costs minutes per fixture (the reference took 54-500 s each,
# one core); only the fixture with the fewest latents and classes runs here.
@pytest.mark.slow
@pytest.mark.parametrize("case", ["nonlinear"])
def test_sklearn_backend_reproduces_disentanglement_lib(case):
    arrays, reference = _reference(case)
    result = dci(arrays["latents"], arrays["factors"], backend="sklearn",
                 split="contiguous", train_fraction=0.9)
    _check(result, reference, tol_dc=0.005, tol_i=0.005)
    expected_importance = np.array(load_case(case)[1]["metrics"]["dci_dlib_gbt"]
                                   ["importance_matrix"])
    np.testing.assert_allclose(result.importance, expected_importance, atol=0.01)


# --- the torch GBT against scikit-learn where binning is exact -------------------------

def _coded_problem(n=500, seed=0):
    """Latents with fewer than 256 distinct values each: the torch splits are exact."""
    rng = np.random.default_rng(seed)
    factors = np.stack([rng.integers(0, 3, n), rng.integers(0, 2, n), rng.integers(0, 5, n)], 1)
    latents = np.stack([
        np.round(40 * (factors[:, 0] + 0.4 * rng.standard_normal(n))) / 40,
        np.round(40 * (factors[:, 1] - 0.5 * factors[:, 2] + 0.5 * rng.standard_normal(n))) / 40,
        np.round(40 * (np.sin(factors[:, 2]) + 0.3 * rng.standard_normal(n))) / 40,
        np.round(40 * (rng.standard_normal(n))) / 40,
    ], 1)
    return latents.astype(np.float32), factors


def test_torch_gbt_matches_sklearn_on_exactly_binned_latents():
    latents, factors = _coded_problem()
    assert max(len(np.unique(c)) for c in latents.T) <= 256
    kwargs = dict(split="contiguous", train_fraction=0.8, seed=0)
    ours = dci(latents, factors, backend="torch", device="cpu", **kwargs)
    ref = dci(latents, factors, backend="sklearn", n_jobs=1, **kwargs)
    # Same algorithm; only the random choice between exactly tied features differs.
    np.testing.assert_allclose(ours.importance, ref.importance, atol=0.02)
    np.testing.assert_allclose(ours.per_factor_accuracy_train, ref.per_factor_accuracy_train,
                               atol=0.01)
    np.testing.assert_allclose(ours.per_factor_accuracy_test, ref.per_factor_accuracy_test,
                               atol=0.02)


def test_torch_gbt_on_code_latents_with_crowded_bins():
    # Codes of a quantised model: 16 values per latent put ~600 training rows in a bin,
    # which the exact histograms must handle (a regression: they once refused).
    rng = np.random.default_rng(3)
    factors = rng.integers(0, [3, 4], size=(12000, 2))
    codes = np.stack([factors[:, 0] * 5 + rng.integers(0, 2, 12000),
                      (factors[:, 1] * 4 + rng.integers(0, 4, 12000)) % 16,
                      rng.integers(0, 16, 12000)], 1)
    kwargs = dict(split="contiguous", train_fraction=0.8, seed=0)
    ours = dci(codes, factors, backend="torch", device="cpu", **kwargs)
    ref = dci(codes, factors, backend="sklearn", n_jobs=1, **kwargs)
    np.testing.assert_allclose(ours.importance, ref.importance, atol=0.02)
    assert ours.informativeness_test == pytest.approx(ref.informativeness_test, abs=0.01)
    assert ours.disentanglement == pytest.approx(ref.disentanglement, abs=0.01)


def test_torch_gbt_worker_threads_give_the_same_fit():
    from disentangle_eval._gbt import _balanced_groups, fit_gbt_classifiers

    assert _balanced_groups([4, 4, 1, 3, 3, 40, 40], 2) == [[0, 2, 3, 5], [1, 4, 6]]
    assert _balanced_groups([5, 1], 3) == [[0], [1]]
    latents, factors = _small_problem(300)
    x = torch.as_tensor(latents)
    y = torch.as_tensor(factors)
    threads = torch.get_num_threads()
    fits = [fit_gbt_classifiers(x[:200], y[:200], x[200:], n_estimators=5, workers=w)
            for w in (1, 2, 3)]
    assert torch.get_num_threads() == threads
    for fit in fits[1:]:
        assert torch.equal(fit.importance, fits[0].importance)
        assert torch.equal(fit.predict_train, fits[0].predict_train)
        assert torch.equal(fit.predict_test, fits[0].predict_test)


def test_torch_gbt_ignores_reduced_float32_matmul_precision():
    """Count digits are packed by a float32 product only while products are exact."""
    from disentangle_eval._gbt import fit_gbt_classifiers

    latents, factors = _small_problem(300)
    x, y = torch.as_tensor(latents), torch.as_tensor(factors)
    exact = fit_gbt_classifiers(x[:200], y[:200], x[200:], n_estimators=5)
    previous = torch.get_float32_matmul_precision()
    try:
        torch.set_float32_matmul_precision("medium")
        reduced = fit_gbt_classifiers(x[:200], y[:200], x[200:], n_estimators=5)
    finally:
        torch.set_float32_matmul_precision(previous)
    assert torch.equal(reduced.importance, exact.importance)
    assert torch.equal(reduced.predict_test, exact.predict_test)


def test_torch_gbt_histogram_precision_follows_the_largest_bin(monkeypatch):
    import disentangle_eval._gbt as gbt
    from disentangle_eval._gbt_binning import histogram_precision

    assert histogram_precision(60, 10000) == (torch.float32, 18)
    assert histogram_precision(255, 10000) == (torch.float32, 16)
    assert histogram_precision(256, 10000) == (torch.float64, 30)
    # Float64 sums over all rows stay below 2**53.
    assert histogram_precision(256, 2 ** 23) == (torch.float64, 29)
    latents, factors = _small_problem(600)
    x, y = torch.as_tensor(latents), torch.as_tensor(factors)
    fast = gbt.fit_gbt_classifiers(x[:400], y[:400], x[400:], n_estimators=10)
    monkeypatch.setattr(gbt, "histogram_precision", lambda largest_bin, n_rows: (torch.float64, 30))
    exact = gbt.fit_gbt_classifiers(x[:400], y[:400], x[400:], n_estimators=10)
    # 18 instead of 30 fractional gradient bits: the same trees up to near-ties.
    torch.testing.assert_close(fast.importance, exact.importance, atol=1e-4, rtol=0)
    assert torch.equal(fast.predict_test, exact.predict_test)


def test_torch_gbt_fits_groups_one_after_another_when_memory_is_short():
    from disentangle_eval._gbt import _schedule, fit_gbt_classifiers
    from disentangle_eval._gbt_memory import FitShape, FitTooLarge, fit_bytes, shared_bytes

    shape = FitShape(n_train=200, n_test=100, n_features=5, n_active=4, n_bins=200,
                     max_depth=3, histogram_itemsize=4, pack=3)
    trees = [4, 1, 3]
    assert _schedule(trees, shape, 2, None) == [[[0], [1, 2]]]
    one_at_a_time = shared_bytes(shape) + fit_bytes(shape, 4, 2)   # 4 trees, not 7
    assert _schedule(trees, shape, 2, one_at_a_time) == [[[0]], [[1, 2]]]
    with pytest.raises(FitTooLarge, match="target column 0 .4 per stage. need about"):
        _schedule(trees, shape, 2, shared_bytes(shape) + fit_bytes(shape, 4, 1) - 1)

    latents, factors = _small_problem(300)
    x, y = torch.as_tensor(latents), torch.as_tensor(factors)
    side_by_side = fit_gbt_classifiers(x[:200], y[:200], x[200:], n_estimators=5)
    in_turn = fit_gbt_classifiers(x[:200], y[:200], x[200:], n_estimators=5,
                                  max_bytes=one_at_a_time)
    for field in ("importance", "predict_train", "predict_test"):
        assert torch.equal(getattr(in_turn, field), getattr(side_by_side, field))


@pytest.mark.filterwarnings("ignore:the test rows hold factor values")
def test_a_factor_too_large_for_memory_is_a_data_error(monkeypatch):
    import disentangle_eval._dci_predictors as predictors

    latents, factors = _small_problem(400)
    factors = np.concatenate([factors, np.arange(400)[:, None] // 2], 1)   # an id column
    monkeypatch.setattr(predictors, "available_memory", lambda device: 50 * 2 ** 20)
    with pytest.raises(DataError, match=r"factor 'id' \(column 3\) has 196 distinct values "
                       r"in the 360 training rows: its boosted trees need about .* GiB, "
                       r"0.0 GiB are available; a factor with more distinct values than "
                       r"half the rows is almost certainly continuous or an id column"):
        dci(latents, factors, device="cpu", factor_names=["a", "b", "c", "id"])
    for predictor, backend in (("gbt", "sklearn"), ("random_forest", "sklearn"),
                               ("logistic", "torch")):
        monkeypatch.setattr(predictors, "available_memory", lambda device: 2 ** 20)
        with pytest.raises(DataError, match=r"factor column 3 has 196 distinct values"):
            dci(latents, factors, device="cpu", predictor=predictor, backend=backend)


def test_many_valued_factor_is_refused_under_a_hard_memory_ceiling(tmp_path):
    """20000 distinct values once made DCI allocate > 6.8 GB; now one line, exit 1."""
    import os
    import sys

    from limits import run_limited

    rng = np.random.default_rng(0)
    path = tmp_path / "ids.npz"
    np.savez(path, latents=rng.standard_normal((40000, 4)).astype(np.float32),
             factors=np.stack([np.arange(40000) // 2, rng.integers(0, 3, 40000)], 1))
    script = os.path.join(os.path.dirname(sys.executable), "disentangle-eval")
    done = run_limited([script, "score", str(path), "--factors", str(path),
                        "--metrics", "dci", "--device", "cpu"], timeout=300)
    assert done.returncode == 1, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "distinct values in the 36000 training rows" in lines[0] \
        and "id column" in lines[0] and "GiB are available" in lines[0], done.stderr


def test_rows_beyond_the_caps_are_subsampled_with_a_warning():
    latents, factors = _small_problem()
    with pytest.warns(UserWarning, match=r"seeded subsample of the rows: 120 of 360 training "
                                         r"rows \(max_train_rows=120\) and 30 of 40 test"):
        r = dci(latents, factors, device="cpu", max_train_rows=120, max_test_rows=30)
    assert (r.n_train, r.n_test, r.n_train_available, r.n_test_available) == (120, 30, 360, 40)
    assert (r.max_train_rows, r.max_test_rows) == (120, 30)
    assert any("subsample" in w for w in r.warnings)
    with pytest.warns(UserWarning, match="seeded subsample"):
        again = dci(latents, factors, device="cpu", max_train_rows=120, max_test_rows=30)
        other = dci(latents, factors, device="cpu", max_train_rows=120, max_test_rows=30,
                    seed=1)
    np.testing.assert_array_equal(again.importance, r.importance)
    assert not np.array_equal(other.importance, r.importance)
    every = dci(latents, factors, device="cpu", max_train_rows=None, max_test_rows=None)
    assert (every.n_train, every.n_test) == (360, 40) and every.warnings == ()
    assert dci(latents, factors, device="cpu").n_train == 360       # under the defaults


def test_score_command_caps_the_training_rows(tmp_path):
    import json

    from click.testing import CliRunner

    from disentangle_eval.cli.main import main

    latents, factors = _small_problem()
    path = tmp_path / "small.npz"
    np.savez(path, latents=latents, factors=factors)
    runner = CliRunner()
    common = ["score", str(path), "--factors", str(path), "--metrics", "dci", "--json",
              "--device", "cpu"]
    capped = runner.invoke(main, common + ["--dci-max-train-rows", "100"])
    assert capped.exit_code == 0, capped.output
    report = json.loads(capped.stdout)
    assert report["settings"]["dci"]["max_train_rows"] == 100
    assert (report["dci"]["n_train"], report["dci"]["n_train_available"]) == (100, 360)
    assert any("seeded subsample" in w for w in report["warnings"])
    every = runner.invoke(main, common + ["--dci-max-train-rows", "all"])
    assert json.loads(every.stdout)["dci"]["max_train_rows"] is None
    bad = runner.invoke(main, common + ["--dci-max-train-rows", "0"])
    assert bad.exit_code == 2 and "a positive number of rows or 'all', got '0'" in bad.output


@pytest.mark.parametrize("value", [0, -3, 1.5, True, "100"])
def test_max_rows_must_be_positive_integers(value):
    latents, factors = _small_problem()
    with pytest.raises(ValueError, match="max_train_rows must be a positive integer or None"):
        dci(latents, factors, device="cpu", max_train_rows=value)


def test_latents_beyond_float32_range_are_scaled_by_a_power_of_two():
    latents, factors = _small_problem()
    huge = latents.copy()
    huge[:, 0] *= 2.0 ** 200          # exact; float32 would make these +-inf
    huge[:, 2] *= 2.0 ** 900
    plain = dci(latents, factors, device="cpu", seed=2)
    with pytest.warns(UserWarning, match=r"latent column\(s\) 0, 2 exceed float32's range"):
        scaled = dci(huge, factors, device="cpu", seed=2)
    # A power of two moves every float32 value alike: the same splits, the same trees.
    np.testing.assert_array_equal(scaled.importance, plain.importance)
    np.testing.assert_array_equal(scaled.per_factor_accuracy_test,
                                  plain.per_factor_accuracy_test)
    assert np.all(np.isfinite(scaled.importance))


# --- API: shapes, columns, invariances ----------------------------------------------

def _small_problem(n=400, seed=0):
    rng = np.random.default_rng(seed)
    factors = np.stack([rng.integers(0, 4, n), rng.integers(0, 2, n), rng.integers(0, 3, n)], 1)
    latents = np.stack([factors[:, 0] + 0.3 * rng.standard_normal(n),
                        factors[:, 1] + 0.3 * rng.standard_normal(n),
                        factors[:, 2] + factors[:, 0] + 0.3 * rng.standard_normal(n),
                        rng.standard_normal(n),
                        np.zeros(n)], 1)
    return latents, factors


@pytest.fixture(scope="module")
def small_result():
    latents, factors = _small_problem()
    return dci(latents, factors, device="cpu", n_jobs=1)


def test_result_shapes_and_settings(small_result):
    r = small_result
    assert r.importance.shape == (5, 3)
    assert r.per_code_disentanglement.shape == (5,)
    assert r.per_factor_completeness.shape == (3,)
    assert r.per_factor_accuracy_train.shape == r.per_factor_accuracy_test.shape == (3,)
    np.testing.assert_allclose(r.importance.sum(axis=0), 1.0)
    assert np.all(r.importance[4] == 0)                  # the dead latent
    assert (r.predictor, r.backend, r.split, r.seed) == ("gbt", "torch", "random", 0)
    assert (r.n_train, r.n_test, r.device) == (360, 40, "cpu")
    for value in (r.disentanglement, r.completeness, r.informativeness_train,
                  r.informativeness_test):
        assert 0.0 <= value <= 1.0
    assert r.disentanglement == pytest.approx(disentanglement(r.importance))
    assert set(r.to_dict()) >= {"disentanglement", "importance", "warnings"}


def test_latent_permutation_permutes_importance_rows(small_result):
    latents, factors = _small_problem()
    perm = np.array([3, 0, 4, 2, 1])
    permuted = dci(latents[:, perm], factors, device="cpu")
    np.testing.assert_allclose(permuted.importance, small_result.importance[perm], atol=1e-9)
    assert permuted.disentanglement == pytest.approx(small_result.disentanglement, abs=1e-9)
    assert permuted.completeness == pytest.approx(small_result.completeness, abs=1e-9)


def test_factor_relabelling_leaves_scores(small_result):
    latents, factors = _small_problem()
    relabelled = factors.copy()
    relabelled[:, 0] = np.array([30, 10, 20, 0])[factors[:, 0]]  # permuted, non-contiguous
    relabelled[:, 1] = 1 - factors[:, 1]
    other = dci(latents, relabelled, device="cpu")
    np.testing.assert_allclose(other.importance, small_result.importance, atol=1e-9)
    assert other.informativeness_test == pytest.approx(small_result.informativeness_test)
    assert other.informativeness_train == pytest.approx(small_result.informativeness_train)


def test_random_split_is_seeded():
    latents, factors = _small_problem()
    a = dci(latents, factors, device="cpu", seed=3)
    b = dci(latents, factors, device="cpu", seed=3)
    np.testing.assert_array_equal(a.importance, b.importance)


def test_torch_input_and_ceil_split():
    latents, factors = _small_problem(n=101)
    r = dci(torch.as_tensor(latents), torch.as_tensor(factors), split="contiguous",
            train_fraction=0.5, device="cpu")
    assert (r.n_train, r.n_test) == (51, 50)      # ceil(0.5 * 101), as disentanglement_lib


@pytest.mark.parametrize("predictor", ["random_forest", "logistic"])
def test_other_predictors(predictor):
    latents, factors = _small_problem()
    r = dci(latents, factors, predictor=predictor, device="cpu", n_jobs=1)
    assert r.predictor == predictor
    assert r.backend == ("sklearn" if predictor == "random_forest" else "torch")
    np.testing.assert_allclose(r.importance.sum(axis=0), 1.0)
    assert r.importance[0, 0] == r.importance[:, 0].max()   # factor 0 lives in latent 0
    assert r.informativeness_test > 0.8


def test_logistic_backends_agree():
    latents, factors = _small_problem()
    a = dci(latents, factors, predictor="logistic", backend="torch", device="cpu")
    b = dci(latents, factors, predictor="logistic", backend="sklearn", n_jobs=1)
    # Factors with more than two classes: the same multinomial model. scikit-learn fits
    # a binary factor with one weight vector instead of two, which changes the effective
    # ridge strength, so that column agrees only roughly.
    np.testing.assert_allclose(a.importance[:, [0, 2]], b.importance[:, [0, 2]], atol=0.02)
    np.testing.assert_allclose(a.importance[:, 1], b.importance[:, 1], atol=0.05)
    assert a.informativeness_test == pytest.approx(b.informativeness_test, abs=0.03)


@pytest.mark.slow
def test_random_forest_close_to_tripod_on_identity():
    # tripod: its own shuffled split (random_state 42) and test accuracy only, so only a
    # loose comparison: the forests are the same estimator on nearly the same rows.
    arrays, expected = load_case("identity")
    tripod = expected["metrics"]["dci_tripod_rf"]["values"]
    r = dci(arrays["latents"], arrays["factors"], predictor="random_forest")
    assert r.disentanglement == pytest.approx(tripod["D"], abs=0.03)
    assert r.completeness == pytest.approx(tripod["C"], abs=0.03)
    assert r.informativeness_test == pytest.approx(tripod["I"], abs=0.02)


# --- errors and warnings ----------------------------------------------------------

@pytest.mark.parametrize("kwargs, match", [
    (dict(train_fraction=0.0), r"train_fraction must be a number in \(0, 1\), got 0.0"),
    (dict(train_fraction=1.0), r"train_fraction must be a number in \(0, 1\)"),
    (dict(train_fraction=1.5), r"train_fraction must be a number in \(0, 1\)"),
    (dict(train_fraction="0.5"), r"train_fraction must be a number in \(0, 1\), got '0.5'"),
    (dict(train_fraction=0.999), r"leaves 400 training and 0 test rows"),
    (dict(predictor="svm"), r"predictor must be one of .*'gbt'.*got 'svm'"),
    (dict(backend="jax"), r"backend must be one of .*got 'jax'"),
    (dict(split="stratified"), r"split must be one of .*got 'stratified'"),
    (dict(max_bins=1), r"max_bins must be an integer >= 2"),
])
def test_argument_errors(kwargs, match):
    latents, factors = _small_problem()
    with pytest.raises(ValueError, match=match):
        dci(latents, factors, device="cpu", **kwargs)


def test_bad_data_errors():
    latents, factors = _small_problem()
    with pytest.raises(DataError, match="same number of rows"):
        dci(latents[:-1], factors, device="cpu")
    with pytest.raises(DataError, match="NaN"):
        dci(np.where(latents == latents[0, 0], np.nan, latents), factors, device="cpu")


def test_contiguous_split_of_sorted_factors_warns_or_fails():
    latents, factors = _small_problem()
    order = np.argsort(factors[:, 1], kind="stable")
    with pytest.warns(UserWarning, match="contiguous split: the test rows miss factor values"):
        r = dci(latents[order], factors[order], split="contiguous", train_fraction=0.7,
                device="cpu")
    assert any("contiguous split" in w for w in r.warnings)
    with pytest.raises(DataError, match="single value in the 100 training rows"):
        dci(latents[order], factors[order], split="contiguous", train_fraction=0.25,
            device="cpu")


# --- devices and docs -----------------------------------------------------------------

@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu():
    latents, factors = _small_problem()
    cpu = dci(latents, factors, device="cpu")
    gpu = dci(latents, factors, device="cuda")
    assert gpu.device.startswith("cuda")
    # Histogram sums are exact, so the devices agree up to float rounding of the leaves.
    np.testing.assert_allclose(gpu.importance, cpu.importance, atol=1e-6)
    assert gpu.informativeness_test == pytest.approx(cpu.informativeness_test, abs=0.01)


def test_docstring_examples():
    import disentangle_eval._dci as dci_module
    import disentangle_eval._dci_scores as scores_module

    for module in (dci_module, scores_module):
        failures, tested = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
        assert failures == 0 and tested > 0


def test_progress_bar_goes_to_stderr(capsys, monkeypatch):
    """On a terminal the bar is drawn on stderr (never stdout), and only when asked for."""
    class Terminal(io.StringIO):
        def isatty(self):
            return True

    latents, factors = _small_problem()
    for progress in (False, True):
        terminal = Terminal()
        monkeypatch.setattr(sys, "stderr", terminal)
        dci(latents, factors, device="cpu", progress=progress)
        assert capsys.readouterr().out == ""
        assert ("/100" in terminal.getvalue()) == progress  # 100 boosting stages


def test_ctrl_c_stops_a_fit_within_seconds():
    """SIGINT reaches the main thread at once; the worker threads stop at their next stage."""
    import signal
    import subprocess
    import time

    code = """
import numpy as np, torch
from disentangle_eval import dci
torch.set_num_threads(2)   # two worker threads fit the factors
rng = np.random.default_rng(0)
factors = rng.integers(0, [40, 40, 4], size=(30000, 3))
latents = factors @ rng.standard_normal((3, 8)) + rng.standard_normal((30000, 8))
print("fitting", flush=True)
dci(latents, factors, device="cpu")
print("finished", flush=True)
"""
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, preexec_fn=default_sigint)
    try:
        assert child.stdout.readline().strip() == "fitting"
        time.sleep(1.5)
        assert child.poll() is None, "the fit ended before the interrupt"
        child.send_signal(signal.SIGINT)
        start = time.perf_counter()
        out, err = child.communicate(timeout=60)
        elapsed = time.perf_counter() - start
    finally:
        child.kill()
    assert "finished" not in out and "KeyboardInterrupt" in err
    assert elapsed < 5, f"the fit took {elapsed:.1f} s to stop"
