"""benchmarks/reproduce_table.py: intervals over seeds and the paired claims section."""
import importlib.util
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

_PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "reproduce_table.py"
_SPEC = importlib.util.spec_from_file_location("reproduce_table", _PATH)
reproduce_table = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(reproduce_table)


def _runs(values: dict[str, list[float]], metric="D") -> pd.DataFrame:
    rows = []
    for model, per_seed in values.items():
        for seed, value in enumerate(per_seed, start=1):
            row = {"dataset": "toyshapes", "model": model, "seed": seed, "path": "-",
                   "disc_acc": math.nan, "perplexity": math.nan}
            row.update({column: 0.5 for column in reproduce_table.METRICS})
            row[metric] = value
            rows.append(row)
    return pd.DataFrame(rows)


def test_interval_is_the_student_t_half_width():
    mean, half, n = reproduce_table.interval([0.30, 0.34, 0.41])
    sd = np.std([0.30, 0.34, 0.41], ddof=1)
    assert (mean, n) == (pytest.approx(0.35), 3)
    assert half == pytest.approx(stats.t.ppf(0.975, 2) * sd / math.sqrt(3))
    assert half == pytest.approx(4.302653 * sd / math.sqrt(3), rel=1e-6)
    assert math.isnan(reproduce_table.interval([0.3])[1])
    assert reproduce_table.interval([0.3, float("nan"), 0.5])[2] == 2


def test_claims_are_paired_by_seed():
    # FactorQVAE beats QVAE by 0.10 on every seed although both vary a lot across seeds:
    # paired, the interval is tight and excludes 0.
    runs = _runs({"qvae": [0.2, 0.5, 0.3], "factorqvae": [0.3, 0.6, 0.4]})
    table = reproduce_table.paired_differences(runs)
    d = table[(table["metric"] == "D") & (table["second"] == "qvae")].iloc[0]
    assert d["difference"] == pytest.approx(0.1) and d["ci95"] == pytest.approx(0.0, abs=1e-12)
    assert d["seeds"] == [1, 2, 3] and d["paper"] == pytest.approx(0.13)
    text = reproduce_table.format_claims(runs, "cpu")
    assert "### What the CPU runs support" in text
    assert "| toyshapes | FactorQVAE > QVAE | D | +0.10 ± 0.00 | 1,2,3 | +0.13 | supported" in text


@pytest.mark.parametrize("differences, expected", [
    ([0.1, 0.12, 0.08], "supported"), ([-0.1, -0.12, -0.08], "reversed"),
    ([0.1, -0.1, 0.05], "not resolved"), ([0.1], "one seed")])
def test_verdict(differences, expected):
    mean, half, n = reproduce_table.interval(differences)
    assert reproduce_table.verdict(mean, half, n).startswith(expected)


def test_only_shared_seeds_are_paired():
    runs = _runs({"qvae": [0.2, 0.5], "factorqvae": [0.3, 0.6, 0.4]})
    row = reproduce_table.paired_differences(runs).iloc[0]
    assert row["seeds"] == [1, 2] and row["n"] == 2


def test_results_table_cells_are_mean_and_half_width():
    runs = _runs({"qvae": [0.30, 0.34, 0.41]})
    text = reproduce_table.format_results(runs, "markdown")
    half = stats.t.ppf(0.975, 2) * np.std([0.30, 0.34, 0.41], ddof=1) / math.sqrt(3)
    assert f"| QVAE | 0.35 ± {half:.2f} | 0.50 ± 0.00 |" in text
    summary = reproduce_table.summarise_runs(runs)
    assert summary.loc[0, "D_ci95"] == pytest.approx(half)
    assert reproduce_table.format_results(runs, "csv").startswith("dataset,model,config,n,D_mean,D_ci95")


def test_end_of_training_reads_the_last_log_row(tmp_path):
    (tmp_path / "log.csv").write_text(
        "step,loss,perplexity,disc_accuracy\n50,1,20.0,0.9\n100,1,30.0,0.6\n")
    assert reproduce_table.end_of_training(tmp_path) == {"disc_acc": 0.6, "perplexity": 30.0}
    (tmp_path / "log.csv").write_text("step,loss\n50,1\n")
    assert all(math.isnan(v) for v in reproduce_table.end_of_training(tmp_path).values())


def test_configurations_are_separate_rows_and_claims():
    # Two FactorQVAE gammas on the same seeds: two labelled rows, each paired with QVAE on
    # its own (averaging them would mix two settings into one cell).
    runs = _runs({"qvae": [0.2, 0.5, 0.3], "factorqvae": [0.3, 0.6, 0.4]})
    other = runs[runs["model"] == "factorqvae"].assign(D=[0.1, 0.3, 0.2])
    runs = pd.concat([runs, other], ignore_index=True)
    config = {gamma: json.dumps({"preset": "cpu", "model_config.gamma": gamma})
              for gamma in (1e-3, 1e-2)}
    runs["config"] = [json.dumps({"preset": "cpu", "model_config.gamma": 0.0})] * 3 + [
        config[1e-3]] * 3 + [config[1e-2]] * 3
    summary = reproduce_table.summarise_runs(runs)
    assert list(summary["config"]) == ["", "gamma=1e-3", "gamma=1e-2"]
    assert list(summary["n"]) == [3, 3, 3]
    assert summary.loc[1, "D_mean"] == pytest.approx(0.43333333)
    assert summary.loc[2, "D_mean"] == pytest.approx(0.2)
    text = reproduce_table.format_results(runs)
    assert "| FactorQVAE (gamma=1e-3) | 0.43" in text and "| FactorQVAE (gamma=1e-2) | 0.20" in text
    claims = reproduce_table.format_claims(runs, "cpu")
    assert "| toyshapes | FactorQVAE (gamma=1e-3) > QVAE | D | +0.10 ± 0.00 | 1,2,3 |" in claims
    assert "| toyshapes | FactorQVAE (gamma=1e-2) > QVAE | D | -0.13 ±" in claims
