"""Heatmaps of NMI and DCI importance matrices (the paper's Figures 5-7)."""
from __future__ import annotations

import os
from typing import Sequence

import numpy as np

from ._validation import display_text
from .io import atomic_write

__all__ = ["plot_matrix", "plot_nmi", "plot_importance"]


def plot_matrix(matrix: np.ndarray, *, row_labels: Sequence[str], col_labels: Sequence[str],
                title: str, row_title: str, col_title: str, vmax: float | None = None,
                dimmed_cols: np.ndarray | None = None, path: str | os.PathLike | None = None):
    """Annotated heatmap of ``matrix`` (rows x columns); saved as PNG when ``path`` is given.

    Returns the matplotlib Figure. Uses the non-interactive Agg canvas, so it works with
    no display.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    matrix = np.asarray(matrix, dtype=float)
    n_rows, n_cols = matrix.shape
    width = max(4.0, 0.55 * n_cols + 2.5)
    height = max(2.5, 0.45 * n_rows + 1.5)
    fig = Figure(figsize=(width, height), dpi=120)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    vmax = vmax if vmax is not None else max(1e-12, float(np.nanmax(matrix)))
    image = ax.imshow(matrix, cmap="viridis", vmin=0.0, vmax=vmax, aspect="auto")
    fig.colorbar(image, ax=ax, fraction=0.04, pad=0.02)
    if n_rows * n_cols <= 900:
        for i in range(n_rows):
            for j in range(n_cols):
                value = matrix[i, j]
                color = "black" if value > 0.6 * vmax else "white"
                ax.text(j, i, f"{value:.2f}", ha="center", va="center", color=color,
                        fontsize=7 if n_cols > 12 else 8)
    ax.set_xticks(range(n_cols), labels=_labels(col_labels), rotation=45 if n_cols > 8 else 0,
                  ha="right" if n_cols > 8 else "center")
    ax.set_yticks(range(n_rows), labels=_labels(row_labels))
    if dimmed_cols is not None:
        for j in np.flatnonzero(np.asarray(dimmed_cols)):
            ax.get_xticklabels()[j].set_color("0.6")
    ax.set_xlabel(col_title)
    ax.set_ylabel(row_title)
    ax.set_title(title)
    fig.tight_layout()
    if path is not None:
        with atomic_write(path, "wb") as handle:
            fig.savefig(handle, format="png")
    return fig


def _labels(names: Sequence[str]) -> list[str]:
    # Names are data: control characters escaped, and "$" shown as itself instead of
    # starting matplotlib's math mode (where a stray backslash is a drawing error).
    return [display_text(name).replace("$", r"\$") for name in names]


def _latent_labels(n: int) -> list[str]:
    return [f"z{j}" for j in range(n)]


def plot_nmi(nmi: np.ndarray, factor_names: Sequence[str] | None = None,
             active_latents: np.ndarray | None = None, path=None, title: str | None = None):
    """NMI heatmap: rows = factors, columns = latents (inactive latents greyed on the axis)."""
    nmi = np.asarray(nmi)
    names = list(factor_names) if factor_names is not None else [f"s{i}" for i in range(nmi.shape[0])]
    dimmed = None if active_latents is None else ~np.asarray(active_latents, dtype=bool)
    return plot_matrix(nmi, row_labels=names, col_labels=_latent_labels(nmi.shape[1]),
                       title=title or "Normalised mutual information", row_title="factor",
                       col_title="latent", vmax=1.0, dimmed_cols=dimmed, path=path)


def plot_importance(importance: np.ndarray, factor_names: Sequence[str] | None = None,
                    path=None, title: str | None = None):
    """DCI importance heatmap: rows = latents, columns = factors."""
    importance = np.asarray(importance)
    names = list(factor_names) if factor_names is not None else [f"s{i}" for i in range(importance.shape[1])]
    return plot_matrix(importance, row_labels=_latent_labels(importance.shape[0]),
                       col_labels=names, title=title or "DCI importance", row_title="latent",
                       col_title="factor", vmax=max(1e-12, float(np.max(importance))), path=path)
