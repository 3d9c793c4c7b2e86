"""MIG, SAP, Modularity/Explicitness and IRS: conformance with disentanglement_lib, analytic
cases, the batched code against plain references, defined values where the reference
fails, options, and the command line."""
from __future__ import annotations

import doctest
import json
import math
import warnings

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from disentangle_eval import (DataError, IRSResult, MIGResult, ModularityExplicitnessResult,
                              SAPResult, irs, mig, modularity_explicitness, sap)
from disentangle_eval._binned import histogram_bins, plugin_entropy, plugin_mutual_information
from disentangle_eval._irs import group_quantile_deviation, reference_irs_matrix
from disentangle_eval._linear_svc import fit_linear_svc_1d
from disentangle_eval._modularity import macro_roc_auc, modularity_per_latent
from disentangle_eval._registry import METRICS
from disentangle_eval._sklearn_references import (reference_explicitness, reference_mig,
                                                  reference_score_matrix)
from disentangle_eval.cli.main import main

from conftest import CONFORMANCE_CASES, CONFORMANCE_DIR, load_case

CONTIGUOUS = {"split": "contiguous", "train_fraction": 0.9, "device": "cpu"}


def quiet(metric, *args, **kwargs):
    """Run a metric with its notes and split warnings recorded; return (result, messages)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = metric(*args, **kwargs)
    return result, [str(w.message) for w in caught]


# --- conformance with disentanglement_lib (metrics.*_dlib) ------------------------------

@pytest.mark.parametrize("case", CONFORMANCE_CASES)
def test_mig_conformance(case):
    arrays, expected = load_case(case)
    ref = expected["metrics"]["mig_dlib"]
    result, _ = quiet(mig, arrays["latents"], arrays["factors"], **CONTIGUOUS)
    assert result.mig == pytest.approx(ref["values"]["discrete_mig"], abs=0.005)
    # Same bins and the same plug-in estimator: the matrices agree to rounding.
    np.testing.assert_allclose(result.mutual_information, ref["mi_matrix"], atol=1e-9)
    np.testing.assert_allclose(result.factor_entropies, ref["factor_entropies"], atol=1e-9)
    np.testing.assert_allclose(result.gaps, ref["per_factor_gap_derived"], atol=1e-9)
    assert result.n_train == ref["split"]["train_rows"][1]


@pytest.mark.parametrize("case", CONFORMANCE_CASES)
def test_sap_conformance(case):
    arrays, expected = load_case(case)
    ref = expected["metrics"]["sap_dlib"]
    result, _ = quiet(sap, arrays["latents"], arrays["factors"], **CONTIGUOUS)
    assert result.sap == pytest.approx(ref["values"]["SAP_score"], abs=0.02)
    np.testing.assert_allclose(result.score_matrix, ref["score_matrix"], atol=0.05)
    # The fits are liblinear's optimum: at most a few of the test rows differ.
    assert np.abs(result.score_matrix - np.array(ref["score_matrix"])).max() <= 2.5 / result.n_test


@pytest.mark.parametrize("case", CONFORMANCE_CASES)
def test_modularity_explicitness_conformance(case):
    arrays, expected = load_case(case)
    ref = expected["metrics"]["modularity_explicitness_dlib"]
    result, messages = quiet(modularity_explicitness, arrays["latents"], arrays["factors"],
                             **CONTIGUOUS)
    if ref["values"] is None:
        # The reference raises (constant latents); the defined value is its computation
        # with the 0/0 standardised columns set to 0, recorded beside the error.
        assert "NaN" in ref["error"]
        derived = ref["derived_if_nonfinite_zeroed"]
        values = derived["values"]
        per_factor = np.column_stack([derived["explicitness_per_factor_train"],
                                      derived["explicitness_per_factor_test"]])
        assert result.modularity == pytest.approx(
            ref["partial_before_error"]["modularity_score_before_error"], abs=0.005)
        assert any("constant on the training rows" in n for n in result.notes)
        assert any("constant on the training rows" in m for m in messages)
    else:
        values = ref["values"]
        per_factor = np.column_stack([ref["explicitness_per_factor_train"],
                                      ref["explicitness_per_factor_test"]])
        assert not result.notes
    assert result.modularity == pytest.approx(values["modularity_score"], abs=0.005)
    assert result.explicitness_train == pytest.approx(values["explicitness_score_train"], abs=0.01)
    assert result.explicitness_test == pytest.approx(values["explicitness_score_test"], abs=0.01)
    np.testing.assert_allclose(result.explicitness_per_factor, per_factor, atol=0.01)


@pytest.mark.parametrize("case", CONFORMANCE_CASES)
def test_irs_conformance(case):
    arrays, expected = load_case(case)
    ref = expected["metrics"]["irs_dlib"]
    result, _ = quiet(irs, arrays["latents"], arrays["factors"], **CONTIGUOUS)
    assert result.irs == pytest.approx(ref["values"]["IRS"], abs=0.01)
    # float64 values: the reference's own float64 run, to rounding.
    float64 = ref["float64_input_side_check"]
    assert result.irs == pytest.approx(float64["values"]["IRS"], abs=1e-9)
    assert result.n_active_latents == float64["num_active_latents"]
    # Latents active in both (the reference's float32 variance keeps one constant column
    # of dead_units; see IRSResult): rows agree to float32 rounding.
    ref_active = np.array(ref["active_latents"])
    both = result.active_latents & ref_active
    ref_rows = np.cumsum(ref_active)[both] - 1
    np.testing.assert_allclose(result.irs_matrix[both], np.array(ref["IRS_matrix"])[ref_rows],
                               atol=1e-5)
    np.testing.assert_array_equal(result.parents[both], np.array(ref["parents"])[ref_rows])
    assert np.all(np.isnan(result.irs_matrix[~result.active_latents]))
    assert np.all(result.parents[~result.active_latents] == -1)


# --- analytic cases ----------------------------------------------------------------------

def _full_factorial(reps_train=9, reps_test=1, sizes=(5, 4), seed=0):
    """Every factor combination equally often in the training rows (then the test rows)."""
    grid = np.stack(np.meshgrid(*[np.arange(s) for s in sizes], indexing="ij"),
                    -1).reshape(-1, len(sizes))
    rng = np.random.default_rng(seed)
    train = np.tile(grid, (reps_train, 1))
    test = np.tile(grid, (reps_test, 1))
    return np.concatenate([train[rng.permutation(len(train))], test[rng.permutation(len(test))]])


def test_latent_equal_to_a_factor():
    factors = _full_factorial()
    latents = factors.astype(np.float64)
    kwargs = dict(CONTIGUOUS)
    m = mig(latents, factors, **kwargs)
    # Independent factors on a full design: the other latent has exactly zero MI.
    assert m.mig == pytest.approx(1.0, abs=1e-12)
    np.testing.assert_allclose(m.mutual_information, np.diag(m.factor_entropies), atol=1e-12)
    me = modularity_explicitness(latents, factors, **kwargs)
    assert me.modularity == pytest.approx(1.0, abs=1e-12)
    assert me.explicitness_train == pytest.approx(1.0)
    assert me.explicitness_test == pytest.approx(1.0)
    r = irs(latents, factors, **kwargs)
    assert r.irs == pytest.approx(1.0)
    np.testing.assert_array_equal(r.parents, [0, 1])
    s = sap(latents, factors, **kwargs)
    # A two-class factor is separated perfectly by its own latent and not at all by the
    # other (balanced design: chance accuracy 1/2).
    two = np.array([0, 1] * 200)
    b = sap(np.column_stack([two, np.arange(400) % 3]).astype(float),
            np.column_stack([two, np.arange(400) % 3]), **kwargs)
    assert b.score_matrix[0, 0] == 1.0 and b.gaps[0] == pytest.approx(0.5, abs=0.05)
    # Each factor is predicted best by its own latent.
    assert s.score_matrix[0, 0] > s.score_matrix[1, 0]
    assert s.score_matrix[1, 1] > s.score_matrix[0, 1]


def test_duplicated_latents_give_zero_gaps():
    factors = _full_factorial()
    latents = np.repeat(factors.astype(np.float64), 2, axis=1)        # z0 = z1, z2 = z3
    m = mig(latents, factors, **CONTIGUOUS)
    assert m.mig == pytest.approx(0.0, abs=1e-12)
    s = sap(latents, factors, **CONTIGUOUS)
    assert s.sap == 0.0
    np.testing.assert_array_equal(s.score_matrix[0], s.score_matrix[1])
    me = modularity_explicitness(latents, factors, **CONTIGUOUS)
    assert me.modularity == pytest.approx(1.0, abs=1e-12)  # each latent still has one factor


def test_independent_noise_scores_about_zero():
    rng = np.random.default_rng(1)
    factors = rng.integers(0, 5, size=(4000, 3))
    latents = rng.standard_normal((4000, 4))
    assert mig(latents, factors, device="cpu").mig < 0.01
    assert sap(latents, factors, device="cpu").sap < 0.03
    me = modularity_explicitness(latents, factors, device="cpu")
    assert me.explicitness_test == pytest.approx(0.5, abs=0.03)


def test_invariances():
    arrays, _ = load_case("rotated")
    latents, factors = arrays["latents"], arrays["factors"]
    perm = np.array([3, 0, 5, 1, 4, 2])
    base = mig(latents, factors, device="cpu")
    permuted = mig(latents[:, perm], factors, device="cpu")
    relabelled = mig(latents, factors * 7 + 3, device="cpu")          # labels, not indices
    assert permuted.mig == pytest.approx(base.mig, abs=1e-12)
    np.testing.assert_allclose(permuted.mutual_information, base.mutual_information[perm])
    assert relabelled.mig == pytest.approx(base.mig, abs=1e-12)
    scaled = irs(latents * 4.0, factors, device="cpu")                  # IRS is scale-free
    assert scaled.irs == pytest.approx(irs(latents, factors, device="cpu").irs, abs=1e-9)


def test_numpy_and_torch_inputs_agree():
    arrays, _ = load_case("nonlinear")
    z, y = arrays["latents"], arrays["factors"]
    for metric in (mig, sap, modularity_explicitness, irs):
        a = quiet(metric, z, y, device="cpu")[0]
        b = quiet(metric, torch.from_numpy(z), torch.from_numpy(y), device="cpu")[0]
        assert a.headline() == pytest.approx(b.headline(), abs=1e-12), metric.__name__


# --- batched code against plain references ---------------------------------------------

def _random_problem(seed, n=900, d=4, sizes=(2, 3, 6)):
    rng = np.random.default_rng(seed)
    factors = np.stack([rng.integers(0, s, n) for s in sizes], axis=1)
    latents = np.column_stack([
        factors[:, 0] * 2.0 - 1.5 + rng.standard_normal(n),
        np.round(factors[:, 1] + 0.3 * rng.standard_normal(n), 1),     # many ties
        -5.0 + np.sin(factors[:, 2]) + 0.2 * rng.standard_normal(n),  # negative values
        np.full(n, 0.37),                                              # constant
    ])[:, :d]
    return latents, factors


@pytest.mark.parametrize("seed", [0, 1])
def test_binned_mutual_information_matches_sklearn(seed):
    latents, factors = _random_problem(seed)
    latents = np.column_stack([latents, np.arange(len(latents)) % 7])  # integer codes too
    expected_mig, expected_mi = reference_mig(latents, factors, n_bins=20)
    codes = histogram_bins(torch.from_numpy(latents), 20)
    sizes = [int(f.max()) + 1 for f in factors.T]
    mi = plugin_mutual_information(codes, 20, torch.from_numpy(factors), sizes).numpy()
    np.testing.assert_allclose(mi, expected_mi, atol=1e-12)
    assert np.all(mi[3] == 0.0)                   # the constant latent: exactly none
    entropy = plugin_entropy(torch.from_numpy(factors), sizes).numpy()
    np.testing.assert_allclose(entropy, [np.log(s) for s in sizes], atol=0.02)
    got = mig(latents, factors, split="contiguous", train_fraction=0.99, device="cpu")
    n_train = got.n_train
    assert got.mig == pytest.approx(reference_mig(latents[:n_train], factors[:n_train])[0],
                                    abs=1e-12)


def test_constant_latent_has_exactly_zero_mutual_information():
    # Count ratios that do not sum to 1 exactly used to leave ~1e-16 of MI here, which
    # modularity (a ratio of squares) turned into an arbitrary score.
    rng = np.random.default_rng(2)
    sizes = (4, 4, 2, 3, 3, 40, 40)
    factors = np.stack([rng.integers(0, s, 10000) for s in sizes], axis=1)
    latents = np.column_stack([factors[:, 5] + rng.standard_normal(10000), np.zeros(10000)])
    codes = histogram_bins(torch.from_numpy(latents), 20)
    mi = plugin_mutual_information(codes, 20, torch.from_numpy(factors), sizes).numpy()
    assert np.all(mi[1] == 0.0)
    scores, _ = modularity_per_latent(mi)
    assert scores[1] == 0.0


def test_histogram_bins_match_numpy_on_edges():
    # Values that sit exactly on bin edges and a constant column.
    x = np.column_stack([np.linspace(0.0, 1.0, 41), np.full(41, 2.5),
                         np.arange(41) % 5 * 0.1 - 0.2])
    expected = np.stack([np.digitize(c, np.histogram(c, 20)[1][:-1]) - 1 for c in x.T], 1)
    np.testing.assert_array_equal(histogram_bins(torch.from_numpy(x), 20).numpy(), expected)


@pytest.mark.parametrize("n_classes", [2, 3, 6])
def test_one_latent_svms_match_liblinear(n_classes):
    from sklearn.svm import LinearSVC

    latents, factors = _random_problem(3, sizes=(n_classes,) * 3)
    x = latents[:, :3]
    coef, intercept = fit_linear_svc_1d(torch.from_numpy(x), torch.from_numpy(factors),
                                        [n_classes] * 3)
    for i in range(3):
        for j in range(3):
            model = LinearSVC(C=0.01, class_weight="balanced", tol=1e-10, max_iter=100000)
            model.fit(x[:, [i]], factors[:, j])
            np.testing.assert_allclose(coef[j][i].numpy(), model.coef_.ravel(), atol=1e-6)
            np.testing.assert_allclose(intercept[j][i].numpy(), model.intercept_, atol=1e-6)


def test_sap_score_matrix_matches_plain_reference():
    latents, factors = _random_problem(4)
    n_train = math.ceil(0.9 * len(latents))
    expected = reference_score_matrix(latents[:n_train], factors[:n_train],
                                      latents[n_train:], factors[n_train:])
    got = sap(latents, factors, **CONTIGUOUS).score_matrix
    np.testing.assert_allclose(got[:3], expected[:3], atol=1.5 / (len(latents) - n_train))
    # The constant latent: every row gets one class. Which one is a tie (balanced classes
    # give it decision 0 at the optimum) that liblinear breaks by its stopping point.
    for j in range(factors.shape[1]):
        shares = np.bincount(factors[n_train:, j]) / (len(latents) - n_train)
        assert np.isclose(shares, got[3, j]).any() and np.isclose(shares, expected[3, j]).any()


def test_macro_roc_auc_matches_sklearn_with_ties():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(5)
    labels = rng.integers(0, 4, (2, 300))
    scores = np.round(rng.random((2, 300, 4)) + 0.3 * (labels[..., None] == np.arange(4)), 1)
    mask = torch.ones(2, 4, dtype=torch.bool)
    auc, scored = macro_roc_auc(torch.from_numpy(scores), torch.from_numpy(labels), mask)
    for t in range(2):
        one_hot = (labels[t][:, None] == np.arange(4)).astype(int)
        assert auc[t].item() == pytest.approx(roc_auc_score(one_hot, scores[t]), abs=1e-12)
    assert bool(scored.all())


def test_explicitness_matches_plain_reference():
    latents, factors = _random_problem(6)
    n_train = math.ceil(0.9 * len(latents))
    expected = reference_explicitness(latents[:n_train], factors[:n_train],
                                      latents[n_train:], factors[n_train:])
    got, _ = quiet(modularity_explicitness, latents, factors, **CONTIGUOUS)
    np.testing.assert_allclose(got.explicitness_per_factor, expected, atol=2e-3)


def test_modularity_formula():
    mi = np.array([[2.0, 0.0, 0.0], [1.0, 1.0, 0.0], [0.0, 0.0, 0.0], [3.0, 1.0, 1.0]])
    scores, notes = modularity_per_latent(mi)
    # 1 - (sum of squares - max^2) / (max^2 (F - 1)); 0 for a latent without MI.
    np.testing.assert_allclose(scores, [1.0, 0.5, 0.0, 1 - 2 / 18])
    assert notes == ()


@pytest.mark.parametrize("q", [0.99, 0.5, 1.0])
def test_group_quantiles_match_numpy(q):
    latents, factors = _random_problem(7)
    latents = latents[:, :3]
    result = irs(latents, factors, diff_quantile=q, split="contiguous", train_fraction=0.99,
                 device="cpu")
    expected = reference_irs_matrix(latents[:result.n_train], factors[:result.n_train],
                                    diff_quantile=q)
    np.testing.assert_allclose(result.irs_matrix, expected, atol=1e-12)
    x = torch.from_numpy(latents)
    groups = histogram_bins(torch.from_numpy(factors), 20)
    assert group_quantile_deviation(x, groups, 20, q).shape == (3, 3)


# --- defined values where the reference fails ------------------------------------------

def test_dead_units_defined_values_with_notes():
    arrays, expected = load_case("dead_units")
    result, messages = quiet(modularity_explicitness, arrays["latents"], arrays["factors"],
                             **CONTIGUOUS)
    assert all(math.isfinite(v) for v in result.headline().values())
    assert result.notes == (
        "latent(s) [2, 7, 12] are constant on the training rows: set to 0 after "
        "standardising (left out of the explicitness fits; the reference divides by their "
        "zero standard deviation and raises)",)
    assert result.notes[0] in messages
    np.testing.assert_array_equal(result.modularity_per_latent[[2, 7, 12]], 0.0)
    # The same value as scoring without the dead latents.
    alive = np.setdiff1d(np.arange(arrays["latents"].shape[1]), [2, 7, 12])
    without = modularity_explicitness(arrays["latents"][:, alive], arrays["factors"],
                                      **CONTIGUOUS)
    np.testing.assert_allclose(result.explicitness_per_factor, without.explicitness_per_factor,
                               atol=1e-6)
    r = irs(arrays["latents"], arrays["factors"], **CONTIGUOUS)
    assert r.n_active_latents == 12 and not r.active_latents[[2, 7, 12]].any()
    assert json.loads(json.dumps(r.to_dict(), allow_nan=False))["per_latent"][2] is None


def test_single_latent_and_single_factor_notes():
    rng = np.random.default_rng(0)
    factors = rng.integers(0, 3, size=(500, 2))
    latent = (factors[:, :1] + 0.1 * rng.standard_normal((500, 1)))
    m, messages = quiet(mig, latent, factors, device="cpu")
    assert m.notes and "single latent" in m.notes[0] and m.notes[0] in messages
    np.testing.assert_allclose(m.gaps, m.mutual_information[0] / m.factor_entropies)
    s, _ = quiet(sap, latent, factors, device="cpu")
    assert "single latent" in s.notes[0]
    np.testing.assert_allclose(s.gaps, s.score_matrix[0])
    me, _ = quiet(modularity_explicitness, np.hstack([latent, latent ** 2]), factors[:, :1],
                  device="cpu")
    assert "single factor" in me.notes[0] and me.modularity == 1.0


def test_irs_without_active_latents_is_zero():
    factors = np.random.default_rng(0).integers(0, 3, size=(100, 2))
    result, messages = quiet(irs, np.zeros((100, 3)), factors, device="cpu")
    assert result.irs == 0.0 and result.n_active_latents == 0
    assert "no active latent" in result.notes[0] and result.notes[0] in messages


def test_missing_test_classes_are_left_out_with_a_note():
    factors = np.column_stack([np.r_[np.arange(90) % 3, np.zeros(10, int)],
                               np.arange(100) % 2])
    latents = factors + 0.1 * np.random.default_rng(0).standard_normal(factors.shape)
    result, messages = quiet(modularity_explicitness, latents, factors, **CONTIGUOUS)
    assert any("left out of its macro ROC-AUC" in n for n in result.notes)
    assert math.isnan(result.explicitness_per_factor[0, 1])     # one test class only
    assert result.explicitness_test == pytest.approx(result.explicitness_per_factor[1, 1])
    assert any("contiguous split" in m for m in messages)


# --- options and errors ------------------------------------------------------------------

@pytest.mark.parametrize("metric, kwargs, match", [
    (mig, {"n_bins": 0}, "n_bins must be an integer >= 1, got 0"),
    (sap, {"C": -1.0}, "C must be a positive number, got -1.0"),
    (modularity_explicitness, {"max_iter": 0}, "max_iter must be an integer >= 1"),
    (irs, {"diff_quantile": 1.5}, r"diff_quantile must be a number in \[0, 1\], got 1.5"),
    (irs, {"split": "bogus"}, "split must be one of"),
    (sap, {"train_fraction": 1.0}, r"train_fraction must be a number in \(0, 1\)"),
])
def test_option_errors(metric, kwargs, match):
    factors = np.arange(40).reshape(20, 2) % 3
    with pytest.raises(ValueError, match=match):
        metric(factors.astype(float), factors, **kwargs)


def test_single_class_in_training_rows_is_a_data_error():
    factors = np.column_stack([np.r_[np.zeros(90, int), np.ones(10, int)], np.arange(100) % 3])
    latents = factors.astype(float)
    for metric in (mig, sap, modularity_explicitness):
        with pytest.raises(DataError, match="takes a single value in the 90 training rows"):
            metric(latents, factors, **CONTIGUOUS)


def test_results_are_frozen_and_json_ready():
    arrays, _ = load_case("identity")
    for metric, cls, keys in [
        (mig, MIGResult, {"mig", "gaps", "mutual_information"}),
        (sap, SAPResult, {"sap", "score_matrix"}),
        (modularity_explicitness, ModularityExplicitnessResult,
         {"modularity", "explicitness_train", "explicitness_test", "explicitness_per_factor"}),
        (irs, IRSResult, {"irs", "per_latent", "n_active_latents", "irs_matrix"}),
    ]:
        result = metric(arrays["latents"], arrays["factors"], device="cpu")
        assert isinstance(result, cls)
        with pytest.raises(AttributeError):
            result.seed = 1
        payload = json.loads(json.dumps(result.to_dict(), allow_nan=False))
        assert keys <= payload.keys()
        assert all(f"{m}_layout" in payload for m in cls.LAYOUTS)


@pytest.mark.parametrize("module", ["_mig", "_sap", "_modularity", "_irs"])
def test_docstring_examples(module):
    import importlib

    mod = importlib.import_module(f"disentangle_eval.{module}")
    failures, tried = doctest.testmod(mod, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert failures == 0 and tried > 0


def test_chunked_computation_gives_the_same_values(monkeypatch):
    import disentangle_eval._irs as irs_module
    import disentangle_eval._linear_svc as svc_module

    latents, factors = _random_problem(8)
    whole = [sap(latents, factors, device="cpu"), irs(latents, factors, device="cpu")]
    monkeypatch.setattr(svc_module, "_MEMORY_BUDGET", 1)    # one latent per chunk
    monkeypatch.setattr(irs_module, "_MEMORY_BUDGET", 1)
    chunked = [sap(latents, factors, device="cpu"), irs(latents, factors, device="cpu")]
    np.testing.assert_array_equal(chunked[0].score_matrix, whole[0].score_matrix)
    np.testing.assert_allclose(chunked[1].irs_matrix, whole[1].irs_matrix, atol=1e-15)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_matches_cpu():
    arrays, _ = load_case("rotated")
    # Counting and quantiles agree to rounding; the SVMs to a test row at most; the
    # explicitness fits stop at a gradient tolerance (1e-4), so their AUCs to ~1e-4.
    for metric, tol in ((mig, 1e-9), (irs, 1e-9), (sap, 1.5 / 600),
                        (modularity_explicitness, 1e-3)):
        cpu = quiet(metric, arrays["latents"], arrays["factors"], **CONTIGUOUS)[0]
        gpu = quiet(metric, arrays["latents"], arrays["factors"],
                    **{**CONTIGUOUS, "device": "cuda"})[0]
        assert gpu.device.startswith("cuda")
        assert gpu.headline() == pytest.approx(cpu.headline(), abs=tol), metric.__name__


# --- command line ------------------------------------------------------------------------

SUITE = ("mig", "sap", "modularity", "irs")
HEADLINES = {"mig": {"mig"}, "sap": {"sap"}, "irs": {"irs"},
             "modularity": {"modularity", "explicitness_train", "explicitness_test"}}


def score(*args):
    result = CliRunner().invoke(main, ["score", *[str(a) for a in args]])
    assert "Traceback" not in result.output
    return result


def test_cli_suite_json_matches_reference():
    fixture = CONFORMANCE_DIR / "identity.npz"
    _, expected = load_case("identity")
    result = score(fixture, "--factors", fixture, "--metrics", ",".join(SUITE), "--json",
                   "--split", "contiguous", "--train-fraction", "0.9", "--device", "cpu")
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    ref = expected["metrics"]
    assert payload["mig"]["mig"] == pytest.approx(ref["mig_dlib"]["values"]["discrete_mig"],
                                                  abs=0.005)
    assert payload["sap"]["sap"] == pytest.approx(ref["sap_dlib"]["values"]["SAP_score"],
                                                  abs=0.02)
    values = ref["modularity_explicitness_dlib"]["values"]
    assert payload["modularity"]["modularity"] == pytest.approx(values["modularity_score"],
                                                                abs=0.005)
    assert payload["modularity"]["explicitness_test"] == pytest.approx(
        values["explicitness_score_test"], abs=0.01)
    assert payload["irs"]["irs"] == pytest.approx(ref["irs_dlib"]["values"]["IRS"], abs=0.01)
    assert payload["settings"]["sap"] == {"split": "contiguous", "train_fraction": 0.9}
    np.testing.assert_allclose(payload["mig"]["mutual_information"],
                               ref["mig_dlib"]["mi_matrix"], atol=1e-9)


def test_cli_all_metrics_json_tables_and_out(tmp_path):
    rng = np.random.default_rng(0)
    factors = rng.integers(0, 3, size=(300, 2))
    latents = (factors + 0.2 * rng.standard_normal((300, 2))).astype(np.float32)
    path = tmp_path / "small.npz"
    np.savez(path, latents=latents, factors=factors)
    out = tmp_path / "res"
    result = score(path, "--factors", path, "--metrics", "all", "--json", "--out", out)
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["settings"]["metrics"] == list(METRICS)
    for name, keys in HEADLINES.items():
        assert keys <= payload[name].keys()
        assert all(isinstance(payload[name][k], float) for k in keys)
    for name in ("mutual_information", "score_matrix", "explicitness_per_factor", "irs_matrix"):
        assert (out / f"{name}.npy").is_file(), name
    np.testing.assert_allclose(np.load(out / "mutual_information.npy"),
                               payload["mig"]["mutual_information"])
    assert np.load(out / "explicitness_per_factor.npy").shape == (2, 2)
    assert (out / "mutual_information.png").read_bytes()[:4] == b"\x89PNG"
    again = score(path, "--factors", path, "--metrics", "mig", "--out", out)
    assert again.exit_code == 2 and "--force" in again.output

    table = score(path, "--factors", path, "--metrics", "mig,sap,modularity,irs")
    assert table.exit_code == 0, table.output
    lines = table.stdout.splitlines()
    for label in ("MIG", "SAP", "Modularity", "Explicitness (train)", "Explicitness (test)",
                  "IRS"):
        assert sum(line.split("  ")[0].strip() == label for line in lines) == 1, label


def test_cli_metrics_option():
    fixture = CONFORMANCE_DIR / "identity.npz"
    bad = score(fixture, "--factors", fixture, "--metrics", "mig,bogus")
    assert bad.exit_code == 2 and "or all" in bad.output
    help_text = " ".join(CliRunner().invoke(main, ["score", "--help"]).output.split())
    assert "dci, infomec, mig, sap, modularity, irs; or all" in help_text
