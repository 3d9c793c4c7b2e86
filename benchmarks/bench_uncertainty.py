"""What confidence intervals cost, on the MPI3D-sized problem.

- InfoMEC (N=1000 and 10000, continuous latents: half-sampling; the same latents cut into
  codes: bootstrap): the batched replicates (replicates' logistic fits grouped into one)
  against the plain loop (one ``infomec`` call per replicate, the reference path), timed
  A/B interleaved in this process; then the cost of ``--ci R`` as a multiple of one point
  estimate.
- DCI (N=15000, 10000 train + 5000 test): ``--ci 20`` as a multiple of one point
  estimate, with the registered runner (each bootstrap replicate's trees fitted on its
  distinct rows with their counts) and with the plain loop (one refit per replicate on
  all its samples), interleaved in chunks of replicates in this process, the values of
  the two compared.
- ``--sklearn``: one scikit-learn reference computation of each, measured side by side,
  to put the cost of R replicates done the reference way (R times that) beside ours.

Usage: python benchmarks/bench_uncertainty.py [--resamples 100] [--code-resamples 20]
       [--dci-resamples 20] [--ab-resamples 10] [--skip-dci] [--only-dci] [--sklearn]
       [--device cpu|cuda]

On a GPU (``--device cuda --only-dci``) the same comparison measures what ``--ci 20`` of
DCI costs there, where a fit of 10000 rows leaves most of the device idle.
"""
from __future__ import annotations

import argparse
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

from disentangle_eval._registry import METRICS, run_metric  # noqa: E402
from disentangle_eval._uncertainty import (BATCHED_RUNNERS, draw_metric_replicates,  # noqa: E402
                                           intervals_from_inputs, loop_replicates)
from disentangle_eval._validation import check_inputs  # noqa: E402

SHARED = dict(n_neighbors=3, active="range", predictor="gbt", backend="torch",
              split="random", train_fraction=2 / 3, seed=0, device=torch.device("cpu"),
              progress=False, factor_names=None)


def timed(fn):
    start = time.perf_counter()
    out = fn()
    if SHARED["device"].type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start, out


def bench_infomec(latents, factors, label, resamples, ab_resamples) -> None:
    spec = METRICS["infomec"]
    inputs = check_inputs(latents, factors, device=SHARED["device"])
    point, _ = timed(lambda: run_metric(spec, inputs, SHARED))
    scheme, replicates, _ = draw_metric_replicates(spec, [inputs], SHARED, ab_resamples, 0)
    times = {"batched": [], "loop": []}
    for _ in range(2):  # A/B interleaved: the machine's load drifts
        t, batched = timed(lambda: BATCHED_RUNNERS["infomec"](spec, [inputs], SHARED,
                                                              replicates))
        times["batched"].append(t)
        t, loop = timed(lambda: loop_replicates(spec, [inputs], SHARED, replicates))
        times["loop"].append(t)
    diff = np.nanmax(np.abs(batched - loop))
    best = {k: min(v) for k, v in times.items()}
    print(f"infomec {label} ({scheme}), {ab_resamples} replicates: batched "
          f"{best['batched']:.2f} s, loop {best['loop']:.2f} s: "
          f"{best['loop'] / best['batched']:.1f}x faster (max |difference| {diff:.1e})")
    total, _ = timed(lambda: intervals_from_inputs(inputs, ["infomec"], SHARED,
                                                   n_resamples=resamples))
    print(f"infomec {label}: point estimate {point:.2f} s; --ci {resamples} "
          f"{total:.1f} s = {total / point:.0f} point estimates", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--resamples", type=int, default=100)
    parser.add_argument("--code-resamples", type=int, default=20,
                        help="for the code latents, whose 40-class fits run 500 iterations")
    parser.add_argument("--ab-resamples", type=int, default=10)
    parser.add_argument("--dci-resamples", type=int, default=20)
    parser.add_argument("--skip-dci", action="store_true")
    parser.add_argument("--only-dci", action="store_true")
    parser.add_argument("--sklearn", action="store_true",
                        help="also time one scikit-learn reference computation of each")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device is visible")
    SHARED["device"] = torch.device(args.device)
    print(f"device: {torch.cuda.get_device_name() if args.device == 'cuda' else 'cpu'}",
          flush=True)
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    warnings.simplefilter("ignore")

    if not args.only_dci:
        bench_all_infomec(args)
    if not args.skip_dci:
        bench_dci(args)


def bench_all_infomec(args) -> None:
    latents, factors = mpi3d_like(1000, seed=0)
    bench_infomec(latents, factors, "continuous, 1000 rows", args.resamples, args.ab_resamples)
    latents, factors = mpi3d_like(10000, seed=0)
    bench_infomec(latents, factors, "continuous", args.resamples, args.ab_resamples)
    codes = np.clip(np.round(latents * 4), -8, 8).astype(np.int64)
    bench_infomec(codes, factors, "codes", args.code_resamples, min(args.ab_resamples, 4))
    if args.sklearn:
        from bench_infomec import reference_infomec

        t, _ = timed(lambda: reference_infomec(latents.astype(np.float64), factors))
        print(f"infomec scikit-learn reference: {t:.1f} s per computation; "
              f"{args.resamples} replicates the reference way ~{t * args.resamples:.0f} s",
              flush=True)



def bench_dci(args, chunk: int = 5) -> None:
    """``--ci R`` of DCI, registered runner against the loop: chunks of ``chunk``
    replicates run by each in turn, each pair after a point estimate, so that both
    sides and the point estimate see the same drift of the machine's load."""
    latents, factors = mpi3d_like(15000, seed=0)
    inputs = check_inputs(latents, factors, discrete=False, device=SHARED["device"])
    spec = METRICS["dci"]
    _, replicates, _ = draw_metric_replicates(spec, [inputs], SHARED, args.dci_resamples, 0)
    points, batched, loop, values = [], 0.0, 0.0, []
    for start in range(0, len(replicates), chunk):
        part = replicates[start:start + chunk]
        t, result = timed(lambda: run_metric(spec, inputs, SHARED))
        points.append(t)
        t, found = timed(lambda: BATCHED_RUNNERS["dci"](spec, [inputs], SHARED, part))
        batched += t
        t, plain = timed(lambda: loop_replicates(spec, [inputs], SHARED, part))
        loop += t
        values.append((found, plain))
        print(f"  replicates {start}-{start + len(part) - 1}: point {points[-1]:.1f} s, "
              f"runner {batched:.0f} s, loop {loop:.0f} s so far", flush=True)
    point = float(np.mean(points))
    same = all(np.array_equal(a, b, equal_nan=True) for a, b in values)
    print(f"dci (10000 train + 5000 test): point estimate {point:.1f} s (mean of "
          f"{len(points)}); --ci {args.dci_resamples} adds {batched:.0f} s = "
          f"{batched / point:.1f} point estimates (distinct rows), against {loop:.0f} s = "
          f"{loop / point:.1f} (separate refits): {loop / batched:.2f}x faster; values "
          f"{'bitwise equal' if same else 'DIFFERENT'}")
    total, found = timed(lambda: intervals_from_inputs(inputs, ["dci"], SHARED,
                                                       results={"dci": result},
                                                       n_resamples=args.dci_resamples))
    for name, iv in found["dci"].intervals.items():
        print(f"  {name:22s} {iv.estimate:.4f} [{iv.low:.4f}, {iv.high:.4f}]", flush=True)
    if args.sklearn:
        from sklearn.ensemble import GradientBoostingClassifier

        x = inputs.raw_latents.cpu().numpy()[:10000]
        y = inputs.factors.cpu().numpy()[:10000]
        t, _ = timed(lambda: [GradientBoostingClassifier(random_state=0).fit(x, y[:, j])
                              for j in range(y.shape[1])])
        print(f"dci scikit-learn reference (one process, factors one after another): "
              f"{t:.0f} s per fit; {args.dci_resamples} replicates ~{t * args.dci_resamples:.0f} s")


if __name__ == "__main__":
    main()
