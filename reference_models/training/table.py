"""The results table of many runs in the layout of the paper's Table 1.

Columns: model, D, I, C (DCI disentanglement, informativeness = test accuracy,
completeness), InfoM, InfoE, InfoC and the reconstruction MSE x 1e4; rows grouped by
dataset (the paper's three first, then the others alphabetically), models in the paper's
order (both orders and the models' display names come from the model and dataset
registries); runs of the same (model, dataset) with several seeds give ``mean +- std``
(sample standard deviation, ddof=1).

Model and dataset names come from files and are shown as text: characters that are not
printable (terminal escape sequences, newlines) are written as Python escapes
(``\x1b``), and the characters Markdown or LaTeX would interpret are escaped for them.

Examples
--------
>>> from reference_models.training.table import collect_metrics, summarise, format_table
>>> runs = collect_metrics(["runs/ae-toyshapes-1", "runs/ae-toyshapes-2"])  # doctest: +SKIP
>>> print(format_table(summarise(runs), "markdown"))  # doctest: +SKIP
"""
from __future__ import annotations

import math
import os
import re
from pathlib import Path
from typing import Iterable

import numpy as np
import pandas as pd

from disentangle_eval._validation import display_text
from reference_models.data.registry import list_datasets
from reference_models.models.registry import list_model_infos
from reference_models.training.run_folder import MAX_METRICS_BYTES, read_json

__all__ = ["COLUMNS", "SUITE_COLUMNS", "collect_metrics", "summarise", "format_table",
           "TableError"]

# The paper's Table 1 columns (every run has them), then the standard suite's headline
# values (runs evaluated before the suite existed lack them; shown when any run has them).
COLUMNS: tuple[str, ...] = ("D", "I", "C", "InfoM", "InfoE", "InfoC", "MSE")
SUITE_COLUMNS: tuple[str, ...] = ("MIG", "SAP", "Modularity", "Explicitness", "IRS")
_ALL_COLUMNS = COLUMNS + SUITE_COLUMNS
_DECIMALS = {"MSE": 1}
_HEADERS = {"D": ("D ↑", r"$\mathsf{D}\uparrow$"), "I": ("I ↑", r"$\mathsf{I}\uparrow$"),
            "C": ("C ↑", r"$\mathsf{C}\uparrow$"), "InfoM": ("InfoM ↑", r"InfoM$\uparrow$"),
            "InfoE": ("InfoE ↑", r"InfoE$\uparrow$"), "InfoC": ("InfoC ↑", r"InfoC$\uparrow$"),
            "MSE": ("MSE ×1e4 ↓", r"MSE$\downarrow$"), "MIG": ("MIG ↑", r"MIG$\uparrow$"),
            "SAP": ("SAP ↑", r"SAP$\uparrow$"), "Modularity": ("Mod ↑", r"Mod$\uparrow$"),
            "Explicitness": ("Expl ↑", r"Expl$\uparrow$"), "IRS": ("IRS ↑", r"IRS$\uparrow$")}


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
            data = read_json(file, max_bytes=MAX_METRICS_BYTES)
            table = data["table"]
            row = {"dataset": _name(data["dataset"]), "model": _name(data["model"]),
                   "seed": data.get("seed"), "path": str(file)}
            for column in _ALL_COLUMNS:
                value = table[column] if column in COLUMNS else table.get(column)
                if isinstance(value, bool) or not isinstance(value, (int, float, type(None))):
                    raise TypeError(f"{column} is {type(value).__name__}, not a number")
                row[column] = np.nan if value is None else float(value)
                if math.isinf(row[column]):
                    raise ValueError(f"{column} is {value}")
        except (KeyError, TypeError, ValueError, OverflowError, OSError) as exc:
            raise TableError(f"{file}: not a train-reference metrics.json "
                             f"({type(exc).__name__}: {display_text(exc, 200)})") from None
        rows.append(row)
    if not rows:
        raise TableError("no runs given")
    return pd.DataFrame(rows, columns=["dataset", "model", "seed", "path", *_ALL_COLUMNS])


def _name(value) -> str:
    if not isinstance(value, str):
        raise TypeError(f"a name is {type(value).__name__}, not a string")
    return value


def _model_rank(model: str) -> int:
    ranks = {info.name: rank for rank, info in enumerate(list_model_infos())
             if info.paper_position is not None}
    return ranks.get(model, len(ranks))


def _dataset_rank(dataset: str) -> int:
    positions = {info.name: info.paper_position for info in list_datasets()
                 if info.paper_position is not None}
    return positions.get(dataset, len(positions))


def _display_name(model: str) -> str:
    names = {info.name: info.display_name for info in list_model_infos()}
    return names.get(model, model)


def summarise(runs: pd.DataFrame) -> pd.DataFrame:
    """Mean and std over seeds per (dataset, model), in the paper's model order.

    Returns a frame with columns ``dataset, model, n`` and ``<col>_mean``, ``<col>_std``
    for each of :data:`COLUMNS` and of the :data:`SUITE_COLUMNS` that any run has (std NaN
    for a single run).
    """
    columns = _shown_columns(runs)
    grouped = runs.groupby(["dataset", "model"], sort=False)[columns]
    mean = grouped.mean().add_suffix("_mean")
    std = grouped.std(ddof=1).add_suffix("_std")
    count = grouped.size().rename("n")
    summary = pd.concat([count, mean, std], axis=1).reset_index()
    summary["_rank"] = summary["model"].map(_model_rank)
    summary["_dataset_rank"] = summary["dataset"].map(_dataset_rank)
    summary = summary.sort_values(["_dataset_rank", "dataset", "_rank", "model"], kind="stable")
    ordered = ["dataset", "model", "n"] + [f"{c}_{s}" for c in columns for s in ("mean", "std")]
    return summary[ordered].reset_index(drop=True)


def _shown_columns(runs: pd.DataFrame) -> list[str]:
    return list(COLUMNS) + [c for c in SUITE_COLUMNS if c in runs and runs[c].notna().any()]


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
        printable = summary.assign(dataset=summary["dataset"].map(display_text),
                                   model=summary["model"].map(display_text))
        return printable.to_csv(index=False, float_format="%.6g")
    if fmt not in ("markdown", "latex"):
        raise ValueError(f"fmt must be 'markdown', 'csv' or 'latex': got {fmt!r}")
    pm = " ± " if fmt == "markdown" else " $\\pm$ "
    escape = _markdown if fmt == "markdown" else _latex
    columns = [c for c in _ALL_COLUMNS if f"{c}_mean" in summary]
    header = ["model"] + [_HEADERS[c][0] for c in columns] + ["seeds"]
    blocks: list[tuple[str, list[list[str]]]] = []
    for dataset, group in summary.groupby("dataset", sort=False):
        body = []
        for _, row in group.iterrows():
            cells = [escape(_display_name(row["model"]))]
            cells += [_cell(row[f"{c}_mean"], row[f"{c}_std"], _DECIMALS.get(c, 2), pm)
                      for c in columns]
            cells.append(str(int(row["n"])))
            body.append(cells)
        blocks.append((escape(str(dataset)), body))
    if fmt == "markdown":
        lines = []
        for dataset, body in blocks:
            lines += [f"**{dataset}**", "", "| " + " | ".join(header) + " |",
                      "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|"]
            lines += ["| " + " | ".join(cells) + " |" for cells in body]
            lines.append("")
        return "\n".join(lines).rstrip() + "\n"
    latex_header = ["model"] + [_HEADERS[c][1] for c in columns] + ["seeds"]
    lines = [r"\begin{tabular}{l" + "c" * (len(latex_header) - 1) + "}", r"\toprule",
             " & ".join(latex_header) + r" \\"]
    for dataset, body in blocks:
        lines += [r"\midrule",
                  rf"\multicolumn{{{len(latex_header)}}}{{l}}{{\textit{{{dataset}}}}} \\"]
        lines += [" & ".join(cells) + r" \\" for cells in body]
    lines += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(lines) + "\n"


# Characters Markdown (CommonMark, with GitHub's tables) gives a meaning inside a table
# cell or a bold heading: emphasis, code, links, HTML and entities, cell borders.
_MARKDOWN_SPECIAL = re.compile(r"([\\`*_\[\]<>|~&])")
_LATEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#",
                  "_": r"\_", "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}",
                  "^": r"\textasciicircum{}"}


def _markdown(text: str) -> str:
    """``text`` as literal Markdown: printable, special characters backslash-escaped."""
    return _MARKDOWN_SPECIAL.sub(r"\\\1", display_text(text))


def _latex(text: str) -> str:
    """``text`` as literal LaTeX text: printable, special characters escaped."""
    return "".join(_LATEX_SPECIAL.get(c, c) for c in display_text(text))
