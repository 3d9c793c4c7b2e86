"""The results table of many runs in the layout of the paper's Table 1.

Columns: model, D, I, C (DCI disentanglement, informativeness = test accuracy,
completeness), InfoM, InfoE, InfoC and the reconstruction MSE x 1e4; rows grouped by
dataset (the paper's three first, then the others alphabetically), models in the paper's
order (both orders and the models' display names come from the model and dataset
registries). Each row is one configuration: runs of the same model, dataset and resolved
configuration (the run folder's ``config.json``) except the seed give ``mean +- std``
(sample standard deviation, ddof=1) or ``mean [low, high]`` (the 95% t-interval of the
mean over seeds, :func:`disentangle_eval._intervals.mean_interval`), and ``n`` counts
their distinct seeds.

Grouping
--------
The configuration compared is the run's :class:`~reference_models.training.run_folder.RunSpec`
(preset, ``dataset_seed``, every ``model_config`` and ``train_config`` field) and the
``world_size`` it trained with, except what does not change the result:

- the seed (``seed``, ``train_config.seed``): what the rows average over;
- ``data_dir``, ``environment`` (device, versions, threads) and ``command``: where the
  data lay and how the run was started;
- ``train_config.log_every`` and ``train_config.checkpoint_every``: logging and
  checkpoints draw no random numbers, and a resumed run continues exactly;
- ``batch_per_rank``: ``batch_size / world_size``, both of which are compared.

``world_size`` is compared: several processes draw other random streams and the Factor
models' discriminator permutes codes within each rank's share of the batch, a different
estimator than one permutation of the whole batch. Values are compared as their fields
declare them (``gamma`` 1 and 1.0 are one value); fields added to the configs since a run
was written take their defaults, as when the run is resumed.

Configurations that differ are separate rows labelled by what differs, in ``--set``
syntax (``FactorQVAE (gamma=1e-3)``): when their presets differ, the preset, then the
fields that differ between the configurations of the same preset. A run whose folder has
no readable ``config.json`` (a ``metrics.json`` copied on its own, a run from before
config.json existed) is grouped by dataset and model alone, in a row labelled
``no config.json``, and a :class:`TableWarning` says so. A seed that appears twice in a
row counts once: the run first in path order, and a :class:`TableWarning` names the runs.

Model names, dataset names and labels come from files and are shown as text: characters
that are not printable (terminal escape sequences, newlines) are written as Python
escapes (``\x1b``), and the characters Markdown or LaTeX would interpret are escaped for
them.

Examples
--------
>>> from reference_models.training.table import collect_metrics, summarise, format_table
>>> runs = collect_metrics(["runs/ae-toyshapes-1", "runs/ae-toyshapes-2"])  # doctest: +SKIP
>>> print(format_table(summarise(runs), "markdown", ci=True))  # doctest: +SKIP
"""
from __future__ import annotations

import json
import math
import os
import re
import typing
import warnings
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np
import pandas as pd

from disentangle_eval._intervals import mean_interval
from disentangle_eval._validation import display_text
from reference_models.data.registry import list_datasets
from reference_models.models.registry import list_model_infos
from reference_models.training.run_folder import (
    CONFIG, MAX_CONFIG_BYTES, MAX_METRICS_BYTES, RunSpec, one_line, read_json,
)

__all__ = ["COLUMNS", "SUITE_COLUMNS", "NO_CONFIG", "collect_metrics", "configurations",
           "summarise", "format_table", "TableError", "TableWarning"]

# The paper's Table 1 columns (every run has them), then the standard suite's headline
# values (runs evaluated before the suite existed lack them; shown when any run has them).
COLUMNS: tuple[str, ...] = ("D", "I", "C", "InfoM", "InfoE", "InfoC", "MSE")
SUITE_COLUMNS: tuple[str, ...] = ("MIG", "SAP", "Modularity", "Explicitness", "IRS")
_ALL_COLUMNS = COLUMNS + SUITE_COLUMNS
_DECIMALS = {"MSE": 1}
# Range each column's values can take: intervals over seeds are cut to it.
_BOUNDS = {"MSE": (0.0, float("inf"))}
_SCORE_BOUNDS = (0.0, 1.0)
_HEADERS = {"D": ("D ↑", r"$\mathsf{D}\uparrow$"), "I": ("I ↑", r"$\mathsf{I}\uparrow$"),
            "C": ("C ↑", r"$\mathsf{C}\uparrow$"), "InfoM": ("InfoM ↑", r"InfoM$\uparrow$"),
            "InfoE": ("InfoE ↑", r"InfoE$\uparrow$"), "InfoC": ("InfoC ↑", r"InfoC$\uparrow$"),
            "MSE": ("MSE ×1e4 ↓", r"MSE$\downarrow$"), "MIG": ("MIG ↑", r"MIG$\uparrow$"),
            "SAP": ("SAP ↑", r"SAP$\uparrow$"), "Modularity": ("Mod ↑", r"Mod$\uparrow$"),
            "Explicitness": ("Expl ↑", r"Expl$\uparrow$"), "IRS": ("IRS ↑", r"IRS$\uparrow$")}
# Fields of config.json that do not change a run's result (see the module docstring).
_NOT_COMPARED = frozenset({"model", "dataset", "seed", "data_dir", "train_config.seed",
                           "train_config.log_every", "train_config.checkpoint_every"})
NO_CONFIG = "no config.json"
"""Label of the row of runs without a readable ``config.json``."""


class TableError(ValueError):
    """A metrics.json that cannot be read into the table."""


class TableWarning(UserWarning):
    """Runs grouped by dataset and model alone, or a seed that appears twice in a row."""


def _metrics_path(path: str | os.PathLike) -> Path:
    path = Path(path)
    return path / "metrics.json" if path.is_dir() else path


def collect_metrics(paths: Iterable[str | os.PathLike]) -> pd.DataFrame:
    """One row per run: dataset, model, seed, path, configuration and the table's columns.

    Parameters
    ----------
    paths : iterable of path-like
        Run folders (holding ``metrics.json``) or ``metrics.json`` files; the
        ``config.json`` beside each ``metrics.json`` gives the run's configuration.

    Returns
    -------
    pandas.DataFrame
        Columns ``dataset, model, seed`` (nullable int: None where metrics.json has none
        and no config.json gives it), ``path`` (of the metrics.json), ``config`` (the
        compared configuration as canonical JSON, see the module docstring; None without
        a readable config.json) and :data:`COLUMNS` and :data:`SUITE_COLUMNS` (NaN where
        a run lacks a value).

    Raises
    ------
    FileNotFoundError
        A path holds no metrics.json.
    TableError
        A metrics.json lacks the fields the table needs, or disagrees with its
        config.json on the model, dataset or seed.

    Warns
    -----
    TableWarning
        Once, naming the runs without a readable config.json.
    """
    rows, unconfigured = [], []
    for path in paths:
        file = _metrics_path(path)
        if not file.is_file():
            raise FileNotFoundError(f"{path}: no metrics.json (is the run finished?)")
        try:
            data = read_json(file, max_bytes=MAX_METRICS_BYTES)
            table = data["table"]
            row = {"dataset": _name(data["dataset"]), "model": _name(data["model"]),
                   "seed": _seed(data.get("seed")), "path": str(file)}
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
        spec, settings = _read_config(file.parent)
        if spec is None:
            unconfigured.append(f"{file} ({settings})")
            row["config"] = None
        else:
            row["seed"] = _check_agrees(file, row, spec)
            row["config"] = settings
        rows.append(row)
    if not rows:
        raise TableError("no runs given")
    if unconfigured:
        warnings.warn(f"{len(unconfigured)} run(s) without a readable {CONFIG}, grouped by "
                      f"dataset and model alone: {'; '.join(unconfigured)}", TableWarning,
                      stacklevel=2)
    frame = pd.DataFrame(rows, columns=["dataset", "model", "seed", "path", "config",
                                        *_ALL_COLUMNS])
    frame["seed"] = pd.array([row["seed"] for row in rows], dtype="Int64")
    return frame


def _name(value) -> str:
    if not isinstance(value, str):
        raise TypeError(f"a name is {type(value).__name__}, not a string")
    return value


def _seed(value) -> int | None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
        raise TypeError(f"seed is {type(value).__name__}, not an int")
    return value


def _read_config(folder: Path) -> tuple[RunSpec | None, str]:
    """The run's spec and its compared configuration as canonical JSON; or None and why
    there is none."""
    path = folder / CONFIG
    if not path.is_file():
        return None, f"no {CONFIG}"
    try:
        data = read_json(path, max_bytes=MAX_CONFIG_BYTES)
        spec = RunSpec.from_dict(data)
        world_size = data.get("world_size", 1)
        if isinstance(world_size, bool) or not isinstance(world_size, int) or world_size < 1:
            raise ValueError(f"world_size {one_line(repr(world_size), 40)} is not a positive int")
        settings: dict[str, Any] = {"world_size": world_size}
        for key, value in spec.to_dict().items():
            if isinstance(value, dict):
                config = getattr(spec, key)
                settings.update((f"{key}.{name}", _declared(config, name, field_value))
                                for name, field_value in value.items())
            else:
                settings[key] = value
    except (KeyError, TypeError, ValueError, OverflowError, OSError) as exc:
        detail = f"missing field {exc}" if isinstance(exc, KeyError) else str(exc)
        return None, f"{CONFIG}: {one_line(detail, 120)}"
    compared = {k: v for k, v in settings.items() if k not in _NOT_COMPARED}
    return spec, json.dumps(compared, sort_keys=True)


def _declared(config, name: str, value):
    """``value`` of field ``name`` as the field declares it: a float field's ``1`` is
    ``1.0``, so that both give the same configuration."""
    declared = typing.get_type_hints(type(config))[name]
    if declared is float:
        return float(value)
    if typing.get_origin(declared) is tuple:
        return [float(v) for v in value]
    return value


def _check_agrees(file: Path, row: dict[str, Any], spec: RunSpec) -> int:
    seed = spec.train_config.seed
    theirs = (spec.model, spec.dataset, seed)
    ours = (row["model"], row["dataset"], seed if row["seed"] is None else row["seed"])
    if theirs != ours:
        raise TableError(
            f"{file}: disagrees with its {CONFIG} on model, dataset or seed "
            f"({display_text(ours, 120)} against {display_text(theirs, 120)})")
    return seed


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
    """Mean, std and 95% t-interval over seeds per (dataset, model, configuration).

    Parameters
    ----------
    runs : pandas.DataFrame
        As :func:`collect_metrics` returns it.

    Returns
    -------
    pandas.DataFrame
        One row per configuration, datasets and models in the paper's order and the
        configurations of a model by their differing values: columns ``dataset, model,
        config`` (the label of what differs from the model's other rows on that dataset,
        ``""`` when nothing does, :data:`NO_CONFIG` for runs without a configuration),
        ``n`` (distinct seeds; a run whose seed is unknown counts as one) and ``<col>_mean``, ``<col>_std``, ``<col>_low``,
        ``<col>_high`` for each of :data:`COLUMNS` and of the :data:`SUITE_COLUMNS` that
        any run has. The interval is :func:`~disentangle_eval._intervals.mean_interval`
        of the values; std and the interval are NaN for a single seed.

    Warns
    -----
    TableWarning
        For each seed that appears more than once in a row; the run first in path
        order counts, the others are left out.
    """
    columns = _shown_columns(runs)
    rows = []
    for dataset, model, label, group in configurations(runs):
        row = {"dataset": dataset, "model": model, "config": label, "n": len(group)}
        for column in columns:
            values = group[column].to_numpy(dtype=np.float64)
            interval = mean_interval(values, bounds=_BOUNDS.get(column, _SCORE_BOUNDS))
            row[f"{column}_mean"] = interval.estimate
            row[f"{column}_std"] = group[column].std(ddof=1)
            row[f"{column}_low"], row[f"{column}_high"] = interval.low, interval.high
        rows.append(row)
    summary = pd.DataFrame(rows)
    summary["_rank"] = summary["model"].map(_model_rank)
    summary["_dataset_rank"] = summary["dataset"].map(_dataset_rank)
    summary = summary.sort_values(["_dataset_rank", "dataset", "_rank", "model"], kind="stable")
    ordered = ["dataset", "model", "config", "n"] + [
        f"{c}_{s}" for c in columns for s in ("mean", "std", "low", "high")]
    return summary[ordered].reset_index(drop=True)


def configurations(runs: pd.DataFrame) -> Iterator[tuple[str, str, str, pd.DataFrame]]:
    """The rows of the table before they are summarised.

    Parameters
    ----------
    runs : pandas.DataFrame
        As :func:`collect_metrics` returns it (without a ``config`` column every run
        counts as unconfigured).

    Yields
    ------
    dataset, model, label : str
        ``label`` says what tells the configuration apart from the model's other
        configurations on that dataset (``""`` when it has only one; see the module
        docstring).
    group : pandas.DataFrame
        The configuration's runs, one per seed.

    Warns
    -----
    TableWarning
        For each seed that appears more than once in a configuration.
    """
    config = runs["config"] if "config" in runs else pd.Series(None, index=runs.index,
                                                                   dtype=object)
    runs = runs.assign(config=config.astype(object).fillna(""))
    for (dataset, model), block in runs.groupby(["dataset", "model"], sort=False):
        labels = _labels(pd.unique(block["config"]))
        for config in sorted(labels, key=labels.get):
            label = labels[config][-1]
            yield dataset, model, label, _one_run_per_seed(
                block[block["config"] == config], dataset, model, label)


def _shown_columns(runs: pd.DataFrame) -> list[str]:
    return list(COLUMNS) + [c for c in SUITE_COLUMNS if c in runs and runs[c].notna().any()]


def _labels(configs) -> dict[str, tuple]:
    """For each configuration of one model on one dataset (canonical JSON, ``""`` for
    none): a sort key whose last item is its label."""
    parsed = {config: json.loads(config) for config in configs if config}
    if len(parsed) + ("" in configs) == 1:  # one row: nothing to tell apart
        return {config: (0, "") for config in configs}
    labels: dict[str, tuple] = {"": (1, NO_CONFIG)} if "" in configs else {}
    several_presets = len({settings.get("preset") for settings in parsed.values()}) > 1
    for config, settings in parsed.items():
        same_preset = [other for other in parsed.values()
                       if other.get("preset") == settings.get("preset")]
        differ = [key for key in settings if key != "preset" and any(
            other.get(key) != settings[key] for other in same_preset)]
        keys = (["preset"] if several_presets else []) + differ
        short = _short_keys(settings)
        label = ", ".join(f"{short[key]}={_setting_text(settings[key])}" for key in keys)
        labels[config] = (0, *(_sortable(settings[key]) for key in keys), label)
    return labels


def _short_keys(settings: dict[str, Any]) -> dict[str, str]:
    """Field names without their section (``gamma`` for ``model_config.gamma``), unless
    two sections share the name."""
    leaves = [key.rsplit(".", 1)[-1] for key in settings]
    return {key: leaf if leaves.count(leaf) == 1 else key
            for key, leaf in zip(settings, leaves)}


def _setting_text(value) -> str:
    """A setting as ``--set`` takes it; floats exact, below 0.1 or from 1e4 on in
    scientific notation (``1e-4``, ``1e-3``, ``1e-2``, ``0.5``)."""
    if isinstance(value, list):
        return ",".join(_setting_text(v) for v in value)
    if isinstance(value, float):
        if 0 < abs(value) < 0.1 or abs(value) >= 1e4:
            text = np.format_float_scientific(value, trim="-", unique=True, exp_digits=1)
            return text.replace("e+", "e")
        return np.format_float_positional(value, trim="-", unique=True)
    return str(value)


def _sortable(value) -> tuple:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return (0, value, "")
    return (1, 0, json.dumps(value))


def _one_run_per_seed(group: pd.DataFrame, dataset: str, model: str,
                      label: str) -> pd.DataFrame:
    group = group.sort_values("path", kind="stable")
    seeds = group["seed"]
    repeated = seeds.notna() & seeds.duplicated(keep="first")
    for seed in pd.unique(seeds[repeated]):
        paths = list(group.loc[seeds == seed, "path"])
        name = _display_name(model)
        row = f"{name} ({label})" if label else name
        warnings.warn(f"seed {seed} appears {len(paths)} times in {row} on {dataset}: "
                      f"{', '.join(paths)}; counting {paths[0]} only (first in path order)",
                      TableWarning, stacklevel=4)
    return group[~repeated]


def _cell(mean: float, spread: float, decimals: int, pm: str) -> str:
    """``mean`` and its std (``0.70 ± 0.14``); the mean alone where the std is NaN."""
    if np.isnan(mean):
        return "-"
    text = _number(mean, decimals)
    if not np.isnan(spread):
        text += f"{pm}{_number(spread, decimals)}"
    return text


def _interval_cell(mean: float, low: float, high: float, decimals: int) -> str:
    """``0.71 [0.69, 0.73]``; the mean alone where the interval is undefined (one seed)."""
    if np.isnan(mean):
        return "-"
    if np.isnan(low) or np.isnan(high):
        return _number(mean, decimals)
    return (f"{_number(mean, decimals)} [{_number(low, decimals)}, "
            f"{_number(high, decimals)}]")


def _number(value: float, decimals: int) -> str:
    return f"{round(float(value), decimals) + 0.0:.{decimals}f}"  # + 0.0: no "-0.00"


def format_table(summary: pd.DataFrame, fmt: str = "markdown", *, ci: bool = False) -> str:
    """The summary as text.

    Parameters
    ----------
    summary : pandas.DataFrame
        As :func:`summarise` returns it.
    fmt : {"markdown", "csv", "latex"}, default "markdown"
        Markdown (a table per dataset), csv (numbers: ``n`` and each column's mean and
        std, and with ``ci`` its interval bounds ``<col>_low``, ``<col>_high``) or a
        LaTeX tabular with one block per dataset.
    ci : bool, default False
        Cells as the mean and its 95% t-interval over seeds (``0.71 [0.69, 0.73]``)
        instead of ``mean ± std``; the mean alone for one seed.
    """
    if fmt == "csv":
        columns = [c for c in summary.columns if not ci and c.endswith(("_low", "_high"))]
        printable = summary.drop(columns=columns).assign(
            dataset=summary["dataset"].map(display_text),
            model=summary["model"].map(display_text),
            config=summary["config"].map(display_text))
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
            name = _display_name(row["model"])
            cells = [escape(f"{name} ({row['config']})" if row["config"] else name)]
            for c in columns:
                decimals = _DECIMALS.get(c, 2)
                cells.append(
                    _interval_cell(row[f"{c}_mean"], row[f"{c}_low"], row[f"{c}_high"],
                                   decimals) if ci else
                    _cell(row[f"{c}_mean"], row[f"{c}_std"], decimals, pm))
            cells.append(str(int(row["n"])))
            body.append(cells)
        blocks.append((escape(str(dataset)), body))
    if fmt == "markdown":
        legend = " (mean [95% t-interval over seeds])" if ci else ""
        lines = []
        for dataset, body in blocks:
            lines += [f"**{dataset}**{legend}", "", "| " + " | ".join(header) + " |",
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
