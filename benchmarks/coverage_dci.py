"""Coverage of the 95% intervals of GBT-DCI, measured on a synthetic population.

Draws many datasets of N rows from a population whose DCI values are known (computed on
a very large sample, several times to show their own spread), computes the intervals of
each draw (``--ci R`` as the command line does) and prints how often they cover the
known values, with the spread of the estimates against the mean standard error.

    python benchmarks/coverage_dci.py                       # N=2000, 100 draws, R=20
    python benchmarks/coverage_dci.py --metric infomec --resamples 40

The tests run the same experiment for InfoMEC (tests/test_uncertainty.py); this one is
costly (draws x (R + 1) tree fits), hence here. Replicate values are saved with --save.
"""
from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from disentangle_eval._registry import METRICS, run_metric  # noqa: E402
from disentangle_eval._uncertainty import intervals_from_inputs, resampling_plan  # noqa: E402
from disentangle_eval._validation import check_inputs  # noqa: E402

FACTOR_SIZES = (4, 5, 3)


def population(n: int, seed: int):
    """Rows of a partly entangled continuous code of three factors, and a dead-ish unit."""
    rng = np.random.default_rng(seed)
    s = np.stack([rng.integers(0, k, n) for k in FACTOR_SIZES], axis=1)
    u = s / (np.asarray(FACTOR_SIZES) - 1)
    z = np.stack([u[:, 0] + 0.25 * rng.standard_normal(n),
                  u[:, 1] + 0.3 * u[:, 0] + 0.3 * rng.standard_normal(n),
                  np.cos(2.5 * u[:, 2]) + 0.4 * rng.standard_normal(n),
                  0.5 * u[:, 1] + rng.standard_normal(n)], axis=1)
    return z, s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--metric", default="dci", choices=sorted(METRICS))
    parser.add_argument("--n", type=int, default=2000, help="rows per draw")
    parser.add_argument("--draws", type=int, default=100)
    parser.add_argument("--resamples", type=int, default=20)
    parser.add_argument("--truth-n", type=int, default=200000)
    parser.add_argument("--truth-draws", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--save", default=None, help="write estimates and replicates (.npz)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    spec = METRICS[args.metric]
    shared = dict(n_neighbors=3, active="range", predictor="gbt", backend="torch",
                  split="random", train_fraction=0.9, seed=0, device=torch.device("cpu"),
                  progress=False, factor_names=None)

    start = time.perf_counter()
    truths = np.array([list(run_metric(spec, check_inputs(*population(args.truth_n, 10**6 + t),
                                                          device="cpu"), shared)
                            .headline().values()) for t in range(args.truth_draws)])
    truth = truths.mean(0)
    names = list(run_metric(spec, check_inputs(*population(200, 0), device="cpu"), shared)
                 .headline())
    print(f"{args.metric} on {args.truth_n} rows, {args.truth_draws} draws "
          f"({time.perf_counter() - start:.0f} s):")
    for v, name in enumerate(names):
        print(f"  {name:22s} {truth[v]:.4f}  (spread {truths[:, v].std():.4f})")

    estimates, replicates, lows, highs, errors = [], [], [], [], []
    start = time.perf_counter()
    for m in range(args.draws):
        inputs = check_inputs(*population(args.n, m), device="cpu")
        settings = dict(shared, seed=m)
        result = run_metric(spec, inputs, settings)
        found = intervals_from_inputs(inputs, [args.metric], settings, results={args.metric: result},
                                      n_resamples=args.resamples, seed=m)[args.metric]
        estimates.append(list(result.headline().values()))
        replicates.append(found.replicates)
        lows.append([found.intervals[name].low for name in names])
        highs.append([found.intervals[name].high for name in names])
        errors.append([found.intervals[name].std_error for name in names])
        if (m + 1) % 10 == 0:
            print(f"  {m + 1} draws, {time.perf_counter() - start:.0f} s", flush=True)
    estimates, replicates = np.array(estimates), np.array(replicates)
    lows, highs, errors = np.array(lows), np.array(highs), np.array(errors)
    if args.save:
        np.savez(args.save, truths=truths, estimates=estimates, replicates=replicates,
                 lows=lows, highs=highs, names=np.array(names))

    plan = resampling_plan(spec)
    expected = estimates.mean(0)
    print(f"\n{args.draws} draws of {args.n} rows, R={args.resamples} "
          f"({plan.describe(False)}); 'at N' is the mean of the draws' estimates, the "
          "metric's expected value at this N:")
    print(f"  {'value':22s} {'large-N':>8s} {'at N':>8s}  coverage of large-N / at N"
          "   sd(estimate)  mean se")
    for v, name in enumerate(names):
        def cover(target):
            return ((lows[:, v] <= target) & (target <= highs[:, v])).mean()

        print(f"  {name:22s} {truth[v]:8.4f} {expected[v]:8.4f}  {cover(truth[v]):.3f} / "
              f"{cover(expected[v]):.3f}            {estimates[:, v].std():.4f}       {errors[:, v].mean():.4f}")


if __name__ == "__main__":
    main()
