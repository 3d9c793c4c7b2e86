"""Figures of a trained run (PNG in ``RUN_DIR/figures``), from the model or the run folder.

- ``traversals.png``: rows = latents, columns = values (paper Figures 2-4). Quantised
  models step through their actual codebook values in increasing order (QLAE: each latent's
  own values; at most ``max_values`` of them, evenly spaced); continuous models through
  ``z_j + s * std_j`` for ``s`` in -3..3, ``std_j`` the latent's spread over the
  evaluation samples.
- ``swaps.png``: latent swapping (Figure 8): image a with latent ``j`` taken from image b.
- ``nmi.png`` and ``importance.png``: the NMI (Figure 5) and DCI importance (Figures 6-7)
  heatmaps, via :mod:`disentangle_eval.plotting`.
- ``codebook_usage.png`` (quantised models): how often each latent takes each codebook
  entry on the evaluation samples (Figure 9).
- ``reconstructions.png``: held-out inputs above their reconstructions.

``make_figures(run_dir)`` rebuilds them later from ``checkpoint.pt``, ``latents.npz`` and
``metrics.json``; ``train-reference --figures-only RUN_DIR`` does the same from the shell.
Those files are checked before use (a file that does not fit the run is a
:class:`~reference_models.training.run_folder.RunFileError`), and the checkpoint is read
safely (:func:`~reference_models.training.run_folder.load_trained_model`).
"""
from __future__ import annotations

import os
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from disentangle_eval.io import atomic_write
from disentangle_eval.plotting import plot_importance, plot_nmi
from reference_models.data.registry import get_dataset
from reference_models.models.base import CategoricalModel
from reference_models.training.run_folder import (
    FIGURES, LATENTS, MAX_METRICS_BYTES, METRICS, RunFileError, RunFolderError, RunSpec,
    load_run_spec, load_trained_model, one_line, read_json,
)

__all__ = ["make_figures"]


def _to_rgb(x: torch.Tensor) -> np.ndarray:
    """(B, 3, S, S) in [-0.5, 0.5] -> (B, S, S, 3) floats in [0, 1]."""
    return (x.detach().cpu().float() + 0.5).clamp(0, 1).permute(0, 2, 3, 1).numpy()


def _grid(images: np.ndarray, pad: int = 1) -> np.ndarray:
    """(rows, cols, S, S, 3) -> one (rows * (S + pad), cols * (S + pad), 3) image."""
    rows, cols, size = images.shape[:3]
    out = np.ones((rows * (size + pad) + pad, cols * (size + pad) + pad, 3))
    for i in range(rows):
        for j in range(cols):
            top, left = pad + i * (size + pad), pad + j * (size + pad)
            out[top:top + size, left:left + size] = images[i, j]
    return out


def _save_grid(path: Path, grid: np.ndarray, *, title: str, row_labels=None, col_labels=None,
               cell: int, pad: int = 1) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    height, width = grid.shape[:2]
    scale = max(1.0, 40.0 / cell)  # show small images at least 40 px per cell
    fig = Figure(figsize=(width * scale / 100 + 1.2, height * scale / 100 + 0.8), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    ax.imshow(grid, interpolation="nearest")
    centres = lambda n: [pad + k * (cell + pad) + cell / 2 - 0.5 for k in range(n)]  # noqa: E731
    if row_labels is not None:
        ax.set_yticks(centres(len(row_labels)), labels=list(row_labels), fontsize=7)
    else:
        ax.set_yticks([])
    if col_labels is not None:
        ax.set_xticks(centres(len(col_labels)), labels=list(col_labels), fontsize=6,
                      rotation=90)
    else:
        ax.set_xticks([])
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    with atomic_write(path, "wb") as handle:
        fig.savefig(handle, format="png")


def _traversal_values(model, latents: np.ndarray, max_values: int):
    """Per latent: the representation values to show and their labels."""
    d = latents.shape[1]
    if model.is_quantized:
        codebook = model.codebook.detach().cpu().numpy()
        per_latent = []
        for j in range(d):
            # A global codebook (K, D) is shared by every latent; QLAE's (d, K) is per latent.
            values = codebook[:, 0] if isinstance(model, CategoricalModel) else codebook[j]
            if isinstance(model, CategoricalModel) and codebook.shape[1] > 1:
                order = np.arange(codebook.shape[0])  # vectors have no order: index order
            else:
                order = np.argsort(values, kind="stable")
            if len(order) > max_values:
                order = order[np.round(np.linspace(0, len(order) - 1, max_values)).astype(int)]
            labels = ([f"{values[k]:.2f}" for k in order] if codebook.shape[1] == 1
                      or not isinstance(model, CategoricalModel) else [str(k) for k in order])
            per_latent.append((torch.as_tensor(order, dtype=torch.long), labels))
        return per_latent, "codebook value"
    std = latents.astype(np.float64).std(axis=0)
    steps = np.linspace(-3.0, 3.0, min(max_values, 11))
    return [(torch.as_tensor(steps * std[j], dtype=torch.float32),
             [f"{s:+.1f}σ" for s in steps]) for j in range(d)], "offset"


@torch.no_grad()
def _traversals(model, x0: torch.Tensor, latents: np.ndarray, max_values: int):
    base = model.encode(x0[:1])
    per_latent, kind = _traversal_values(model, latents, max_values)
    n_cols = max(len(values) for values, _ in per_latent)
    size = x0.shape[-1]
    cells = np.ones((len(per_latent), n_cols, size, size, 3))
    for j, (values, _) in enumerate(per_latent):
        codes = base.repeat(len(values), 1)
        if model.is_quantized:
            codes[:, j] = values.to(codes.device)
        else:
            codes[:, j] = codes[:, j] + values.to(codes.device)
        cells[j, :len(values)] = _to_rgb(model.decode(codes))
    return cells, per_latent, kind


@torch.no_grad()
def make_figures(run_dir: str | os.PathLike, *, model=None, dataset=None, device="cpu",
                 max_values: int = 16, n_pairs: int = 4, n_reconstructions: int = 12
                 ) -> list[Path]:
    """Write the figures of a run into ``run_dir/figures``; return their paths.

    Parameters
    ----------
    run_dir : path-like
        A finished run folder (``latents.npz`` and ``metrics.json`` present).
    model, dataset : optional
        The trained model and its dataset; loaded from the run folder when omitted.
    device : str or torch.device, default "cpu"
    max_values : int, default 16
        Most columns of the traversal figure.
    n_pairs : int, default 4
        Image pairs in the swapping figure.
    n_reconstructions : int, default 12
        Images in the reconstruction figure.
    """
    run_dir = Path(run_dir)
    if model is None:
        model, spec = load_trained_model(run_dir, device)
    else:
        spec = load_run_spec(run_dir)
    model.eval()
    if dataset is None:
        dataset = get_dataset(spec.dataset, data_dir=spec.data_dir,
                              image_size=spec.model_config.image_size, seed=spec.dataset_seed)
    device = next(model.parameters()).device
    latents, factors, n_train, factor_names = _read_latents(run_dir, spec, dataset)
    if model.is_quantized and not (latents.dtype.kind == "i" and latents.size and
                                   0 <= latents.min() and latents.max() < _n_entries(model)):
        raise RunFileError(f"{run_dir / LATENTS}: the codes are not indices of the model's "
                           f"{_n_entries(model)} codebook entries")
    metrics = _read_metrics(run_dir, spec, len(factor_names))
    out = run_dir / FIGURES
    out.mkdir(exist_ok=True)
    written: list[Path] = []
    title = f"{spec.model} on {spec.dataset} (seed {spec.train_config.seed})"
    size = spec.model_config.image_size

    # held-out images: the test rows of the protocol
    test = factors[n_train:] if len(factors) > n_train else factors
    x = torch.from_numpy(dataset.images(dataset.index_of(test[:max(2 * n_pairs,
                                                                   n_reconstructions)])))
    x = x.to(device)

    # latent traversals
    cells, per_latent, kind = _traversals(model, x, latents, max_values)
    labels = per_latent[0][1] if len({tuple(lab) for _, lab in per_latent}) == 1 else None
    path = out / "traversals.png"
    _save_grid(path, _grid(cells), cell=size,
               title=f"{spec.model}: latent traversals ({kind})",
               row_labels=[f"z{j}" for j in range(len(per_latent))], col_labels=labels)
    written.append(path)

    # latent swapping: row = pair (a, b), columns = a, b, then a with latent j from b
    codes = model.encode(x[:2 * n_pairs])
    a, b = codes[0::2], codes[1::2]
    d = codes.shape[1]
    cells = np.ones((len(a), d + 2, size, size, 3))
    cells[:, 0] = _to_rgb(x[0:2 * n_pairs:2])
    cells[:, 1] = _to_rgb(x[1:2 * n_pairs:2])
    for j in range(d):
        swapped = a.clone()
        swapped[:, j] = b[:, j]
        cells[:, j + 2] = _to_rgb(model.decode(swapped))
    path = out / "swaps.png"
    _save_grid(path, _grid(cells), cell=size,
               title=f"{spec.model}: image a with latent z_j from image b",
               row_labels=[f"pair {i}" for i in range(len(a))],
               col_labels=["a", "b"] + [f"z{j}" for j in range(d)])
    written.append(path)

    # reconstructions: inputs above reconstructions
    xs = x[:n_reconstructions]
    cells = np.stack([_to_rgb(xs), _to_rgb(model(xs))])
    path = out / "reconstructions.png"
    mse = metrics.get("mse_x1e4")
    _save_grid(path, _grid(cells), cell=size, row_labels=["input", "output"],
               title=f"{spec.model}: reconstructions"
                     + (f" (held-out MSE x 1e4: {mse:.2f})" if mse is not None else ""))
    written.append(path)

    # heatmaps via the metrics core
    path = out / "nmi.png"
    plot_nmi(metrics["nmi"], factor_names, metrics["active_latents"], path=path,
             title=f"NMI (InfoM {metrics['infom']:.2f}, InfoC {metrics['infoc']:.2f})")
    written.append(path)
    path = out / "importance.png"
    plot_importance(metrics["importance"], factor_names, path=path,
                    title=f"DCI importance (D {metrics['disentanglement']:.2f}, "
                          f"C {metrics['completeness']:.2f})")
    written.append(path)

    # codebook usage per latent
    if model.is_quantized:
        path = out / "codebook_usage.png"
        _plot_usage(path, model, latents, title=f"{title}: codebook usage per latent")
        written.append(path)
    return written


def _plot_usage(path: Path, model, latents: np.ndarray, *, title: str) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    codebook = model.codebook.detach().cpu().numpy()
    n_entries = _n_entries(model)
    d = latents.shape[1]
    columns = 4
    rows = int(np.ceil(d / columns))
    fig = Figure(figsize=(3.0 * columns, 1.8 * rows + 0.6), dpi=100)
    FigureCanvasAgg(fig)
    for j in range(d):
        ax = fig.add_subplot(rows, columns, j + 1)
        counts = np.bincount(latents[:, j].astype(np.int64), minlength=n_entries)
        if isinstance(model, CategoricalModel) and codebook.shape[1] == 1:
            values = codebook[:, 0]
        elif isinstance(model, CategoricalModel):
            values = np.arange(n_entries, dtype=float)
        else:
            values = codebook[j]
        order = np.argsort(values, kind="stable")
        ax.bar(np.arange(n_entries), counts[order] / max(1, counts.sum()), width=0.9)
        ax.set_title(f"z{j}: {int(np.count_nonzero(counts))} of {n_entries} used", fontsize=8)
        ax.tick_params(labelsize=6)
    fig.suptitle(title + " (entries in increasing value)", fontsize=9)
    fig.tight_layout()
    with atomic_write(path, "wb") as handle:
        fig.savefig(handle, format="png")


def _n_entries(model) -> int:
    """Codebook entries a code indexes: a global codebook's rows, QLAE's values per latent."""
    codebook = model.codebook
    return int(codebook.shape[0] if isinstance(model, CategoricalModel) else codebook.shape[1])


def _read_latents(run_dir: Path, spec: RunSpec, dataset) -> tuple[np.ndarray, np.ndarray,
                                                                   int, list[str]]:
    """``latents``, ``factors``, ``n_train`` and the factor names of ``latents.npz``, checked
    against the run's model and dataset."""
    path = run_dir / LATENTS
    if not path.is_file():
        raise RunFolderError(f"{run_dir}: no {LATENTS}; not a finished run")
    try:
        with np.load(path, allow_pickle=False) as stored:
            latents, factors = stored["latents"], stored["factors"]
            n_train = stored["n_train"]
            factor_names = stored["factor_names"]
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
        raise RunFileError(f"{path}: not a latents file of this run ({type(exc).__name__}: "
                           f"{one_line(exc, 160)})") from None
    d, n_factors = spec.model_config.latent_dim, dataset.n_factors
    problems = []
    if latents.ndim != 2 or latents.shape[1] != d or latents.dtype.kind not in "if":
        problems.append(f"latents {latents.shape} {latents.dtype}, expected (n, {d}) numbers")
    elif not np.isfinite(latents).all():
        problems.append("latents that are not finite")
    if factors.shape != (len(latents), n_factors) or factors.dtype.kind not in "iu":
        problems.append(f"factors {factors.shape} {factors.dtype}, expected "
                        f"({len(latents)}, {n_factors}) integers")
    elif ((factors < 0) | (factors >= np.asarray(dataset.factor_sizes))).any():
        problems.append("factor indices outside the dataset's factor sizes")
    if n_train.shape != () or n_train.dtype.kind not in "iu" or not 0 < n_train <= len(latents):
        problems.append(f"n_train {n_train!r}")
    if factor_names.shape != (n_factors,) or factor_names.dtype.kind != "U":
        problems.append(f"factor_names {factor_names.shape} {factor_names.dtype}")
    if problems:
        raise RunFileError(f"{path}: does not fit the run ({'; '.join(problems)})")
    return latents, factors, int(n_train), [str(name) for name in factor_names]


def _read_metrics(run_dir: Path, spec: RunSpec, n_factors: int) -> dict[str, Any]:
    """The parts of ``metrics.json`` the figures draw, checked."""
    path = run_dir / METRICS
    if not path.is_file():
        raise RunFolderError(f"{run_dir}: no {METRICS}; not a finished run")
    d = spec.model_config.latent_dim
    try:
        metrics = read_json(path, max_bytes=MAX_METRICS_BYTES)
        info, dci_report = metrics["infomec"], metrics["dci"]
        nmi = np.asarray(info["nmi"], dtype=np.float64)
        active = np.asarray(info["active_latents"], dtype=bool)
        importance = np.asarray(dci_report["importance"], dtype=np.float64)
        scores = {key: float(report[key]) for report, key in (
            (info, "infom"), (info, "infoc"), (dci_report, "disentanglement"),
            (dci_report, "completeness"))}
        mse = metrics.get("mse_x1e4")
        mse = None if mse is None else float(mse)
    except (ValueError, TypeError, KeyError, OSError, OverflowError) as exc:
        raise RunFileError(f"{path}: not the metrics of this run ({type(exc).__name__}: "
                           f"{one_line(exc, 160)})") from None
    if nmi.shape != (n_factors, d) or active.shape != (d,) or importance.shape != (d, n_factors):
        raise RunFileError(f"{path}: matrices of the wrong shape for {d} latents and "
                           f"{n_factors} factors (nmi {nmi.shape}, active_latents "
                           f"{active.shape}, importance {importance.shape})")
    return {"nmi": nmi, "active_latents": active, "importance": importance,
            "mse_x1e4": mse, **scores}
