"""The run folder of a training run: its files, its spec, and how it is made and read.

Files
-----
``config.json`` (:data:`CONFIG`)
    The :class:`RunSpec` (resolved model and training configuration, model and dataset
    names, seed), the environment and the command.
``checkpoint.pt`` (:data:`CHECKPOINT`)
    Written atomically: model, optimisers, schedulers, every random state, the running
    log sums and the step (:func:`save_checkpoint`). It holds tensors and plain Python
    values only and is read with ``torch.load(weights_only=True)`` (:func:`load_checkpoint`),
    so a run folder from someone else cannot run code.
``log.csv`` (:data:`LOG`)
    One row of means every ``log_every`` iterations.
``latents.npz``, ``factors.npz``, ``metrics.json``, ``figures/``
    Written after training (:mod:`reference_models.training.evaluate`).

Errors
------
:class:`RunFolderError` says that a folder cannot be used as asked (it holds a run and
neither resume nor force was given, a resume changes the settings, nothing to resume):
a usage error. :class:`RunFileError` says that a file of the folder is unreadable,
malformed, unsafe or does not match the rest of the run: bad data.
"""
from __future__ import annotations

import dataclasses
import io
import json
import math
import os
import pickle
import random
import shutil
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from disentangle_eval._validation import display_text
from disentangle_eval.io import atomic_write
from reference_models.config import ModelConfig, TrainConfig, with_overrides
from reference_models.data.registry import dataset_names, get_dataset_info
from reference_models.models import build_model, list_models
from reference_models.presets import PAPER_DATASETS, get_preset
from reference_models.training.memory import check_inference_fits

__all__ = [
    "CONFIG", "CHECKPOINT", "LOG", "LATENTS", "FACTORS", "METRICS", "FIGURES",
    "CHECKPOINT_FORMAT", "RunSpec", "RunFolderError", "RunFileError", "build_spec",
    "run_files", "load_run_spec", "check_run_folder", "prepare_run_folder",
    "capture_rng_states", "restore_rng_states", "save_checkpoint", "load_checkpoint",
    "load_trained_model", "load_model_state", "read_json", "one_line",
    "MAX_CONFIG_BYTES", "MAX_METRICS_BYTES",
]

CONFIG = "config.json"
CHECKPOINT = "checkpoint.pt"
LOG = "log.csv"
LATENTS = "latents.npz"
FACTORS = "factors.npz"
METRICS = "metrics.json"
FIGURES = "figures"
# 1: numpy's global random state stored as numpy's own tuple (with an ndarray);
# 2: stored as plain values and a tensor.
CHECKPOINT_FORMAT = 2
_READABLE_FORMATS = (1, 2)
# A config.json is a few kilobytes and a metrics.json a few hundred: far larger files are
# not what they claim to be.
MAX_CONFIG_BYTES = 1 << 20
MAX_METRICS_BYTES = 64 << 20


class RunFolderError(ValueError):
    """A run folder cannot be used as asked (exists without resume/force, settings differ)."""


class RunFileError(ValueError):
    """A file of a run folder is unreadable, malformed, unsafe, or does not match the run."""


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
        """The spec of a ``config.json`` object.

        Raises
        ------
        ValueError, TypeError, KeyError
            A missing or malformed field, or a model or dataset that is not registered.
        """
        if not isinstance(data, dict):
            raise TypeError(f"expected a JSON object, got {type(data).__name__}")
        model, dataset = data["model"], data["dataset"]
        if model not in list_models():
            raise ValueError(f"unknown model {model!r}")
        if dataset not in dataset_names():
            raise ValueError(f"unknown dataset {dataset!r}")
        data_dir, dataset_seed = data.get("data_dir"), data.get("dataset_seed", 0)
        if data_dir is not None and not isinstance(data_dir, str):
            raise TypeError(f"data_dir must be a string or null, got {data_dir!r}")
        if isinstance(dataset_seed, bool) or not isinstance(dataset_seed, int):
            raise TypeError(f"dataset_seed must be an int, got {dataset_seed!r}")
        return cls(model=model, dataset=dataset,
                   model_config=_config_from_dict(ModelConfig, data["model_config"]),
                   train_config=_config_from_dict(TrainConfig, data["train_config"]),
                   preset=str(data.get("preset", "custom")), data_dir=data_dir,
                   dataset_seed=dataset_seed)


def _config_from_dict(cls, fields: Any):
    """A config dataclass from a JSON object: known fields only, values type-checked."""
    if not isinstance(fields, dict):
        raise TypeError(f"{cls.__name__} must be a JSON object, got {type(fields).__name__}")
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(fields) - known)
    if unknown:
        raise ValueError(f"unknown {cls.__name__} field(s) {', '.join(map(repr, unknown))}")
    # with_overrides converts JSON lists to the tuples the dataclass declares, and the
    # dataclass checks every value's type and range.
    return with_overrides(cls(), fields)


def build_spec(model: str, dataset: str, *, preset: str | None = None, data_dir=None,
               steps: int | None = None, batch_size: int | None = None,
               seed: int | None = None, overrides: dict[str, str] | None = None) -> RunSpec:
    """Resolve a preset, options and ``key=value`` overrides into a :class:`RunSpec`.

    Parameters
    ----------
    model : str
        A registered model name.
    dataset : str
        A registered dataset name; its factor count sets the latent size (2 x factors).
    preset : {"paper", "cpu", "smoke"} or None
        None: "paper" for the paper's datasets, else "cpu".
    data_dir : path-like, optional
        Folder of the published dataset files.
    steps : int, optional
        Train this many iterations, the preset's schedules stretched to them
        (``get_preset(..., steps=)``); ``overrides={"steps": ...}`` sets the field alone.
    batch_size, seed : int, optional
        Override the preset's values.
    overrides : dict of str to str, optional
        ``ModelConfig`` or ``TrainConfig`` fields to set (``--set key=value``), converted
        to the declared types.

    Raises
    ------
    ValueError, TypeError
        An unknown model, dataset, preset or field, or a value of the wrong type or range.
    """
    overrides = dict(overrides or {})
    if model not in list_models():
        raise ValueError(f"unknown model {model!r}; choose one of {', '.join(list_models())}")
    if dataset not in dataset_names():
        raise ValueError(f"unknown dataset {dataset!r}; choose one of "
                         f"{', '.join(dataset_names())}")
    if preset is None:
        preset = "paper" if dataset in PAPER_DATASETS else "cpu"
    model_config, train_config = get_preset(model, dataset, preset, steps=steps,
                                            n_factors=get_dataset_info(dataset).n_factors)
    model_fields = {f.name for f in dataclasses.fields(ModelConfig)}
    train_fields = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = [k for k in overrides if k not in model_fields | train_fields]
    if unknown:
        raise ValueError(f"--set: unknown field(s) {', '.join(map(repr, unknown))}; valid: "
                         f"{', '.join(sorted(model_fields | train_fields))}")
    train_set = {k: v for k, v in overrides.items() if k in train_fields}
    for key, value in (("batch_size", batch_size), ("seed", seed)):
        if value is not None:
            train_set[key] = value
    model_config = with_overrides(model_config,
                                  {k: v for k, v in overrides.items() if k in model_fields})
    train_config = with_overrides(train_config, train_set)
    return RunSpec(model=model, dataset=dataset, model_config=model_config,
                   train_config=train_config, preset=preset,
                   data_dir=None if data_dir is None else str(data_dir))


def run_files(run_dir: str | os.PathLike) -> dict[str, Path]:
    """Paths of the files a run folder holds, by file name."""
    run_dir = Path(run_dir)
    return {name: run_dir / name
            for name in (CONFIG, CHECKPOINT, LOG, LATENTS, FACTORS, METRICS, FIGURES)}


def load_run_spec(run_dir: str | os.PathLike) -> RunSpec:
    """Read the :class:`RunSpec` of a run folder from its ``config.json``.

    Raises
    ------
    RunFolderError
        The folder has no ``config.json``.
    RunFileError
        ``config.json`` is not a readable run configuration.
    """
    path = Path(run_dir) / CONFIG
    if not path.is_file():
        raise RunFolderError(f"{run_dir}: no {CONFIG}; not a run folder")
    try:
        return RunSpec.from_dict(read_json(path, max_bytes=MAX_CONFIG_BYTES))
    except (KeyError, TypeError, ValueError, OSError) as exc:
        detail = f"missing field {exc}" if isinstance(exc, KeyError) else str(exc)
        raise RunFileError(f"{path}: not a run configuration ({one_line(detail)})") from None


def read_json(path: str | os.PathLike, *, max_bytes: int) -> Any:
    """Parse the JSON file ``path``.

    Raises
    ------
    ValueError
        The file is larger than ``max_bytes``, is not JSON (``json.JSONDecodeError``), or
        is nested too deeply to parse.
    OSError
        The file cannot be read.
    """
    path = Path(path)
    size = path.stat().st_size
    if size > max_bytes:
        raise ValueError(f"{size} bytes, more than such a file holds")
    try:
        return json.loads(path.read_text())
    except RecursionError:
        raise ValueError("nested too deeply") from None


def check_run_folder(run_dir: str | os.PathLike, spec: RunSpec | None, *, resume: bool,
                     force: bool) -> RunSpec:
    """Check that ``run_dir`` can be used as asked; return the spec to train with.

    Reads only. A folder that holds a run is refused unless ``resume`` (continue it: its
    ``config.json`` must match ``spec``, which may be None to take the stored one) or
    ``force`` (its files are deleted by :func:`prepare_run_folder`).

    Raises
    ------
    RunFolderError
        The folder holds a run and neither ``resume`` nor ``force`` was given, there is
        nothing to resume, or ``spec`` differs from the stored one.
    RunFileError
        The stored ``config.json`` cannot be read.
    """
    run_dir = Path(run_dir)
    files = run_files(run_dir)
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
    if spec is None:
        raise ValueError("spec is required unless resume=True")
    existing = [name for name, path in files.items() if path.exists()]
    if existing and not force:
        raise RunFolderError(f"{run_dir} already holds a run ({', '.join(existing)}); "
                             "pass --resume to continue it or --force to start afresh")
    return spec


def prepare_run_folder(run_dir: str | os.PathLike, *, force: bool) -> None:
    """Create ``run_dir``; with ``force``, delete the files of a run it holds first.

    Call after :func:`check_run_folder` and after everything else has been validated: this
    is the first write of a run.
    """
    run_dir = Path(run_dir)
    if force:
        for path in run_files(run_dir).values():
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            elif path.exists() or path.is_symlink():
                path.unlink()
    run_dir.mkdir(parents=True, exist_ok=True)


def _flatten(data: dict, prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = list(value) if isinstance(value, tuple) else value
    return flat


def one_line(text, limit: int = 300) -> str:
    """``text`` (an exception's message, say) on one line, safe for the terminal."""
    return display_text(" ".join(str(text).split()), limit)


# -- checkpoint ------------------------------------------------------------------------

def capture_rng_states(data_rng: np.random.Generator, device: torch.device) -> dict[str, Any]:
    """Every random state a run draws from, as tensors and plain values.

    torch's (and CUDA's) generator states are byte tensors; numpy's global MT19937 state
    is numpy's tuple with its key array as an int64 tensor; Python's state is its tuple of
    ints; the data generator's is numpy's bit-generator dict of ints.
    """
    kind, key, pos, has_gauss, gauss = np.random.get_state()
    states = {"torch": torch.get_rng_state(),
              "numpy": [str(kind), torch.from_numpy(key.astype(np.int64)), int(pos),
                        int(has_gauss), float(gauss)],
              "python": random.getstate(), "data": data_rng.bit_generator.state}
    if device.type == "cuda":
        states["cuda"] = torch.cuda.get_rng_state(device)
    return states


def restore_rng_states(states: dict[str, Any], data_rng: np.random.Generator,
                       device: torch.device) -> None:
    """Set the generators from :func:`capture_rng_states` (as :func:`load_checkpoint` gives)."""
    # A checkpoint loaded with map_location=cuda carries the generator states there too;
    # both setters take CPU byte tensors.
    torch.set_rng_state(states["torch"].cpu())
    kind, key, pos, has_gauss, gauss = states["numpy"]
    np.random.set_state((kind, key.cpu().numpy().astype(np.uint32), pos, has_gauss, gauss))
    random.setstate(states["python"])
    data_rng.bit_generator.state = states["data"]
    if device.type == "cuda" and "cuda" in states:
        torch.cuda.set_rng_state(states["cuda"].cpu(), device)


def save_checkpoint(path: str | os.PathLike, state: dict[str, Any]) -> None:
    """Write ``state`` (tensors and plain values only) to ``path`` atomically."""
    buffer = io.BytesIO()
    torch.save({"format": CHECKPOINT_FORMAT, **state}, buffer)
    with atomic_write(path, "wb") as handle:
        handle.write(buffer.getvalue())


def _format_1_globals() -> list:
    """What a format-1 checkpoint's numpy random state needs besides plain data.

    numpy's state tuple holds a uint32 ndarray, pickled as ``_reconstruct(ndarray, shape,
    dtype)`` plus ``ndarray.__setstate__``; numpy 1.x wrote the module as ``numpy.core``.
    """
    reconstruct = np._core.multiarray._reconstruct if hasattr(np, "_core") else \
        np.core.multiarray._reconstruct
    return [np.ndarray, np.dtype, type(np.dtype(np.uint32)), reconstruct,
            (reconstruct, "numpy.core.multiarray._reconstruct"),
            (reconstruct, "numpy._core.multiarray._reconstruct")]


def load_checkpoint(path: str | os.PathLike, *, map_location=None,
                    spec: RunSpec | None = None) -> dict[str, Any]:
    """Read a checkpoint safely and check its layout.

    The file is read with ``torch.load(weights_only=True)``: tensors and plain Python
    values only, plus exactly the numpy types of a format-1 random state. Anything else (a
    pickled object, code) is refused before it runs.

    Parameters
    ----------
    path : path-like
    map_location : optional
        As ``torch.load``'s.
    spec : RunSpec, optional
        When given, the checkpoint must have been written by a run of this spec.

    Returns
    -------
    dict
        The checkpoint in the current layout (a format-1 numpy state is converted).

    Raises
    ------
    RunFileError
        The file is missing, empty, truncated, holds anything but tensors and plain
        data, or lacks a field of the layout.
    """
    path = Path(path)
    try:
        with torch.serialization.safe_globals(_format_1_globals()):
            state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        detail = str(exc).split("\n")
        reason = next((line.strip() for line in detail
                       if "Unsupported global" in line or "Unsupported operand" in line), "")
        raise RunFileError(
            f"{path}: refused: it holds objects other than tensors and plain data, which "
            "could run code when loaded" + (f" ({one_line(reason, 160)})" if reason else "")
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile) as exc:
        raise RunFileError(f"{path}: not a readable checkpoint ({type(exc).__name__}: "
                           f"{one_line(exc, 160)})") from None
    return _checked_layout(path, state, spec)


def _checked_layout(path: Path, state: Any, spec: RunSpec | None) -> dict[str, Any]:
    def bad(what: str) -> RunFileError:
        return RunFileError(f"{path}: not a checkpoint of train-reference ({what})")

    if not isinstance(state, dict):
        raise bad(f"holds a {type(state).__name__}, not a dict")
    fmt = state.get("format")
    if fmt not in _READABLE_FORMATS:
        raise bad(f"format {one_line(repr(fmt), 40)}; this version reads formats "
                  f"{', '.join(map(str, _READABLE_FORMATS))}")
    for key in ("step", "model", "vae_optimizer", "vae_scheduler", "rng", "running"):
        if key not in state:
            raise bad(f"no {key!r}")
    step = state["step"]
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise bad(f"step {one_line(repr(step), 40)}")
    model = state["model"]
    if not isinstance(model, dict) or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in model.items()):
        raise bad("'model' is not a state dict of tensors")
    running = state["running"]
    if not isinstance(running, dict) or not all(
            isinstance(k, str) and isinstance(v, (int, float)) and math.isfinite(v)
            for k, v in running.items()):
        raise bad("'running' is not a dict of finite numbers")
    rng = state["rng"]
    if not isinstance(rng, dict) or not {"torch", "numpy", "python", "data"} <= set(rng):
        raise bad("'rng' lacks a generator state")
    numpy_state = rng["numpy"]
    if fmt == 1 and isinstance(numpy_state, tuple) and len(numpy_state) == 5 and \
            isinstance(numpy_state[1], np.ndarray) and numpy_state[1].dtype == np.uint32:
        kind, key, pos, has_gauss, gauss = numpy_state
        numpy_state = [kind, torch.from_numpy(key.astype(np.int64)), pos, has_gauss, gauss]
    if not (isinstance(numpy_state, (list, tuple)) and len(numpy_state) == 5
            and isinstance(numpy_state[1], torch.Tensor) and numpy_state[1].shape == (624,)):
        raise bad("'rng' holds no numpy MT19937 state")
    state = {**state, "rng": {**rng, "numpy": list(numpy_state)}}
    if spec is not None and isinstance(state.get("config"), dict):
        # Fields added to the configs since the checkpoint was written are not in it.
        try:
            stored, current = _flatten(state["config"]), _flatten(spec.to_dict())
        except RecursionError:
            raise bad("'config' nested too deeply") from None
        differ = sorted(k for k, v in stored.items() if current.get(k, v) != v)
        if differ:
            raise RunFileError(f"{path}: written by a run with other settings than its "
                               f"{CONFIG} ({one_line(', '.join(differ), 120)})")
    return state


def load_trained_model(run_dir: str | os.PathLike, device="cpu"):
    """The model of a run folder, from ``config.json`` and ``checkpoint.pt``, in eval mode.

    Returns
    -------
    (ReferenceModel, RunSpec)

    Raises
    ------
    RunFolderError
        No ``config.json`` or ``checkpoint.pt``.
    RunFileError
        A file that cannot be read, is unsafe, or does not match the configured model.
    disentangle_eval.DataError
        The configured model does not fit in memory.
    """
    spec = load_run_spec(run_dir)
    path = Path(run_dir) / CHECKPOINT
    if not path.is_file():
        raise RunFolderError(f"{run_dir}: no {CHECKPOINT}")
    device = torch.device(device)
    check_inference_fits(spec.model, spec.model_config, device)
    state = load_checkpoint(path, map_location=device, spec=spec)
    model = build_model(spec.model, spec.model_config).to(device)
    load_model_state(model, state, path)
    model.eval()
    return model, spec


def load_model_state(model: torch.nn.Module, state: dict[str, Any], path: Path) -> None:
    """``model.load_state_dict(state["model"])``; a mismatch is a :class:`RunFileError`."""
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as exc:  # load_state_dict's error for missing keys or shapes
        raise RunFileError(f"{path}: does not match the model of its {CONFIG} "
                           f"({one_line(exc, 200)})") from None
