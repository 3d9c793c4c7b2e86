"""``disentangle-eval``: score latents from any encoder against ground-truth factors.

Exit codes: 0 success, 1 bad data (the files cannot be scored), 2 bad usage (options,
missing files, an output folder that exists without ``--force``), 130 interrupted.
"""
from __future__ import annotations

import math
import os
import sys
from contextlib import nullcontext
from pathlib import Path

import click

from ._errors import BadData, Group
from ._scoring import RESAMPLES, format_estimate, load_inputs
from .compare import make_compare_command

EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report a command stopped by Ctrl-C
MAX_SEED = 2**32 - 1  # scikit-learn's random_state range, the narrowest of the backends
_MAX_MESSAGE = 2000


class OutputInUse(BadData):
    """An --out folder that cannot take the results: one line on stderr, exit code 2."""

    exit_code = 2


def _parse_metrics(_ctx, _param, value: str) -> tuple[str, ...]:
    from disentangle_eval._registry import METRICS

    names = [m.strip().lower() for m in value.split(",") if m.strip()]
    # "all" stands for every registered metric, in the registry's order.
    chosen = tuple(dict.fromkeys(m for name in names
                                 for m in (METRICS if name == "all" else (name,))))
    unknown = [m for m in chosen if m not in METRICS]
    if unknown or not chosen:
        raise click.BadParameter(f"choose from {', '.join(METRICS)} or all (comma-separated), "
                                 f"got {value!r}")
    return chosen


def _parse_max_rows(_ctx, _param, value: str) -> int | None:
    if value.strip().lower() == "all":
        return None
    try:
        rows = int(value)
    except ValueError:
        rows = 0
    if rows < 1:
        raise click.BadParameter(f"a positive number of rows or 'all', got {value!r}")
    return rows


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="disentangle-eval")
def main() -> None:
    """Disentanglement metrics (DCI, InfoMEC, MIG, SAP, Modularity/Explicitness, IRS) for latents from any encoder.

    \b
    Example:
      disentangle-eval score latents.npz --factors factors.npz --out results/

    Exit codes: 0 success, 1 bad data, 2 bad usage.
    """


def _finite(_ctx, _param, value: float) -> float:
    # click's FloatRange lets NaN through (every comparison with NaN is false).
    if not math.isfinite(value):
        raise click.BadParameter(f"must be a finite number, got {value}")
    return value


@main.command()
@click.argument("latents_path", metavar="LATENTS", type=click.Path(dir_okay=False, exists=True))
@click.option("--factors", "factors_path", required=True,
              type=click.Path(dir_okay=False, exists=True),
              help="Ground-truth factors (.npz or .npy), integer labels, one row per sample.")
@click.option("--latents-key", default=None, help="Array name in the latents .npz.")
@click.option("--factors-key", default=None, help="Array name in the factors .npz.")
@click.option("--metrics", "metrics", default="dci,infomec", show_default=True,
              callback=_parse_metrics,
              help="Comma-separated subset of: dci, infomec, mig, sap, modularity, irs; "
                   "or all.")
@click.option("--discrete/--continuous", "discrete", default=None,
              help="Treat latents as discrete codes or continuous values "
                   "[default: integer dtype -> discrete, float -> continuous].")
@click.option("--n-neighbors", default=3, show_default=True, type=click.IntRange(min=1),
              help="k of the continuous MI estimator (3: FactorQVAE, 10: QLAE).")
@click.option("--active", "active_rule", default="range", show_default=True,
              type=click.Choice(["range", "iqr"]), help="Rule for active latents (InfoMEC).")
@click.option("--dci-predictor", default="gbt", show_default=True,
              type=click.Choice(["gbt", "random_forest", "logistic"]),
              help="Per-factor classifier behind the DCI importance matrix.")
@click.option("--dci-backend", default="torch", show_default=True,
              type=click.Choice(["torch", "sklearn"]),
              help="gbt only: batched torch trees, or the scikit-learn reference path.")
@click.option("--dci-max-train-rows", default="100000", show_default=True,
              callback=_parse_max_rows, metavar="N|all",
              help="DCI fits a seeded subsample of at most N training rows (and tests at "
                   "most 50000 rows); 'all': every row.")
@click.option("--split", default="random", show_default=True,
              type=click.Choice(["random", "contiguous"]),
              help="Train/test split of the metrics that fit predictors (DCI, SAP, "
                   "Explicitness; MIG, Modularity and IRS use its train rows): a seeded "
                   "permutation, or the first rows train "
                   "(the reference convention).")
@click.option("--train-fraction", default=0.9, show_default=True, callback=_finite,
              type=click.FloatRange(0, 1, min_open=True, max_open=True),
              help="Share of rows used for training.")
@click.option("--device", default="auto", show_default=True,
              type=click.Choice(["auto", "cpu", "cuda"]), help="Where to compute.")
@click.option("--seed", default=0, show_default=True, type=click.IntRange(0, MAX_SEED),
              help="Seed of every random step (MI jitter, train/test split, tie-breaking); 0 to 2**32-1, the "
                   "range every metric and backend accepts.")
@click.option("--ci", "ci", type=RESAMPLES, is_flag=False, flag_value="auto", default=None,
              help="95% confidence intervals from R resamples of the rows (--ci alone: "
                   "100, 20 for DCI).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of tables.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default=None,
              help="Also write metrics.json, matrices (.npy) and heatmaps (.png) into this "
                   "new or empty folder; all appear at once.")
@click.option("--force", is_flag=True,
              help="Replace an --out folder that holds earlier results of this command.")
def score(latents_path, factors_path, latents_key, factors_key, metrics, discrete, n_neighbors,
          active_rule, dci_predictor, dci_backend, dci_max_train_rows, split, train_fraction,
          device, seed, ci, as_json, out_dir, force):
    """Score LATENTS (.npz/.npy, one row per sample) against --factors.

    \b
    Examples:
      disentangle-eval score latents.npz --factors factors.npz
      disentangle-eval score run.npz --factors run.npz --metrics infomec --json
      disentangle-eval score z.npy --factors y.npy --split contiguous --out results/
      disentangle-eval score latents.npz --factors factors.npz --ci 50

    An .npz holding several arrays is read under the keys 'latents' and 'factors'
    (override with --latents-key/--factors-key); factor names come from 'factor_names'.
    --out writes into a folder beside DIR and renames it onto DIR when everything is
    written, so DIR holds either the previous results or the complete new set.
    Exit codes: 0 success, 1 bad data, 2 bad usage, 130 interrupted (Ctrl-C).
    """
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    options = {"latents_key": latents_key, "factors_key": factors_key,
               "metrics": metrics, "discrete": discrete, "n_neighbors": n_neighbors,
               "active": active_rule, "predictor": dci_predictor, "backend": dci_backend,
               "max_train_rows": dci_max_train_rows, "split": split,
               "train_fraction": train_fraction, "seed": seed, "ci": ci}
    try:
        _score(latents_path, factors_path, options, device, as_json, out_dir, force)
    except KeyboardInterrupt:
        if sys.stderr.isatty():
            click.echo(err=True)  # end the line of the progress bar or of ^C
        click.echo("error: interrupted; nothing was written", err=True)
        raise click.exceptions.Exit(EXIT_INTERRUPTED) from None


def _score(latents_path, factors_path, options, device, as_json, out_dir, force) -> None:
    from disentangle_eval._results import strict_json
    from disentangle_eval._validation import display_text, resolve_device
    from disentangle_eval.io import OutputFolderError, staged_output

    try:
        device_obj = resolve_device(device)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    staging_area = (nullcontext(None) if out_dir is None
                    else staged_output(out_dir, force=force, replaceable=_result_files()))
    try:
        with staging_area as staging:  # an unusable --out fails here, before any work
            report, results, names = _compute(latents_path, factors_path, options, device_obj)
            if staging is not None:
                _write_outputs(staging, report, results, names)
    except OutputFolderError as exc:
        raise OutputInUse(display_text(f"--out {exc}", _MAX_MESSAGE)) from None
    except FileNotFoundError as exc:
        raise click.UsageError(display_text(exc, _MAX_MESSAGE)) from None
    except ValueError as exc:  # DataError and the metrics' own checks on the data
        raise BadData(display_text(exc, _MAX_MESSAGE)) from None

    if out_dir is not None:
        folder = Path(out_dir)
        report["outputs"] = {name: str(folder / name)
                             for name in ["metrics.json", *_planned_outputs(options["metrics"])]}
    if as_json:
        click.echo(strict_json(report))
    else:
        click.echo(_format_tables(report, results, names))
    notes = set(report.get("infomec", {}).get("notes", []))
    for message in report["warnings"]:
        if as_json or message not in notes:  # notes are already part of the table
            click.echo(f"warning: {display_text(message, _MAX_MESSAGE)}", err=True)


def _compute(latents_path, factors_path, options, device) -> tuple[dict, dict, list[str]]:
    """Load, check once, run every chosen metric through the registry; build the report.

    Returns the report, the results by metric name and the factor names for display
    (control characters escaped; the report keeps the names as given).
    """
    import warnings

    from disentangle_eval._registry import METRICS, SETTING_NAMES, run_metric
    from disentangle_eval._validation import display_text
    from disentangle_eval.environment import environment_info

    inputs, factor_names = load_inputs(latents_path, factors_path, options, device)
    shown_names = [display_text(name) for name in factor_names]

    metrics, seed = options["metrics"], options["seed"]
    report = {
        "inputs": {"latents": str(latents_path), "factors": str(factors_path),
                   "n_samples": inputs.n_samples, "n_latents": inputs.n_latents,
                   "n_factors": inputs.n_factors, "factor_names": factor_names,
                   "latents_discrete": inputs.discrete},
        "settings": {"metrics": list(metrics), "seed": seed, "device": str(device)},
    }
    shared = {**{k: v for k, v in options.items() if k in SETTING_NAMES}, "device": device,
              "progress": True, "factor_names": shown_names}
    results = {}
    with warnings.catch_warnings(record=True) as recorded:
        warnings.simplefilter("always")
        for name in metrics:
            spec = METRICS[name]
            results[name] = run_metric(spec, inputs, shared)
            report["settings"][name] = spec.settings(shared)
    for name, result in results.items():
        report[name] = result.to_dict()
    if options["ci"] is not None:
        _add_intervals(report, inputs, shared, results, options["ci"], seed)
    report["warnings"] = sorted({str(w.message) for w in recorded if not issubclass(
        w.category, (DeprecationWarning, FutureWarning))})
    report["environment"] = environment_info(device)
    return report, results, shown_names


def _add_intervals(report, inputs, shared, results, ci, seed) -> None:
    """``--ci``: a ``ci95`` object in each metric's report, the method in ``settings``."""
    from disentangle_eval._uncertainty import intervals_from_inputs

    intervals = intervals_from_inputs(inputs, list(results), shared, results=results,
                                      n_resamples=None if ci == "auto" else ci, seed=seed,
                                      progress=True)
    for name, found in intervals.items():
        report[name]["ci95"] = found.ci95()
    report["settings"]["ci"] = {"level": 0.95, "interval": "t on the resampling standard error",
                                **{name: found.settings() for name, found in intervals.items()}}


def _planned_outputs(metrics) -> list[str]:
    """Files a run of ``metrics`` writes besides metrics.json."""
    from disentangle_eval._registry import METRICS

    # MIG and Modularity share the binned MI matrix and its heatmap: written once.
    return list(dict.fromkeys(f for name in metrics for f in METRICS[name].output_files()))


def _result_files() -> set[str]:
    """Every file name a score run can write: what --force may replace."""
    from disentangle_eval._registry import METRICS

    return {"metrics.json", *_planned_outputs(METRICS)}


def _write_outputs(folder: Path, report: dict, results: dict, factor_names) -> None:
    from disentangle_eval._registry import METRICS
    from disentangle_eval.io import write_json, write_npy

    written: set[str] = set()
    for name, result in results.items():
        spec = METRICS[name]
        for matrix in spec.matrices:
            if f"{matrix}.npy" not in written:
                write_npy(folder / f"{matrix}.npy", getattr(result, matrix))
                written.add(f"{matrix}.npy")
        if spec.heatmap is not None and spec.heatmap_file not in written:
            spec.heatmap(result, factor_names, folder / spec.heatmap_file)
            written.add(spec.heatmap_file)
    write_json(folder / "metrics.json", report)


def _format_tables(report: dict, results: dict, factor_names) -> str:
    import numpy as np
    import pandas as pd

    inputs = report["inputs"]
    lines = [f"{inputs['n_samples']} samples, {inputs['n_latents']} latents "
             f"({'discrete' if inputs['latents_discrete'] else 'continuous'}), "
             f"{inputs['n_factors']} factors; device {report['settings']['device']}"]
    labels = {"disentanglement": "DCI disentanglement", "completeness": "DCI completeness",
              "informativeness_train": "DCI informativeness (train)",
              "informativeness_test": "DCI informativeness (test)", "infom": "InfoM",
              "infoe": "InfoE", "infoc": "InfoC", "mig": "MIG", "sap": "SAP",
              "modularity": "Modularity", "explicitness_train": "Explicitness (train)",
              "explicitness_test": "Explicitness (test)", "irs": "IRS"}
    # With --ci a value prints with its interval: 0.7100 [0.6900, 0.7300].
    summary = [(labels.get(key, f"{name} {key}"),
                format_estimate(value, report[name].get("ci95", {}).get(key)))
               for name, result in results.items() for key, value in result.headline().items()]
    width = max(len(name) for name, _ in summary)
    lines += [""] + [f"{name:<{width}}  {value}" for name, value in summary]
    latent_names = [f"z{j}" for j in range(inputs["n_latents"])]
    with pd.option_context("display.width", 200, "display.max_columns", 60):
        if "infomec" in results:
            r = results["infomec"]
            inactive = [name for name, a in zip(latent_names, r.active_latents) if not a]
            lines += ["", f"NMI (rows = factors, columns = latents; "
                          f"{int(np.sum(r.active_latents))}/{len(latent_names)} latents active"
                          + (f", inactive: {', '.join(inactive)}" if inactive else "") + ")",
                      pd.DataFrame(r.nmi, index=factor_names, columns=latent_names)
                      .to_string(float_format=lambda v: f"{v:.2f}")]
            if r.notes:
                lines += [f"note: {n}" for n in r.notes]
        if "dci" in results:
            r = results["dci"]
            lines += ["", "DCI importance (rows = latents, columns = factors)",
                      pd.DataFrame(r.importance, index=latent_names, columns=factor_names)
                      .to_string(float_format=lambda v: f"{v:.2f}")]
    return "\n".join(lines)


@main.command()
@click.argument("run_dirs", metavar="RUN_DIR...", nargs=-1, required=True,
                type=click.Path(exists=True))
@click.option("--format", "fmt", default="markdown", show_default=True,
              type=click.Choice(["markdown", "csv", "latex"]), help="Output format.")
@click.option("--ci", is_flag=True,
              help="Each cell as the mean and its 95% t-interval over seeds, "
                   "'0.71 [0.69, 0.73]' (the mean alone for one seed), instead of "
                   "mean +- std; csv gains <column>_low and <column>_high.")
def table(run_dirs, fmt, ci):
    """Collect metrics.json of train-reference runs into the paper's Table 1 layout.

    Columns D, I, C (DCI), InfoM, InfoE, InfoC and MSE x 1e4, grouped by dataset, one row
    per model and configuration with mean +- std over its seeds and the number of
    distinct seeds. RUN_DIR is a run folder or its metrics.json; the config.json beside
    it gives the configuration. Runs that differ in more than the seed are separate
    rows labelled by what differs, e.g. 'FactorQVAE (gamma=1e-3)' (data_dir, device,
    threads, command, log_every and checkpoint_every are not compared). A seed that
    appears twice in a row counts once (the first run in path order) with a warning;
    runs without a readable config.json are grouped by model and dataset alone, with a
    warning.

    \b
    Examples:
      disentangle-eval table runs/*-toyshapes-*
      disentangle-eval table runs/factorqvae-shapes3d-* --ci --format latex

    Exit codes: 0 success, 1 bad data (an unreadable metrics.json, or one that disagrees
    with its config.json), 2 bad usage.
    """
    import warnings

    from disentangle_eval._validation import display_text
    from reference_models.training.table import (
        TableError, collect_metrics, format_table, summarise,
    )

    with warnings.catch_warnings(record=True) as recorded:
        warnings.simplefilter("always")
        try:
            runs = collect_metrics(run_dirs)
        except FileNotFoundError as exc:
            raise click.UsageError(str(exc)) from None
        except TableError as exc:
            raise BadData(str(exc)) from None
        summary = summarise(runs)
    for warning in recorded:
        if not issubclass(warning.category, (DeprecationWarning, FutureWarning)):
            click.echo(f"warning: {display_text(warning.message, _MAX_MESSAGE)}", err=True)
    click.echo(format_table(summary, fmt, ci=ci), nl=False)


main.add_command(make_compare_command(score))

if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
