"""One row per finished run: its loss weights, the Table 1 metrics and how training ended.

For a weight sweep (docs/presets.md):

    python benchmarks/sweep_table.py /work/runs/sweep/*/

Columns: model, seed, beta, gamma, D, C, I (test), InfoM, InfoE, InfoC, MSE x 1e4, the
discriminator's accuracy at the end of training (mean over the last logged iterations;
0.5 means joint and permuted codes are indistinguishable), the codebook perplexity at the
end of training (pooled over latents), and for the quantised models, from the dumped
evaluation codes: entries used per latent (mean) and the share of codes sitting on the
smallest or largest codebook value (an encoder that saturates the scalar codebook piles its
codes there).
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np

from reproduce_table import end_of_training


def code_usage(run_dir: Path) -> tuple[float, float]:
    """Mean entries used per latent and the share of codes on the extreme values."""
    with np.load(run_dir / "latents.npz", allow_pickle=False) as data:
        if not bool(data["discrete"]) or "codebook" not in data.files:
            return math.nan, math.nan
        codes, codebook = data["latents"], data["codebook"]
    used = np.mean([len(np.unique(codes[:, j])) for j in range(codes.shape[1])])
    if codebook.ndim == 2 and codebook.shape[1] == 1:  # one global scalar codebook (K, 1)
        values = codebook[:, 0]
        extremes = np.isin(codes, [int(values.argmin()), int(values.argmax())])
    else:  # per-latent values (d, K)
        lowest, highest = codebook.argmin(axis=1), codebook.argmax(axis=1)
        extremes = (codes == lowest) | (codes == highest)
    return float(used), float(extremes.mean())


def row(run_dir: Path) -> list[str]:
    metrics = json.loads((run_dir / "metrics.json").read_text())
    config = json.loads((run_dir / "config.json").read_text())["model_config"]
    table, end = metrics["table"], end_of_training(run_dir)
    used, extremes = code_usage(run_dir)

    def number(value, fmt):
        return "-" if value is None or (isinstance(value, float) and math.isnan(value)) \
            else format(value, fmt)

    return [run_dir.name, metrics["model"], str(metrics["seed"]),
            number(config["beta"], ".3g"), number(config["gamma"], ".3g"),
            *(number(table[c], ".2f") for c in ("D", "C", "I", "InfoM", "InfoE", "InfoC")),
            number(table["MSE"], ".1f"), number(end["disc_acc"], ".2f"),
            number(end["perplexity"], ".1f"), number(used, ".1f"), number(extremes, ".2f")]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path, help="finished run folders")
    args = parser.parse_args(argv)
    header = ["run", "model", "seed", "beta", "gamma", "D", "C", "I", "InfoM", "InfoE",
              "InfoC", "MSE ×1e4", "disc. acc.", "perplexity", "entries/latent",
              "extremes"]
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join(["---"] * 3 + ["---:"] * (len(header) - 3)) + "|")
    missing = []
    for run_dir in args.runs:
        if not (run_dir / "metrics.json").is_file():
            missing.append(str(run_dir))
            continue
        print("| " + " | ".join(row(run_dir)) + " |")
    if missing:
        print(f"not finished: {', '.join(missing)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
