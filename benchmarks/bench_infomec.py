"""Time ``disentangle_eval.infomec`` against the scikit-learn reference computation.

The reference side is what the FactorQVAE/QLAE code runs: one ``mutual_info_classif``
call per (factor, latent) pair on standardised latents, and one unregularised balanced
``LogisticRegression`` (lbfgs, max_iter 500) per factor, scored with ``log_loss``.
Both run on the same MPI3D-sized data in this process, so the printed ratio is
meaningful on a noisy shared machine. Then, ours only: how the time grows with the rows
(N and 4N in this process, after a warm-up), and peak memory in a fresh subprocess (its
maximum resident set size, interpreter and torch included) at N=50000 and, with
``--million``, the time and memory of 1,000,000 rows.

Usage: python benchmarks/bench_infomec.py [--n-samples 10000] [--growth-n 100000]
       [--memory-n 50000] [--million]
"""
from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import time
import warnings
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _synthetic import mpi3d_like  # noqa: E402


def reference_infomec(latents, factors, n_neighbors=3, seed=0):
    from sklearn.feature_selection import mutual_info_classif
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import log_loss, mutual_info_score
    from sklearn.preprocessing import StandardScaler

    rng = np.random.RandomState(seed)
    x = np.concatenate([StandardScaler().fit_transform(latents[:, [j]])
                        for j in range(latents.shape[1])], axis=1)
    nmi = np.empty((factors.shape[1], latents.shape[1]))
    for i in range(factors.shape[1]):
        for j in range(latents.shape[1]):
            nmi[i, j] = mutual_info_classif(x[:, [j]], factors[:, i], n_neighbors=n_neighbors,
                                            random_state=rng)[0]
        nmi[i] /= mutual_info_score(factors[:, i], factors[:, i])
    ranges = np.ptp(latents, axis=0)
    active = ranges > ranges.max() / 20
    pruned = nmi[:, active]
    n_f, n_a = factors.shape[1], active.sum()
    infom = (np.mean(pruned.max(0) / pruned.sum(0)) - 1 / n_f) / (1 - 1 / n_f)
    infoc = (np.mean(pruned.max(1) / pruned.sum(1)) - 1 / n_a) / (1 - 1 / n_a)
    xs = StandardScaler().fit_transform(latents)
    per_factor = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for i in range(factors.shape[1]):
            model = LogisticRegression(C=np.inf, class_weight="balanced", max_iter=500,
                                       tol=1e-4).fit(xs, factors[:, i])
            ce = log_loss(factors[:, i], model.predict_proba(xs))
            k = len(np.unique(factors[:, i]))
            per_factor.append((np.log(k) - ce) / np.log(k))
    return {"infom": infom, "infoe": float(np.mean(per_factor)), "infoc": infoc, "nmi": nmi}


def ours(latents, factors, device="cpu"):
    from disentangle_eval import infomec

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return infomec(latents, factors, device=device)


def peak_memory_mib(n_samples: int) -> tuple[float, float, float]:
    """(peak RSS MiB, RSS before scoring MiB, seconds) of ``infomec`` in a fresh process."""
    code = (
        "import os, sys, resource, time; os.environ['OMP_WAIT_POLICY']='PASSIVE';"
        f"sys.path.insert(0, {str(Path(__file__).resolve().parent)!r});"
        "import torch; torch.set_num_threads(2);"
        "from _synthetic import mpi3d_like; from disentangle_eval import infomec;"
        f"z, y = mpi3d_like({n_samples}, seed=1);"
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss;"
        "start = time.perf_counter(); infomec(z, y, device='cpu');"
        "print(before, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,"
        " time.perf_counter() - start)"
    )
    out = subprocess.run([sys.executable, "-W", "ignore", "-c", code], capture_output=True,
                         text=True, check=True).stdout.split()
    return int(out[1]) / 1024, int(out[0]) / 1024, float(out[2])


def growth_ratio(n_samples: int, repeats: int = 2) -> tuple[float, float]:
    """Best-of times (s) of ``infomec`` at N and 4N rows, in this process."""
    best = []
    for n in (n_samples, 4 * n_samples):
        latents, factors = mpi3d_like(n, seed=2)
        runs = []
        for _ in range(repeats):
            start = time.perf_counter()
            ours(latents, factors)
            runs.append(time.perf_counter() - start)
        best.append(min(runs))
    return best[0], best[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-samples", type=int, default=10000)
    parser.add_argument("--growth-n", type=int, default=100000,
                        help="N of the time(4N)/time(N) line (0 skips it)")
    parser.add_argument("--memory-n", type=int, default=50000)
    parser.add_argument("--million", action="store_true",
                        help="also time 1,000,000 rows in a fresh process (minutes)")
    parser.add_argument("--repeats", type=int, default=3, help="best-of for our timing")
    args = parser.parse_args()
    torch.set_num_threads(2)
    latents, factors = mpi3d_like(args.n_samples, seed=0)
    print(f"problem: N={latents.shape[0]}, d={latents.shape[1]}, F={factors.shape[1]} "
          f"(sizes {[int(factors[:, i].max()) + 1 for i in range(factors.shape[1])]}), "
          f"torch threads {torch.get_num_threads()}")

    ours(latents[:500], factors[:500])  # warm-up (first-call overheads)
    times = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        result = ours(latents, factors)
        times.append(time.perf_counter() - start)
    t_ours = min(times)
    start = time.perf_counter()
    ref = reference_infomec(latents, factors)
    t_ref = time.perf_counter() - start

    print(f"{'':8s}{'InfoM':>9s}{'InfoE':>9s}{'InfoC':>9s}")
    print(f"{'sklearn':8s}{ref['infom']:9.4f}{ref['infoe']:9.4f}{ref['infoc']:9.4f}")
    print(f"{'ours':8s}{result.infom:9.4f}{result.infoe:9.4f}{result.infoc:9.4f}")
    differences = [abs(result.infom - ref["infom"]), abs(result.infoe - ref["infoe"]),
                   abs(result.infoc - ref["infoc"])]
    print(f"max |InfoM, InfoE, InfoC difference| = {max(differences):.1e}, "
          f"max |NMI difference| = {np.abs(result.nmi - ref['nmi']).max():.2e}")
    print(f"infomec torch vs sklearn: {t_ref / t_ours:.1f}x faster "
          f"(sklearn {t_ref:.2f} s, torch {t_ours:.3f} s; torch runs "
          f"{', '.join(f'{t:.3f}' for t in times)} s)")
    if args.growth_n:
        small, large = growth_ratio(args.growth_n)
        print(f"infomec time(4N)/time(N) at N={args.growth_n}: {large / small:.2f} "
              f"({small:.2f} s, {large:.2f} s)")
    if args.memory_n:
        peak, baseline, _ = peak_memory_mib(args.memory_n)
        print(f"peak memory at N={args.memory_n}: {peak:.0f} MiB resident "
              f"(of which {baseline:.0f} MiB is the interpreter, torch and the data before "
              "scoring)")
    if args.million:
        peak, baseline, seconds = peak_memory_mib(1_000_000)
        print(f"infomec at N=1000000: {seconds:.1f} s, peak memory {peak:.0f} MiB resident "
              f"(of which {baseline:.0f} MiB before scoring)")


if __name__ == "__main__":
    main()
