"""The results table: collecting run folders, grouping by configuration, mean +- std and
t-intervals over seeds, formats."""
import io
import json
import os
import warnings

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from disentangle_eval._intervals import mean_interval
from disentangle_eval.cli.main import main
from disentangle_eval.io import write_json
from reference_models.training.run_folder import CONFIG, build_spec
from reference_models.training.table import (
    COLUMNS, NO_CONFIG, SUITE_COLUMNS, TableError, TableWarning, collect_metrics,
    format_table, summarise,
)


def _write_run(root, model, dataset, seed, values, suite=None, *, config=False, name=None,
               overrides=None, preset=None, data_dir=None, world_size=1):
    """A finished run folder: metrics.json, and with ``config`` the config.json that
    train-reference writes (spec, world size, environment, command)."""
    run = root / (name or f"{model}-{dataset}-{seed}")
    run.mkdir()
    table = {**dict(zip(COLUMNS, values)), **dict(zip(SUITE_COLUMNS, suite or ()))}
    (run / "metrics.json").write_text(json.dumps(
        {"model": model, "dataset": dataset, "seed": seed, "table": table}))
    if config:
        spec = build_spec(model, dataset, preset=preset, seed=seed, overrides=overrides,
                          data_dir=data_dir)
        write_json(run / CONFIG, {
            **spec.to_dict(), "world_size": world_size,
            "batch_per_rank": spec.train_config.batch_size // world_size,
            "environment": {"device": "cpu", "torch_threads": 2},
            "command": ["disentangle-eval", "train-reference", model, dataset, "--out", str(run)]})
    return run


@pytest.fixture
def runs(tmp_path):
    values = {("factorqvae", "toyshapes", 1): [0.8, 0.9, 0.6, 0.7, 0.9, 0.5, 2.0],
              ("factorqvae", "toyshapes", 2): [0.6, 0.9, 0.4, 0.5, 0.7, 0.3, 4.0],
              ("ae", "toyshapes", 1): [0.5, 0.8, 0.4, 0.5, 0.99, 0.4, 0.3],
              ("qvae", "shapes3d", 1): [0.73, 0.94, 0.54, 0.69, 0.93, 0.38, 0.8]}
    paths = [_write_run(tmp_path, *key, value, config=True) for key, value in values.items()]
    return paths


def test_summary_mean_std_and_order(runs):
    summary = summarise(collect_metrics(runs))
    # the paper's datasets first, then the others; models in the paper's order
    assert list(summary["dataset"]) == ["shapes3d", "toyshapes", "toyshapes"]
    assert list(summary["model"]) == ["qvae", "ae", "factorqvae"]
    assert list(summary["config"]) == ["", "", ""]  # one configuration per model
    row = summary[summary["model"] == "factorqvae"].iloc[0]
    assert row["n"] == 2
    assert row["D_mean"] == pytest.approx(0.7)
    assert row["D_std"] == pytest.approx(np.std([0.8, 0.6], ddof=1))
    assert row["MSE_mean"] == pytest.approx(3.0)
    assert np.isnan(summary[summary["model"] == "ae"].iloc[0]["D_std"])


def test_markdown(runs):
    text = format_table(summarise(collect_metrics(runs)), "markdown")
    assert "**toyshapes**" in text and "**shapes3d**" in text
    assert text.index("**shapes3d**") < text.index("**toyshapes**")
    line = next(l for l in text.splitlines() if l.startswith("| FactorQVAE"))
    cells = [c.strip() for c in line.strip("|").split("|")]
    assert cells[1] == "0.70 ± 0.14"   # D
    assert cells[7] == "3.0 ± 1.4"      # MSE x 1e4, one decimal
    assert cells[8] == "2"
    ae = next(l for l in text.splitlines() if l.startswith("| AE"))
    assert "±" not in ae  # a single seed: no std


def test_csv_and_latex(runs):
    summary = summarise(collect_metrics(runs))
    frame = pd.read_csv(io.StringIO(format_table(summary, "csv")))
    assert {"dataset", "model", "config", "n", "D_mean", "D_std", "MSE_mean"} <= set(
        frame.columns)
    assert not any(c.endswith(("_low", "_high")) for c in frame.columns)  # only with ci
    assert frame.loc[frame["model"] == "factorqvae", "InfoM_mean"].item() == pytest.approx(0.6)
    latex = format_table(summary, "latex")
    assert latex.startswith(r"\begin{tabular}") and latex.rstrip().endswith(r"\end{tabular}")
    assert r"0.70 $\pm$ 0.14" in latex
    assert r"\textit{toyshapes}" in latex


def test_bad_inputs(tmp_path, runs):
    with pytest.raises(FileNotFoundError, match="no metrics.json"):
        collect_metrics([tmp_path])
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "metrics.json").write_text('{"model": "ae"}')
    with pytest.raises(TableError, match="not a train-reference metrics.json"):
        collect_metrics([bad])
    with pytest.raises(ValueError, match="fmt must be"):
        format_table(summarise(collect_metrics(runs)), "html")


def test_table_command(tmp_path, runs):
    runner = CliRunner()
    result = runner.invoke(main, ["table", *map(str, runs)])
    assert result.exit_code == 0, result.output
    assert "| FactorQVAE | 0.70 ± 0.14" in result.output
    result = runner.invoke(main, ["table", str(runs[0] / "metrics.json"), "--format", "csv"])
    assert result.exit_code == 0 and result.output.startswith("dataset,model,config,n,")
    result = runner.invoke(main, ["table", str(runs[0]), "--format", "latex"])
    assert result.exit_code == 0 and r"\begin{tabular}" in result.output
    # a folder without metrics.json: usage (2); an unreadable one: bad data (1), one line
    result = runner.invoke(main, ["table", str(tmp_path)])
    assert result.exit_code == 2
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "metrics.json").write_text("not json")
    result = runner.invoke(main, ["table", str(bad)])
    assert result.exit_code == 1
    assert "Traceback" not in result.output


@pytest.mark.slow
def test_reproduce_table_script_runs_two_trainings_at_once(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "reproduce_table.py"
    out = tmp_path / "runs"
    result = subprocess.run(
        [sys.executable, str(script), "--preset", "smoke", "--models", "ae,qlae", "--jobs", "2",
         "--out", str(out), "--set", "steps=2", "--set", "cosine_steps=1"],
        capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "| AE |" in result.stdout and "| QLAE |" in result.stdout
    assert (out / "table.md").read_text() == result.stdout
    # each training ran as a submitit job, with its log in OUT/submitit/
    jobs = json.loads((out / "sweep.json").read_text())
    assert sorted(jobs) == ["ae-toyshapes-1", "qlae-toyshapes-1"]
    for entry in jobs.values():
        assert (out / "submitit" / f"{entry['job_id']}_0_log.err").is_file()
    timings = pd.read_csv(out / "timings.csv")
    assert list(timings["status"]) == ["ok", "ok"]
    # Default threads per training: the machine's cores shared by the two jobs.
    cores_per_job = max(1, (os.cpu_count() or 1) // 2)
    assert set(timings["threads"]) == {cores_per_job} and set(timings["jobs"]) == {2}
    # A second call resumes the finished runs instead of training them again.
    again = subprocess.run([sys.executable, str(script), "--preset", "smoke", "--models", "ae",
                            "--out", str(out), "--set", "steps=2", "--set", "cosine_steps=1"],
                           capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-2000:]


def test_model_and_dataset_order_and_names_come_from_the_registries(tmp_path):
    from reference_models.data.registry import list_datasets
    from reference_models.models.registry import list_model_infos

    paper_models = [info for info in list_model_infos() if info.paper_position is not None]
    for seed, info in enumerate(reversed(paper_models)):
        _write_run(tmp_path, info.name, "toyshapes", seed, [0.5] * 7)
    _write_run(tmp_path, "mymodel", "toyshapes", 1, [0.5] * 7)
    for info in list_datasets():
        _write_run(tmp_path, "ae", info.name, 1, [0.5] * 7)
    with pytest.warns(TableWarning, match="without a readable config.json"):
        summary = summarise(collect_metrics(sorted(tmp_path.iterdir())))
    toyshapes = summary[summary["dataset"] == "toyshapes"]
    assert list(toyshapes["model"]) == [info.name for info in paper_models] + ["mymodel"]
    assert list(summary["dataset"].drop_duplicates())[:4] == [
        "shapes3d", "isaac3d", "mpi3d", "mpi3d_real"]
    text = format_table(summary, "markdown")
    assert "| beta\\-VAE |" not in text and "| beta-VAE |" in text and "| dVAE |" in text
    assert "| mymodel |" in text


HOSTILE = "\x1b[2J\x1b[31mevil\nmodel|x*_<b>&\x07"


def test_names_from_files_are_escaped_in_every_format(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.json").write_text(json.dumps(
        {"model": HOSTILE, "dataset": "toy\rshapes\\_{x}^~%$#&", "seed": 1,
         "table": dict(zip(COLUMNS, [0.5] * 7))}))
    with pytest.warns(TableWarning, match="1 run"):
        summary = summarise(collect_metrics([run]))
    for fmt in ("markdown", "latex", "csv"):
        text = format_table(summary, fmt)
        assert not any(not c.isprintable() and c != "\n" for c in text), (fmt, text)
        assert len(text.splitlines()) == {"markdown": 5, "latex": 8, "csv": 2}[fmt], text
    markdown = format_table(summary, "markdown")
    row = next(line for line in markdown.splitlines() if "evil" in line)
    assert row.startswith(r"| \\x1b\[2J\\x1b\[31mevil\\nmodel\|x\*\_\<b\>\&\\x07 | 0.50 |")
    assert row.count(" | ") == 8  # the escaped "|" opens no extra cell
    assert r"**toy\\rshapes\\\_{x}^\~%$#\&**" in markdown
    latex = format_table(summary, "latex")
    assert r"\textit{toy\textbackslash{}rshapes\textbackslash{}\_\{x\}\textasciicircum{}" \
           r"\textasciitilde{}\%\$\#\&}" in latex
    assert r"\textbackslash{}x1b[2J" in latex
    csv_text = format_table(summary, "csv")
    assert r"\x1b[2J\x1b[31mevil\nmodel|x*_<b>&\x07" in csv_text


def test_table_command_prints_no_escape_sequences(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.json").write_text(json.dumps(
        {"model": HOSTILE, "dataset": "toyshapes", "table": dict(zip(COLUMNS, [0.5] * 7))}))
    for fmt in ("markdown", "latex", "csv"):
        result = CliRunner().invoke(main, ["table", str(run), "--format", fmt])
        assert result.exit_code == 0, result.output
        assert "\x1b" not in result.output and "\x07" not in result.output


@pytest.mark.parametrize("content, message", [
    ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
    (json.dumps({"model": ["ae"], "dataset": "toyshapes", "table": {}}), "not a string"),
    (json.dumps({"model": "ae", "dataset": "toyshapes",
                 "table": dict(zip(COLUMNS, ["0.5"] * 7))}), "D is str, not a number"),
    (json.dumps({"model": "ae", "dataset": "toyshapes",
                 "table": dict(zip(COLUMNS, [10**400] * 7))}), "OverflowError"),
    ('{"model": "ae", "dataset": "toyshapes", "table": {"D": Infinity}}', "D is inf"),
])
def test_malformed_metrics_json_is_one_error(tmp_path, content, message):
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.json").write_text(content)
    with pytest.raises(TableError, match=message):
        collect_metrics([run])
    result = CliRunner().invoke(main, ["table", str(run)])
    assert result.exit_code == 1 and "Traceback" not in result.output


def test_suite_columns_shown_when_runs_have_them(tmp_path):
    old = _write_run(tmp_path, "qvae", "toyshapes", 1, [0.5] * 7, config=True)
    new = _write_run(tmp_path, "qvae", "toyshapes", 2, [0.7] * 7, suite=[0.1, 0.2, 0.3, 0.4, 0.5],
                     config=True)
    text = format_table(summarise(collect_metrics([old])), "markdown")
    assert "MIG" not in text and "IRS" not in text      # runs from before the suite
    text = format_table(summarise(collect_metrics([old, new])), "markdown")
    header = next(l for l in text.splitlines() if l.startswith("| model"))
    assert [c.strip() for c in header.strip("|").split("|")][8:] == [
        "MIG ↑", "SAP ↑", "Mod ↑", "Expl ↑", "IRS ↑", "seeds"]
    row = next(l for l in text.splitlines() if l.startswith("| QVAE"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[8] == "0.10" and cells[12] == "0.50"   # the one run that has them
    latex = format_table(summarise(collect_metrics([old, new])), "latex")
    assert r"MIG$\uparrow$" in latex
    rows = [l for l in latex.splitlines() if l.startswith(("model", "QVAE"))]
    assert [r.count("&") for r in rows] == [13, 13]   # 12 value columns + seeds


def _rows(text, prefix):
    return [[c.strip() for c in line.strip("|").split("|")] for line in text.splitlines()
            if line.startswith(prefix)]


def test_configurations_that_differ_are_separate_rows_labelled_by_what_differs(tmp_path):
    # The case: three FactorQVAE runs, all seed 1, with gamma 1e-4, 1e-3, 1e-2.
    for d, gamma in zip([0.30, 0.10, 0.45], ["1e-2", "1e-4", "1e-3"]):
        _write_run(tmp_path, "factorqvae", "toyshapes", 1, [d] * 7, config=True,
                   name=f"gamma{gamma}", overrides={"gamma": gamma})
    summary = summarise(collect_metrics(sorted(tmp_path.iterdir())))
    assert list(summary["config"]) == ["gamma=1e-4", "gamma=1e-3", "gamma=1e-2"]
    assert list(summary["n"]) == [1, 1, 1]
    assert list(summary["D_mean"]) == pytest.approx([0.10, 0.45, 0.30])
    assert summary["D_std"].isna().all()
    rows = _rows(format_table(summary, "markdown"), "| FactorQVAE")
    assert [(r[0], r[1], r[-1]) for r in rows] == [
        ("FactorQVAE (gamma=1e-4)", "0.10", "1"), ("FactorQVAE (gamma=1e-3)", "0.45", "1"),
        ("FactorQVAE (gamma=1e-2)", "0.30", "1")]
    latex = format_table(summary, "latex")
    assert r"FactorQVAE (gamma=1e-3) & 0.45 &" in latex
    frame = pd.read_csv(io.StringIO(format_table(summary, "csv")))
    assert list(frame["config"]) == ["gamma=1e-4", "gamma=1e-3", "gamma=1e-2"]


def test_seeds_of_one_configuration_are_one_row(tmp_path):
    # What does not change the result is not compared: data_dir, environment, command,
    # log_every, checkpoint_every.
    _write_run(tmp_path, "factorqvae", "toyshapes", 1, [0.8] * 7, config=True,
               data_dir="/data/a", overrides={"log_every": "10"})
    _write_run(tmp_path, "factorqvae", "toyshapes", 2, [0.6] * 7, config=True,
               data_dir="/data/b", overrides={"checkpoint_every": "7"})
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning either
        summary = summarise(collect_metrics(sorted(tmp_path.iterdir())))
    assert len(summary) == 1 and summary.loc[0, "config"] == "" and summary.loc[0, "n"] == 2
    assert summary.loc[0, "D_mean"] == pytest.approx(0.7)
    [row] = _rows(format_table(summary, "markdown"), "| FactorQVAE")
    assert row[0] == "FactorQVAE" and row[1] == "0.70 ± 0.14" and row[-1] == "2"


def test_a_float_field_written_as_an_int_is_the_same_configuration(tmp_path):
    a = _write_run(tmp_path, "factorqvae", "toyshapes", 1, [0.8] * 7, config=True,
                   overrides={"gamma": "1"})
    b = _write_run(tmp_path, "factorqvae", "toyshapes", 2, [0.6] * 7, config=True,
                   overrides={"gamma": "1"})
    config = json.loads((b / CONFIG).read_text())
    config["model_config"]["gamma"] = 1  # as a preset written `gamma=1` would store it
    (b / CONFIG).write_text(json.dumps(config))
    summary = summarise(collect_metrics([a, b]))
    assert list(summary["n"]) == [2]


def test_presets_and_world_sizes_that_differ_label_their_rows(tmp_path):
    _write_run(tmp_path, "factorqvae", "toyshapes", 1, [0.1] * 7, config=True, name="cpu")
    _write_run(tmp_path, "factorqvae", "toyshapes", 1, [0.2] * 7, config=True, name="smoke",
               preset="smoke", overrides={"gamma": "0.00125"})
    _write_run(tmp_path, "factorqvae", "toyshapes", 1, [0.3] * 7, config=True, name="smoke2",
               preset="smoke", overrides={"gamma": "0.5"})
    _write_run(tmp_path, "factorqvae", "toyshapes", 1, [0.4] * 7, config=True, name="ws2",
               world_size=2)
    summary = summarise(collect_metrics(sorted(tmp_path.iterdir())))
    # the preset where presets differ, then what differs within a preset (the presets'
    # other differences, steps, widths, ..., are told by the preset)
    assert list(summary["config"]) == [
        "preset=cpu, world_size=1", "preset=cpu, world_size=2",
        "preset=smoke, gamma=1.25e-3", "preset=smoke, gamma=0.5"]
    assert list(summary["D_mean"]) == pytest.approx([0.1, 0.4, 0.2, 0.3])


def test_a_repeated_seed_warns_and_counts_once(tmp_path):
    first = _write_run(tmp_path, "factorqvae", "toyshapes", 1, [0.8] * 7, config=True, name="a")
    again = _write_run(tmp_path, "factorqvae", "toyshapes", 1, [0.2] * 7, config=True, name="b")
    other = _write_run(tmp_path, "factorqvae", "toyshapes", 2, [0.6] * 7, config=True, name="c")
    runs = collect_metrics([other, again, first])
    message = (rf"seed 1 appears 2 times in FactorQVAE on toyshapes: {first}/metrics.json, "
               rf"{again}/metrics.json; counting {first}/metrics.json only \(first in path")
    with pytest.warns(TableWarning, match=message):
        summary = summarise(runs)
    assert summary.loc[0, "n"] == 2
    assert summary.loc[0, "D_mean"] == pytest.approx(0.7)   # seeds 1 (run a) and 2
    result = CliRunner().invoke(main, ["table", str(other), str(again), str(first)])
    assert result.exit_code == 0
    assert "| FactorQVAE | 0.70 ± 0.14 |" in result.stdout
    warning_lines = [l for l in result.stderr.splitlines() if l.startswith("warning:")]
    assert len(warning_lines) == 1 and "seed 1 appears 2 times" in warning_lines[0]


@pytest.mark.parametrize("fmt", ["markdown", "csv", "latex"])
def test_ci_cells_are_the_t_interval_of_the_seeds(tmp_path, fmt):
    d_values = [0.61, 0.70, 0.74]
    paths = [_write_run(tmp_path, "factorqvae", "toyshapes", seed, [d, 0.9, 0.5, 0.6, 0.8,
                                                                   0.4, 2.0 + seed], config=True)
             for seed, d in enumerate(d_values, start=1)]
    paths.append(_write_run(tmp_path, "ae", "toyshapes", 1, [0.5] * 7, config=True))
    summary = summarise(collect_metrics(paths))
    d = mean_interval(d_values)
    mse = mean_interval([3.0, 4.0, 5.0])
    row = summary[summary["model"] == "factorqvae"].iloc[0]
    assert (row["D_mean"], row["D_low"], row["D_high"]) == (d.estimate, d.low, d.high)
    assert row["D_low"] < row["D_mean"] < row["D_high"]
    one = summary[summary["model"] == "ae"].iloc[0]
    assert np.isnan(one["D_low"]) and np.isnan(one["D_high"])
    result = CliRunner().invoke(main, ["table", *map(str, paths), "--ci", "--format", fmt])
    assert result.exit_code == 0, result.output
    text = result.stdout
    if fmt == "csv":
        frame = pd.read_csv(io.StringIO(text))
        fq = frame[frame["model"] == "factorqvae"].iloc[0]
        assert fq["n"] == 3
        assert (fq["D_low"], fq["D_high"]) == (pytest.approx(d.low, rel=1e-5),
                                               pytest.approx(d.high, rel=1e-5))
        assert frame.loc[frame["model"] == "ae", "D_low"].isna().all()
        return
    cell = f"{d.estimate:.2f} [{d.low:.2f}, {d.high:.2f}]"
    mse_cell = f"{mse.estimate:.1f} [{mse.low:.1f}, {mse.high:.1f}]"
    if fmt == "markdown":
        [fq] = _rows(text, "| FactorQVAE")
        assert fq[1] == cell and fq[7] == mse_cell and fq[-1] == "3"
        [ae] = _rows(text, "| AE")
        assert ae[1] == "0.50" and ae[-1] == "1"   # one seed: the mean alone
        assert "**toyshapes** (mean [95% t-interval over seeds])" in text
    else:
        assert f"FactorQVAE & {cell} &" in text and f"& {mse_cell} & 3" in text
        assert "AE & 0.50 & 0.50" in text
    assert "±" not in text and "pm" not in text


def test_ci_is_cut_to_the_range_of_the_values(tmp_path):
    d_values = [0.05, 0.6, 0.98]   # a t-interval from 3 seeds reaches past 0 and 1
    paths = [_write_run(tmp_path, "qvae", "toyshapes", seed, [d, 0.9, 0.5, 0.6, 0.8, 0.4,
                                                             1.0 + 300 * (seed == 3)],
                        config=True)
             for seed, d in enumerate(d_values, start=1)]
    row = summarise(collect_metrics(paths)).iloc[0]
    plain = mean_interval(d_values)
    assert plain.low < 0 and plain.high > 1
    assert (row["D_low"], row["D_high"]) == (0.0, 1.0)
    assert row["MSE_low"] == 0.0 and row["MSE_high"] == mean_interval([1.0, 1.0, 301.0]).high


def test_runs_without_config_are_grouped_as_before_and_said_so(tmp_path):
    old = _write_run(tmp_path, "factorqvae", "toyshapes", 1, [0.8] * 7, name="old1")
    old2 = _write_run(tmp_path, "factorqvae", "toyshapes", 2, [0.6] * 7, name="old2")
    new = _write_run(tmp_path, "factorqvae", "toyshapes", 3, [0.4] * 7, config=True)
    broken = _write_run(tmp_path, "factorqvae", "toyshapes", 4, [0.2] * 7, name="broken")
    (broken / CONFIG).write_text("{not json")
    with pytest.warns(TableWarning) as recorded:
        runs = collect_metrics([old / "metrics.json", old2, new, broken])
    [message] = [str(w.message) for w in recorded]
    assert message.startswith("3 run(s) without a readable config.json, grouped by dataset "
                              f"and model alone: {old}/metrics.json (no config.json); ")
    assert f"{broken}/metrics.json (config.json: " in message
    summary = summarise(runs)
    assert list(summary["config"]) == ["", NO_CONFIG]
    assert list(summary["n"]) == [1, 3]
    assert summary.loc[1, "D_mean"] == pytest.approx(np.mean([0.8, 0.6, 0.2]))
    result = CliRunner().invoke(main, ["table", str(old), str(old2), str(new), str(broken)])
    assert result.exit_code == 0
    assert [r[0] for r in _rows(result.stdout, "| FactorQVAE")] == [
        "FactorQVAE", "FactorQVAE (no config.json)"]
    assert result.stderr.count("warning:") == 1 and "grouped by dataset and model alone" \
        in result.stderr


def test_metrics_that_disagree_with_their_config_are_bad_data(tmp_path):
    run = _write_run(tmp_path, "factorqvae", "toyshapes", 1, [0.8] * 7, config=True)
    config = json.loads((run / CONFIG).read_text())
    config["train_config"]["seed"] = 5
    (run / CONFIG).write_text(json.dumps(config))
    with pytest.raises(TableError, match="disagrees with its config.json"):
        collect_metrics([run])
    result = CliRunner().invoke(main, ["table", str(run)])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert result.stderr.startswith("error: ") and "disagrees" in result.stderr


def test_labels_from_files_are_escaped_in_every_format(tmp_path):
    for seed, preset in ((1, "cpu"), (2, HOSTILE)):
        run = _write_run(tmp_path, "factorqvae", "toyshapes", seed, [0.5] * 7, config=True)
        config = json.loads((run / CONFIG).read_text())
        config["preset"] = preset
        (run / CONFIG).write_text(json.dumps(config))
    summary = summarise(collect_metrics(sorted(tmp_path.iterdir())))
    assert HOSTILE in set(summary["config"].str.removeprefix("preset="))
    for fmt in ("markdown", "latex", "csv"):
        for ci in (False, True):
            text = format_table(summary, fmt, ci=ci)
            assert not any(not c.isprintable() and c != "\n" for c in text), (fmt, text)
            assert len(text.splitlines()) == {"markdown": 6, "latex": 9, "csv": 3}[fmt], text
    markdown = format_table(summary, "markdown")
    assert r"| FactorQVAE (preset=\\x1b\[2J\\x1b\[31mevil\\nmodel\|x\*\_\<b\>\&\\x07) |" \
        in markdown
    assert r"FactorQVAE (preset=\textbackslash{}x1b[2J" in format_table(summary, "latex")


@pytest.mark.parametrize("content", [
    "{not json",
    "[" * 100_000 + "]" * 100_000,
    json.dumps({"model": "factorqvae", "dataset": "toyshapes"}),
    "GAMMA_TOO_LARGE",
    "WORLD_SIZE_ZERO",
])
def test_an_unreadable_config_is_no_config(tmp_path, content):
    run = _write_run(tmp_path, "factorqvae", "toyshapes", 1, [0.8] * 7, config=True)
    config = json.loads((run / CONFIG).read_text())
    if content == "GAMMA_TOO_LARGE":
        config["model_config"]["gamma"] = 10**400
        content = json.dumps(config)
    elif content == "WORLD_SIZE_ZERO":
        content = json.dumps({**config, "world_size": 0})
    (run / CONFIG).write_text(content)
    with pytest.warns(TableWarning, match=r"1 run\(s\) without a readable config.json.*"
                                          r"\(config.json: "):
        runs = collect_metrics([run])
    assert runs["config"].isna().all()
    result = CliRunner().invoke(main, ["table", str(run)])
    assert result.exit_code == 0 and "| FactorQVAE | 0.80 |" in result.stdout
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.output
