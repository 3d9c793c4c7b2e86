"""The `paper` preset of FactorQVAE and QVAE on procedural data at 64x64, in a time budget.

One prepared check for a GPU machine: for each model, a short probe measures the iterations
per second, the model then trains for as many iterations as its share of ``--minutes``
allows, with the preset's schedules stretched to that length (cosine and temperature as
fractions of the run, as ``train-reference --steps`` does), and is evaluated (DCI, InfoMEC,
MSE on 10000 + 5000 factor draws). Prints one markdown row per model with the GPU's name,
iterations, iterations per second and the metrics, and writes ``OUT/results.json``:

    python benchmarks/gpu_paper_preset.py --minutes 6              # on a GPU: ~8 minutes in all
    python benchmarks/gpu_paper_preset.py --tiny --device cpu      # seconds: checks the script

The architecture, batch (256), learning rates and loss weights are the `paper` preset's for
Shapes3D (Table 3's weights); the data is ``toyshapes``, which has Shapes3D's six factors,
rendered at 64x64. ``--tiny`` swaps in the smoke preset's network and evaluation sizes.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import tempfile
import time
from pathlib import Path

MODELS = ("factorqvae", "qvae")
COLUMNS = ("D", "I", "C", "InfoM", "InfoE", "InfoC", "MSE")


def _spec(model: str, dataset: str, steps: int, *, tiny: bool, seed: int):
    from reference_models.presets import PAPER_WEIGHTS, get_preset
    from reference_models.training.loop import RunSpec

    model_config, train_config = get_preset(model, "shapes3d", "paper", steps=steps)
    if tiny:  # the smoke network with the paper's weights
        smoke_model, smoke_train = get_preset(model, "toyshapes", "smoke")
        model_config = dataclasses.replace(smoke_model, **PAPER_WEIGHTS[(model, "shapes3d")])
        train_config = dataclasses.replace(
            train_config, batch_size=smoke_train.batch_size,
            metric_train_samples=smoke_train.metric_train_samples,
            metric_test_samples=smoke_train.metric_test_samples)
    train_config = dataclasses.replace(train_config, seed=seed, log_every=min(50, steps),
                                       checkpoint_every=max(steps, 1))
    return RunSpec(model=model, dataset=dataset, model_config=model_config,
                   train_config=train_config, preset="paper")


def _last_log_row(run_dir: Path) -> dict[str, str]:
    import csv

    row: dict[str, str] = {}
    with open(run_dir / "log.csv", newline="") as handle:
        for row in csv.DictReader(handle):
            pass
    return row


def run_model(model: str, *, seconds: float, args) -> dict:
    """Probe, train for ``seconds`` of iterations, evaluate; the results as a dict."""
    from reference_models.training.loop import train

    with tempfile.TemporaryDirectory() as probe_dir:
        # The first run pays for rendering the dataset's templates and the device's
        # warm-up; the second, timed, only for building the model (so the rate is a little
        # low, never high: the run fits its budget).
        for name, steps in (("warm-up", 5), ("probe", args.probe_steps)):
            start = time.perf_counter()
            train(Path(probe_dir) / name, _spec(model, args.dataset, steps, tiny=args.tiny,
                                                seed=args.seed),
                  device=args.device, threads=None, progress=False, evaluate=False)
        probe_rate = args.probe_steps / (time.perf_counter() - start)
    steps = max(1, int(probe_rate * seconds))
    spec = _spec(model, args.dataset, steps, tiny=args.tiny, seed=args.seed)
    run_dir = Path(args.out) / f"{model}-{args.dataset}-{steps}"
    start = time.perf_counter()
    train(run_dir, spec, device=args.device, threads=None, progress=False, evaluate=False,
          force=True)
    train_seconds = time.perf_counter() - start
    start = time.perf_counter()
    metrics = train(run_dir, None, device=args.device, threads=None, progress=False,
                    resume=True, figures=False)
    last = _last_log_row(run_dir)
    return {"model": model, "steps": steps, "train_seconds": train_seconds,
            "steps_per_second": steps / train_seconds,
            "evaluate_seconds": time.perf_counter() - start,
            "table": metrics["table"],
            "disc_accuracy_end": float(last["disc_accuracy"]) if last.get("disc_accuracy")
            else None,
            "perplexity_end": float(last["perplexity"]) if last.get("perplexity") else None,
            "tau_end": float(last["tau"]), "run_dir": str(run_dir),
            "train_config": dataclasses.asdict(spec.train_config)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=6.0,
                        help="training time shared by the models (probes and evaluation come "
                             "on top, about a minute each) [default: 6]")
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--dataset", default="toyshapes")
    parser.add_argument("--device", default="cuda", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--probe-steps", type=int, default=50)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", default="runs/gpu-paper-preset")
    parser.add_argument("--tiny", action="store_true",
                        help="the smoke preset's network and evaluation sizes (CPU check)")
    args = parser.parse_args(argv)
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        print("no CUDA device: pass --device cpu (with --tiny) to check the script",
              file=sys.stderr)
        return 2
    device = torch.device("cuda" if args.device in ("auto", "cuda")
                          and torch.cuda.is_available() else "cpu")
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    Path(args.out).mkdir(parents=True, exist_ok=True)
    results = []
    for model in models:
        result = run_model(model, seconds=60.0 * args.minutes / len(models), args=args)
        results.append(result)
        print(f"[{time.strftime('%H:%M:%S')}] {model}: {result['steps']} iterations, "
              f"{result['steps_per_second']:.2f}/s", file=sys.stderr, flush=True)
    report = {"device": name, "torch": torch.__version__, "dataset": args.dataset,
              "image_size": 16 if args.tiny else 64, "tiny": args.tiny, "results": results}
    (Path(args.out) / "results.json").write_text(json.dumps(report, indent=2) + "\n")
    print(f"{name}, torch {torch.__version__}, `paper` preset on {args.dataset} "
          f"{report['image_size']}x{report['image_size']}, seed {args.seed}\n")
    print("| model | iterations | it/s | D | I | C | InfoM | InfoE | InfoC | MSE ×1e4 "
          "| disc. acc. | perplexity |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        cells = [f"{round(r['table'][c], 2) + 0.0:.2f}" if r["table"][c] is not None else "-"
                 for c in COLUMNS]
        extra = [f"{r[k]:.2f}" if r[k] is not None else "-"
                 for k in ("disc_accuracy_end", "perplexity_end")]
        print(f"| {r['model']} | {r['steps']} | {r['steps_per_second']:.2f} | "
              + " | ".join(cells + extra) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
