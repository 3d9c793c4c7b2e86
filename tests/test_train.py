"""train-reference: the run folder, refusal to overwrite, exact resume, figures, CLI."""
import csv
import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from disentangle_eval.cli.train_reference import main
from reference_models.data.registry import get_dataset
from reference_models.training.evaluate import protocol_factors
from reference_models.training.loop import _truncate_log, train
from reference_models.training.run_folder import RunFolderError, build_spec, load_checkpoint

SMOKE = ["--dataset", "toyshapes", "--preset", "smoke"]


def _spec(model="factorqvae", **train_overrides):
    overrides = {k: str(v) for k, v in train_overrides.items()}
    return build_spec(model, "toyshapes", preset="smoke", data_dir=None, steps=None,
                      batch_size=None, seed=None, overrides=overrides)


def _state(run_dir):
    return load_checkpoint(Path(run_dir) / "checkpoint.pt", map_location="cpu")


def _assert_same_parameters(run_a, run_b):
    a, b = _state(run_a), _state(run_b)
    assert a["step"] == b["step"]
    assert a["model"].keys() == b["model"].keys()
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    """One smoke run of FactorQVAE through the command, shared by the file checks."""
    run_dir = tmp_path_factory.mktemp("runs") / "smoke"
    result = CliRunner().invoke(main, ["factorqvae", *SMOKE, "--out", str(run_dir)])
    assert result.exit_code == 0, result.output
    return run_dir, result


def test_smoke_run_leaves_every_file(smoke_run):
    run_dir, result = smoke_run
    for name in ("config.json", "checkpoint.pt", "log.csv", "latents.npz", "factors.npz",
                 "metrics.json"):
        assert (run_dir / name).is_file(), name
    # the table columns go to stdout
    assert "D " in result.stdout and "MSE(x1e4)" in result.stdout

    config = json.loads((run_dir / "config.json").read_text())
    assert config["model"] == "factorqvae" and config["dataset"] == "toyshapes"
    assert config["seed"] == 1 and config["preset"] == "smoke"
    assert config["model_config"]["latent_dim"] == 12
    assert config["train_config"]["steps"] == 4
    assert {"torch", "numpy", "disentangle_eval"} <= set(config["environment"])

    state = _state(run_dir)
    assert state["step"] == 4
    assert {"model", "vae_optimizer", "vae_scheduler", "discriminator_optimizer",
            "discriminator_scheduler", "rng", "config"} <= set(state)
    assert {"torch", "numpy", "python", "data"} <= set(state["rng"])
    stored = json.loads(json.dumps(state["config"]))  # tuples as JSON lists
    assert stored["model_config"] == config["model_config"]
    assert stored["train_config"] == config["train_config"]

    with open(run_dir / "log.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [int(r["step"]) for r in rows] == [1, 2, 3, 4]  # smoke logs every step
    for key in ("loss", "recon", "kl", "tc", "perplexity", "tau", "lr", "disc_loss"):
        assert all(np.isfinite(float(r[key])) for r in rows), key

    n_train, n_test = 64, 32  # the smoke preset's evaluation sizes
    with np.load(run_dir / "latents.npz") as z:
        assert {"latents", "factors", "factor_names", "factor_sizes", "n_train",
                "codebook"} <= set(z.files)
        assert z["latents"].shape == (n_train + n_test, 12)
        assert z["latents"].dtype == np.int64  # codes of a quantised model
        assert z["latents"].min() >= 0 and z["latents"].max() < 8
        assert int(z["n_train"]) == n_train
        assert list(z["factor_sizes"]) == [10, 10, 10, 8, 4, 15]
        latent_factors = z["factors"]
    with np.load(run_dir / "factors.npz") as f:
        assert f["factors"].shape == (n_train + n_test, 6)
        np.testing.assert_array_equal(f["factors"], latent_factors)
        assert list(f["factor_names"])[:3] == ["floor_hue", "wall_hue", "object_hue"]
        assert (f["factors"] < np.array([10, 10, 10, 8, 4, 15])).all()
    # the protocol: train rows then test rows, RandomState(seed) draws
    expected = protocol_factors(get_dataset("toyshapes", image_size=16), n_train, n_test, 1)
    np.testing.assert_array_equal(latent_factors, expected)

    metrics = json.loads((run_dir / "metrics.json").read_text())
    for key in ("D", "I", "C", "InfoM", "InfoE", "InfoC", "MSE"):
        assert np.isfinite(metrics["table"][key]), key
    assert metrics["dci"]["split"] == "contiguous" and metrics["dci"]["n_train"] == n_train
    assert np.array(metrics["dci"]["importance"]).shape == (12, 6)
    assert np.array(metrics["infomec"]["nmi"]).shape == (6, 12)
    assert metrics["infomec"]["discrete"] is True
    assert metrics["mse_x1e4"] == pytest.approx(metrics["mse"] * 1e4)
    assert metrics["table"]["MSE"] == pytest.approx(metrics["mse_x1e4"])
    # the standard suite too, its headline values in the table
    assert metrics["table"]["MIG"] == metrics["mig"]["mig"]
    assert metrics["table"]["SAP"] == metrics["sap"]["sap"]
    assert metrics["table"]["Modularity"] == metrics["modularity"]["modularity"]
    assert metrics["table"]["Explicitness"] == metrics["modularity"]["explicitness_test"]
    assert metrics["table"]["IRS"] == metrics["irs"]["irs"]
    assert np.array(metrics["mig"]["mutual_information"]).shape == (12, 6)


def test_smoke_run_figures(smoke_run):
    run_dir = smoke_run[0]
    for name in ("traversals", "swaps", "reconstructions", "nmi", "importance",
                 "codebook_usage"):
        path = run_dir / "figures" / f"{name}.png"
        assert path.is_file(), name
        pixels = np.asarray(Image.open(path).convert("RGB"))
        assert pixels.shape[0] > 100 and pixels.shape[1] > 100, name
        assert pixels.std() > 1.0, name  # not a blank image


def test_figures_only_redraws(smoke_run, tmp_path):
    run_dir = tmp_path / "copy"
    shutil.copytree(smoke_run[0], run_dir)
    shutil.rmtree(run_dir / "figures")
    result = CliRunner().invoke(main, ["--figures-only", str(run_dir)])
    assert result.exit_code == 0, result.output
    assert (run_dir / "figures" / "traversals.png").is_file()
    assert (run_dir / "figures" / "codebook_usage.png").is_file()
    result = CliRunner().invoke(main, ["--figures-only", str(tmp_path)])
    assert result.exit_code == 2 and "not a finished run" in result.output


def test_refuses_to_overwrite(smoke_run, tmp_path):
    run_dir = tmp_path / "copy"
    shutil.copytree(smoke_run[0], run_dir)
    runner = CliRunner()
    result = runner.invoke(main, ["factorqvae", *SMOKE, "--out", str(run_dir)])
    assert result.exit_code == 2
    assert "--resume" in result.output and "--force" in result.output
    assert "Traceback" not in result.output
    # a finished run resumes to its stored metrics without training again
    before = (run_dir / "checkpoint.pt").stat().st_mtime_ns
    result = runner.invoke(main, ["factorqvae", *SMOKE, "--out", str(run_dir), "--resume"])
    assert result.exit_code == 0, result.output
    assert (run_dir / "checkpoint.pt").stat().st_mtime_ns == before
    # resuming with other settings is refused
    result = runner.invoke(main, ["factorqvae", *SMOKE, "--out", str(run_dir), "--resume",
                                  "--set", "lr=3e-4"])
    assert result.exit_code == 2 and "lr" in result.output
    # --force starts afresh
    (run_dir / "log.csv").write_text("garbage\n")
    result = runner.invoke(main, ["factorqvae", *SMOKE, "--out", str(run_dir), "--force",
                                  "--no-figures"])
    assert result.exit_code == 0, result.output
    assert (run_dir / "log.csv").read_text().startswith("step,")
    assert not (run_dir / "figures").exists()


def test_usage_errors():
    runner = CliRunner()
    cases = [
        (["factorqvae"], "missing --dataset"),
        (["nosuchmodel", "--dataset", "toyshapes"], "unknown model"),
        (["factorqvae", "--dataset", "nosuchdata", "--preset", "smoke"], "unknown"),
        (["factorqvae", *SMOKE, "--set", "nosuchfield=1"], "unknown field"),
        (["factorqvae", *SMOKE, "--set", "lr=abc"], "lr"),
        (["factorqvae", *SMOKE, "--set", "lr"], "key=value"),
        (["factorqvae", "--dataset", "toyshapes", "--preset", "paper"], "paper"),
        (["factorqvae", *SMOKE, "--resume", "--force"], "exclude"),
    ]
    for args, message in cases:
        result = runner.invoke(main, args)
        assert result.exit_code == 2, (args, result.output)
        assert message in result.output, (args, result.output)
        assert "Traceback" not in result.output


def test_missing_dataset_files_exit_1(tmp_path):
    result = CliRunner().invoke(main, ["ae", "--dataset", "shapes3d", "--preset", "smoke",
                                       "--data-dir", str(tmp_path), "--out",
                                       str(tmp_path / "run")])
    assert result.exit_code == 1, result.output
    assert result.output.count("\n") <= 2 and "error:" in result.output


def test_list_flags():
    runner = CliRunner()
    result = runner.invoke(main, ["--list-models"])
    assert result.exit_code == 0 and "factorqvae" in result.output.split()
    result = runner.invoke(main, ["--list-datasets"])
    assert result.exit_code == 0 and "toyshapes:" in result.output


def test_seed_in_default_folder_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["ae", *SMOKE, "--seed", "3", "--no-figures",
                                       "--steps", "2"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "runs" / "ae-toyshapes-3" / "metrics.json").is_file()


@pytest.mark.parametrize("model", ["factorqvae", "qlae", "factorvae", "dvae"])
def test_resume_is_exact_in_process(tmp_path, model):
    """Stop after some iterations (checkpoint), resume: same parameters and log."""
    spec = _spec(model, steps=9, log_every=2, checkpoint_every=100)
    train(tmp_path / "full", spec, device="cpu", evaluate=False)
    train(tmp_path / "split", spec, device="cpu", stop_after=5)
    assert _state(tmp_path / "split")["step"] == 5
    train(tmp_path / "split", spec, device="cpu", resume=True, evaluate=False)
    _assert_same_parameters(tmp_path / "full", tmp_path / "split")
    assert (tmp_path / "full" / "log.csv").read_text() == \
        (tmp_path / "split" / "log.csv").read_text()
    with pytest.raises(RunFolderError, match="already holds a run"):
        train(tmp_path / "full", spec, device="cpu")


def _count_rows(path: Path) -> int:
    try:
        return max(0, len(path.read_text().splitlines()) - 1)
    except FileNotFoundError:
        return 0


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("train-reference") is None, reason="console script missing")
def test_kill_and_resume_matches_uninterrupted_run(tmp_path):
    """SIGKILL a real training process mid-run, resume it, compare bit for bit."""
    steps = 300
    args = ["train-reference", "factorqvae", *SMOKE, "--steps", str(steps), "--no-figures",
            "--set", "checkpoint_every=10", "--threads", "1"]
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}
    full = subprocess.run(args + ["--out", str(tmp_path / "full")], env=env,
                          capture_output=True, text=True, timeout=600)
    assert full.returncode == 0, full.stderr

    killed = tmp_path / "killed"
    proc = subprocess.Popen(args + ["--out", str(killed)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 300
        # wait for a checkpoint and some log rows past it, so the kill lands mid-run
        while time.monotonic() < deadline and proc.poll() is None:
            if (killed / "checkpoint.pt").exists() and _count_rows(killed / "log.csv") >= 45:
                break
            time.sleep(0.005)
        assert proc.poll() is None, "the run finished before it could be killed"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    step_at_kill = _state(killed)["step"]
    assert 0 < step_at_kill < steps
    assert _count_rows(killed / "log.csv") >= step_at_kill  # rows beyond the checkpoint
    assert not (killed / "metrics.json").exists()

    resumed = subprocess.run(args + ["--out", str(killed), "--resume"], env=env,
                             capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    _assert_same_parameters(tmp_path / "full", killed)
    full_state, killed_state = _state(tmp_path / "full"), _state(killed)
    for key in ("vae_optimizer", "discriminator_optimizer"):
        for pid, slot in full_state[key]["state"].items():
            for name, value in slot.items():
                assert torch.equal(value, killed_state[key]["state"][pid][name])
    assert (tmp_path / "full" / "log.csv").read_text() == (killed / "log.csv").read_text()
    full_latents = np.load(tmp_path / "full" / "latents.npz")["latents"]
    np.testing.assert_array_equal(full_latents, np.load(killed / "latents.npz")["latents"])


@pytest.mark.skipif(shutil.which("train-reference") is None, reason="console script missing")
def test_console_script_subprocess(tmp_path):
    proc = subprocess.run(["train-reference", "--help"], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0 and "Example" in proc.stdout and "--resume" in proc.stdout
    proc = subprocess.run(["train-reference", "qvae", "--dataset", "toyshapes", "--preset",
                           "smoke", "--steps", "2", "--no-figures", "--out",
                           str(tmp_path / "run")], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "run" / "metrics.json").is_file()
    proc = subprocess.run(["train-reference", "qvae", "--dataset", "toyshapes", "--preset",
                           "smoke", "--out", str(tmp_path / "run")], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr


def test_truncate_log_drops_rows_after_the_checkpoint_and_partial_rows(tmp_path):
    path = tmp_path / "log.csv"
    path.write_text("step,loss,tc\n1,0.5,0.1\n2,0.4,0.1\n3,0.3,0.1\n4,0.2")
    _truncate_log(path, 3)
    assert path.read_text() == "step,loss,tc\n1,0.5,0.1\n2,0.4,0.1\n3,0.3,0.1\n"
    _truncate_log(path, 1)
    assert path.read_text() == "step,loss,tc\n1,0.5,0.1\n"
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    _truncate_log(empty, 5)
    assert empty.read_text() == ""


def test_train_needs_a_spec_unless_resuming(tmp_path):
    with pytest.raises(ValueError, match="spec is required"):
        train(tmp_path / "run", None)
    with pytest.raises(RunFolderError, match="nothing to resume"):
        train(tmp_path / "run", None, resume=True)


@pytest.mark.slow
@pytest.mark.parametrize("model", ["ae", "betavae", "bioae", "dvae", "factordvae", "factorvae",
                                   "factorvqvae", "qlae", "qvae", "vqvae"])
def test_every_model_trains_and_draws(tmp_path, model):
    """Each registered model (factorqvae: above) through train -> scores -> figures."""
    metrics = train(tmp_path / model, _spec(model, steps=2), device="cpu")
    assert all(np.isfinite(metrics["table"][k]) for k in ("D", "I", "InfoE", "MSE"))
    figures = {p.stem for p in (tmp_path / model / "figures").glob("*.png")}
    expected = {"traversals", "swaps", "reconstructions", "nmi", "importance"}
    quantised = model in ("dvae", "factordvae", "factorvqvae", "qlae", "qvae", "vqvae")
    assert figures == expected | ({"codebook_usage"} if quantised else set())
    with np.load(tmp_path / model / "latents.npz") as z:
        assert (z["latents"].dtype == np.int64) == quantised
