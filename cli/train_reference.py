"""``train-reference``: train a reference model and dump its latents for scoring.

Exit codes: 0 success, 1 bad data (a dataset file missing or malformed, a run folder's
file unreadable, unsafe or not matching its run, settings that cannot fit in memory,
training diverged), 2 bad usage (options, an existing run folder without
--resume/--force). The library's errors are told apart by their type.

Under torchrun every process runs this command: each joins the process group that
torchrun describes (:mod:`reference_models.training.distributed`) and trains its share
of the batch; rank 0 reports the errors that it shares with the others (the settings,
the run folder) and writes the results.
"""
from __future__ import annotations

import os
from pathlib import Path

import click

from ._errors import BadData, Command


def _print_models(ctx: click.Context, _param, value: bool) -> None:
    if not value or ctx.resilient_parsing:
        return
    from reference_models.models.registry import list_models

    for name in list_models():
        click.echo(name)
    ctx.exit(0)


def _print_datasets(ctx: click.Context, _param, value: bool) -> None:
    if not value or ctx.resilient_parsing:
        return
    from reference_models.data.registry import list_datasets

    for info in list_datasets():
        factors = ", ".join(f"{n} {s}" for n, s in zip(info.factor_names, info.factor_sizes))
        click.echo(f"{info.name}: {factors}")
    ctx.exit(0)


def _parse_sets(_ctx, _param, values: tuple[str, ...]) -> dict[str, str]:
    parsed: dict[str, str] = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter(f"expected key=value, got {item!r}")
        parsed[key.strip()] = value.strip()
    return parsed


@click.command(cls=Command, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--list-models", is_flag=True, expose_value=False, is_eager=True,
              callback=_print_models, help="Print the registered model names and exit.")
@click.option("--list-datasets", is_flag=True, expose_value=False, is_eager=True,
              callback=_print_datasets,
              help="Print every dataset with its factors and sizes and exit.")
@click.argument("model", required=False)
@click.option("--dataset", default=None, help="Dataset name (see --list-datasets).")
@click.option("--data-dir", type=click.Path(file_okay=False), default=None,
              help="Folder of the published dataset files [default: $DISENTANGLE_EVAL_DATA "
                   "or ~/.cache/disentangle-eval/data].")
@click.option("--preset", type=click.Choice(["paper", "cpu", "smoke"]), default=None,
              help="Configuration preset [default: paper for shapes3d/isaac3d/mpi3d, "
                   "else cpu].")
@click.option("--steps", type=click.IntRange(min=1), default=None,
              help="Training iterations [default: the preset's], with the preset's "
                   "schedules stretched to them: the cosine period and the temperature "
                   "rate keep their fraction of the run (--set steps=N changes the "
                   "iterations alone).")
@click.option("--batch-size", type=click.IntRange(min=1), default=None,
              help="Batch size [default: the preset's]. Under torchrun the global batch, "
                   "split evenly across the processes (a multiple of their number).")
@click.option("--seed", type=click.IntRange(min=0), default=None,
              help="Seed of initialisation, batches, noise and the evaluation samples "
                   "[default: 1].")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto",
              show_default=True, help="Where to train.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default=None,
              help="Run folder [default: runs/MODEL-DATASET-SEED].")
@click.option("--resume", is_flag=True,
              help="Continue the run in the folder from its last checkpoint.")
@click.option("--force", is_flag=True, help="Delete an existing run in the folder first.")
@click.option("--set", "overrides", multiple=True, callback=_parse_sets, metavar="KEY=VALUE",
              help="Override a ModelConfig or TrainConfig field, e.g. --set lr=3e-4 "
                   "(repeatable).")
@click.option("--threads", type=click.IntRange(min=1), default=2, show_default=True,
              help="CPU threads of torch (per process under torchrun).")
@click.option("--checkpoint-minutes", type=click.FloatRange(min=0, min_open=True), default=5.0,
              show_default=True, help="Wall time between checkpoints (besides every "
                                      "checkpoint_every iterations and the end).")
@click.option("--no-figures", is_flag=True, help="Skip the figures at the end.")
@click.option("--figures-only", "figures_only", type=click.Path(file_okay=False, exists=True),
              default=None, metavar="RUN_DIR",
              help="Only (re)draw the figures of a finished run folder and exit.")
def main(model, dataset, data_dir, preset, steps, batch_size, seed, device, out_dir, resume,
         force, overrides, threads, checkpoint_minutes, no_figures, figures_only) -> None:
    """Train reference MODEL on --dataset, then dump latents, scores and figures.

    Trains with the paper's Algorithm 1 (for the Factor models a VAE step on a batch x and
    a discriminator step on a batch x' with permuted codes), Adam, the cosine learning
    rate and the Gumbel temperature schedule of the preset. The run folder receives
    config.json, checkpoint.pt (atomic, every few minutes and at the end), log.csv, and at
    the end latents.npz, factors.npz (10000 + 5000 factor draws), metrics.json (DCI,
    InfoMEC, MSE x 1e4) and figures/. An existing run is never overwritten without
    --resume or --force; a killed run continues exactly with --resume.

    Several GPUs or machines: start the command with torchrun. It trains one model with
    DistributedDataParallel (backend nccl on GPUs, gloo on the CPU): the preset's batch
    (or --batch-size) is the global batch, split evenly across the processes, each with
    its own batches and noise from the seed and its rank. Rank 0 alone writes the run
    folder; --resume continues exactly with the same number of processes.

    \b
    Examples:
      train-reference factorqvae --dataset toyshapes --preset smoke
      train-reference factorqvae --dataset toyshapes --preset cpu --seed 2
      train-reference factorqvae --dataset toyshapes --preset cpu --resume
      train-reference qvae --dataset shapes3d --data-dir data/ --device cuda --set beta=1e-3
      train-reference --figures-only runs/factorqvae-toyshapes-1
      train-reference --list-models
      torchrun --nproc_per_node 4 $(which train-reference) factorqvae --dataset shapes3d \\
          --data-dir data/ --device cuda

    Exit codes: 0 success, 1 bad data, 2 bad usage.
    """
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    if figures_only is not None:
        if os.environ.get("WORLD_SIZE", "1") != "1":
            raise click.UsageError("--figures-only runs in one process; start it without "
                                   "torchrun")
        _figures_only(Path(figures_only), device, threads)
        return
    if model is None:
        raise click.UsageError("missing MODEL (see --list-models)")
    if dataset is None:
        raise click.UsageError("missing --dataset (see --list-datasets)")
    if resume and force:
        raise click.UsageError("--resume and --force exclude each other")

    from disentangle_eval import DataError
    from reference_models.data.base import DatasetError
    from reference_models.training.distributed import (
        check_batch_split, context_from_environment, init_distributed, shutdown,
    )
    from reference_models.training.loop import train
    from reference_models.training.run_folder import RunFileError, RunFolderError, build_spec

    context = _torchrun_context(context_from_environment)
    try:
        spec = build_spec(model, dataset, preset=preset, data_dir=data_dir, steps=steps,
                          batch_size=batch_size, seed=seed, overrides=overrides)
        check_batch_split(spec.train_config.batch_size, context.world_size)
    except (ValueError, TypeError) as exc:  # unknown names, fields or values of the settings
        raise _reported(click.UsageError(str(exc)), context) from None
    try:
        device = _device(device)
    except click.UsageError as exc:
        raise _reported(exc, context) from None
    run_dir = Path(out_dir) if out_dir else Path("runs") / (
        f"{model}-{dataset}-{spec.train_config.seed}")
    if context.is_main:
        click.echo(f"run folder: {run_dir}", err=True)
    try:
        context, device = init_distributed(device)
    except ValueError as exc:  # more processes than GPUs on this machine
        raise _reported(click.UsageError(str(exc)), context, shared=False) from None
    completed = False
    try:
        metrics = train(run_dir, spec, device=device, resume=resume, force=force,
                        checkpoint_seconds=60.0 * checkpoint_minutes, threads=threads,
                        figures=not no_figures, distributed=context)
        completed = True
    except RunFolderError as exc:
        raise _reported(click.UsageError(str(exc)), context, exc) from None
    except (DatasetError, RunFileError, DataError) as exc:  # DataError: memory, scoring
        raise _reported(BadData(str(exc)), context, exc) from None
    except FloatingPointError as exc:
        raise _reported(BadData(f"training diverged: {exc}"), context, exc) from None
    finally:
        shutdown(context, completed=completed)
    if metrics is not None:
        table = metrics["table"]
        click.echo("  ".join(f"{key} {value:.3f}" if key != "MSE" else f"MSE(x1e4) {value:.2f}"
                             for key, value in table.items() if value is not None))


def _torchrun_context(read_environment):
    """This process's rank and world size under torchrun (a single process otherwise)."""
    try:
        return read_environment()
    except ValueError as exc:  # torchrun's variables are malformed
        raise click.UsageError(str(exc)) from None


def _reported(error: click.ClickException, context, exc: Exception | None = None, *,
              shared: bool | None = None) -> click.exceptions.Exit | click.ClickException:
    """What a process raises for ``error``: rank 0 reports what every rank found.

    An error that every rank finds alike (the settings, or one that rank 0 found in the
    run folder and shared, marked ``from_main_rank``) exits the other ranks with its code
    silently; an error of one rank alone is reported with the rank.
    """
    if context.is_main:
        return error
    if shared is None:
        shared = exc is None or getattr(exc, "from_main_rank", False)
    if shared:
        return click.exceptions.Exit(error.exit_code)
    return type(error)(f"rank {context.rank}: {error.message}")


def _device(name: str):
    """The torch device of ``--device``; CUDA where there is none is a usage error."""
    from disentangle_eval._validation import resolve_device

    try:
        return resolve_device(name)
    except ValueError as exc:  # resolve_device's error for CUDA without a GPU
        raise click.UsageError(str(exc)) from None


def _figures_only(run_dir: Path, device: str, threads: int) -> None:
    import torch

    from disentangle_eval import DataError
    from reference_models.data.base import DatasetError
    from reference_models.training.figures import make_figures
    from reference_models.training.run_folder import (
        CHECKPOINT, LATENTS, METRICS, RunFileError, RunFolderError,
    )

    torch.set_num_threads(threads)
    missing = [name for name in (LATENTS, METRICS, CHECKPOINT)
               if not (run_dir / name).exists()]
    if missing:
        raise click.UsageError(f"--figures-only {run_dir}: not a finished run "
                               f"(missing {', '.join(missing)})")
    try:
        paths = make_figures(run_dir, device=_device(device))
    except RunFolderError as exc:
        raise click.UsageError(str(exc)) from None
    except (DatasetError, RunFileError, DataError) as exc:
        raise BadData(str(exc)) from None
    for path in paths:
        click.echo(str(path))
