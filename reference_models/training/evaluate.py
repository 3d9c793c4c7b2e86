"""After training: dump the evaluation protocol's latents, score them, write the figures.

The protocol (as disentanglement_lib and the FactorQVAE evaluation): ``n_train`` (10000)
then ``n_test`` (5000) factor combinations drawn uniformly, in that order, with
``np.random.RandomState(seed)`` and :meth:`FactorDataset.sample_factors`; their images are
encoded deterministically (``model.eval()``, ``encode(x)``: code indices for the
quantised models, ``z`` or the posterior mean otherwise). The rows are stored train first,
so ``disentangle-eval score latents.npz --factors factors.npz --split contiguous
--train-fraction n_train/(n_train+n_test)`` reproduces the DCI split.

Files
-----
``latents.npz``
    ``latents`` (n, d) int64 codes or float32, ``factors`` (n, F) int64, ``factor_names``,
    ``factor_sizes``, ``n_train`` (scalar), ``discrete`` (scalar bool) and, for the
    quantised models, ``codebook``.
``factors.npz``
    ``factors``, ``factor_names``, ``factor_sizes``, ``n_train``.
``metrics.json``
    Every registered metric of :mod:`disentangle_eval` on inputs checked once: DCI and
    the suite metrics that fit a predictor on the contiguous split at ``n_train``,
    InfoMEC on all rows, MIG/Modularity/IRS on their train rows; the reconstruction MSE
    on the held-out images (per pixel, on the [-0.5, 0.5] scale; ``mse_x1e4`` as the
    paper's Table 1), and ``table``: the Table 1 columns D, I, C, InfoM, InfoE, InfoC,
    MSE (x 1e4), then MIG, SAP, Modularity, Explicitness (test) and IRS.
"""
from __future__ import annotations

import math
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from disentangle_eval._registry import METRICS, run_metric
from disentangle_eval._validation import check_inputs
from disentangle_eval.environment import environment_info
from disentangle_eval.io import atomic_write, write_json
from reference_models.training.figures import make_figures
from reference_models.training.run_folder import FACTORS, LATENTS
from reference_models.training.run_folder import METRICS as METRICS_FILE

__all__ = ["protocol_factors", "encode_dataset", "score_latents", "evaluate_run",
           "TRAINING_METRICS"]

# The metrics of metrics.json (the table reads their headline values): every registered
# one, DCI and InfoMEC (the paper's Table 1) and the standard suite.
TRAINING_METRICS = tuple(METRICS)


def protocol_factors(dataset, n_train: int, n_test: int, seed: int) -> np.ndarray:
    """Factor tuples of the protocol: ``n_train`` then ``n_test`` uniform draws, seeded."""
    random_state = np.random.RandomState(seed)
    train = dataset.sample_factors(n_train, random_state)
    test = dataset.sample_factors(n_test, random_state)
    return np.concatenate([train, test])


@torch.no_grad()
def encode_dataset(model, dataset, factors: np.ndarray, *, device, batch_size: int = 500,
                   mse_from: int | None = None) -> tuple[np.ndarray, float | None]:
    """Encode the images of ``factors`` (rows) with ``model.encode``.

    Returns the latents (n, d) (int64 codes or float32) and, when ``mse_from`` is given,
    the per-pixel mean squared reconstruction error over rows ``mse_from:`` (float64
    accumulation).
    """
    model.eval()
    indices = dataset.index_of(factors)
    chunks = []
    squared, pixels = 0.0, 0
    for start in range(0, len(indices), batch_size):
        x = torch.from_numpy(dataset.images(indices[start:start + batch_size])).to(device)
        codes = model.encode(x)
        chunks.append(codes.cpu())
        if mse_from is not None and start + len(x) > mse_from:
            keep = slice(max(0, mse_from - start), None)
            error = (model.decode(codes[keep]) - x[keep]).double().pow(2)
            squared += float(error.sum())
            pixels += error.numel()
    latents = torch.cat(chunks).numpy()
    if latents.dtype != np.int64:
        latents = latents.astype(np.float32)
    mse = squared / pixels if pixels else None
    return latents, mse


def score_latents(latents: np.ndarray, factors: np.ndarray, *, n_train: int, discrete: bool,
                  seed: int, device) -> tuple[dict[str, Any], Any, Any, list[str]]:
    """Every metric of :data:`TRAINING_METRICS` on the contiguous protocol split.

    The inputs are checked once (:func:`disentangle_eval._validation.check_inputs`) and
    every metric runs on them through the metric registry, as ``disentangle-eval score``
    runs them (InfoMEC uses all rows, the others the split).

    Returns the JSON-ready report parts and the two result objects, plus the warnings.
    """
    n = len(latents)
    train_fraction = n_train / n
    if math.ceil(train_fraction * n) != n_train:  # guard the float round trip
        train_fraction = math.nextafter(train_fraction, 0.0)
    settings = {"split": "contiguous", "train_fraction": train_fraction, "seed": seed,
                "device": device}
    with warnings.catch_warnings(record=True) as recorded:
        warnings.simplefilter("always")
        inputs = check_inputs(latents, factors, discrete=discrete, device=device)
        results = {name: run_metric(METRICS[name], inputs, settings)
                   for name in TRAINING_METRICS}
    caught = sorted({str(w.message) for w in recorded
                     if not issubclass(w.category, (DeprecationWarning, FutureWarning))})
    report = {name: result.to_dict() for name, result in results.items()}
    return report, results["dci"], results["infomec"], caught


def evaluate_run(run_dir: str | os.PathLike, model, dataset, spec, *, device,
                 figures: bool = True) -> dict[str, Any]:
    """Write latents.npz, factors.npz, metrics.json (and figures/) of a trained model."""
    run_dir = Path(run_dir)
    tcfg = spec.train_config
    n_train, n_test = tcfg.metric_train_samples, tcfg.metric_test_samples
    factors = protocol_factors(dataset, n_train, n_test, tcfg.seed)
    latents, mse = encode_dataset(model, dataset, factors, device=device, mse_from=n_train)
    discrete = bool(model.is_quantized)
    names = np.array(dataset.factor_names)
    sizes = np.array(dataset.factor_sizes, dtype=np.int64)
    arrays = {"latents": latents, "factors": factors, "factor_names": names,
              "factor_sizes": sizes, "n_train": np.int64(n_train), "discrete": np.bool_(discrete)}
    if discrete:
        arrays["codebook"] = model.codebook.detach().cpu().numpy()
    with atomic_write(run_dir / LATENTS, "wb") as handle:
        np.savez(handle, **arrays)
    with atomic_write(run_dir / FACTORS, "wb") as handle:
        np.savez(handle, factors=factors, factor_names=names, factor_sizes=sizes,
                 n_train=np.int64(n_train))

    report, dci_result, info, caught = score_latents(
        latents, factors, n_train=n_train, discrete=discrete, seed=tcfg.seed, device=device)
    metrics = {
        "model": spec.model, "dataset": spec.dataset, "preset": spec.preset,
        "seed": tcfg.seed, "steps": tcfg.steps, "n_train": n_train, "n_test": n_test,
        "n_latents": int(latents.shape[1]), "factor_names": list(dataset.factor_names),
        "latents_discrete": discrete,
        **report,
        "mse": mse, "mse_x1e4": None if mse is None else mse * 1e4,
        "mse_note": "per-pixel mean squared error of decode(encode(x)) on the held-out "
                    "images, pixels scaled to [-0.5, 0.5]",
        "table": {"D": report["dci"]["disentanglement"],
                  "I": report["dci"]["informativeness_test"],
                  "C": report["dci"]["completeness"],
                  "InfoM": report["infomec"]["infom"], "InfoE": report["infomec"]["infoe"],
                  "InfoC": report["infomec"]["infoc"],
                  "MSE": None if mse is None else mse * 1e4,
                  "MIG": report["mig"]["mig"], "SAP": report["sap"]["sap"],
                  "Modularity": report["modularity"]["modularity"],
                  "Explicitness": report["modularity"]["explicitness_test"],
                  "IRS": report["irs"]["irs"]},
        "warnings": caught,
        "environment": environment_info(device),
    }
    write_json(run_dir / METRICS_FILE, metrics)
    if figures:
        make_figures(run_dir, model=model, dataset=dataset, device=device)
    return metrics
