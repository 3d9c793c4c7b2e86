"""Train the paper's nine models one after another and print their results table.

Reproduces the layout of the paper's Table 1 (DCI D/I/C, InfoM/E/C, MSE x 1e4) with
``train-reference`` and ``disentangle-eval table``:

    python benchmarks/reproduce_table.py                                  # cpu preset, toyshapes
    python benchmarks/reproduce_table.py --preset paper --dataset shapes3d --device cuda \
        --data-dir data/                                                  # the full reproduction
    python benchmarks/reproduce_table.py --models ae,qlae --seeds 1,2,3   # a subset, 3 seeds

Each run lands in ``OUT/MODEL-DATASET-SEED`` (default ``runs/reproduce-PRESET``); a folder
that already exists is resumed (finished runs are skipped), so the script can be stopped
and started again. The markdown table goes to stdout and to ``OUT/table.md``, the wall
time of each run to ``OUT/timings.csv``. With the cpu preset on toyshapes the nine runs
take about 80-90 minutes on two CPU cores.
"""
from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
import time
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
    parser.add_argument("--threads", type=int, default=2)
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
    finished: list[Path] = []
    failed: list[str] = []
    for seed in seeds:
        for model in models:
            run_dir = out / f"{model}-{args.dataset}-{seed}"
            command = _train_command() + [
                model, "--dataset", args.dataset, "--preset", args.preset, "--seed", str(seed),
                "--device", args.device, "--threads", str(args.threads), "--out", str(run_dir)]
            if args.data_dir:
                command += ["--data-dir", args.data_dir]
            for item in args.overrides:
                command += ["--set", item]
            if (run_dir / "config.json").exists():
                command.append("--resume")
            print(f"[{time.strftime('%H:%M:%S')}] {model} seed {seed} -> {run_dir}",
                  file=sys.stderr, flush=True)
            start = time.perf_counter()
            proc = subprocess.run(command)
            seconds = time.perf_counter() - start
            status = "ok" if proc.returncode == 0 else f"exit {proc.returncode}"
            print(f"[{time.strftime('%H:%M:%S')}] {model} seed {seed}: {status} in "
                  f"{seconds / 60:.1f} min", file=sys.stderr, flush=True)
            new_file = not timings.exists()
            with open(timings, "a", newline="") as handle:
                writer = csv.writer(handle)
                if new_file:
                    writer.writerow(["model", "dataset", "seed", "preset", "seconds", "status"])
                writer.writerow([model, args.dataset, seed, args.preset, f"{seconds:.1f}",
                                 status])
            if proc.returncode == 0 and (run_dir / "metrics.json").exists():
                finished.append(run_dir)
            else:
                failed.append(f"{model} seed {seed} ({status})")

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
