"""Confidence intervals: resampling plans, interval arithmetic, the batched InfoMEC
replicates against the plain loop, and coverage measured on synthetic populations."""
import math
from dataclasses import dataclass

import numpy as np
import pytest
import scipy.special
import torch

from disentangle_eval import (DataError, compare_representations, confidence_intervals,
                              infomec)
from disentangle_eval import _replicates_dci
from disentangle_eval import _replicates_infomec as replicates_infomec
from disentangle_eval._intervals import interval
from disentangle_eval._registry import METRICS, MetricSpec, run_metric
from disentangle_eval._resampling import (Resampling, canonical_order, deviation_scale,
                                          draw_replicates, row_keys)
from disentangle_eval._results import MetricResult
from disentangle_eval._uncertainty import (BATCHED_RUNNERS, draw_metric_replicates, intervals_from_inputs,
                                           loop_replicates, resampling_plan)
from disentangle_eval._validation import check_inputs

CPU = torch.device("cpu")


def population(kind: str, n: int, seed: int):
    """A partly entangled code of two factors (3 and 4 values), values away from 0 and 1."""
    rng = np.random.default_rng(seed)
    s = np.stack([rng.integers(0, 3, n), rng.integers(0, 4, n)], 1)
    if kind == "discrete":
        z0 = np.where(rng.random(n) < 0.7, s[:, 0], rng.integers(0, 3, n))
        z1 = np.where(rng.random(n) < 0.6, s[:, 1], rng.integers(0, 4, n))
        u = rng.random(n)
        z2 = np.where(u < 0.35, s[:, 0], np.where(u < 0.6, s[:, 1] % 3, rng.integers(0, 3, n)))
        return np.stack([z0, z1, z2], 1), s
    z = np.stack([s[:, 0] + 0.6 * rng.standard_normal(n),
                  s[:, 1] + 0.9 * rng.standard_normal(n),
                  0.5 * s[:, 0] - 0.4 * s[:, 1] + 0.7 * rng.standard_normal(n)], 1)
    return z, s


INFOMEC_SETTINGS = dict(n_neighbors=3, active="range", device=CPU, progress=False,
                        factor_names=None)


# --------------------------------------------------------------------------------------
# Interval arithmetic


def test_interval_is_t_interval_around_bias_corrected_estimate():
    replicates = np.array([0.50, 0.54, 0.46, 0.52, 0.48, 0.53, 0.47, 0.50])
    t = scipy.special.stdtrit(7, 0.975)
    se = replicates.std(ddof=1)
    plain = interval(0.5, replicates, 1.0, bias_correction=False)
    assert plain.std_error == pytest.approx(se)
    assert (plain.low, plain.high) == pytest.approx((0.5 - t * se, 0.5 + t * se))
    shifted = interval(0.49, replicates, 1.0)  # replicates 0.01 above the estimate
    assert shifted.bias == pytest.approx(0.01)
    assert (shifted.low + shifted.high) / 2 == pytest.approx(0.48)
    half = interval(0.5, replicates, 2.0, bias_correction=False)
    assert half.std_error == pytest.approx(2 * se)


def test_interval_cut_to_bounds_and_degenerate_replicates():
    iv = interval(0.99, [0.95, 1.0, 0.97, 0.99], 1.0, bias_correction=False, bounds=(0, 1))
    assert iv.high == 1.0 and iv.low < 0.99
    same = interval(1.0, [1.0, 1.0, 1.0], 1.0, bounds=(0, 1))
    assert (same.low, same.high, same.std_error) == (1.0, 1.0, 0.0)
    assert interval(0.0, [0.0, 0.0], 1.0).p_value == 1.0
    assert interval(0.2, [0.2, 0.2], 1.0).p_value == 0.0
    # A value some replicates leave undefined (NaN) rests on the others; an undefined
    # estimate, or one defined in fewer than 2 replicates, has an undefined interval.
    assert interval(0.5, [0.4, np.nan, 0.6], 1.0).n_resamples == 2
    for undefined in (interval(0.5, [0.5, np.nan], 1.0), interval(np.nan, [0.4, 0.6], 1.0)):
        assert np.isnan(undefined.low) and np.isnan(undefined.high)


def test_p_value_agrees_with_the_interval():
    rng = np.random.default_rng(0)
    for _ in range(200):
        reps = rng.normal(rng.normal(0, 0.05), 0.03, size=int(rng.integers(3, 40)))
        iv = interval(float(rng.normal(0, 0.05)), reps, 1.0, bias_correction=bool(rng.random() < .5))
        assert (iv.p_value < 0.05) == (iv.low > 0 or iv.high < 0)


# --------------------------------------------------------------------------------------
# Resampling plans


def test_half_sampling_rescaling_gives_the_standard_error_of_a_mean():
    rng = np.random.default_rng(1)
    for n in (200, 201):
        x = rng.standard_normal(n)
        order = canonical_order(x[:, None])
        reps = draw_replicates(order, "half", 3000, 0)
        assert all(len(r.rows) == n // 2 and len(np.unique(r.rows)) == n // 2 for r in reps)
        means = np.array([x[r.rows].mean() for r in reps])
        se = deviation_scale(n, "half") * means.std(ddof=1)
        assert se == pytest.approx(x.std(ddof=1) / math.sqrt(n), rel=0.05)
    assert deviation_scale(10, "bootstrap") == 1.0
    assert deviation_scale(11, "half") == pytest.approx(math.sqrt(5 / 6))


def test_bootstrap_standard_error_of_a_mean():
    rng = np.random.default_rng(2)
    x = rng.standard_normal(300)
    reps = draw_replicates(canonical_order(x[:, None]), "bootstrap", 3000, 0)
    means = np.array([x[r.rows].mean() for r in reps])
    assert means.std(ddof=1) == pytest.approx(x.std() / math.sqrt(300), rel=0.05)


def test_row_keys_depend_on_content_only():
    rng = np.random.default_rng(3)
    z, s = rng.standard_normal((50, 3)), rng.integers(0, 4, (50, 2))
    perm = rng.permutation(50)
    assert np.array_equal(row_keys(z, s)[perm], row_keys(z[perm], s[perm]))
    assert np.array_equal(row_keys(np.array([[0.0]])), row_keys(np.array([[-0.0]])))
    assert len(np.unique(row_keys(z, s))) == 50
    order, order_p = canonical_order(z, s), canonical_order(z[perm], s[perm])
    assert np.array_equal(z[order], z[perm][order_p])


@pytest.mark.parametrize("split", ["random", "contiguous"])
def test_within_split_replicates_never_fit_and_score_one_row(split):
    n = 100
    order = canonical_order(np.arange(n)[:, None])
    for rep in draw_replicates(order, "bootstrap", 20, 5, within_split=True, split=split,
                               train_fraction=0.8):
        assert len(rep.rows) == n and rep.n_train == 80
        train, test = set(rep.rows[:80]), set(rep.rows[80:])
        assert not train & test
        if split == "contiguous":  # the user's split is kept
            assert max(train) < 80 <= min(test)


def test_replicates_are_seeded():
    order = np.arange(30)
    first = draw_replicates(order, "bootstrap", 5, 7)
    again = draw_replicates(order, "bootstrap", 5, 7)
    other = draw_replicates(order, "bootstrap", 5, 8)
    assert all(np.array_equal(a.rows, b.rows) and a.seed == b.seed for a, b in zip(first, again))
    assert not all(np.array_equal(a.rows, b.rows) for a, b in zip(first, other))
    with pytest.raises(ValueError, match="scheme"):
        draw_replicates(order, "jackknife", 5, 7)


def test_registry_plans():
    assert resampling_plan(METRICS["infomec"]).scheme(True) == "bootstrap"
    assert resampling_plan(METRICS["infomec"]).scheme(False) == "half"
    dci_plan = resampling_plan(METRICS["dci"])
    assert dci_plan.within_split and dci_plan.scheme(False) == "bootstrap"
    assert not dci_plan.corrects_bias("bootstrap")
    # A metric registered without a plan gets a valid default.
    bare = MetricSpec("x", lambda inputs: None, options=("seed",), matrices=())
    assert resampling_plan(bare) == Resampling()
    split = MetricSpec("y", lambda inputs: None, options=("split",), matrices=())
    assert resampling_plan(split).within_split
    with pytest.raises(ValueError, match="scheme"):
        Resampling(discrete="jackknife")


# --------------------------------------------------------------------------------------
# Replicates


@pytest.mark.parametrize("kind", ["discrete", "continuous"])
@pytest.mark.parametrize("per_fit", ["all", "one"])
def test_batched_infomec_replicates_match_the_loop(kind, per_fit, one_thread, monkeypatch):
    if per_fit == "one":  # each replicate alone on its own (distinct) rows
        monkeypatch.setitem(replicates_infomec._FIT_BUDGET, "cpu", 1)
    inputs = check_inputs(*population(kind, 300, 0), device=CPU)
    shared = dict(INFOMEC_SETTINGS, seed=0)
    spec = METRICS["infomec"]
    scheme, replicates, _ = draw_metric_replicates(spec, [inputs], shared, 8, 0)
    assert scheme == ("bootstrap" if kind == "discrete" else "half")
    loop = loop_replicates(spec, [inputs], shared, replicates)
    batched = BATCHED_RUNNERS["infomec"](spec, [inputs], shared, replicates)
    assert batched.shape == loop.shape == (8, 1, 3)
    names = list(spec.compute(inputs).headline())
    np.testing.assert_array_equal(batched[..., names.index("infom")],
                                  loop[..., names.index("infom")])
    np.testing.assert_array_equal(batched[..., names.index("infoc")],
                                  loop[..., names.index("infoc")])
    # InfoE: the same objectives, fitted to the same tolerance from other whitenings.
    np.testing.assert_allclose(batched[..., names.index("infoe")],
                               loop[..., names.index("infoe")], atol=1e-4)


def dci_problem(kind: str, n: int, seed: int):
    """Latents of a binary, a 3-class and a 9-class factor (a value of it rare)."""
    rng = np.random.default_rng(seed)
    s = np.stack([rng.integers(0, 2, n), rng.integers(0, 3, n), rng.integers(0, 9, n)], 1)
    z = s @ rng.standard_normal((3, 4)) + 0.7 * rng.standard_normal((n, 4))
    if kind == "codes":
        z = np.clip(np.round(z), -3, 3)
    return z, s


DCI_SETTINGS = dict(predictor="gbt", backend="torch", train_fraction=0.8, device=CPU,
                    progress=False, factor_names=None)


@pytest.mark.parametrize("kind", ["continuous", "codes"])
@pytest.mark.parametrize("split", ["random", "contiguous"])
def test_dci_replicates_on_distinct_rows_are_the_refits(kind, split, one_thread):
    inputs = check_inputs(*dci_problem(kind, 400, 0), discrete=False, device=CPU)
    shared = dict(DCI_SETTINGS, split=split, seed=3)
    spec = METRICS["dci"]
    _, replicates, _ = draw_metric_replicates(spec, [inputs], shared, 3, 3)
    loop = loop_replicates(spec, [inputs], shared, replicates)
    batched = BATCHED_RUNNERS["dci"](spec, [inputs], shared, replicates)
    assert batched.shape == loop.shape == (3, 1, 4)
    np.testing.assert_array_equal(batched, loop)


def test_dci_replicates_paired_and_failed_as_the_refits(one_thread):
    # A binary factor with 2 ones in 60 rows: some replicates' training rows miss the
    # ones (a factor with one value: NaN in both runners).
    z, s = dci_problem("continuous", 60, 1)
    s[:, 0] = 0
    s[[5, 40], 0] = 1
    sides = [check_inputs(z, s, discrete=False, device=CPU),
             check_inputs(np.round(z), s, discrete=False, device=CPU)]
    shared = dict(DCI_SETTINGS, split="random", seed=0)
    spec = METRICS["dci"]
    _, replicates, _ = draw_metric_replicates(spec, sides, shared, 12, 0)
    loop = loop_replicates(spec, sides, shared, replicates)
    batched = BATCHED_RUNNERS["dci"](spec, sides, shared, replicates)
    failed = np.isnan(loop).all(axis=(1, 2))
    assert 0 < failed.sum() < len(failed)
    np.testing.assert_array_equal(batched, loop)


def test_dci_replicates_refuse_what_does_not_fit(monkeypatch, one_thread):
    inputs = check_inputs(*dci_problem("continuous", 200, 0), discrete=False, device=CPU)
    shared = dict(DCI_SETTINGS, split="random", seed=0)
    spec = METRICS["dci"]
    _, replicates, _ = draw_metric_replicates(spec, [inputs], shared, 2, 0)
    monkeypatch.setattr(_replicates_dci, "available_memory", lambda device: 2 ** 16)
    with pytest.raises(DataError, match=r"^DCI replicate: the trees of factor \d need about"):
        BATCHED_RUNNERS["dci"](spec, [inputs], shared, replicates)


def test_point_estimates_are_those_of_the_metrics(one_thread):
    z, s = population("continuous", 300, 1)
    scores = confidence_intervals(z, s, metrics=["infomec"], n_resamples=4, seed=3,
                                  device="cpu")
    plain = infomec(z, s, seed=3, device="cpu")
    assert scores.results["infomec"].headline() == plain.headline()
    found = scores.intervals["infomec"]
    assert list(found.intervals) == list(plain.headline())
    assert found.replicates.shape == (4, 3) and found.n_resamples == 4
    assert found.settings() == {"method": "half-sampling", "bias_corrected": False,
                                "n_resamples": 4, "n_failed": 0, "seed": 3}
    payload = scores.to_dict()["infomec"]
    assert set(payload["ci95"]) == {"infom", "infoe", "infoc"}
    assert all(lo <= hi for lo, hi in payload["ci95"].values())


def test_dci_intervals(one_thread):
    z, s = population("continuous", 300, 2)
    scores = confidence_intervals(z, s, metrics=["dci"], n_resamples=3, device="cpu")
    found = scores.intervals["dci"]
    assert found.method == "bootstrap within the train/test split"
    assert set(found.intervals) == {"disentanglement", "completeness", "informativeness_train",
                                    "informativeness_test"}
    for name, iv in found.intervals.items():
        assert 0 <= iv.low <= iv.high <= 1 and iv.bias == 0.0, name


@pytest.mark.parametrize("kind", ["discrete", "continuous"])
def test_row_order_does_not_matter(kind, one_thread):
    z, s = population(kind, 300, 3)
    perm = np.random.default_rng(0).permutation(300)
    first = confidence_intervals(z, s, metrics=["infomec"], n_resamples=6, device="cpu")
    again = confidence_intervals(z[perm], s[perm], metrics=["infomec"], n_resamples=6,
                                 device="cpu")
    for name, iv in first.intervals["infomec"].intervals.items():
        other = again.intervals["infomec"].intervals[name]
        # Exact but for InfoE's fits, which sum the rows in another order.
        assert (other.low, other.high) == pytest.approx((iv.low, iv.high), abs=1e-6), name


def test_dci_contiguous_split_row_order_within_parts(one_thread):
    z, s = population("continuous", 200, 4)
    rng = np.random.default_rng(1)
    perm = np.concatenate([rng.permutation(180), 180 + rng.permutation(20)])
    runs = [confidence_intervals(zz, ss, metrics=["dci"], n_resamples=3, split="contiguous",
                                 device="cpu").intervals["dci"].replicates
            for zz, ss in ((z, s), (z[perm], s[perm]))]
    np.testing.assert_allclose(runs[0], runs[1], atol=1e-12)


def test_a_new_metric_gets_intervals_without_code_of_its_own(monkeypatch):
    @dataclass(frozen=True)
    class MeanResult(MetricResult):
        mean_code: float
        HEADLINE = ("mean_code",)

    def mean_from_inputs(inputs):
        return MeanResult(mean_code=float(inputs.raw_latents[:, 0].mean()) / 10)

    spec = MetricSpec("mean", mean_from_inputs, options=(), matrices=())
    monkeypatch.setitem(METRICS, "mean", spec)
    rng = np.random.default_rng(5)
    z = rng.random((400, 1)) * 10
    found = confidence_intervals(z, rng.integers(0, 2, (400, 1)), metrics=["mean"],
                                 n_resamples=200, device="cpu").intervals["mean"]
    iv = found.intervals["mean_code"]
    assert found.method == "half-sampling"
    assert iv.std_error == pytest.approx(z.std() / 10 / math.sqrt(400), rel=0.15)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # InfoMEC's notes on tiny data
def test_errors():
    z, s = population("discrete", 100, 0)
    with pytest.raises(ValueError, match="n_resamples must be an integer >= 2, got 1"):
        confidence_intervals(z, s, metrics=["infomec"], n_resamples=1)
    with pytest.raises(ValueError, match="metrics must be names"):
        confidence_intervals(z, s, metrics=["nope"])
    with pytest.raises(TypeError, match="unknown metric setting"):
        confidence_intervals(z, s, metrics=["infomec"], neighbours=3)
    # A factor value seen once vanishes from many resamples: refused, not ignored.
    rare = np.zeros((30, 1), dtype=int)
    rare[:1] = 1
    with pytest.raises(DataError, match="too few rows"):
        confidence_intervals(np.arange(30)[:, None] % 3, rare, metrics=["infomec"],
                             n_resamples=20, device="cpu")
    with pytest.raises(DataError, match="same number of rows"):
        compare_representations(z, z[:50], s, metrics=["infomec"])


# --------------------------------------------------------------------------------------
# Coverage


COVERAGE_CASES = [("infomec", "discrete"), ("infomec", "continuous"), ("mig", "discrete"),
                  ("mig", "continuous")]
SETTINGS = dict(INFOMEC_SETTINGS, split="random", train_fraction=0.9)


@pytest.fixture(scope="module")
def truths():
    """Each metric of each population on 200000 rows (within ~0.005 of the limit)."""
    return {(metric, kind): np.array(list(run_metric(
        METRICS[metric], check_inputs(*population(kind, 200_000, 10**6), device=CPU),
        dict(SETTINGS, seed=0)).headline().values())) for metric, kind in COVERAGE_CASES}


@pytest.mark.parametrize("metric, kind", COVERAGE_CASES)
def test_intervals_cover_the_population_value(metric, kind, truths, one_thread):
    """Nominal 95% intervals cover the population value in roughly 90-99% of datasets.

    Measured on 200-300 draws of 500 rows with R=20: InfoMEC (InfoM, InfoE, InfoC) 0.92,
    0.91, 0.95 on discrete codes (bootstrap) and 0.99, 0.91, 0.96 on continuous latents
    (half-sampling); MIG (bootstrap within the split) 0.94 and 0.955. With 100 draws a
    rate varies by about +-0.025; the bounds leave room for that.
    """
    truth = truths[metric, kind]
    covered, widths = [], []
    for m in range(100):
        inputs = check_inputs(*population(kind, 500, m), device=CPU)
        found = intervals_from_inputs(inputs, [metric], dict(SETTINGS, seed=m),
                                      n_resamples=20, seed=m)[metric]
        lows = np.array([iv.low for iv in found.intervals.values()])
        highs = np.array([iv.high for iv in found.intervals.values()])
        covered.append((lows <= truth) & (truth <= highs))
        widths.append(highs - lows)
    rate = np.mean(covered, axis=0)
    print(f"{metric} {kind}: coverage {rate}, mean width {np.mean(widths, axis=0)}")
    assert np.all(rate >= 0.85), rate
    assert 0.88 <= rate.mean() <= 0.99, rate


@pytest.mark.parametrize("kind", ["discrete", "continuous"])
def test_intervals_shrink_as_rows_grow(kind, one_thread):
    widths = {}
    for n in (400, 3200):
        found = confidence_intervals(*population(kind, n, 7), metrics=["infomec"],
                                     n_resamples=20, device="cpu").intervals["infomec"]
        widths[n] = np.array([iv.high - iv.low for iv in found.intervals.values()])
    # sqrt(8) ~ 2.8 times narrower in expectation.
    assert np.all(widths[3200] < 0.6 * widths[400]), widths


def test_logistic_row_weights_are_repeated_rows():
    """``fit_multinomial_logistic(row_weights=)``: a count of 2 is the row twice."""
    from disentangle_eval._logistic import fit_multinomial_logistic, log_loss

    rng = np.random.default_rng(8)
    x = torch.as_tensor(rng.standard_normal((60, 2)))
    y = torch.as_tensor(rng.integers(0, 3, (60, 1)))
    counts = torch.as_tensor(rng.integers(0, 3, 60), dtype=torch.float64)
    counts[y[:, 0] == 0] = counts[y[:, 0] == 0].clamp(min=1)
    rows = torch.repeat_interleave(torch.arange(60), counts.long())
    repeated = fit_multinomial_logistic(x[rows], y[rows], [3], tol=1e-8)
    weighted = fit_multinomial_logistic(x, y, [3], tol=1e-8, row_weights=counts[:, None])
    np.testing.assert_allclose(log_loss(weighted, x[rows], y[rows]).numpy(),
                               log_loss(repeated, x[rows], y[rows]).numpy(), atol=1e-8)
    with pytest.raises(ValueError, match="row_weights must have the shape"):
        fit_multinomial_logistic(x, y, [3], row_weights=counts)


def test_mean_interval_is_the_t_interval_over_runs():
    from scipy import stats

    from disentangle_eval._intervals import mean_interval

    values = np.array([0.31, 0.28, 0.35, 0.30])
    iv = mean_interval(values)
    low, high = stats.t.interval(0.95, 3, loc=values.mean(), scale=stats.sem(values))
    assert (iv.low, iv.high) == pytest.approx((low, high))
    assert iv.p_value == pytest.approx(stats.ttest_1samp(values, 0).pvalue)
    assert np.isnan(mean_interval([0.3]).low)


def test_every_registered_metric_gets_intervals(one_thread):
    from disentangle_eval._results import strict_json

    z, s = population("continuous", 300, 9)
    names = [m for m in METRICS if m != "dci"]  # DCI's refits: test_dci_intervals
    scores = confidence_intervals(z, s, metrics=names, n_resamples=3, device="cpu")
    for name in names:
        found = scores.intervals[name]
        assert list(found.intervals) == list(scores.results[name].headline()), name
        assert found.method == ("half-sampling" if name == "infomec"
                                else "bootstrap within the train/test split"), name
    strict_json(scores.to_dict())  # no NaN reaches the JSON


def test_docstring_examples(one_thread):
    import doctest

    from disentangle_eval import _uncertainty

    failures, tried = doctest.testmod(_uncertainty, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert tried >= 6 and failures == 0
