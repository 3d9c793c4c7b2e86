"""Train the paper's nine models one after another and print their results table.

Reproduces the layout of the paper's Table 1 (DCI D/I/C, InfoM/E/C, MSE x 1e4) with
``train-reference`` and ``disentangle-eval table``:

    python benchmarks/reproduce_table.py                                  # cpu preset, toyshapes
    python benchmarks/reproduce_table.py --preset paper --dataset shapes3d --device cuda \
        --data-dir data/                                                  # the full reproduction
    python benchmarks/reproduce_table.py --models ae,qlae --seeds 1,2,3   # a subset, 3 seeds
    python benchmarks/reproduce_table.py --jobs 2                         # two at once
    python benchmarks/reproduce_table.py --launcher slurm --partition gpu --gpus 1 \
        --time 720 --mem-gb 32 --preset paper --dataset shapes3d --data-dir data/ \
        --seeds 1,2,3                                                     # on a cluster

Each training is a job submitted through submitit (``reference_models.training.sweep``):
``--launcher local`` (default) runs them on this machine, ``--jobs N`` at once;
``--launcher slurm`` submits them to SLURM as one job array (``--jobs N``: at most N
running), with ``--partition``, ``--gpus`` (per training; more than one trains it with
DistributedDataParallel), ``--cpus``, ``--mem-gb``, ``--time`` and any other sbatch
option (``--sbatch account=lab``). Each run lands in ``OUT/MODEL-DATASET-SEED`` (default
``runs/reproduce-PRESET``); a finished run is skipped, a queued or running one left to its
job, and any other (failed, killed, preempted) resumes from its checkpoint, so the script
can be stopped and started again. Progress (done, running, failed with the last line of
its log) goes to stderr, the jobs' logs to ``OUT/submitit/``; ``--status`` only reports
it, ``--no-wait`` submits and returns. The markdown table of the runs that finished goes
to stdout and to ``OUT/table.md``, the wall time of each run (from its submission) to
``OUT/timings.csv``. Locally each training gets cores / N torch threads: the cpu preset's
small networks gain almost nothing from a second thread, so ``--jobs 2`` on two cores
takes about half the time of one run after the other (nine runs: about 80-90 minutes one
after the other).
"""
from __future__ import annotations

import argparse
import csv
import os
import sys
from pathlib import Path

MODELS = ("ae", "betavae", "factorvae", "bioae", "qlae", "dvae", "qvae", "factordvae",
          "factorqvae")


def _key_values(items: list[str], option: str) -> dict[str, str]:
    parsed = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"{option}: expected KEY=VALUE, got {item!r}")
        parsed[key.strip()] = value.strip()
    return parsed


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
    parser.add_argument("--launcher", default="local", choices=["local", "slurm"],
                        help="where the trainings run: this machine, or SLURM through "
                             "sbatch [default: local]")
    parser.add_argument("--jobs", type=int, default=None,
                        help="trainings run at once (2 on two CPU cores: a small model's "
                             "step gains nothing from a second thread) [default: 1 locally, "
                             "SLURM's choice]")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads per training [default: cores / jobs]")
    parser.add_argument("--out", default=None, help="folder of the runs "
                                                    "[default: runs/reproduce-PRESET]")
    parser.add_argument("--format", default="markdown", choices=["markdown", "csv", "latex"])
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE", help="passed to every train-reference run")
    slurm = parser.add_argument_group("SLURM (--launcher slurm)")
    slurm.add_argument("--partition", default=None)
    slurm.add_argument("--gpus", type=int, default=None,
                       help="GPUs per training; more than one trains it with "
                            "DistributedDataParallel, the batch split across them")
    slurm.add_argument("--cpus", type=int, default=None, help="CPUs per training")
    slurm.add_argument("--mem-gb", type=float, default=None, help="memory per training")
    slurm.add_argument("--time", type=int, default=24 * 60,
                       help="time limit of a job in minutes; a job that reaches it is "
                            "requeued and resumes [default: 1440]")
    slurm.add_argument("--sbatch", action="append", default=[], metavar="KEY=VALUE",
                       help="any other sbatch option, e.g. --sbatch account=lab "
                            "(repeatable)")
    parser.add_argument("--status", action="store_true",
                        help="only report the progress of the runs and the table of "
                             "those finished; submit nothing")
    parser.add_argument("--no-wait", action="store_true",
                        help="submit the jobs and return without waiting for them")
    args = parser.parse_args(argv)
    # The jobs inherit this environment: idle OpenMP threads must not spin on shared cores.
    # (torch, which the sweep module loads, reads it when it is first imported.)
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    from reference_models.training.sweep import (
        Launcher, format_status, plan_sweep, run_sweep, sweep_status,
    )

    models = [m.strip() for m in args.models.split(",") if m.strip()]
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    out = Path(args.out or f"runs/reproduce-{args.preset}")
    timings = out / "timings.csv"
    jobs_at_once = args.jobs or (1 if args.launcher == "local" else None)
    threads = args.threads or (args.cpus if args.launcher == "slurm" else
                               max(1, (os.cpu_count() or 1) // jobs_at_once))
    try:
        runs = plan_sweep(models, [args.dataset], seeds, out=out, preset=args.preset,
                          overrides=_key_values(args.overrides, "--set"),
                          data_dir=args.data_dir, device=args.device, threads=threads)
        launcher = Launcher(args.launcher, max_parallel=jobs_at_once, timeout_min=args.time,
                            processes=max(1, args.gpus or 1), gpus_per_node=args.gpus,
                            cpus_per_task=args.cpus, mem_gb=args.mem_gb,
                            partition=args.partition,
                            parameters={"slurm_additional_parameters":
                                        _key_values(args.sbatch, "--sbatch")}
                            if args.sbatch else {})
    except (ValueError, TypeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    def record(status, seconds: float) -> None:
        run = next(run for run in runs if run.name == status.name)
        new_file = not timings.exists()
        with open(timings, "a", newline="") as handle:
            writer = csv.writer(handle)
            if new_file:
                writer.writerow(["model", "dataset", "seed", "preset", "seconds",
                                 "threads", "jobs", "status"])
            writer.writerow([run.model, run.dataset, run.seed, args.preset, f"{seconds:.1f}",
                             threads, args.jobs or "", "ok" if status.state == "done"
                             else status.state])

    if args.status:
        statuses = sweep_status(runs, out)
        print(format_status(statuses), file=sys.stderr)
    else:
        out.mkdir(parents=True, exist_ok=True)
        try:
            statuses = run_sweep(runs, launcher, out, wait=not args.no_wait,
                                 poll_seconds=5.0 if args.launcher == "local" else 60.0,
                                 on_finished=record)
        except (ValueError, RuntimeError) as exc:  # a batch that does not split; no srun
            print(f"error: --launcher {args.launcher}: {exc}", file=sys.stderr)
            return 2
    finished = [status.run_dir for status in statuses if status.state == "done"]
    failed = [f"{status.name} ({status.detail or status.state})" for status in statuses
              if status.state == "failed"]
    if args.no_wait and not finished:
        return 0

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
