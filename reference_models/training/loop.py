"""The training loop of the reference models (the paper's Algorithm 1), with exact resume.

:func:`train` reads top to bottom, as nanoGPT's ``train.py`` does: set up (seeds, data,
model, optimisers, schedules), restore a checkpoint when resuming, then iterate
``step -> log -> checkpoint`` and finally evaluate (:mod:`reference_models.training.evaluate`).

Run folder
----------
``config.json``
    Resolved model and training configuration, model and dataset names, seed, versions.
``checkpoint.pt``
    Written atomically (temporary file + ``os.replace``) every ``checkpoint_every``
    iterations, every ``checkpoint_seconds`` of wall time and at the end: model,
    optimisers, schedulers, every random state (torch, numpy, python, the data
    generator), the running log sums and the step.
``log.csv``
    One row every ``log_every`` iterations (means over those iterations). On resume the
    rows after the checkpoint's step are dropped, so the file ends up identical to that of
    an uninterrupted run.
``latents.npz``, ``factors.npz``, ``metrics.json``, ``figures/``
    Written at the end, see :mod:`reference_models.training.evaluate`.

Determinism
-----------
Every random draw comes from generators seeded by ``train_config.seed`` and saved in the
checkpoint: batches are uniformly random indices of the (fully crossed) dataset from a
``numpy.random.Generator``; Gumbel noise and the discriminator's permutations use torch's
global generator. On the CPU with the same thread count, a run killed at any moment and
resumed ends with the same parameters, bit for bit, as an uninterrupted one.
"""
from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import os
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from reference_models.config import ModelConfig, TrainConfig
from reference_models.training.schedules import cosine_lr_factor, temperature

__all__ = ["RunSpec", "RunFolderError", "train", "run_files", "load_run_spec",
           "CHECKPOINT", "CONFIG", "LOG"]

CONFIG = "config.json"
CHECKPOINT = "checkpoint.pt"
LOG = "log.csv"
CHECKPOINT_FORMAT = 1


class RunFolderError(ValueError):
    """A run folder cannot be used: exists without resume/force, or does not match."""


@dataclass(frozen=True)
class RunSpec:
    """Everything that defines a run, as stored in ``config.json``.

    Parameters
    ----------
    model : str
        Registered model name.
    dataset : str
        Registered dataset name.
    model_config, train_config : ModelConfig, TrainConfig
        Resolved configurations (preset plus overrides); the seed is ``train_config.seed``.
    preset : str
        Name of the preset the configs started from (for the record).
    data_dir : str or None
        Folder of the published dataset files (None: the default).
    dataset_seed : int, default 0
        Seed of a procedural dataset's fixed appearance (not the run seed: every run sees
        the same images).
    """

    model: str
    dataset: str
    model_config: ModelConfig
    train_config: TrainConfig
    preset: str = "custom"
    data_dir: str | None = None
    dataset_seed: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "dataset": self.dataset, "preset": self.preset,
                "seed": self.train_config.seed, "data_dir": self.data_dir,
                "dataset_seed": self.dataset_seed,
                "model_config": dataclasses.asdict(self.model_config),
                "train_config": dataclasses.asdict(self.train_config)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "RunSpec":
        model_fields = dict(data["model_config"])
        train_fields = dict(data["train_config"])
        for key in ("betas", "discriminator_betas"):
            if key in train_fields:
                train_fields[key] = tuple(train_fields[key])
        return cls(model=data["model"], dataset=data["dataset"],
                   model_config=ModelConfig(**model_fields),
                   train_config=TrainConfig(**train_fields), preset=data.get("preset", "custom"),
                   data_dir=data.get("data_dir"), dataset_seed=int(data.get("dataset_seed", 0)))


def run_files(run_dir: str | os.PathLike) -> dict[str, Path]:
    """Paths of the files a run folder holds."""
    run_dir = Path(run_dir)
    return {name: run_dir / name for name in
            (CONFIG, CHECKPOINT, LOG, "latents.npz", "factors.npz", "metrics.json", "figures")}


def load_run_spec(run_dir: str | os.PathLike) -> RunSpec:
    """Read the :class:`RunSpec` of a run folder from its ``config.json``."""
    path = Path(run_dir) / CONFIG
    if not path.is_file():
        raise RunFolderError(f"{run_dir}: no {CONFIG}; not a run folder")
    try:
        return RunSpec.from_dict(json.loads(path.read_text()))
    except (KeyError, TypeError, ValueError) as exc:
        raise RunFolderError(f"{path}: cannot read the run configuration ({exc})") from None


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"``: CUDA when available, else CPU."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' requested but CUDA is not available")
    return device


def prepare_run_folder(run_dir: Path, spec: RunSpec, *, resume: bool, force: bool) -> RunSpec:
    """Create or check the run folder; return the spec to train with.

    A folder that holds anything is refused unless ``resume`` (continue it: its
    ``config.json`` must match ``spec``, which may be None to take the stored one) or
    ``force`` (delete the run's files and start afresh).
    """
    import shutil

    files = run_files(run_dir)
    existing = [name for name, path in files.items() if path.exists()]
    if resume:
        if not files[CONFIG].is_file():
            raise RunFolderError(f"--resume: {run_dir} holds no {CONFIG}; nothing to resume")
        stored = load_run_spec(run_dir)
        if spec is not None and spec.to_dict() != stored.to_dict():
            mine, theirs = _flatten(spec.to_dict()), _flatten(stored.to_dict())
            differ = sorted(k for k in set(mine) | set(theirs) if mine.get(k) != theirs.get(k))
            raise RunFolderError(f"--resume: {run_dir} was started with different settings "
                                 f"({', '.join(differ)}); resume without changing them")
        return stored
    if existing:
        if not force:
            raise RunFolderError(f"{run_dir} already holds a run ({', '.join(existing)}); "
                                 "pass --resume to continue it or --force to start afresh")
        for name in existing:
            path = files[name]
            shutil.rmtree(path) if path.is_dir() else path.unlink()
    run_dir.mkdir(parents=True, exist_ok=True)
    return spec


def _flatten(data: dict, prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = list(value) if isinstance(value, tuple) else value
    return flat


def _rng_states(data_rng: np.random.Generator, device: torch.device) -> dict[str, Any]:
    states = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(),
              "python": random.getstate(), "data": data_rng.bit_generator.state}
    if device.type == "cuda":
        states["cuda"] = torch.cuda.get_rng_state(device)
    return states


def _set_rng_states(states: dict[str, Any], data_rng: np.random.Generator,
                    device: torch.device) -> None:
    # A checkpoint loaded with map_location=cuda carries the generator states there too;
    # both setters take CPU byte tensors.
    torch.set_rng_state(states["torch"].cpu())
    np.random.set_state(states["numpy"])
    random.setstate(states["python"])
    data_rng.bit_generator.state = states["data"]
    if device.type == "cuda" and "cuda" in states:
        torch.cuda.set_rng_state(states["cuda"].cpu(), device)


def _save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    from disentangle_eval.io import atomic_write

    buffer = io.BytesIO()
    torch.save(state, buffer)
    with atomic_write(path, "wb") as handle:
        handle.write(buffer.getvalue())


def _truncate_log(path: Path, step: int) -> None:
    """Keep the header and the rows up to ``step`` (rows after a checkpoint are replayed)."""
    from disentangle_eval.io import atomic_write

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
    RunFolderError
        The folder exists without resume/force, or its config does not match.
    reference_models.data.base.DatasetError
        The dataset's files are missing or malformed.
    """
    from disentangle_eval.environment import environment_info
    from disentangle_eval.io import write_json
    from reference_models.data.registry import get_dataset
    from reference_models.models import build_model

    run_dir = Path(run_dir)
    if spec is None and not resume:
        raise ValueError("spec is required unless resume=True")
    device = resolve_device(device)
    spec = prepare_run_folder(run_dir, spec, resume=resume, force=force)
    mcfg, tcfg = spec.model_config, spec.train_config
    if threads is not None:
        torch.set_num_threads(threads)
    files = run_files(run_dir)
    if not files[CONFIG].exists():
        write_json(files[CONFIG], {**spec.to_dict(), "environment": environment_info(device),
                                   "command": sys.argv})

    # -- setup: seeds, data, model, two optimisers (Algorithm 1's g1, g2), schedules -------
    seed = tcfg.seed
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    data_rng = np.random.default_rng(seed)
    dataset = get_dataset(spec.dataset, data_dir=spec.data_dir, image_size=mcfg.image_size,
                          seed=spec.dataset_seed)
    model = build_model(spec.model, mcfg).to(device)
    optimizer_class = torch.optim.AdamW if tcfg.weight_decay > 0 else torch.optim.Adam
    vae_opt = optimizer_class(model.vae_parameters(), lr=tcfg.lr, betas=tcfg.betas,
                              weight_decay=tcfg.weight_decay)
    vae_sched = torch.optim.lr_scheduler.LambdaLR(vae_opt, cosine_lr_factor(
        lr=tcfg.lr, lr_min=tcfg.lr_min, cosine_steps=tcfg.cosine_steps))
    disc_opt = disc_sched = None
    if model.has_discriminator:
        disc_opt = torch.optim.Adam(model.discriminator_parameters(), lr=tcfg.discriminator_lr,
                                    betas=tcfg.discriminator_betas)
        disc_min = tcfg.lr_min * tcfg.discriminator_lr / tcfg.lr
        disc_sched = torch.optim.lr_scheduler.LambdaLR(disc_opt, cosine_lr_factor(
            lr=tcfg.discriminator_lr, lr_min=disc_min, cosine_steps=tcfg.cosine_steps))

    # -- resume: everything that changes during training comes back from the checkpoint --
    step = 0
    running: dict[str, float] = {}
    if resume and files[CHECKPOINT].exists():
        state = torch.load(files[CHECKPOINT], map_location=device, weights_only=False)
        model.load_state_dict(state["model"])
        vae_opt.load_state_dict(state["vae_optimizer"])
        vae_sched.load_state_dict(state["vae_scheduler"])
        if disc_opt is not None:
            disc_opt.load_state_dict(state["discriminator_optimizer"])
            disc_sched.load_state_dict(state["discriminator_scheduler"])
        _set_rng_states(state["rng"], data_rng, device)
        step, running = int(state["step"]), dict(state["running"])
    if resume:
        _truncate_log(files[LOG], step)
        for stale in run_dir.glob(f".{CHECKPOINT}.*.tmp"):
            stale.unlink()

    def checkpoint() -> None:
        _save_checkpoint(files[CHECKPOINT], {
            "format": CHECKPOINT_FORMAT, "step": step, "config": spec.to_dict(),
            "model": model.state_dict(), "vae_optimizer": vae_opt.state_dict(),
            "vae_scheduler": vae_sched.state_dict(),
            "discriminator_optimizer": disc_opt.state_dict() if disc_opt else None,
            "discriminator_scheduler": disc_sched.state_dict() if disc_sched else None,
            "rng": _rng_states(data_rng, device), "running": running})

    def batch() -> torch.Tensor:
        indices = data_rng.integers(0, dataset.n_samples, size=tcfg.batch_size)
        return torch.from_numpy(dataset.images(indices)).to(device, non_blocking=True)

    # -- the loop ----------------------------------------------------------------------
    from tqdm.auto import tqdm

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
    if files["metrics.json"].exists():  # resuming a finished run: nothing left to do
        return json.loads(files["metrics.json"].read_text())
    from reference_models.training.evaluate import evaluate_run

    model.eval()
    return evaluate_run(run_dir, model, dataset, spec, device=device, figures=figures)
