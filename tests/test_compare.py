"""Paired comparisons (API and `disentangle-eval compare`) and `score --ci`."""
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from disentangle_eval import compare_representations
from disentangle_eval.cli.main import main

HEADLINES = {"dci": ("disentanglement", "completeness", "informativeness_train",
                     "informativeness_test"),
             "infomec": ("infom", "infoe", "infoc")}


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    """Every test here runs many small replicates."""


def factors_of(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.stack([rng.integers(0, k, n) for k in (3, 4, 5)], axis=1)


def invoke(*args):
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert "Traceback" not in result.output
    if result.exit_code != 0:
        assert isinstance(result.exception, SystemExit), result.exception
    return result


# --------------------------------------------------------------------------------------
# The paired comparison


def test_a_representation_against_itself_plus_tiny_noise_differs_by_nothing():
    factors = factors_of(400)
    rng = np.random.default_rng(1)
    latents = factors + 0.4 * rng.standard_normal(factors.shape)
    nudged = latents + 1e-3 * rng.standard_normal(factors.shape)
    comparison = compare_representations(latents, nudged, factors, n_resamples=10,
                                         device="cpu")
    assert set(comparison.differences) == {f"{m}.{v}" for m, vs in HEADLINES.items()
                                           for v in vs}
    for key, diff in comparison.differences.items():
        assert diff.low <= 0 <= diff.high, (key, diff)
        assert abs(diff.estimate) < 0.05, (key, diff)


def test_a_clean_code_beats_noise():
    factors = factors_of(400)
    noise = np.random.default_rng(2).integers(0, 4, size=factors.shape)  # codes, like A
    comparison = compare_representations(factors, noise, factors, n_resamples=10,
                                         device="cpu")
    for key, diff in comparison.differences.items():
        assert diff.low > 0 and diff.p_value < 0.01, (key, diff)
    payload = comparison.to_dict()
    assert set(payload) == {"a", "b", "metrics"}
    entry = payload["metrics"]["dci.disentanglement"]
    assert set(entry) == {"a", "b", "difference", "ci95", "p_value"}
    assert entry["difference"] == pytest.approx(entry["a"] - entry["b"])
    assert set(payload["a"]["infomec"]["ci95"]) == set(HEADLINES["infomec"])


def test_replicates_are_paired():
    """Equal representations give identical replicates, so A - B is exactly 0."""
    factors = factors_of(300)
    latents = factors + 0.5 * np.random.default_rng(3).standard_normal(factors.shape)
    comparison = compare_representations(latents, latents.copy(), factors, metrics=["infomec"],
                                         n_resamples=5, device="cpu")
    for diff in comparison.differences.values():
        assert (diff.estimate, diff.low, diff.high, diff.p_value) == (0.0, 0.0, 0.0, 1.0)


def test_comparison_does_not_depend_on_row_order():
    factors = factors_of(300)
    rng = np.random.default_rng(4)
    a = factors + 0.5 * rng.standard_normal(factors.shape)
    b = np.round(factors + 0.8 * rng.standard_normal(factors.shape)).astype(int)  # discrete
    perm = rng.permutation(300)
    first = compare_representations(a, b, factors, metrics=["infomec"], n_resamples=6,
                                    device="cpu")
    again = compare_representations(a[perm], b[perm], factors[perm], metrics=["infomec"],
                                     n_resamples=6, device="cpu")
    assert first.intervals_a["infomec"].method == "half-sampling"  # either side continuous
    for key, diff in first.differences.items():
        other = again.differences[key]
        # Exact but for InfoE's fits, which sum the rows in another order.
        assert (other.estimate, other.low, other.high, other.p_value) == pytest.approx(
            (diff.estimate, diff.low, diff.high, diff.p_value), abs=1e-6), key


# --------------------------------------------------------------------------------------
# Command line


@pytest.fixture
def files(tmp_path):
    factors = factors_of(300, seed=5)
    rng = np.random.default_rng(6)
    clean = (factors + 0.2 * rng.standard_normal(factors.shape)).astype(np.float32)
    noise = rng.standard_normal(factors.shape).astype(np.float32)
    paths = {"a": tmp_path / "a.npz", "b": tmp_path / "b.npy", "f": tmp_path / "f.npz",
             "short": tmp_path / "short.npy"}
    np.savez(paths["a"], latents=clean)
    np.save(paths["b"], noise)
    np.savez(paths["f"], factors=factors, factor_names=np.array(["x", "y", "z"]))
    np.save(paths["short"], noise[:100])
    return paths


def test_compare_json(files):
    result = invoke("compare", files["a"], files["b"], "--factors", files["f"], "--metrics",
                    "infomec", "--ci", "8", "--seed", "3", "--json")
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert set(payload["metrics"]) == {"infomec.infom", "infomec.infoe", "infomec.infoc"}
    entry = payload["metrics"]["infomec.infoe"]
    assert entry["ci95"][0] > 0 and entry["p_value"] < 0.01
    assert payload["a"]["latents"] == str(files["a"]) and payload["b"]["n_latents"] == 3
    assert set(payload["a"]["infomec"]["ci95"]) == set(HEADLINES["infomec"])
    ci = payload["settings"]["ci"]
    assert ci["infomec"] == {"method": "half-sampling", "bias_corrected": False,
                             "n_resamples": 8, "n_failed": 0, "seed": 3}
    assert payload["settings"]["seed"] == 3 and payload["inputs"]["factor_names"] == ["x", "y", "z"]


def test_compare_table(files):
    result = invoke("compare", files["a"], files["b"], "--factors", files["f"], "--metrics",
                    "infomec", "--ci", "4")
    assert result.exit_code == 0, result.output
    assert "95% CI of A - B" in result.output
    line = next(l for l in result.output.splitlines() if l.startswith("infomec.infoe"))
    assert "[+" in line and line.split()[1] != line.split()[2]


def test_compare_takes_every_scoring_option_of_score():
    from disentangle_eval.cli.compare import SHARED_PARAMETERS
    from disentangle_eval.cli.main import score

    output_only = {"latents_path", "out_dir", "force"}
    assert {p.name for p in score.params} - output_only == set(SHARED_PARAMETERS)


def test_compare_errors(files):
    mismatch = invoke("compare", files["a"], files["short"], "--factors", files["f"])
    assert mismatch.exit_code == 1
    assert "same number of rows" in mismatch.output
    assert invoke("compare", files["a"], files["b"], "--factors", files["f"],
                  "--ci", "1").exit_code == 2
    assert invoke("compare", files["a"], "missing.npy", "--factors", files["f"]).exit_code == 2
    assert invoke("compare", files["a"], files["b"], "--factors", files["f"], "--metrics",
                  "nope").exit_code == 2


def test_score_ci_json_and_table(files, tmp_path):
    result = invoke("score", files["a"], "--factors", files["f"], "--metrics", "infomec",
                    "--ci", "5", "--json", "--out", tmp_path / "out")
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert json.loads((tmp_path / "out" / "metrics.json").read_text())["infomec"]["ci95"] \
        == payload["infomec"]["ci95"]
    ci95 = payload["infomec"]["ci95"]
    assert set(ci95) == set(HEADLINES["infomec"])
    for name, (low, high) in ci95.items():
        assert low <= high
    assert payload["settings"]["ci"]["infomec"]["n_resamples"] == 5
    assert payload["settings"]["ci"]["infomec"]["method"] == "half-sampling"
    table = invoke("score", files["a"], "--factors", files["f"], "--metrics", "infomec",
                   "--ci", "5")
    line = next(l for l in table.output.splitlines() if l.startswith("InfoE"))
    value, low, high = line.split()[1], line.split()[2], line.split()[3]
    assert low.startswith("[") and high.endswith("]")
    assert float(low[1:-1]) <= float(high[:-1])
    without = invoke("score", files["a"], "--factors", files["f"], "--metrics", "infomec")
    assert "[" not in next(l for l in without.output.splitlines() if l.startswith("InfoE"))
    assert invoke("score", files["a"], "--factors", files["f"], "--ci", "x").exit_code == 2


def test_score_ci_of_an_undefined_value_is_null(files, monkeypatch):
    import dataclasses

    from disentangle_eval import _registry

    spec = _registry.METRICS["infomec"]

    def nan_infom(inputs, **options):
        return dataclasses.replace(spec.compute(inputs, **options), infom=float("nan"))

    monkeypatch.setitem(_registry.METRICS, "infomec", dataclasses.replace(spec, compute=nan_infom))
    result = invoke("score", files["a"], "--factors", files["f"], "--metrics", "infomec",
                    "--ci", "3", "--json")
    assert result.exit_code == 0, result.output
    ci95 = json.loads(result.stdout, parse_constant=pytest.fail)["infomec"]["ci95"]
    assert ci95["infom"] == [None, None] and None not in ci95["infoe"]
    table = invoke("score", files["a"], "--factors", files["f"], "--metrics", "infomec",
                   "--ci", "3")
    assert "InfoM  n/a [n/a, n/a]" in table.output


@pytest.mark.slow
def test_compare_console_script(files):
    exe = shutil.which("disentangle-eval") or os.path.join(os.path.dirname(sys.executable),
                                                           "disentangle-eval")
    done = subprocess.run([exe, "compare", str(files["a"]), str(files["b"]), "--factors",
                           str(files["f"]), "--metrics", "infomec", "--ci", "3", "--json"],
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr
    assert "infomec.infom" in json.loads(done.stdout)["metrics"]
