"""Time MIG, SAP, Modularity/Explicitness and IRS against the scikit-learn/numpy reference.

The reference side is disentanglement_lib's computation written plainly (the
``reference_*`` functions of ``disentangle_eval._sklearn_references`` and ``_irs``):
``np.histogram``/``np.digitize`` and one ``mutual_info_score`` per (latent, factor) pair,
one ``LinearSVC(C=0.01, class_weight="balanced")`` per pair, one ``LogisticRegression()``
per factor with ``roc_auc_score``, and a mask, mean and ``np.quantile`` per factor bin.
Both sides run on the same MPI3D-sized problem in this process, interleaved (ours, then
the reference, each repeat), so the printed ratios are meaningful on a noisy shared
machine. DCI (torch) is timed on the same problem for comparison.

Usage: python benchmarks/bench_suite.py [--n-samples 15000] [--train-fraction 0.6667]
       [--repeats 3] [--no-dci]
"""
from __future__ import annotations

import argparse
import math
import os
import sys
import time
import warnings
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _synthetic import mpi3d_like  # noqa: E402


def reference_suite(latents, factors, n_train):
    """Each metric's headline value(s) by the plain reference, and its time in seconds."""
    from disentangle_eval._irs import reference_irs_matrix
    from disentangle_eval._modularity import modularity_per_latent
    from disentangle_eval._sklearn_references import (reference_explicitness, reference_mig,
                                                      reference_score_matrix)

    x_train, y_train = latents[:n_train], factors[:n_train]
    x_test, y_test = latents[n_train:], factors[n_train:]
    values, seconds = {}, {}

    start = time.perf_counter()
    values["mig"] = (reference_mig(x_train, y_train)[0],)
    seconds["mig"] = time.perf_counter() - start

    start = time.perf_counter()
    matrix = np.sort(reference_score_matrix(x_train, y_train, x_test, y_test), axis=0)
    values["sap"] = (float(np.mean(matrix[-1] - matrix[-2])),)
    seconds["sap"] = time.perf_counter() - start

    start = time.perf_counter()
    modularity = float(modularity_per_latent(reference_mig(x_train, y_train)[1])[0].mean())
    explicitness = reference_explicitness(x_train, y_train, x_test, y_test)
    values["modularity"] = (modularity, *explicitness.mean(axis=0))
    seconds["modularity"] = time.perf_counter() - start

    start = time.perf_counter()
    irs_matrix = reference_irs_matrix(x_train, y_train)
    z = x_train.astype(np.float64)
    z = z[:, z.max(axis=0) > z.min(axis=0)]
    weights = np.abs(z - z.mean(axis=0)).max(axis=0)
    values["irs"] = (float(np.average(irs_matrix.max(axis=1), weights=weights)),)
    seconds["irs"] = time.perf_counter() - start
    return values, seconds


def ours_suite(latents, factors, train_fraction, device):
    from disentangle_eval import irs, mig, modularity_explicitness, sap

    metrics = {"mig": mig, "sap": sap, "modularity": modularity_explicitness, "irs": irs}
    values, seconds = {}, {}
    for name, metric in metrics.items():
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = metric(latents, factors, split="contiguous",
                            train_fraction=train_fraction, device=device)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        seconds[name] = time.perf_counter() - start
        values[name] = tuple(result.headline().values())
    return values, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-samples", type=int, default=15000)
    parser.add_argument("--train-fraction", type=float, default=2 / 3,
                        help="contiguous split (default 2/3: 10000 train + 5000 test rows at "
                             "N=15000, the training evaluation's protocol)")
    parser.add_argument("--repeats", type=int, default=3,
                        help="interleaved rounds; the best time of each side is reported")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-dci", action="store_true", help="skip timing DCI for comparison")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    latents, factors = mpi3d_like(args.n_samples, seed=0)
    n_train = int(math.ceil(args.n_samples * args.train_fraction))
    print(f"problem: N={len(latents)} (train {n_train}), d={latents.shape[1]}, "
          f"F={factors.shape[1]} (sizes {[int(f.max()) + 1 for f in factors.T]}), "
          f"torch threads {torch.get_num_threads()}, device {args.device}", flush=True)

    ours_suite(latents[:1000], factors[:1000], args.train_fraction, args.device)  # warm-up
    best_ours, best_ref = {}, {}
    for _ in range(args.repeats):
        ours, t_ours = ours_suite(latents, factors, args.train_fraction, args.device)
        ref, t_ref = reference_suite(latents, factors, n_train)
        for name in t_ours:
            best_ours[name] = min(best_ours.get(name, math.inf), t_ours[name])
            best_ref[name] = min(best_ref.get(name, math.inf), t_ref[name])

    for name in best_ours:
        diff = max(abs(a - b) for a, b in zip(ours[name], ref[name]))
        print(f"{name:10s} ours {', '.join(f'{v:.4f}' for v in ours[name]):26s} "
              f"reference {', '.join(f'{v:.4f}' for v in ref[name]):26s} "
              f"max |diff| {diff:.1e}   {best_ref[name] / best_ours[name]:6.1f}x faster "
              f"(reference {best_ref[name]:.2f} s, torch {best_ours[name]:.3f} s)")
    total_ours, total_ref = sum(best_ours.values()), sum(best_ref.values())
    print(f"suite (mig, sap, modularity, irs) torch vs sklearn/numpy: "
          f"{total_ref / total_ours:.1f}x faster (reference {total_ref:.2f} s, "
          f"torch {total_ours:.3f} s; best of {args.repeats} interleaved rounds each)",
          flush=True)

    if not args.no_dci:
        from disentangle_eval import dci

        times = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            dci(latents, factors, split="contiguous", train_fraction=args.train_fraction,
                device=args.device)
            times.append(time.perf_counter() - start)
        t_dci = min(times)
        print(f"dci (torch GBT) on the same problem: {t_dci:.2f} s; the four metrics take "
              f"{total_ours / t_dci:.0%} of that")


if __name__ == "__main__":
    main()
