"""The results table of many runs in the layout of the paper's Table 1.

Columns: model, D, I, C (DCI disentanglement, informativeness = test accuracy,
completeness), InfoM, InfoE, InfoC and the reconstruction MSE x 1e4; rows grouped by
dataset (the paper's three first, then the others alphabetically), models in the paper's
order; runs of the same (model, dataset) with several seeds
give ``mean +- std`` (sample standard deviation, ddof=1).

Examples
--------
>>> from reference_models.training.table import collect_metrics, summarise, format_table
>>> runs = collect_metrics(["runs/ae-toyshapes-1", "runs/ae-toyshapes-2"])  # doctest: +SKIP
>>> print(format_table(summarise(runs), "markdown"))  # doctest: +SKIP
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Iterable

import numpy as np
import pandas as pd

__all__ = ["COLUMNS", "MODEL_ORDER", "DISPLAY_NAMES", "collect_metrics", "summarise",
           "format_table", "TableError"]

COLUMNS: tuple[str, ...] = ("D", "I", "C", "InfoM", "InfoE", "InfoC", "MSE")
# Paper's Table 1 order, then the vector-quantisation ablation of Table 2.
MODEL_ORDER: tuple[str, ...] = ("ae", "betavae", "factorvae", "bioae", "qlae", "dvae", "qvae",
                                "factordvae", "factorqvae", "vqvae", "factorvqvae")
DISPLAY_NAMES: dict[str, str] = {
    "ae": "AE", "betavae": "beta-VAE", "factorvae": "FactorVAE", "bioae": "BioAE",
    "qlae": "QLAE", "dvae": "dVAE", "qvae": "QVAE", "factordvae": "FactordVAE",
    "factorqvae": "FactorQVAE", "vqvae": "VQVAE", "factorvqvae": "FactorVQVAE",
}
# Datasets in the paper's order, then the others alphabetically.
DATASET_ORDER: tuple[str, ...] = ("shapes3d", "isaac3d", "mpi3d")
_DECIMALS = {"MSE": 1}


class TableError(ValueError):
    """A metrics.json that cannot be read into the table."""


def _metrics_path(path: str | os.PathLike) -> Path:
    path = Path(path)
    return path / "metrics.json" if path.is_dir() else path


def collect_metrics(paths: Iterable[str | os.PathLike]) -> pd.DataFrame:
    """One row per run: dataset, model, seed, path and the Table 1 columns.

    Parameters
    ----------
    paths : iterable of path-like
        Run folders (holding ``metrics.json``) or ``metrics.json`` files.

    Raises
    ------
    FileNotFoundError
        A path holds no metrics.json.
    TableError
        A metrics.json lacks the fields the table needs.
    """
    rows = []
    for path in paths:
        file = _metrics_path(path)
        if not file.is_file():
            raise FileNotFoundError(f"{path}: no metrics.json (is the run finished?)")
        try:
            data = json.loads(file.read_text())
            table = data["table"]
            row = {"dataset": str(data["dataset"]), "model": str(data["model"]),
                   "seed": data.get("seed"), "path": str(file)}
            for column in COLUMNS:
                value = table[column]
                row[column] = np.nan if value is None else float(value)
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise TableError(f"{file}: not a train-reference metrics.json "
                             f"({type(exc).__name__}: {exc})") from None
        rows.append(row)
    if not rows:
        raise TableError("no runs given")
    return pd.DataFrame(rows, columns=["dataset", "model", "seed", "path", *COLUMNS])


def _model_rank(model: str) -> int:
    return MODEL_ORDER.index(model) if model in MODEL_ORDER else len(MODEL_ORDER)


def _dataset_rank(dataset: str) -> int:
    return DATASET_ORDER.index(dataset) if dataset in DATASET_ORDER else len(DATASET_ORDER)


def summarise(runs: pd.DataFrame) -> pd.DataFrame:
    """Mean and std over seeds per (dataset, model), in the paper's model order.

    Returns a frame with columns ``dataset, model, n`` and ``<col>_mean``, ``<col>_std``
    for each of :data:`COLUMNS` (std NaN for a single run).
    """
    grouped = runs.groupby(["dataset", "model"], sort=False)[list(COLUMNS)]
    mean = grouped.mean().add_suffix("_mean")
    std = grouped.std(ddof=1).add_suffix("_std")
    count = grouped.size().rename("n")
    summary = pd.concat([count, mean, std], axis=1).reset_index()
    summary["_rank"] = summary["model"].map(_model_rank)
    summary["_dataset_rank"] = summary["dataset"].map(_dataset_rank)
    summary = summary.sort_values(["_dataset_rank", "dataset", "_rank", "model"], kind="stable")
    ordered = ["dataset", "model", "n"] + [f"{c}_{s}" for c in COLUMNS for s in ("mean", "std")]
    return summary[ordered].reset_index(drop=True)


def _cell(mean: float, std: float, decimals: int, pm: str) -> str:
    if np.isnan(mean):
        return "-"
    mean = round(float(mean), decimals) + 0.0  # no "-0.00"
    text = f"{mean:.{decimals}f}"
    if not np.isnan(std):
        text += f"{pm}{round(float(std), decimals) + 0.0:.{decimals}f}"
    return text


def format_table(summary: pd.DataFrame, fmt: str = "markdown") -> str:
    """The summary as text: ``"markdown"``, ``"csv"`` (numbers, mean and std columns) or
    ``"latex"`` (a tabular with one block per dataset)."""
    if fmt == "csv":
        return summary.to_csv(index=False, float_format="%.6g")
    if fmt not in ("markdown", "latex"):
        raise ValueError(f"fmt must be 'markdown', 'csv' or 'latex': got {fmt!r}")
    pm = " ± " if fmt == "markdown" else " $\\pm$ "
    header = ["model", "D ↑", "I ↑", "C ↑", "InfoM ↑", "InfoE ↑", "InfoC ↑", "MSE ×1e4 ↓",
              "seeds"]
    blocks: list[tuple[str, list[list[str]]]] = []
    for dataset, group in summary.groupby("dataset", sort=False):
        body = []
        for _, row in group.iterrows():
            cells = [DISPLAY_NAMES.get(row["model"], row["model"])]
            cells += [_cell(row[f"{c}_mean"], row[f"{c}_std"], _DECIMALS.get(c, 2), pm)
                      for c in COLUMNS]
            cells.append(str(int(row["n"])))
            body.append(cells)
        blocks.append((str(dataset), body))
    if fmt == "markdown":
        lines = []
        for dataset, body in blocks:
            lines += [f"**{dataset}**", "", "| " + " | ".join(header) + " |",
                      "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|"]
            lines += ["| " + " | ".join(cells) + " |" for cells in body]
            lines.append("")
        return "\n".join(lines).rstrip() + "\n"
    latex_header = ["model", r"$\mathsf{D}\uparrow$", r"$\mathsf{I}\uparrow$",
                    r"$\mathsf{C}\uparrow$", r"InfoM$\uparrow$", r"InfoE$\uparrow$",
                    r"InfoC$\uparrow$", r"MSE$\downarrow$", "seeds"]
    lines = [r"\begin{tabular}{l" + "c" * (len(latex_header) - 1) + "}", r"\toprule",
             " & ".join(latex_header) + r" \\"]
    for dataset, body in blocks:
        lines += [r"\midrule",
                  rf"\multicolumn{{{len(latex_header)}}}{{l}}{{\textit{{{_latex(dataset)}}}}} \\"]
        lines += [" & ".join(_latex(c) if i == 0 else c for i, c in enumerate(cells)) + r" \\"
                  for cells in body]
    lines += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(lines) + "\n"


def _latex(text: str) -> str:
    for char in "\\&%$#_{}":
        text = text.replace(char, "\\" + char)
    return text
