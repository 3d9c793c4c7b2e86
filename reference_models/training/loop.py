"""The training loop of the reference models (the paper's Algorithm 1), with exact resume.

:func:`train` reads top to bottom, as nanoGPT's ``train.py`` does: check the settings, the
data and the memory they need (nothing is written before), set up (seeds, data, model,
optimisers, schedules), restore a checkpoint when resuming, then iterate
``step -> log -> checkpoint`` and finally evaluate (:mod:`reference_models.training.evaluate`).
The run folder's files are described in :mod:`reference_models.training.run_folder`.

Determinism
-----------
Every random draw comes from generators seeded by ``train_config.seed`` and saved in the
checkpoint: batches are uniformly random indices of the (fully crossed) dataset from a
``numpy.random.Generator``; Gumbel noise and the discriminator's permutations use torch's
global generator. On the CPU with the same thread count, a run killed at any moment and
resumed ends with the same parameters, bit for bit, as an uninterrupted one. On resume
the rows of ``log.csv`` after the checkpoint's step are dropped, so the file ends up
identical to that of an uninterrupted run.

Data parallel
-------------
Given a :class:`~reference_models.training.distributed.DistributedContext` of several
processes (``torchrun``), the model is wrapped in ``DistributedDataParallel`` (gradients
averaged across ranks by its all-reduce) and Algorithm 1 runs on every rank with a
batch of ``batch_size / world_size``: the global batch is the preset's. Each rank draws
its own batch indices and Gumbel/permutation noise from streams seeded by the run seed
and the rank (:func:`~reference_models.training.distributed.rank_streams`); the model is
initialised from the run seed alone, identically everywhere. The discriminator step of
the Factor models permutes the codes within each rank's batch. The logged values are
means over ranks. Rank 0 alone reads and writes the run folder: ``config.json`` records
``world_size`` and ``batch_per_rank``, a checkpoint holds every rank's random states
(``rng_ranks``, gathered to rank 0), and only a resume with the same world size is
accepted, which then continues exactly as the uninterrupted run would. Evaluation and
figures run on rank 0 alone, on one device.
"""
from __future__ import annotations

import csv
import json
import math
import os
import random
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel
from tqdm.auto import tqdm

from disentangle_eval._validation import resolve_device
from disentangle_eval.environment import environment_info
from disentangle_eval.io import atomic_write, write_json
from reference_models.data.registry import get_dataset
from reference_models.models import build_model
from reference_models.training.distributed import (
    SINGLE, DistributedContext, check_batch_split, gather_to_main, mean_across_ranks, on_main,
    rank_streams,
)
from reference_models.training.evaluate import evaluate_run
from reference_models.training.memory import check_training_fits
from reference_models.training.run_folder import (
    CHECKPOINT, CONFIG, LOG, MAX_CONFIG_BYTES, METRICS, RunFileError, RunFolderError, RunSpec,
    capture_rng_states, check_run_folder, load_checkpoint, load_model_state, one_line,
    prepare_run_folder, read_json, restore_rng_states, run_files, save_checkpoint,
)
from reference_models.training.schedules import cosine_lr_factor, temperature

__all__ = ["train"]


def _truncate_log(path: Path, step: int) -> None:
    """Keep the header and the rows up to ``step`` (rows after a checkpoint are replayed)."""
    if not path.exists():
        return
    with open(path, newline="") as handle:
        rows = list(csv.reader(handle))
    if not rows:
        return
    # complete rows only (a row cut short by a crash has fewer fields)
    kept = rows[:1] + [row for row in rows[1:]
                       if len(row) == len(rows[0]) and int(row[0]) <= step]
    with atomic_write(path, "w") as handle:
        csv.writer(handle, lineterminator="\n").writerows(kept)


def _log_header(path: Path) -> list[str] | None:
    with open(path, newline="") as handle:
        return next(csv.reader(handle), None)


def _check_world_size(run_dir: Path, world_size: int) -> None:
    """A run continues only with the number of processes it was started with."""
    path = run_dir / CONFIG
    try:
        stored = read_json(path, max_bytes=MAX_CONFIG_BYTES).get("world_size", 1)
    except (OSError, ValueError, AttributeError) as exc:
        raise RunFileError(f"{path}: not a run configuration ({one_line(exc)})") from None
    if isinstance(stored, bool) or not isinstance(stored, int) or stored < 1:
        raise RunFileError(f"{path}: world_size {one_line(repr(stored), 40)} is not a "
                           "number of processes")
    if stored != world_size:
        raise RunFolderError(
            f"--resume: {run_dir} was trained by {stored} process(es), not {world_size}; "
            f"resume it with {stored} (torchrun --nproc_per_node/--nnodes"
            + (", or without torchrun)" if stored == 1 else ")")
            + " so that it continues exactly")


def _rank_rng_states(state: dict[str, Any], context: DistributedContext,
                     path: Path) -> dict[str, Any]:
    """This rank's random states in a checkpoint (written by as many processes)."""
    stored = state.get("world_size", 1)
    if isinstance(stored, bool) or not isinstance(stored, int) \
            or stored != context.world_size:
        raise RunFileError(f"{path}: written by {one_line(repr(stored), 40)} process(es), "
                           f"but its {CONFIG} and this run have {context.world_size}")
    if not context.enabled:
        return state["rng"]
    ranks = state.get("rng_ranks")
    if not isinstance(ranks, list) or len(ranks) != context.world_size:
        raise RunFileError(f"{path}: holds no random states for each of "
                           f"{context.world_size} processes")
    return ranks[context.rank]


class _AlgorithmSteps(torch.nn.Module):
    """The two losses of Algorithm 1 behind one ``forward``.

    ``DistributedDataParallel`` all-reduces the gradients of what its own ``forward``
    computed, so both the VAE loss and the discriminator loss go through this module.
    """

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor, tau: float,
                discriminator: bool = False) -> dict[str, torch.Tensor]:
        if discriminator:
            return self.model.discriminator_loss(x, tau)
        return self.model.loss_terms(x, tau)


def _settle_buckets(ddp: DistributedDataParallel, model: torch.nn.Module,
                    shape: tuple[int, ...], device: torch.device) -> None:
    """Run one VAE backward on a blank batch, leaving no trace, before training.

    After its first backward DDP regroups the gradients into buckets in the order they
    arrived, and with more than two processes the all-reduce's summation order follows
    the buckets. A run that starts, and one that resumes, both settle the buckets here,
    so every training step reduces in the same buckets and a resumed run continues
    bit for bit. (With unused parameters, as in the Factor models, DDP never regroups.)
    """
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        ddp(torch.zeros(shape, device=device), 1.0)["loss"].backward()
    model.zero_grad(set_to_none=True)


def train(run_dir: str | os.PathLike, spec: RunSpec | None, *, device: str = "auto",
          resume: bool = False, force: bool = False, checkpoint_seconds: float = 300.0,
          threads: int | None = 2, progress: bool | None = None, evaluate: bool = True,
          figures: bool = True, stop_after: int | None = None,
          distributed: DistributedContext | None = None) -> dict[str, Any] | None:
    """Train ``spec`` in ``run_dir`` (Algorithm 1), then dump latents, scores and figures.

    Parameters
    ----------
    run_dir : path-like
        The run folder (created). Refused when it holds a run, unless ``resume`` or
        ``force``.
    spec : RunSpec or None
        What to train; None with ``resume`` takes the folder's ``config.json``.
    device : {"auto", "cpu", "cuda"} or torch.device, default "auto"
        With ``distributed``, this rank's device (see
        :func:`reference_models.training.distributed.init_distributed`).
    resume : bool, default False
        Continue the run from its checkpoint (or from the start if it has none yet).
    force : bool, default False
        Delete an existing run in ``run_dir`` and start afresh.
    checkpoint_seconds : float, default 300
        Wall time between checkpoints (besides every ``train_config.checkpoint_every``
        iterations and the end).
    threads : int or None, default 2
        ``torch.set_num_threads``; None leaves it alone.
    progress : bool or None, default None
        tqdm bar on stderr; None: only when stderr is a terminal.
    evaluate, figures : bool, default True
        Write latents/factors/metrics (and figures) after training.
    stop_after : int, optional
        Return after this many iterations (a checkpoint is written), for tests.
    distributed : DistributedContext, optional
        This process's place in a data-parallel run whose process group is joined; None
        (or a world of one) trains in this process alone. See the module docstring.

    Returns
    -------
    dict or None
        The metrics (as in ``metrics.json``) when evaluated (on rank 0), else None.

    Raises
    ------
    ValueError
        No ``spec`` without ``resume``; ``device`` is CUDA where there is none; the batch
        does not split evenly across the processes.
    RunFolderError
        The folder exists without resume/force, or its config (or world size) does not
        match.
    RunFileError
        A file of the folder to resume is unreadable, unsafe or does not match the run.
    reference_models.data.base.DatasetError
        The dataset's files are missing or malformed.
    disentangle_eval.DataError
        The model and batch cannot fit in the memory of ``device``.
    FloatingPointError
        A loss became NaN or infinite (training diverged).
    """
    # -- checks: settings, folder, data and memory, before anything is written ----------
    # The run folder is rank 0's: what it finds there (or the error) reaches every rank.
    context = SINGLE if distributed is None else distributed
    world_size = context.world_size
    run_dir = Path(run_dir)
    if spec is None and not resume:
        raise ValueError("spec is required unless resume=True")
    device = resolve_device(device)

    def checked_spec() -> RunSpec:
        checked = check_run_folder(run_dir, spec, resume=resume, force=force)
        if resume:
            _check_world_size(run_dir, world_size)
        return checked

    spec = on_main(context, checked_spec)
    mcfg, tcfg = spec.model_config, spec.train_config
    batch_per_rank = check_batch_split(tcfg.batch_size, world_size)
    if threads is not None:
        torch.set_num_threads(threads)
    dataset = get_dataset(spec.dataset, data_dir=spec.data_dir, image_size=mcfg.image_size,
                          seed=spec.dataset_seed)
    check_training_fits(spec.model, mcfg, batch_size=batch_per_rank,
                        evaluation_rows=tcfg.metric_train_samples + tcfg.metric_test_samples,
                        n_factors=dataset.n_factors, device=device)
    files = run_files(run_dir)
    state = None
    if resume:
        # Several ranks receive rank 0's copy, which must not name rank 0's device.
        location = "cpu" if context.enabled else device
        state = on_main(context, lambda: load_checkpoint(
            files[CHECKPOINT], map_location=location, spec=spec)
            if files[CHECKPOINT].exists() else None)

    def prepare() -> None:
        prepare_run_folder(run_dir, force=force and not resume)
        if not files[CONFIG].exists():
            write_json(files[CONFIG], {**spec.to_dict(), "world_size": world_size,
                                       "batch_per_rank": batch_per_rank,
                                       "environment": environment_info(device),
                                       "command": sys.argv})

    on_main(context, prepare)

    # -- setup: seeds, model, two optimisers (Algorithm 1's g1, g2), schedules ----------
    seed = tcfg.seed
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    data_rng = np.random.default_rng(seed)
    model = build_model(spec.model, mcfg).to(device)
    if context.enabled:  # same initial model everywhere, then each rank's own streams
        data_rng, noise_seed = rank_streams(seed, context.rank)
        torch.manual_seed(noise_seed)
    optimizer_class = torch.optim.AdamW if tcfg.weight_decay > 0 else torch.optim.Adam
    vae_opt = optimizer_class(model.vae_parameters(), lr=tcfg.lr, betas=tcfg.betas,
                              weight_decay=tcfg.weight_decay)
    vae_sched = torch.optim.lr_scheduler.LambdaLR(vae_opt, cosine_lr_factor(
        lr=tcfg.lr, lr_min=tcfg.lr_min, cosine_steps=tcfg.cosine_steps, after=tcfg.cosine_after))
    disc_opt = disc_sched = None
    if model.has_discriminator:
        disc_opt = torch.optim.Adam(model.discriminator_parameters(), lr=tcfg.discriminator_lr,
                                    betas=tcfg.discriminator_betas)
        disc_min = tcfg.lr_min * tcfg.discriminator_lr / tcfg.lr
        disc_sched = torch.optim.lr_scheduler.LambdaLR(disc_opt, cosine_lr_factor(
            lr=tcfg.discriminator_lr, lr_min=disc_min, cosine_steps=tcfg.cosine_steps,
            after=tcfg.cosine_after))

    # -- resume: everything that changes during training comes back from the checkpoint --
    step = 0
    running: dict[str, float] = {}
    if state is not None:
        load_model_state(model, state, files[CHECKPOINT])
        rng_states = _rank_rng_states(state, context, files[CHECKPOINT])
        try:
            vae_opt.load_state_dict(state["vae_optimizer"])
            vae_sched.load_state_dict(state["vae_scheduler"])
            if disc_opt is not None:
                disc_opt.load_state_dict(state["discriminator_optimizer"])
                disc_sched.load_state_dict(state["discriminator_scheduler"])
            restore_rng_states(rng_states, data_rng, device)
        # what torch's and numpy's setters raise for a state of the wrong layout
        except (KeyError, TypeError, ValueError, AttributeError, RuntimeError) as exc:
            raise RunFileError(f"{files[CHECKPOINT]}: optimiser, schedule or random states "
                               f"do not fit this run ({type(exc).__name__}: "
                               f"{one_line(exc, 160)})") from None
        step, running = state["step"], dict(state["running"])
    if resume:
        def tidy() -> None:
            _truncate_log(files[LOG], step)
            for stale in run_dir.glob(f".{CHECKPOINT}.*.tmp"):
                stale.unlink()

        on_main(context, tidy)

    # Algorithm 1's two losses; with several processes through DDP, whose backward
    # averages the gradients across ranks. Each step leaves the other part's parameters
    # unused (the VAE step scores with detached discriminator weights, the
    # discriminator step encodes without gradient), which DDP must be told.
    vae_loss, discriminator_loss = model.loss_terms, model.discriminator_loss
    if context.enabled:
        ddp = DistributedDataParallel(
            _AlgorithmSteps(model), device_ids=[device.index] if device.type == "cuda" else None,
            find_unused_parameters=model.has_discriminator)

        if not model.has_discriminator:
            _settle_buckets(ddp, model, (batch_per_rank, mcfg.channels, mcfg.image_size,
                                         mcfg.image_size), device)

        def vae_loss(x, tau):
            return ddp(x, tau)

        def discriminator_loss(x, tau):
            return ddp(x, tau, discriminator=True)

    def checkpoint() -> None:
        rng = gather_to_main(context, capture_rng_states(data_rng, device))
        if not context.is_main:
            return
        save_checkpoint(files[CHECKPOINT], {
            "step": step, "config": spec.to_dict(),
            "model": model.state_dict(), "vae_optimizer": vae_opt.state_dict(),
            "vae_scheduler": vae_sched.state_dict(),
            "discriminator_optimizer": disc_opt.state_dict() if disc_opt else None,
            "discriminator_scheduler": disc_sched.state_dict() if disc_sched else None,
            "rng": rng[0], "running": running, "world_size": world_size,
            **({"rng_ranks": rng} if context.enabled else {})})

    def batch() -> torch.Tensor:
        indices = data_rng.integers(0, dataset.n_samples, size=batch_per_rank)
        return torch.from_numpy(dataset.images(indices)).to(device, non_blocking=True)

    # -- the loop ----------------------------------------------------------------------
    bar = tqdm(total=tcfg.steps, initial=step, file=sys.stderr, dynamic_ncols=True,
               disable=(True if not context.is_main else
                        None if progress is None else not progress), desc=spec.model)
    log_handle = open(files[LOG], "a", newline="") if context.is_main else None
    log_writer = None
    last_checkpoint = time.monotonic()
    model.train()
    try:
        while step < tcfg.steps:
            tau = temperature(step, rate=tcfg.tau_rate, minimum=tcfg.tau_min)
            lr = vae_opt.param_groups[0]["lr"]
            # VAE step on batch x (Algorithm 1, lines 2-7)
            terms = vae_loss(batch(), tau)
            vae_opt.zero_grad(set_to_none=True)
            terms["loss"].backward()
            vae_opt.step()
            vae_sched.step()
            values = {key: float(value.detach()) for key, value in terms.items()}
            # discriminator step on batch x' with permuted codes (lines 8-13)
            if model.has_discriminator:
                d_terms = discriminator_loss(batch(), tau)
                disc_opt.zero_grad(set_to_none=True)
                d_terms["loss"].backward()
                disc_opt.step()
                disc_sched.step()
                values.update({f"disc_{key}": float(value.detach())
                               for key, value in d_terms.items()})
            # Rank 0's clock decides the timed checkpoints; the decision travels with
            # the means of the logged values, so every rank takes it together.
            timed_out = time.monotonic() - last_checkpoint >= checkpoint_seconds
            if context.enabled:
                means = mean_across_ranks(context, [*values.values(),
                                                    float(context.is_main and timed_out)],
                                          device)
                values, timed_out = dict(zip(values, means)), means[-1] > 0
            if not all(math.isfinite(v) for v in values.values()):
                raise FloatingPointError(f"step {step}: non-finite loss terms {values}")
            step += 1
            bar.update(1)
            for key, value in values.items():
                running[key] = running.get(key, 0.0) + value
            running["_count"] = running.get("_count", 0.0) + 1

            # log: means over the iterations since the last row
            if step % tcfg.log_every == 0 or step == tcfg.steps:
                count = running.pop("_count")
                row = {"step": step, "lr": lr, "tau": tau,
                       **{key: value / count for key, value in running.items()}}
                running = {}
                if log_handle is not None:
                    if log_writer is None:  # a resumed run keeps the file's column order
                        header = _log_header(files[LOG]) or list(row)
                        log_writer = csv.DictWriter(log_handle, fieldnames=header,
                                                    lineterminator="\n")
                        if log_handle.tell() == 0:
                            log_writer.writeheader()
                    log_writer.writerow(row)
                    log_handle.flush()
                shown = {k: row[k] for k in ("loss", "recon", "tc", "perplexity",
                                             "disc_accuracy") if k in row}
                bar.set_postfix({"tau": f"{tau:.3f}",
                                 **{k: f"{v:.4g}" for k, v in shown.items()}}, refresh=False)

            # checkpoint: every checkpoint_every iterations, every few minutes, at the end
            if (step % tcfg.checkpoint_every == 0 or step == tcfg.steps or timed_out
                    or step == stop_after):
                checkpoint()
                last_checkpoint = time.monotonic()
            if stop_after is not None and step >= stop_after:
                return None
    finally:
        if log_handle is not None:
            log_handle.close()
        bar.close()
    if step == 0 or not on_main(context, files[CHECKPOINT].exists):
        checkpoint()

    # -- evaluation: latents of the protocol, scores, figures (rank 0, one device) ------
    if not evaluate or not context.is_main:
        return None
    if files[METRICS].exists():  # resuming a finished run: nothing left to do
        return json.loads(files[METRICS].read_text())
    model.eval()
    return evaluate_run(run_dir, model, dataset, spec, device=device, figures=figures)
