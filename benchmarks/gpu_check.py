"""The GPU check: conformance on the device, then a million-row ``score`` timed.

1. Every conformance fixture (``tests/data/conformance``) scored on the device: DCI with
   the torch backend (contiguous 90/10 split, D and C within 0.03, informativeness within
   0.02 of disentanglement_lib) and InfoMEC in all three variants (InfoM, InfoE, InfoC,
   every NMI entry and InfoE per factor within 0.01 of the reference, NMI entries plus
   the reference's own spread over seeds), the tolerances of the CPU tests.
2. ``disentangle-eval score`` (DCI + InfoMEC, default settings) of ``--rows`` x 20 latents
   with MPI3D-like factors, in a fresh process, timed from start to exit; the target is
   under 60 s for 1,000,000 rows on a GPU.

Prints the device's name, the date and the figures; exits 1 if a case, the command or
the time target fails. Runs unchanged on a machine with a CUDA GPU::

    python benchmarks/gpu_check.py
    python benchmarks/gpu_check.py --device cpu --rows 20000   # a smoke test without a GPU
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import torch  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _synthetic import mpi3d_like  # noqa: E402

from disentangle_eval import dci, infomec  # noqa: E402

CONFORMANCE = ROOT / "tests" / "data" / "conformance"
INFOMEC_VARIANTS = (("infomec_factorqvae", 3, "range"), ("infomec_qlae", 10, "range"),
                    ("infomec_tripod", 10, "iqr"))
INFOMEC_TOL = 0.01
DCI_TOL_DC, DCI_TOL_I = 0.03, 0.02
TIME_TARGET_S = 60.0
TARGET_ROWS = 1_000_000


def _cases():
    for expected_path in sorted(CONFORMANCE.glob("*.expected.json")):
        name = expected_path.name[: -len(".expected.json")]
        with np.load(CONFORMANCE / f"{name}.npz") as data:
            arrays = {key: data[key] for key in data.files}
        yield name, arrays, json.loads(expected_path.read_text())


def _infomec_problems(result, expected, variant) -> list[str]:
    """Where ``result`` is outside the CPU tests' tolerances (empty: it passes)."""
    ref = expected["metrics"][variant]
    qlae = expected["metrics"]["infomec_qlae"]
    problems = []
    for key in ("infom", "infoe", "infoc"):
        value, wanted = getattr(result, key), ref["values"][key]
        if not np.isfinite(value):
            problems.append(f"{key} is {value}")
        elif wanted is None:
            if not any("zero NMI" in note for note in result.notes):
                problems.append(f"{key}: the reference is undefined but no note says so")
        elif abs(value - wanted) > INFOMEC_TOL:
            problems.append(f"{key} {value:.4f} vs {wanted:.4f}")
    nmi_ref = np.array(ref.get("nmi", qlae["nmi"]))
    spread = ref["spread_over_seeds"].get("nmi_max_abs", qlae["spread_over_seeds"]["nmi_max_abs"])
    worst = float(np.abs(result.nmi - nmi_ref).max())
    if result.nmi.shape != nmi_ref.shape or worst > INFOMEC_TOL + spread:
        problems.append(f"NMI off by {worst:.4f}")
    if not np.array_equal(result.active_latents, ref["active_latents"]):
        problems.append("active latents differ")
    if "infoe_per_factor" in ref:
        wanted = [1 - e["H_V_s_given_z"] / e["H_V_s_given_empty"] for e in ref["infoe_per_factor"]]
        worst = float(np.abs(result.infoe_per_factor - np.array(wanted)).max())
        if worst > INFOMEC_TOL:
            problems.append(f"InfoE per factor off by {worst:.4f}")
    return problems


def _dci_problems(result, expected) -> list[str]:
    ref = expected["metrics"]["dci_dlib_gbt"]["values"]
    problems = []
    for key, tol in (("disentanglement", DCI_TOL_DC), ("completeness", DCI_TOL_DC),
                     ("informativeness_train", DCI_TOL_I), ("informativeness_test", DCI_TOL_I)):
        value = getattr(result, key)
        if not abs(value - ref[key]) <= tol:
            problems.append(f"{key} {value:.4f} vs {ref[key]:.4f}")
    return problems


def check_conformance(device: str) -> bool:
    """Score every fixture on ``device``; print one line per case; True if all pass."""
    all_ok = True
    for name, arrays, expected in _cases():
        latents, factors = arrays["latents"], arrays["factors"]
        checks = []
        start = time.perf_counter()
        result = dci(latents, factors, backend="torch", split="contiguous", train_fraction=0.9,
                     device=device)
        checks.append(("dci_dlib_gbt", _dci_problems(result, expected),
                       time.perf_counter() - start))
        for variant, k, rule in INFOMEC_VARIANTS:
            start = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                result = infomec(latents, factors, n_neighbors=k, active=rule, device=device)
            problems = _infomec_problems(result, expected, variant)
            if not result.device.startswith(device):
                problems.append(f"ran on {result.device}")
            checks.append((variant, problems, time.perf_counter() - start))
        for variant, problems, seconds in checks:
            all_ok &= not problems
            verdict = "pass" if not problems else "FAIL: " + "; ".join(problems)
            print(f"  {name:12s} {variant:20s} {seconds:6.2f} s  {verdict}", flush=True)
    return all_ok


def synthetic_problem(n_rows: int, seed: int = 0):
    """(latents float32 (n, 20), factors int64 (n, 7)): the benchmarks' MPI3D-like encoder
    plus six more latents (two noisy duplicates, two mixtures, noise, a dead unit)."""
    latents, factors = mpi3d_like(n_rows, seed=seed)
    rng = np.random.default_rng(seed + 1)
    extra = np.stack([
        latents[:, 10] + 0.1 * rng.standard_normal(n_rows),
        latents[:, 12] + 0.1 * rng.standard_normal(n_rows),
        latents[:, 0] - latents[:, 4] + 0.05 * rng.standard_normal(n_rows),
        np.sin(3 * latents[:, 11]) + latents[:, 13],
        rng.standard_normal(n_rows),
        np.zeros(n_rows),
    ], axis=1).astype(np.float32)
    return np.concatenate([latents, extra], axis=1), factors


def time_score(n_rows: int, device: str) -> tuple[bool, float, dict | None, str]:
    """Run ``disentangle-eval score --json`` in a fresh process: (ok, seconds, report, stderr)."""
    latents, factors = synthetic_problem(n_rows)
    with tempfile.TemporaryDirectory() as folder:
        latents_path, factors_path = Path(folder) / "latents.npy", Path(folder) / "factors.npy"
        np.save(latents_path, latents)
        np.save(factors_path, factors)
        del latents, factors
        command = [sys.executable, "-m", "disentangle_eval.cli.main", "score", str(latents_path),
                   "--factors", str(factors_path), "--metrics", "dci,infomec",
                   "--device", device, "--json"]
        start = time.perf_counter()
        run = subprocess.run(command, capture_output=True, text=True,
                             env={**os.environ, "OMP_WAIT_POLICY": "PASSIVE"})
        seconds = time.perf_counter() - start
    report = None
    if run.returncode == 0:
        report = json.loads(run.stdout)
    return run.returncode == 0, seconds, report, run.stderr.strip()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", help="cuda (default) or cpu for a smoke test")
    parser.add_argument("--rows", type=int, default=TARGET_ROWS,
                        help="rows of the timed score command (default 1,000,000)")
    parser.add_argument("--skip-conformance", action="store_true")
    parser.add_argument("--skip-score", action="store_true")
    args = parser.parse_args()
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("no CUDA device here: run with --device cpu --rows 20000 for a smoke test")
        return 2
    name = (torch.cuda.get_device_name(torch.device(args.device)) if args.device.startswith("cuda")
            else "CPU (smoke test)")
    print(f"gpu_check {datetime.datetime.now().astimezone().isoformat(timespec='seconds')}")
    print(f"device: {args.device} = {name}; torch {torch.__version__}, "
          f"CUDA {torch.version.cuda}, {os.cpu_count()} CPU cores")
    ok = True
    if not args.skip_conformance:
        print("conformance on the device (the CPU tests' tolerances):")
        start = time.perf_counter()
        passed = check_conformance(args.device)
        print(f"conformance: {'all pass' if passed else 'FAILURES'} "
              f"({time.perf_counter() - start:.1f} s)")
        ok &= passed
    if not args.skip_score:
        print(f"disentangle-eval score, {args.rows} x 20 latents, DCI + InfoMEC, "
              f"--device {args.device}, a fresh process:")
        ran, seconds, report, stderr = time_score(args.rows, args.device)
        if not ran:
            print(f"  FAIL: the command exited with an error: {stderr[-2000:]}")
            ok = False
        else:
            dci_values, info = report["dci"], report["infomec"]
            print(f"  {seconds:.1f} s (target < {TIME_TARGET_S:.0f} s at {TARGET_ROWS} rows); "
                  f"D {dci_values['disentanglement']:.3f} C {dci_values['completeness']:.3f} "
                  f"I {dci_values['informativeness_test']:.3f}; InfoM {info['infom']:.3f} "
                  f"InfoE {info['infoe']:.3f} InfoC {info['infoc']:.3f}")
            if args.rows >= TARGET_ROWS and seconds >= TIME_TARGET_S:
                print("  FAIL: over the time target")
                ok = False
    print("gpu_check:", "PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
