import itertools
import warnings

import numpy as np
import pytest
import torch

from limits import python_limited

from disentangle_eval import (DataError, active_latents, infomec, modularity_compactness,
                              normalized_mutual_information, predictive_information)

# (variant in the fixtures, n_neighbors, active rule)
VARIANTS = [("infomec_factorqvae", 3, "range"), ("infomec_qlae", 10, "range"),
            ("infomec_tripod", 10, "iqr")]
TOL = 0.01


def _score(arrays, k, rule, device="cpu", **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return infomec(arrays["latents"], arrays["factors"], n_neighbors=k, active=rule,
                       device=device, **kwargs)


def _check_conformance(result, expected, variant):
    ref = expected["metrics"][variant]
    for key in ("infom", "infoe", "infoc"):
        value = getattr(result, key)
        assert np.isfinite(value)
        if ref["values"][key] is None:
            # The reference divides by zero (a latent with zero NMI everywhere): we give a
            # defined value and say so.
            assert any("zero NMI" in note for note in result.notes)
        else:
            assert value == pytest.approx(ref["values"][key], abs=TOL), key
    nmi_ref = np.array(ref.get("nmi", expected["metrics"]["infomec_qlae"]["nmi"]))
    # Jitter-driven entries (constant columns) move between seeds in the reference too.
    spread = ref["spread_over_seeds"].get(
        "nmi_max_abs", expected["metrics"]["infomec_qlae"]["spread_over_seeds"]["nmi_max_abs"])
    assert result.nmi.shape == nmi_ref.shape
    np.testing.assert_allclose(result.nmi, nmi_ref, atol=TOL + spread, rtol=0)
    np.testing.assert_array_equal(result.active_latents, ref["active_latents"])
    if "infoe_per_factor" in ref:
        ref_pf = [1 - e["H_V_s_given_z"] / e["H_V_s_given_empty"] for e in ref["infoe_per_factor"]]
        np.testing.assert_allclose(result.infoe_per_factor, ref_pf, atol=TOL)


@pytest.mark.parametrize("variant,k,rule", VARIANTS, ids=[v[0] for v in VARIANTS])
def test_conformance(conformance_case, variant, k, rule):
    name, arrays, expected = conformance_case
    assert expected["latents_treated_as_discrete"] is False
    _check_conformance(_score(arrays, k, rule), expected, variant)


def _grid(sizes, repeats=3):
    grid = np.array(list(itertools.product(*[range(s) for s in sizes])))
    return np.tile(grid, (repeats, 1))


def test_identity_codes_discrete_score_one():
    factors = _grid((3, 4, 5))
    result = infomec(factors.copy(), factors, device="cpu")
    assert result.discrete
    np.testing.assert_allclose(result.nmi, np.eye(3), atol=1e-12)
    assert result.infom == pytest.approx(1.0, abs=1e-12)
    assert result.infoc == pytest.approx(1.0, abs=1e-12)
    assert result.infoe > 0.99


def test_identity_codes_continuous_score_one():
    rng = np.random.default_rng(0)
    factors = rng.integers(0, 6, size=(3000, 4))
    latents = factors + 0.05 * rng.standard_normal(factors.shape)
    result = infomec(latents, factors, device="cpu")
    assert not result.discrete
    assert result.infom > 0.98 and result.infoc > 0.98 and result.infoe > 0.98


def test_independent_noise_scores_near_zero():
    rng = np.random.default_rng(1)
    factors = rng.integers(0, 5, size=(4000, 3))
    result = infomec(rng.standard_normal((4000, 6)), factors, device="cpu")
    assert result.nmi.max() < 0.02
    assert result.infoe < 0.02
    codes = rng.integers(0, 8, size=(4000, 6))
    discrete = infomec(codes, factors, device="cpu")
    assert discrete.nmi.max() < 0.01


def test_discrete_nmi_matches_sklearn_plugin():
    from sklearn.metrics import mutual_info_score

    rng = np.random.default_rng(2)
    factors = rng.integers(0, 4, size=(500, 2))
    codes = (factors[:, [0, 1, 0]] + rng.integers(0, 2, size=(500, 3))) % 5
    nmi = normalized_mutual_information(codes, factors, device="cpu")
    for i in range(2):
        h = mutual_info_score(factors[:, i], factors[:, i])
        for j in range(3):
            assert nmi[i, j] == pytest.approx(mutual_info_score(factors[:, i], codes[:, j]) / h,
                                              abs=1e-12)


def test_continuous_nmi_matches_sklearn_estimator():
    from sklearn.feature_selection import mutual_info_classif
    from sklearn.metrics import mutual_info_score
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng(3)
    factors = rng.integers(0, 7, size=(1500, 2))
    latents = np.stack([np.sin(factors[:, 0]) + 0.3 * rng.standard_normal(1500),
                        factors[:, 1] * factors[:, 0] + rng.standard_normal(1500)], axis=1)
    for k in (3, 10):
        nmi = normalized_mutual_information(latents, factors, n_neighbors=k, device="cpu")
        x = StandardScaler().fit_transform(latents)
        for i in range(2):
            mi = mutual_info_classif(x, factors[:, i], n_neighbors=k, random_state=0)
            h = mutual_info_score(factors[:, i], factors[:, i])
            np.testing.assert_allclose(nmi[i], mi / h, atol=1e-3)


def test_invariances():
    rng = np.random.default_rng(4)
    factors = rng.integers(0, 5, size=(2000, 3))
    codes = np.stack([factors[:, 0], (factors[:, 1] + factors[:, 2]) % 5,
                      rng.integers(0, 3, 2000), factors[:, 2]], axis=1)
    base = infomec(codes, factors, device="cpu")
    # Row shuffle.
    perm = rng.permutation(2000)
    shuffled = infomec(codes[perm], factors[perm], device="cpu")
    np.testing.assert_allclose(shuffled.nmi, base.nmi, atol=1e-12)
    assert shuffled.infoe == pytest.approx(base.infoe, abs=1e-4)
    # Latent permutation permutes NMI columns.
    cols = [2, 0, 3, 1]
    permuted = infomec(codes[:, cols], factors, device="cpu")
    np.testing.assert_allclose(permuted.nmi, base.nmi[:, cols], atol=1e-12)
    assert (permuted.infom, permuted.infoc) == pytest.approx((base.infom, base.infoc), abs=1e-12)
    # Factor relabelling (any integer labels) changes nothing.
    relabelled = factors * 7 - 3
    again = infomec(codes, relabelled, device="cpu")
    np.testing.assert_allclose(again.nmi, base.nmi, atol=1e-12)
    assert again.infoe == pytest.approx(base.infoe, abs=1e-6)
    # Latent code relabelling changes nothing either.
    recoded = infomec(codes * 10 + 1, factors, device="cpu")
    np.testing.assert_allclose(recoded.nmi, base.nmi, atol=1e-12)


def test_continuous_row_shuffle_and_seed_are_stable():
    rng = np.random.default_rng(5)
    factors = rng.integers(0, 5, size=(2000, 2))
    latents = factors + 0.5 * rng.standard_normal(factors.shape)
    a = infomec(latents, factors, device="cpu", seed=0)
    b = infomec(latents, factors, device="cpu", seed=0)
    np.testing.assert_array_equal(a.nmi, b.nmi)  # same seed, same numbers
    perm = rng.permutation(2000)
    c = infomec(latents[perm], factors[perm], device="cpu", seed=1)
    np.testing.assert_allclose(c.nmi, a.nmi, atol=1e-6)


def test_accepts_torch_tensors_and_discrete_override():
    factors = _grid((3, 3))
    latents = torch.tensor(factors, dtype=torch.float32)
    as_continuous = infomec(latents, torch.tensor(factors), device="cpu")
    assert not as_continuous.discrete
    as_discrete = infomec(latents, factors, discrete=True, device="cpu")
    assert as_discrete.discrete
    np.testing.assert_allclose(as_discrete.nmi, np.eye(2), atol=1e-12)


def test_active_rules():
    rng = np.random.default_rng(6)
    latents = np.stack([rng.standard_normal(1000), 0.01 * rng.standard_normal(1000),
                        np.zeros(1000)], axis=1)
    np.testing.assert_array_equal(active_latents(latents, rule="range"), [True, False, False])
    np.testing.assert_array_equal(active_latents(latents, rule="iqr"), [True, False, False])
    codes = np.stack([rng.integers(0, 4, 1000), np.r_[np.zeros(990), np.ones(10)]], axis=1)
    np.testing.assert_array_equal(active_latents(codes.astype(int), rule="range"), [True, True])
    # IQR of a code that almost never changes is 0: inactive under the tripod rule.
    np.testing.assert_array_equal(active_latents(codes.astype(int), rule="iqr"), [True, False])


def test_guards_instead_of_nan():
    infom, infoc, notes = modularity_compactness(np.array([[0.5, 0.0], [0.5, 0.0]]),
                                                 np.array([True, True]))
    assert np.isfinite([infom, infoc]).all()
    assert any("zero NMI with every factor" in n for n in notes)
    infom, infoc, notes = modularity_compactness(np.array([[0.9, 0.1], [0.0, 0.0]]),
                                                 np.array([True, True]))
    assert any("zero NMI with every active latent" in n for n in notes)
    infom, infoc, notes = modularity_compactness(np.array([[0.9], [0.2]]), np.array([True]))
    assert infoc == 1.0 and any("single active latent" in n for n in notes)
    infom, infoc, notes = modularity_compactness(np.ones((2, 2)), np.array([False, False]))
    assert (infom, infoc) == (0.0, 0.0) and any("no active latent" in n for n in notes)

    factors = _grid((3, 4))
    latents = np.zeros((len(factors), 2))
    with pytest.warns(RuntimeWarning, match="no active latent"):
        result = infomec(latents, factors, device="cpu")
    assert (result.infom, result.infoc) == (0.0, 0.0)
    assert result.infoe == pytest.approx(0.0, abs=1e-9)


def test_modularity_compactness_formulas():
    nmi = np.array([[0.8, 0.2, 0.0], [0.1, 0.0, 0.6]])
    infom, infoc, notes = modularity_compactness(nmi, np.array([True, True, True]))
    m = np.mean([0.8 / 0.9, 1.0, 1.0])
    c = np.mean([0.8 / 1.0, 0.6 / 0.7])
    assert infom == pytest.approx((m - 1 / 2) / (1 - 1 / 2))
    assert infoc == pytest.approx((c - 1 / 3) / (1 - 1 / 3))
    assert notes == ()


def test_predictive_information_matches_sklearn():
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import log_loss
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng(7)
    factors = rng.integers(0, 4, size=(1500, 2))
    latents = factors + rng.standard_normal(factors.shape)
    ours = predictive_information(latents, factors, device="cpu")
    x = StandardScaler().fit_transform(latents)
    for i in range(2):
        model = LogisticRegression(C=np.inf, class_weight="balanced", max_iter=500).fit(x, factors[:, i])
        ce = log_loss(factors[:, i], model.predict_proba(x))
        assert ours[i] == pytest.approx((np.log(4) - ce) / np.log(4), abs=1e-3)


@pytest.mark.parametrize("latents,factors,match", [
    (np.full((10, 2), np.nan), np.zeros((10, 1), int), "NaN/Inf"),
    (np.ones(10), np.c_[np.arange(10) % 2], "must be 2-D"),
    (np.ones((10, 2)), np.c_[np.arange(9) % 2], "same number of rows"),
    (np.ones((1, 2)), np.zeros((1, 1), int), "at least 2 samples"),
    (np.ones((10, 2)), np.c_[np.full(10, 3)], "single value"),
    (np.ones((10, 2)), np.c_[np.linspace(0, 1, 10)], "integer labels"),
    (np.array([["a", "b"], ["c", "d"]]), np.zeros((2, 1), int), "numeric"),
])
def test_input_errors(latents, factors, match):
    with pytest.raises(DataError, match=match):
        infomec(latents, factors, device="cpu")


def test_the_valid_reference_of_the_error_shapes_scores():
    """The well-formed input the error cases above break: constant latents carry nothing."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        result = infomec(np.ones((10, 2)), np.c_[np.arange(10) % 2], device="cpu")
    np.testing.assert_array_equal(result.nmi, np.zeros((1, 2)))
    assert np.isfinite([result.infom, result.infoe, result.infoc]).all() and result.notes


@pytest.mark.parametrize("kwargs,match", [
    (dict(active="median"), "active must be one of"),
    (dict(n_neighbors=0), "n_neighbors must be a positive integer, got 0"),
    (dict(n_neighbors=True), "n_neighbors must be a positive integer, got True"),
    (dict(tol=float("nan")), "tol must be a finite non-negative number, got nan"),
    (dict(tol=-1.0), "tol must be a finite non-negative number, got -1.0"),
    (dict(max_iter=-1), "max_iter must be a positive integer, got -1"),
    (dict(max_iter=0), "max_iter must be a positive integer, got 0"),
    (dict(seed=-1), r"seed must be an integer in \[0, 2\*\*63\), got -1"),
    (dict(seed=2**64), r"seed must be an integer in \[0, 2\*\*63\), got 18446744073709551616"),
])
def test_option_errors(kwargs, match):
    factors = _grid((2, 2))
    with pytest.raises(ValueError, match=match):
        infomec(factors, factors, device="cpu", **kwargs)
    fit_options = {k: v for k, v in kwargs.items() if k in ("tol", "max_iter")}
    if fit_options:
        with pytest.raises(ValueError, match=match):
            predictive_information(factors, factors, device="cpu", **fit_options)


def test_single_factor_gives_defined_infom_and_strict_json():
    import json

    rng = np.random.default_rng(8)
    factors = rng.integers(0, 5, size=(1500, 1))
    latents = np.c_[factors + 0.3 * rng.standard_normal((1500, 1)), rng.standard_normal(1500)]
    with pytest.warns(RuntimeWarning, match="a single factor: InfoM is undefined"):
        result = infomec(latents, factors, device="cpu")
    assert result.infom == 1.0
    assert np.isfinite([result.infoe, result.infoc]).all()
    json.dumps(result.to_dict(), allow_nan=False)  # raises on NaN/Inf


def test_extreme_magnitudes_give_the_same_scores():
    # The estimators standardise each column: values near 1e154 (whose squares overflow)
    # or 1e-160 (whose squares underflow) are rescaled exactly instead.
    rng = np.random.default_rng(9)
    factors = rng.integers(0, 5, size=(2000, 3))
    latents = factors + 0.3 * rng.standard_normal((2000, 3))
    base = _score({"latents": latents, "factors": factors}, 3, "range")
    mixed = latents * np.array([1e154, 1e-160, 1e300])
    for scaled in (latents * 1e154, latents * 1e-160, mixed):
        result = _score({"latents": scaled, "factors": factors}, 3, "range")
        assert np.isfinite([result.infom, result.infoe, result.infoc]).all()
        np.testing.assert_allclose(result.nmi, base.nmi, rtol=0, atol=1e-9)
        # Activity compares ranges across columns: only the 1e300 column stays active.
        np.testing.assert_array_equal(result.active_latents, [False, False, True]
                                      if scaled is mixed else base.active_latents)
        assert result.infoe == pytest.approx(base.infoe, abs=1e-6)


def test_n_neighbors_is_clamped_to_the_data():
    rng = np.random.default_rng(10)
    factors = rng.integers(0, 4, size=(600, 2))
    latents = factors + rng.standard_normal((600, 2))
    largest_group = max(np.bincount(column).max() for column in factors.T)
    with pytest.warns(RuntimeWarning, match="n_neighbors=100000 exceeds"):
        huge = infomec(latents, factors, n_neighbors=100000, device="cpu")
    exact = infomec(latents, factors, n_neighbors=int(largest_group) - 1, device="cpu")
    np.testing.assert_array_equal(huge.nmi, exact.nmi)


_MANY_CODES = """
import numpy as np
from disentangle_eval import DataError, infomec, normalized_mutual_information
rng = np.random.default_rng(0)
codes = rng.integers(0, 1000, (20000, 14))
factors = rng.integers(0, 1000, (20000, 7))
"""


def test_plugin_mi_of_many_codes_stays_within_memory():
    # 7 factors x 14 latents x 1000 x 1000 dense contingency tables would take several GB;
    # tables with more cells than samples are counted sparsely instead.
    code = _MANY_CODES + """
nmi = normalized_mutual_information(codes, factors, device="cpu")
print(nmi.shape, bool(np.isfinite(nmi).all()), bool((nmi >= 0).all()))
"""
    run = python_limited(code, max_bytes=2 * 2**30)
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.strip() == "(7, 14) True True"


def test_infoe_too_large_for_memory_is_refused_in_one_line():
    code = _MANY_CODES + """
import time
start = time.perf_counter()
try:
    infomec(codes, factors, device="cpu")
except DataError as error:
    print(f"{time.perf_counter() - start:.1f}", error)
"""
    run = python_limited(code, max_bytes=2 * 2**30)
    assert run.returncode == 0, run.stderr[-2000:]
    seconds, message = run.stdout.strip().split(" ", 1)
    assert "\n" not in message
    assert message.startswith("InfoE would fit 14001 inputs x 1000 classes for 7 factor(s)")
    assert "GiB of optimiser state" in message
    assert float(seconds) < 5  # refused before the NMI is computed


def test_huge_n_neighbors_on_few_rows_is_quick_and_small():
    code = """
import time, warnings
import numpy as np
from disentangle_eval import infomec
warnings.simplefilter("ignore")
rng = np.random.default_rng(0)
factors = rng.integers(0, 4, (600, 3))
latents = factors + rng.standard_normal((600, 3))
start = time.perf_counter()
result = infomec(latents, factors, n_neighbors=100000, device="cpu")
print(f"{time.perf_counter() - start:.1f}", any("n_neighbors=100000" in n for n in result.notes))
"""
    run = python_limited(code, max_bytes=2 * 2**30)
    assert run.returncode == 0, run.stderr[-2000:]
    seconds, noted = run.stdout.split()
    assert noted == "True" and float(seconds) < 10


def test_result_to_dict_is_json_ready():
    import json

    factors = _grid((3, 3))
    result = infomec(factors, factors, device="cpu")
    payload = json.loads(json.dumps(result.to_dict()))
    assert payload["nmi"] == result.nmi.tolist()
    assert payload["device"] == "cpu"


needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@needs_cuda
@pytest.mark.parametrize("variant,k,rule", VARIANTS, ids=[v[0] for v in VARIANTS])
def test_cuda_conformance(conformance_case, variant, k, rule):
    # Every value (InfoM, InfoE, InfoC, each NMI entry, InfoE per factor) at the CPU
    # tests' tolerances, computed on the GPU.
    name, arrays, expected = conformance_case
    result = _score(arrays, k, rule, device="cuda")
    assert result.device.startswith("cuda")
    _check_conformance(result, expected, variant)


def _assert_devices_agree(latents, factors, **kwargs):
    arrays = {"latents": latents, "factors": factors}
    cpu = _score(arrays, 3, "range", **kwargs)
    gpu = _score(arrays, 3, "range", device="cuda", **kwargs)
    assert gpu.device.startswith("cuda") and gpu.discrete == cpu.discrete
    # The jitter is drawn on the CPU for both: the NMI differs by rounding only.
    np.testing.assert_allclose(gpu.nmi, cpu.nmi, rtol=0, atol=1e-9)
    np.testing.assert_array_equal(gpu.active_latents, cpu.active_latents)
    assert (gpu.infom, gpu.infoc) == pytest.approx((cpu.infom, cpu.infoc), abs=1e-9)
    np.testing.assert_allclose(gpu.infoe_per_factor, cpu.infoe_per_factor, rtol=0, atol=1e-3)


@needs_cuda
def test_cuda_matches_cpu_discrete_latents():
    rng = np.random.default_rng(11)
    factors = rng.integers(0, 6, size=(4000, 3))
    codes = np.stack([factors[:, 0], (factors[:, 1] + rng.integers(0, 2, 4000)) % 6,
                      rng.integers(0, 9, 4000), factors[:, 2] * 2 + rng.integers(0, 2, 4000)],
                     axis=1)
    _assert_devices_agree(codes, factors)


@needs_cuda
def test_cuda_matches_cpu_forty_class_factor():
    # Two 40-class factors take the preconditioned InfoE path (and the k-NN's largest
    # label counts); the small ones the plain path.
    rng = np.random.default_rng(12)
    sizes = np.array([4, 2, 40, 40])
    factors = np.stack([rng.integers(0, s, 6000) for s in sizes], axis=1)
    unit = factors / (sizes - 1)
    latents = np.concatenate([np.tanh(2 * unit - 1) + 0.05 * rng.standard_normal(unit.shape),
                              np.cos(2.5 * unit) + 0.2 * rng.standard_normal(unit.shape)],
                             axis=1)
    _assert_devices_agree(latents, factors)
