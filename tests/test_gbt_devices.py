"""The tree learner on every device: against the numpy reference, bit for bit on CPU and
within the conformance tolerances on CUDA (whose exp, atomically ordered sums and
kernels round differently in the last bit). The CUDA cases are skipped without a GPU;
the same test bodies run on CPU here.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from disentangle_eval import completeness, dci, disentanglement
from disentangle_eval._gbt import fit_gbt_classifiers
from disentangle_eval._gbt_binning import bin_counts, bin_features, histogram_precision
from disentangle_eval._gbt_reference import reference_fit

from test_gbt_reference import code_problem, continuous_problem

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs a CUDA device"))]
# The conformance tolerances of the torch backend (tests/test_dci.py).
TOL_DC, TOL_I = 0.03, 0.02

PROBLEMS = {
    # Code latents with 7 values: bins of hundreds of rows, the float64 histogram path.
    "crowded codes, 40 classes": (lambda: code_problem(1400, sizes=(2, 40, 5)), 1200,
                                  torch.float64),
    # Continuous latents: bins of fewer than 256 rows, the float32 path.
    "continuous, 40 classes": (lambda: continuous_problem(1200, sizes=(2, 40, 3)), 1000,
                               torch.float32),
}


def _histogram_dtype(latents):
    binned = bin_features(torch.as_tensor(latents, dtype=torch.float32).double(), 256)
    return histogram_precision(int(bin_counts(binned).max()), latents.shape[0])[0]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("problem", sorted(PROBLEMS))
def test_fit_on_each_device_matches_the_reference(device, problem):
    make, n_train, dtype = PROBLEMS[problem]
    latents, factors = make()
    assert _histogram_dtype(latents[:n_train]) == dtype
    x, y = torch.as_tensor(latents, device=device), torch.as_tensor(factors, device=device)
    options = dict(n_estimators=8, max_depth=3, seed=0)
    fit = fit_gbt_classifiers(x[:n_train], y[:n_train], x[n_train:], **options)
    importance, predict_train, predict_test = reference_fit(
        latents[:n_train], factors[:n_train], latents[n_train:], **options)
    got = [t.cpu().numpy() for t in (fit.importance, fit.predict_train, fit.predict_test)]
    if device == "cpu":
        for ours, reference in zip(got, (importance, predict_train, predict_test)):
            np.testing.assert_array_equal(ours, reference)
        return
    np.testing.assert_allclose(got[0], importance, atol=TOL_I)
    assert disentanglement(got[0]) == pytest.approx(disentanglement(importance), abs=TOL_DC)
    assert completeness(got[0]) == pytest.approx(completeness(importance), abs=TOL_DC)
    for ours, reference, y_true in ((got[1], predict_train, factors[:n_train]),
                                    (got[2], predict_test, factors[n_train:])):
        np.testing.assert_allclose((ours == y_true).mean(0), (reference == y_true).mean(0),
                                   atol=TOL_I)


@pytest.mark.parametrize("device", DEVICES)
def test_dci_of_discrete_codes_on_each_device(device):
    """Integer code latents through the public API, as a quantised model dumps them."""
    latents, factors = code_problem(1400, sizes=(2, 40, 5))
    codes = latents.astype(np.int64)
    kwargs = dict(split="contiguous", train_fraction=6 / 7, seed=0)
    ours = dci(codes, factors, device=device, **kwargs)
    cpu = dci(codes, factors, device="cpu", **kwargs)
    assert ours.device.startswith(device)
    for key in ("disentanglement", "completeness"):
        assert getattr(ours, key) == pytest.approx(getattr(cpu, key), abs=TOL_DC)
    for key in ("informativeness_train", "informativeness_test"):
        assert getattr(ours, key) == pytest.approx(getattr(cpu, key), abs=TOL_I)
    np.testing.assert_allclose(ours.importance, cpu.importance, atol=TOL_I)
