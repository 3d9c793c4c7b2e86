"""Train the paper's nine models one after another and print their results table.

Reproduces the layout of the paper's Table 1 (DCI D/I/C, InfoM/E/C, MSE x 1e4) with
``train-reference`` and ``disentangle-eval table``:

    python benchmarks/reproduce_table.py                                  # cpu preset, toyshapes
    python benchmarks/reproduce_table.py --preset paper --dataset shapes3d --device cuda \
        --data-dir data/                                                  # the full reproduction
    python benchmarks/reproduce_table.py --models ae,qlae --seeds 1,2,3   # a subset, 3 seeds
    python benchmarks/reproduce_table.py --jobs 2                         # two at once

Each run lands in ``OUT/MODEL-DATASET-SEED`` (default ``runs/reproduce-PRESET``); a folder
that already exists is resumed (finished runs are skipped), so the script can be stopped
and started again. The markdown table goes to stdout and to ``OUT/table.md``, the wall
time of each run to ``OUT/timings.csv``. ``--jobs N`` trains N models at once, each with
cores / N torch threads and its progress in ``OUT/logs/``: the cpu preset's small networks
gain almost nothing from a second thread, so ``--jobs 2`` on two cores takes about half
the time of one run after the other (nine runs: about 80-90 minutes one after the other).
"""
from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

MODELS = ("ae", "betavae", "factorvae", "bioae", "qlae", "dvae", "qvae", "factordvae",
          "factorqvae")


def _train_command() -> list[str]:
    return [sys.executable, "-c",
            "import sys; from disentangle_eval.cli.train_reference import main; "
            "sys.exit(main())"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="cpu", choices=["paper", "cpu", "smoke"])
    parser.add_argument("--dataset", default="toyshapes")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--models", default=",".join(MODELS),
                        help="comma-separated models, in the order to train them")
    parser.add_argument("--seeds", default="1", help="comma-separated seeds")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--jobs", type=int, default=1,
                        help="trainings run at once (2 on two CPU cores: a small model's "
                             "step gains nothing from a second thread) [default: 1]")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads per training [default: cores / jobs]")
    parser.add_argument("--out", default=None, help="folder of the runs "
                                                    "[default: runs/reproduce-PRESET]")
    parser.add_argument("--format", default="markdown", choices=["markdown", "csv", "latex"])
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE", help="passed to every train-reference run")
    args = parser.parse_args(argv)
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

    models = [m.strip() for m in args.models.split(",") if m.strip()]
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    out = Path(args.out or f"runs/reproduce-{args.preset}")
    out.mkdir(parents=True, exist_ok=True)
    timings = out / "timings.csv"
    threads = args.threads or max(1, (os.cpu_count() or 1) // args.jobs)
    runs = [(model, seed) for seed in seeds for model in models]
    lock = threading.Lock()

    def train(model: str, seed: int) -> tuple[Path, str]:
        run_dir = out / f"{model}-{args.dataset}-{seed}"
        command = _train_command() + [
            model, "--dataset", args.dataset, "--preset", args.preset, "--seed", str(seed),
            "--device", args.device, "--threads", str(threads), "--out", str(run_dir)]
        if args.data_dir:
            command += ["--data-dir", args.data_dir]
        for item in args.overrides:
            command += ["--set", item]
        if (run_dir / "config.json").exists():
            command.append("--resume")
        log = None
        if args.jobs > 1:  # concurrent runs would interleave their progress bars
            (out / "logs").mkdir(exist_ok=True)
            log = open(out / "logs" / f"{run_dir.name}.log", "a")
        with lock:
            print(f"[{time.strftime('%H:%M:%S')}] {model} seed {seed} -> {run_dir}"
                  + (f" (log: {log.name})" if log else ""), file=sys.stderr, flush=True)
        start = time.perf_counter()
        try:
            proc = subprocess.run(command, stdout=log, stderr=log)
        finally:
            if log:
                log.close()
        seconds = time.perf_counter() - start
        status = "ok" if proc.returncode == 0 else f"exit {proc.returncode}"
        with lock:
            print(f"[{time.strftime('%H:%M:%S')}] {model} seed {seed}: {status} in "
                  f"{seconds / 60:.1f} min", file=sys.stderr, flush=True)
            new_file = not timings.exists()
            with open(timings, "a", newline="") as handle:
                writer = csv.writer(handle)
                if new_file:
                    writer.writerow(["model", "dataset", "seed", "preset", "seconds",
                                     "threads", "jobs", "status"])
                writer.writerow([model, args.dataset, seed, args.preset, f"{seconds:.1f}",
                                 threads, args.jobs, status])
        if proc.returncode == 0 and not (run_dir / "metrics.json").exists():
            status = "no metrics.json"
        return run_dir, status

    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        results = list(pool.map(lambda run: train(*run), runs))
    finished = [run_dir for run_dir, status in results if status == "ok"]
    failed = [f"{model} seed {seed} ({status})"
              for (model, seed), (_, status) in zip(runs, results) if status != "ok"]

    if not finished:
        print("no run finished", file=sys.stderr)
        return 1
    from reference_models.training.table import collect_metrics, format_table, summarise

    text = format_table(summarise(collect_metrics(finished)), args.format)
    suffix = {"markdown": "md", "csv": "csv", "latex": "tex"}[args.format]
    (out / f"table.{suffix}").write_text(text)
    print(text, end="")
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 0 if not failed else 1


if __name__ == "__main__":
    sys.exit(main())
