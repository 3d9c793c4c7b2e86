"""Train the paper's nine models one after another and print their results table.

Reproduces the layout of the paper's Table 1 (DCI D/I/C, InfoM/E/C, MSE x 1e4) with
``train-reference``:

    python benchmarks/reproduce_table.py                                  # cpu preset, toyshapes
    python benchmarks/reproduce_table.py --seeds 1,2,3 --jobs 2           # three seeds, two at once
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
it, ``--no-wait`` submits and returns. Locally each training gets cores / N torch threads: the cpu preset's
small networks gain almost nothing from a second thread, so ``--jobs 2`` on two cores
takes about half the time of one run after the other (nine runs: about 80-90 minutes one
after the other).

The report of the runs that finished (stdout and ``OUT/table.md``; the wall time of each
run, from its submission, goes to ``OUT/timings.csv``):

- the table: every cell the mean over seeds with the half-width of its 95% t-interval
  (``mean ± t_{0.975, n-1} s / sqrt(n)``; the mean alone for one seed), the discriminator's
  accuracy at the end of training (mean of the last logged iterations; 0.5: joint and
  permuted codes indistinguishable) and the codebook perplexity at the end; runs that
  differ in more than the seed (another ``--set`` in the same ``--out``) are separate rows,
  labelled by what differs as ``disentangle-eval table`` labels them;
- "what the CPU runs support": for each of the paper's pairwise claims (FactorQVAE vs QVAE,
  FactordVAE vs dVAE, FactorVAE vs beta-VAE, FactorQVAE vs QLAE) on D and InfoM, the
  difference paired by seed with its 95% t-interval, the paper's own difference on
  Shapes3D beside it, and whether the interval excludes 0.
"""
from __future__ import annotations

import argparse
import csv
import itertools
import math
import os
import sys
from pathlib import Path

import pandas as pd

from disentangle_eval._intervals import mean_interval
from reference_models.data.registry import dataset_names, list_datasets
from reference_models.models.registry import list_model_infos
from reference_models.training.table import collect_metrics, configurations

MODELS = ("ae", "betavae", "factorvae", "bioae", "qlae", "dvae", "qvae", "factordvae",
          "factorqvae")
METRICS = ("D", "I", "C", "InfoM", "InfoE", "InfoC", "MSE")
# The paper's claims about pairs of models: the first disentangles better than the second.
CLAIMS = (("factorqvae", "qvae"), ("factordvae", "dvae"), ("factorvae", "betavae"),
          ("factorqvae", "qlae"))
CLAIM_METRICS = ("D", "InfoM")
# The paper's Table 1 (one seed per cell), per dataset: model -> D, I, C, InfoM, InfoE,
# InfoC, MSE x 1e4. FactorQVAE's Shapes3D MSE is the 64 x 1 row of its Table 2.
PAPER_TABLE_1: dict[str, dict[str, tuple[float, ...]]] = {
    "shapes3d": {
        "ae": (0.52, 0.82, 0.42, 0.55, 0.99, 0.41, 0.3),
        "betavae": (0.56, 0.89, 0.65, 0.62, 0.76, 0.75, 1.6),
        "factorvae": (0.72, 0.94, 0.79, 0.61, 0.81, 0.86, 1.6),
        "bioae": (0.41, 0.75, 0.32, 0.52, 0.99, 0.33, 1.1),
        "qlae": (0.91, 1.00, 0.75, 0.71, 0.99, 0.54, 0.9),
        "dvae": (0.89, 0.95, 0.71, 0.70, 0.99, 0.45, 4.4),
        "qvae": (0.73, 0.94, 0.54, 0.69, 0.93, 0.38, 0.8),
        "factordvae": (0.91, 0.95, 0.70, 0.49, 0.99, 0.32, 4.7),
        "factorqvae": (0.86, 0.97, 0.65, 0.84, 0.89, 0.52, 0.6),
    },
    "isaac3d": {
        "ae": (0.22, 0.75, 0.18, 0.39, 0.61, 0.15, 0.2),
        "betavae": (0.45, 0.80, 0.58, 0.49, 0.46, 0.53, 1.5),
        "factorvae": (0.51, 0.80, 0.64, 0.56, 0.47, 0.62, 1.6),
        "bioae": (0.29, 0.78, 0.23, 0.40, 0.57, 0.17, 0.8),
        "qlae": (0.57, 0.89, 0.48, 0.52, 0.65, 0.37, 0.5),
        "dvae": (0.53, 0.80, 0.45, 0.60, 0.62, 0.33, 3.6),
        "qvae": (0.56, 0.81, 0.49, 0.51, 0.72, 0.34, 0.4),
        "factordvae": (0.62, 0.78, 0.56, 0.86, 0.66, 0.56, 5.7),
        "factorqvae": (0.59, 0.75, 0.56, 0.68, 0.64, 0.45, 0.7),
    },
    "mpi3d": {
        "ae": (0.10, 0.57, 0.10, 0.30, 0.25, 0.11, 0.5),
        "betavae": (0.36, 0.70, 0.42, 0.39, 0.35, 0.39, 1.2),
        "factorvae": (0.20, 0.61, 0.31, 0.40, 0.23, 0.32, 1.4),
        "bioae": (0.23, 0.66, 0.26, 0.28, 0.37, 0.24, 0.9),
        "qlae": (0.36, 0.76, 0.41, 0.31, 0.40, 0.38, 0.6),
        "dvae": (0.33, 0.67, 0.31, 0.39, 0.66, 0.23, 2.2),
        "qvae": (0.34, 0.61, 0.31, 0.31, 0.77, 0.27, 0.9),
        "factordvae": (0.29, 0.56, 0.23, 0.37, 0.60, 0.25, 4.4),
        "factorqvae": (0.46, 0.67, 0.44, 0.33, 0.94, 0.36, 1.1),
    },
}


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
    runs = collect_runs(finished)
    text = format_results(runs, args.format)
    suffix = {"markdown": "md", "csv": "csv", "latex": "tex"}[args.format]
    claims = format_claims(runs, args.preset)
    if args.format == "markdown":
        text += "\n" + claims
    (out / f"table.{suffix}").write_text(text)
    (out / "claims.md").write_text(claims)
    print(text, end="")
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 0 if not failed else 1


def interval(values) -> tuple[float, float, int]:
    """Mean, half-width of the 95% t-interval and count of the finite ``values``
    (:func:`disentangle_eval._intervals.mean_interval`); NaN half-width below two values."""
    finite = [v for v in values if v is not None and math.isfinite(v)]
    if not finite:
        return math.nan, math.nan, 0
    estimate = mean_interval(finite)
    return estimate.estimate, (estimate.high - estimate.low) / 2, len(finite)


def end_of_training(run_dir: Path) -> dict[str, float]:
    """Discriminator accuracy and codebook perplexity of the last row of ``log.csv``
    (each a mean over the last ``log_every`` iterations); NaN where the model has none."""
    row: dict[str, str] = {}
    log = Path(run_dir) / "log.csv"
    if log.is_file():
        with open(log, newline="") as handle:
            for row in csv.DictReader(handle):
                pass
    return {key: float(row[column]) if row.get(column) else math.nan
            for key, column in (("disc_acc", "disc_accuracy"), ("perplexity", "perplexity"))}


def collect_runs(run_dirs) -> pd.DataFrame:
    """One row per run: dataset, model, seed, the Table 1 columns and the end of training."""
    runs = collect_metrics(run_dirs)
    diagnostics = pd.DataFrame([end_of_training(Path(p).parent) for p in runs["path"]])
    return pd.concat([runs, diagnostics], axis=1)


_COLUMNS = METRICS + ("disc_acc", "perplexity")
_HEADER = ("model", "D ↑", "I ↑", "C ↑", "InfoM ↑", "InfoE ↑", "InfoC ↑", "MSE ×1e4 ↓",
           "disc. acc.", "perplexity", "seeds")


def _cell(mean: float, half: float, decimals: int, pm: str) -> str:
    if math.isnan(mean):
        return "-"
    text = f"{round(mean, decimals) + 0.0:.{decimals}f}"
    if not math.isnan(half):
        text += f"{pm}{half:.{decimals}f}"
    return text


def _display_name(model: str) -> str:
    """The registry's name of ``model``; a name no registry knows, as Python writes it."""
    names = {info.name: info.display_name for info in list_model_infos()}
    return names.get(model, ascii(model))


def _row_name(model: str, label: str) -> str:
    return f"{_display_name(model)} ({label})" if label else _display_name(model)


def _dataset_name(dataset: str) -> str:
    return dataset if dataset in dataset_names() else ascii(dataset)


def _signed(mean: float, half: float) -> str:
    text = f"{round(mean, 2) + 0.0:+.2f}"
    return text if math.isnan(half) else f"{text} ± {half:.2f}"


def summarise_runs(runs: pd.DataFrame) -> pd.DataFrame:
    """Per dataset, model and configuration (grouped and labelled as ``table`` does, see
    :func:`reference_models.training.table.configurations`), in the paper's order:
    ``config`` (the label, ``""`` for a model's only configuration), ``n`` and, for every
    column, its mean and the half-width of its 95% t-interval over seeds
    (``<column>_mean``, ``<column>_ci95``)."""
    rows = []
    for dataset, model, label, group in configurations(runs):
        row = {"dataset": dataset, "model": model, "config": label, "n": len(group)}
        for column in _COLUMNS:
            row[f"{column}_mean"], row[f"{column}_ci95"], _ = interval(group[column])
        rows.append(row)
    summary = pd.DataFrame(rows)
    model_rank = {info.name: rank for rank, info in enumerate(list_model_infos())}
    dataset_rank = {info.name: info.paper_position for info in list_datasets()
                    if info.paper_position is not None}
    summary["_d"] = summary["dataset"].map(lambda d: dataset_rank.get(d, len(dataset_rank)))
    summary["_m"] = summary["model"].map(lambda m: model_rank.get(m, len(model_rank)))
    summary = summary.sort_values(["_d", "dataset", "_m", "model"], kind="stable")
    return summary.drop(columns=["_d", "_m"]).reset_index(drop=True)


def format_results(runs: pd.DataFrame, fmt: str = "markdown") -> str:
    """The table as markdown, csv (means and half-widths as numbers) or a latex tabular."""
    summary = summarise_runs(runs)
    if fmt == "csv":
        return summary.to_csv(index=False, float_format="%.6g")
    pm = " ± " if fmt == "markdown" else " $\\pm$ "
    blocks = []
    for dataset, group in summary.groupby("dataset", sort=False):
        body = []
        for _, row in group.iterrows():
            cells = [_row_name(row["model"], row["config"])]
            cells += [_cell(row[f"{c}_mean"], row[f"{c}_ci95"],
                            1 if c in ("MSE", "perplexity") else 2, pm) for c in _COLUMNS]
            body.append(cells + [str(int(row["n"]))])
        blocks.append((_dataset_name(dataset), body))
    if fmt == "markdown":
        lines = []
        for dataset, body in blocks:
            lines += [f"**{dataset}** (mean ± half-width of the 95% t-interval over seeds)", "",
                      "| " + " | ".join(_HEADER) + " |",
                      "|" + "|".join(["---"] + ["---:"] * (len(_HEADER) - 1)) + "|"]
            lines += ["| " + " | ".join(cells) + " |" for cells in body]
            lines.append("")
        return "\n".join(lines).rstrip() + "\n"
    header = [h.replace("↑", "$\\uparrow$").replace("↓", "$\\downarrow$")
              .replace("×", "$\\times$") for h in _HEADER]
    lines = [r"\begin{tabular}{l" + "c" * (len(header) - 1) + "}", r"\toprule",
             " & ".join(header) + r" \\"]
    for dataset, body in blocks:
        lines += [r"\midrule", rf"\multicolumn{{{len(header)}}}{{l}}{{\textit{{{dataset}}}}} \\"]
        lines += [" & ".join(cells) + r" \\" for cells in body]
    lines += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(lines).replace("_", "\\_") + "\n"


def paired_differences(runs: pd.DataFrame) -> pd.DataFrame:
    """For each claim, metric and dataset: the mean difference (first model minus second)
    over the seeds both models have, its 95% t-interval, the seeds, and the paper's
    difference on the same dataset (on Shapes3D for a dataset outside Table 1). A model
    trained in several configurations is paired configuration by configuration
    (``first_config``, ``second_config``: their labels)."""
    groups: dict[tuple[str, str], list[tuple[str, pd.DataFrame]]] = {}
    for dataset, model, label, group in configurations(runs):
        groups.setdefault((dataset, model), []).append((label, group.set_index("seed")))
    rows = []
    for dataset in pd.unique(runs["dataset"]):
        paper = PAPER_TABLE_1.get(dataset, PAPER_TABLE_1["shapes3d"])
        for first, second in CLAIMS:
            for (label_a, a), (label_b, b) in itertools.product(
                    groups.get((dataset, first), []), groups.get((dataset, second), [])):
                seeds = sorted(set(a.index) & set(b.index))
                if not seeds:
                    continue
                for metric in CLAIM_METRICS:
                    differences = [a.at[s, metric] - b.at[s, metric] for s in seeds]
                    mean, half, n = interval(differences)
                    column = METRICS.index(metric)
                    rows.append({
                        "dataset": dataset, "first": first, "second": second,
                        "first_config": label_a, "second_config": label_b, "metric": metric,
                        "difference": mean, "ci95": half, "n": n, "seeds": seeds,
                        "paper": round(paper[first][column] - paper[second][column], 2)})
    return pd.DataFrame(rows)


def verdict(difference: float, half: float, n: int) -> str:
    """What a paired difference says about "the first model scores higher"."""
    if n < 2 or math.isnan(half):
        return "one seed: no interval"
    if difference - half > 0:
        return "supported (interval above 0)"
    if difference + half < 0:
        return "reversed (interval below 0)"
    return "not resolved (interval includes 0)"


def format_claims(runs: pd.DataFrame, preset: str) -> str:
    """The section "what the CPU runs support" (markdown)."""
    title = "CPU" if preset == "cpu" else f"{preset}-preset"
    lines = [f"### What the {title} runs support", "",
             "The paper claims that the first model of each pair disentangles better than the "
             "second. Difference first minus second, paired by seed, with the half-width of "
             "its 95% t-interval; beside it the paper's difference on the same dataset "
             "(Shapes3D for the procedural ones; one run per model).",
             ""]
    differences = paired_differences(runs)
    if differences.empty:
        return "\n".join(lines + ["No pair of the claims was trained.", ""])
    lines += ["| dataset | claim | metric | difference | seeds | paper | runs |",
              "|---|---|---|---:|---|---:|---|"]
    for _, row in differences.iterrows():
        name = (f"{_row_name(row['first'], row['first_config'])} > "
                f"{_row_name(row['second'], row['second_config'])}")
        lines.append(
            f"| {_dataset_name(row['dataset'])} | {name} | {row['metric']} | "
            f"{_signed(row['difference'], row['ci95'])} | "
            f"{','.join(str(s) for s in row['seeds'])} | {row['paper']:+.2f} | "
            f"{verdict(row['difference'], row['ci95'], row['n'])} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
