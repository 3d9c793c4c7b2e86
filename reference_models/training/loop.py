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
from tqdm.auto import tqdm

from disentangle_eval._validation import resolve_device
from disentangle_eval.environment import environment_info
from disentangle_eval.io import atomic_write, write_json
from reference_models.data.registry import get_dataset
from reference_models.models import build_model
from reference_models.training.evaluate import evaluate_run
from reference_models.training.memory import check_training_fits
from reference_models.training.run_folder import (
    CHECKPOINT, CONFIG, LOG, METRICS, RunFileError, RunSpec, capture_rng_states,
    check_run_folder, load_checkpoint, load_model_state, one_line, prepare_run_folder,
    restore_rng_states, run_files, save_checkpoint,
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


def train(run_dir: str | os.PathLike, spec: RunSpec | None, *, device: str = "auto",
          resume: bool = False, force: bool = False, checkpoint_seconds: float = 300.0,
          threads: int | None = 2, progress: bool | None = None, evaluate: bool = True,
          figures: bool = True, stop_after: int | None = None) -> dict[str, Any] | None:
    """Train ``spec`` in ``run_dir`` (Algorithm 1), then dump latents, scores and figures.

    Parameters
    ----------
    run_dir : path-like
        The run folder (created). Refused when it holds a run, unless ``resume`` or
        ``force``.
    spec : RunSpec or None
        What to train; None with ``resume`` takes the folder's ``config.json``.
    device : {"auto", "cpu", "cuda"} or torch.device, default "auto"
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

    Returns
    -------
    dict or None
        The metrics (as in ``metrics.json``) when evaluated, else None.

    Raises
    ------
    ValueError
        No ``spec`` without ``resume``; ``device`` is CUDA where there is none.
    RunFolderError
        The folder exists without resume/force, or its config does not match.
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
    run_dir = Path(run_dir)
    if spec is None and not resume:
        raise ValueError("spec is required unless resume=True")
    device = resolve_device(device)
    spec = check_run_folder(run_dir, spec, resume=resume, force=force)
    mcfg, tcfg = spec.model_config, spec.train_config
    if threads is not None:
        torch.set_num_threads(threads)
    dataset = get_dataset(spec.dataset, data_dir=spec.data_dir, image_size=mcfg.image_size,
                          seed=spec.dataset_seed)
    check_training_fits(spec.model, mcfg, batch_size=tcfg.batch_size,
                        evaluation_rows=tcfg.metric_train_samples + tcfg.metric_test_samples,
                        n_factors=dataset.n_factors, device=device)
    files = run_files(run_dir)
    state = None
    if resume and files[CHECKPOINT].exists():
        state = load_checkpoint(files[CHECKPOINT], map_location=device, spec=spec)

    prepare_run_folder(run_dir, force=force and not resume)
    if not files[CONFIG].exists():
        write_json(files[CONFIG], {**spec.to_dict(), "environment": environment_info(device),
                                   "command": sys.argv})

    # -- setup: seeds, model, two optimisers (Algorithm 1's g1, g2), schedules ----------
    seed = tcfg.seed
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    data_rng = np.random.default_rng(seed)
    model = build_model(spec.model, mcfg).to(device)
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
        try:
            vae_opt.load_state_dict(state["vae_optimizer"])
            vae_sched.load_state_dict(state["vae_scheduler"])
            if disc_opt is not None:
                disc_opt.load_state_dict(state["discriminator_optimizer"])
                disc_sched.load_state_dict(state["discriminator_scheduler"])
            restore_rng_states(state["rng"], data_rng, device)
        # what torch's and numpy's setters raise for a state of the wrong layout
        except (KeyError, TypeError, ValueError, AttributeError, RuntimeError) as exc:
            raise RunFileError(f"{files[CHECKPOINT]}: optimiser, schedule or random states "
                               f"do not fit this run ({type(exc).__name__}: "
                               f"{one_line(exc, 160)})") from None
        step, running = state["step"], dict(state["running"])
    if resume:
        _truncate_log(files[LOG], step)
        for stale in run_dir.glob(f".{CHECKPOINT}.*.tmp"):
            stale.unlink()

    def checkpoint() -> None:
        save_checkpoint(files[CHECKPOINT], {
            "step": step, "config": spec.to_dict(),
            "model": model.state_dict(), "vae_optimizer": vae_opt.state_dict(),
            "vae_scheduler": vae_sched.state_dict(),
            "discriminator_optimizer": disc_opt.state_dict() if disc_opt else None,
            "discriminator_scheduler": disc_sched.state_dict() if disc_sched else None,
            "rng": capture_rng_states(data_rng, device), "running": running})

    def batch() -> torch.Tensor:
        indices = data_rng.integers(0, dataset.n_samples, size=tcfg.batch_size)
        return torch.from_numpy(dataset.images(indices)).to(device, non_blocking=True)

    # -- the loop ----------------------------------------------------------------------
    bar = tqdm(total=tcfg.steps, initial=step, file=sys.stderr, dynamic_ncols=True,
               disable=(None if progress is None else not progress), desc=spec.model)
    log_handle = open(files[LOG], "a", newline="")
    log_writer = None
    last_checkpoint = time.monotonic()
    model.train()
    try:
        while step < tcfg.steps:
            tau = temperature(step, rate=tcfg.tau_rate, minimum=tcfg.tau_min)
            lr = vae_opt.param_groups[0]["lr"]
            # VAE step on batch x (Algorithm 1, lines 2-7)
            terms = model.loss_terms(batch(), tau)
            vae_opt.zero_grad(set_to_none=True)
            terms["loss"].backward()
            vae_opt.step()
            vae_sched.step()
            values = {key: float(value.detach()) for key, value in terms.items()}
            # discriminator step on batch x' with permuted codes (lines 8-13)
            if model.has_discriminator:
                d_terms = model.discriminator_loss(batch(), tau)
                disc_opt.zero_grad(set_to_none=True)
                d_terms["loss"].backward()
                disc_opt.step()
                disc_sched.step()
                values.update({f"disc_{key}": float(value.detach())
                               for key, value in d_terms.items()})
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
            if (step % tcfg.checkpoint_every == 0 or step == tcfg.steps
                    or time.monotonic() - last_checkpoint >= checkpoint_seconds
                    or step == stop_after):
                checkpoint()
                last_checkpoint = time.monotonic()
            if stop_after is not None and step >= stop_after:
                return None
    finally:
        log_handle.close()
        bar.close()
    if step == 0 or not files[CHECKPOINT].exists():
        checkpoint()

    # -- evaluation: latents of the protocol, scores, figures ----------------------------
    if not evaluate:
        return None
    if files[METRICS].exists():  # resuming a finished run: nothing left to do
        return json.loads(files[METRICS].read_text())
    model.eval()
    return evaluate_run(run_dir, model, dataset, spec, device=device, figures=figures)
