"""train-reference and the run folder under hostile and broken input.

A run folder from someone else must not run code (``checkpoint.pt`` is read with
``weights_only=True``); broken files, unknown names and settings that cannot fit give one
line and exit code 1 (bad data) or 2 (bad usage), never a traceback; nothing is written
before the settings, the data and the memory they need are checked. Old (format-1)
checkpoints still resume exactly.
"""
import json
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from disentangle_eval.cli.train_reference import main
from limits import run_limited
from reference_models.training import loop
from reference_models.training.loop import train
from disentangle_eval import DataError
from reference_models.training.memory import check_training_fits, estimate_model
from reference_models.training.run_folder import (
    RunFileError, RunFolderError, build_spec, capture_rng_states, load_checkpoint,
    load_run_spec, load_trained_model, restore_rng_states, save_checkpoint,
)
from reference_models.models import build_model

SMOKE = ["--dataset", "toyshapes", "--preset", "smoke"]
FORMAT1_RUN = Path(__file__).parent / "data" / "training" / "format1_run"
SCRIPT = shutil.which("train-reference")
needs_script = pytest.mark.skipif(SCRIPT is None, reason="console script missing")


def _spec(model="factorqvae", **train_overrides):
    return build_spec(model, "toyshapes", preset="smoke",
                      overrides={k: str(v) for k, v in train_overrides.items()})


def _one_error_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    assert "Traceback" not in text, text
    errors = [line for line in lines if line.startswith("error:") or line.startswith("Error:")]
    assert len(errors) == 1, text
    return errors[0]


def _cli(args, **kwargs):
    return CliRunner().invoke(main, [str(a) for a in args], **kwargs)


def _script(args, cwd=None, timeout=300):
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}
    return subprocess.run([SCRIPT, *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, cwd=cwd, env=env)


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """A finished smoke run (no figures), copied by the tests that break it."""
    run_dir = tmp_path_factory.mktemp("runs") / "run"
    train(run_dir, _spec(), device="cpu", figures=False)
    return run_dir


@pytest.fixture
def run_copy(finished_run, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(finished_run, copy)
    return copy


def _assert_same_parameters(run_a, run_b):
    a, b = (load_checkpoint(Path(r) / "checkpoint.pt") for r in (run_a, run_b))
    assert a["step"] == b["step"]
    assert a["model"].keys() == b["model"].keys()
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key


# -- 1. no code execution from a run folder ---------------------------------------------

class _Payload:
    """Runs code when unpickled: writes a marker file."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return exec, (f"open({self.marker!r}, 'w').close()",)


def _plant_payload(run_dir: Path, marker: Path) -> None:
    state = torch.load(run_dir / "checkpoint.pt", weights_only=True)
    state["model"] = {**state["model"], "payload": _Payload(marker)}
    torch.save(state, run_dir / "checkpoint.pt")


def test_the_planted_payload_is_live(run_copy, tmp_path):
    """The payload of the tests below does run under a plain torch.load."""
    marker = tmp_path / "ran"
    _plant_payload(run_copy, marker)
    code = (f"import torch; torch.load({str(run_copy / 'checkpoint.pt')!r}, "
            "weights_only=False)")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
    assert marker.exists()


@needs_script
@pytest.mark.parametrize("how", ["figures-only", "resume"])
def test_a_pickle_payload_in_checkpoint_is_refused_by_the_command(run_copy, tmp_path, how):
    marker = tmp_path / "ran"
    _plant_payload(run_copy, marker)
    args = (["--figures-only", run_copy] if how == "figures-only"
            else ["factorqvae", *SMOKE, "--out", run_copy, "--resume"])
    proc = _script(args)
    assert proc.returncode == 1, proc.stderr
    line = _one_error_line(proc.stderr)
    assert "checkpoint.pt: refused" in line and "could run code" in line
    assert not marker.exists()


def test_a_pickle_payload_is_refused_by_load_trained_model(run_copy, tmp_path):
    marker = tmp_path / "ran"
    _plant_payload(run_copy, marker)
    with pytest.raises(RunFileError, match=r"checkpoint.pt: refused: it holds objects"):
        load_trained_model(run_copy)
    with pytest.raises(RunFileError, match="refused"):
        train(run_copy, None, device="cpu", resume=True)
    assert not marker.exists()


def test_checkpoints_hold_only_tensors_and_plain_values(finished_run):
    path = finished_run / "checkpoint.pt"
    assert torch.serialization.get_unsafe_globals_in_checkpoint(path) == []
    state = torch.load(path, weights_only=True)  # no allow-list needed
    assert state["format"] == 2 and state["step"] == 4


# -- old (format-1) checkpoints -----------------------------------------------------------

def _write_format1(path: Path) -> None:
    """Rewrite a checkpoint in the format-1 layout (numpy's state tuple with its ndarray)."""
    state = load_checkpoint(path)
    kind, key, pos, has_gauss, gauss = state["rng"]["numpy"]
    state["rng"]["numpy"] = (kind, key.numpy().astype(np.uint32), pos, has_gauss, gauss)
    state["format"] = 1
    torch.save(state, path)


@pytest.mark.parametrize("model", ["factorqvae", "betavae"])
def test_format1_checkpoint_resumes_bit_identically(tmp_path, model):
    spec = _spec(model, steps=6, log_every=1, checkpoint_every=100)
    train(tmp_path / "full", spec, device="cpu", evaluate=False)
    train(tmp_path / "split", spec, device="cpu", stop_after=3)
    _write_format1(tmp_path / "split" / "checkpoint.pt")
    assert torch.serialization.get_unsafe_globals_in_checkpoint(
        tmp_path / "split" / "checkpoint.pt")  # numpy's types: the old layout
    train(tmp_path / "split", spec, device="cpu", resume=True, evaluate=False)
    _assert_same_parameters(tmp_path / "full", tmp_path / "split")
    assert (tmp_path / "full" / "log.csv").read_text() == \
        (tmp_path / "split" / "log.csv").read_text()


def test_a_genuine_format1_run_folder_restores_every_state(tmp_path):
    """The fixture was written by the old code; every state it holds comes back exactly."""
    run_dir = tmp_path / "run"
    shutil.copytree(FORMAT1_RUN, run_dir)
    # our own fixture, so a plain load is safe: it gives the states as the old code saved them
    raw = torch.load(run_dir / "checkpoint.pt", weights_only=False)
    assert raw["format"] == 1 and isinstance(raw["rng"]["numpy"][1], np.ndarray)

    state = load_checkpoint(run_dir / "checkpoint.pt", spec=load_run_spec(run_dir))
    data_rng = np.random.default_rng(0)
    restore_rng_states(state["rng"], data_rng, torch.device("cpu"))
    kind, key, pos, has_gauss, gauss = np.random.get_state()
    raw_kind, raw_key, raw_pos, raw_has_gauss, raw_gauss = raw["rng"]["numpy"]
    assert (kind, pos, has_gauss, gauss) == (raw_kind, raw_pos, raw_has_gauss, raw_gauss)
    np.testing.assert_array_equal(key, raw_key)
    assert random.getstate() == raw["rng"]["python"]
    assert torch.equal(torch.get_rng_state(), raw["rng"]["torch"])
    assert data_rng.bit_generator.state == raw["rng"]["data"]
    for name, tensor in raw["model"].items():
        assert torch.equal(state["model"][name], tensor), name
    assert state["vae_optimizer"]["param_groups"] == raw["vae_optimizer"]["param_groups"]

    metrics = train(run_dir, None, device="cpu", resume=True, figures=False)
    assert load_checkpoint(run_dir / "checkpoint.pt")["step"] == 4
    assert np.isfinite(metrics["table"]["MSE"])
    assert len((run_dir / "log.csv").read_text().splitlines()) == 1 + 4


def test_rng_states_round_trip(tmp_path):
    random.seed(3), np.random.seed(4), torch.manual_seed(5)
    data_rng = np.random.default_rng(6)
    np.random.standard_normal()  # leaves a cached Gaussian in numpy's state
    states = capture_rng_states(data_rng, torch.device("cpu"))
    save_checkpoint(tmp_path / "c.pt", {"step": 0, "model": {}, "vae_optimizer": {},
                                        "vae_scheduler": {}, "rng": states, "running": {}})
    expected = (random.random(), np.random.standard_normal(), torch.rand(1).item(),
                data_rng.random())
    random.seed(0), np.random.seed(0), torch.manual_seed(0)
    data_rng = np.random.default_rng(0)
    restore_rng_states(load_checkpoint(tmp_path / "c.pt")["rng"], data_rng,
                       torch.device("cpu"))
    assert (random.random(), np.random.standard_normal(), torch.rand(1).item(),
            data_rng.random()) == expected


# -- 2. broken run folders: one line, exit 1 ---------------------------------------------

def _resume(run_dir):
    return _cli(["factorqvae", *SMOKE, "--out", run_dir, "--resume"])


def _mutate_checkpoint(run_dir: Path, change) -> None:
    state = torch.load(run_dir / "checkpoint.pt", weights_only=True)
    change(state)
    torch.save(state, run_dir / "checkpoint.pt")


@pytest.mark.parametrize("breakage, message", [
    (lambda p: p.write_bytes(b""), "not a readable checkpoint"),
    (lambda p: p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 2]),
     "not a readable checkpoint"),
    (lambda p: p.write_bytes(b"\x80\x02garbage"), "checkpoint.pt"),
    (lambda p: torch.save([1, 2, 3], p), "holds a list, not a dict"),
    (lambda p: torch.save({"format": 99}, p), "format 99"),
])
def test_unreadable_checkpoint_exit_1(run_copy, breakage, message):
    breakage(run_copy / "checkpoint.pt")
    for result in (_resume(run_copy), _cli(["--figures-only", run_copy])):
        assert result.exit_code == 1, result.output
        assert message in _one_error_line(result.output)


def test_wrong_shape_checkpoint_exit_1(run_copy):
    def shrink(state):
        name = next(iter(state["model"]))
        state["model"][name] = torch.zeros(3)
    _mutate_checkpoint(run_copy, shrink)
    for result in (_resume(run_copy), _cli(["--figures-only", run_copy])):
        assert result.exit_code == 1, result.output
        assert "does not match the model of its config.json" in _one_error_line(result.output)


def test_checkpoint_of_another_run_exit_1(run_copy):
    def other(state):
        state["config"]["model_config"]["width"] = 8
    _mutate_checkpoint(run_copy, other)
    result = _resume(run_copy)
    assert result.exit_code == 1
    assert "other settings than its config.json (model_config.width)" in \
        _one_error_line(result.output)


def test_checkpoint_with_broken_optimiser_state_exit_1(run_copy):
    def broken(state):
        state["vae_optimizer"]["param_groups"] = []
    _mutate_checkpoint(run_copy, broken)
    result = _resume(run_copy)
    assert result.exit_code == 1
    assert "optimiser, schedule or random states do not fit" in _one_error_line(result.output)


def _edit_config(run_dir: Path, change) -> None:
    config = json.loads((run_dir / "config.json").read_text())
    change(config)
    (run_dir / "config.json").write_text(json.dumps(config))


@pytest.mark.parametrize("change, message", [
    (lambda c: c.update(model="nosuchmodel"), "unknown model 'nosuchmodel'"),
    (lambda c: c.update(model="\x1b[31mred\nline"), r"unknown model '\x1b[31mred\nline'"),
    (lambda c: c.update(dataset="nosuchdata"), "unknown dataset 'nosuchdata'"),
    (lambda c: c["model_config"].update(width="wide"), "cannot read width='wide' as int"),
    (lambda c: c["model_config"].update(nosuchfield=1), "unknown ModelConfig field"),
    (lambda c: c.pop("train_config"), "missing field 'train_config'"),
])
def test_bad_config_json_exit_1(run_copy, change, message):
    _edit_config(run_copy, change)
    for result in (_resume(run_copy), _cli(["--figures-only", run_copy])):
        assert result.exit_code == 1, result.output
        line = _one_error_line(result.output)
        assert "config.json: not a run configuration" in line and message in line
        assert "\x1b" not in result.output


def test_deeply_nested_config_json_exit_1(run_copy):
    (run_copy / "config.json").write_text("[" * 100_000 + "]" * 100_000)
    result = _cli(["--figures-only", run_copy])
    assert result.exit_code == 1
    assert "nested too deeply" in _one_error_line(result.output)


def test_huge_width_in_config_json_is_refused_before_building(run_copy):
    _edit_config(run_copy, lambda c: c["model_config"].update(width=10**7))
    result = _cli(["--figures-only", run_copy])
    assert result.exit_code == 1
    line = _one_error_line(result.output)
    assert "needs about" in line and "TiB of memory" in line and "width 10000000" in line


@pytest.mark.parametrize("breakage, message", [
    (lambda run: (run / "latents.npz").write_bytes(b"not a zip"), "latents.npz: not a latents"),
    (lambda run: np.savez(run / "latents.npz", latents=np.zeros((5, 3)),
                          factors=np.zeros((5, 6), np.int64), n_train=np.int64(2),
                          factor_names=np.array(list("abcdef"))), "expected (n, 12)"),
    (lambda run: (run / "metrics.json").write_text('{"infomec": {}}'), "metrics.json: not"),
])
def test_bad_evaluation_files_for_figures_exit_1(run_copy, breakage, message):
    breakage(run_copy)
    result = _cli(["--figures-only", run_copy])
    assert result.exit_code == 1, result.output
    assert message in _one_error_line(result.output)


# -- 2. settings and data: checked before anything is written -----------------------------

def test_batch_size_that_is_not_an_integer_is_a_usage_error(tmp_path):
    result = _cli(["ae", *SMOKE, "--batch-size", "1e11", "--out", tmp_path / "run"])
    assert result.exit_code == 2 and "'1e11' is not a valid integer" in result.output
    assert not (tmp_path / "run").exists()


@needs_script
def test_huge_batch_size_is_refused_under_a_memory_ceiling_and_leaves_nothing(tmp_path):
    run_dir = tmp_path / "run"
    proc = run_limited([SCRIPT, "ae", *SMOKE, "--batch-size", "100000000000",
                        "--out", str(run_dir)], timeout=300)
    assert proc.returncode == 1, proc.stderr
    line = _one_error_line(proc.stderr)
    assert "batch 100000000000" in line and "needs about" in line
    assert "lower --batch-size" in line
    assert not run_dir.exists()
    # the same folder then takes a run of a sane size
    result = _cli(["ae", *SMOKE, "--steps", "1", "--no-figures", "--out", run_dir])
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize("width, code, message", [
    (100_000, 1, "needs about"),
    (2**62, 1, "too large to build"),
    (10**30, 2, "width must be at most 2**63 - 1"),
])
def test_huge_width_is_refused_before_anything_is_written(tmp_path, width, code, message):
    result = _cli(["ae", *SMOKE, "--set", f"width={width}", "--out", tmp_path / "run"])
    assert result.exit_code == code, result.output
    assert message in result.output and "Traceback" not in result.output
    assert not (tmp_path / "run").exists()


@needs_script
def test_missing_published_data_leaves_no_run_folder(tmp_path):
    """The headline command without the data: a clear line, and nothing that blocks the
    same command once the data is there."""
    args = ["factorqvae", "--dataset", "isaac3d", "--data-dir", tmp_path / "empty"]
    for _ in range(2):
        proc = _script(args, cwd=tmp_path)
        assert proc.returncode == 1, proc.stderr
        line = _one_error_line(proc.stderr)
        assert "Isaac3D_down128" in line and "already holds a run" not in line
    assert not (tmp_path / "runs").exists()


def test_existing_folder_is_not_touched_when_data_is_missing(run_copy, tmp_path):
    before = {p.name: p.stat().st_mtime_ns for p in run_copy.iterdir()}
    result = _cli(["factorqvae", "--dataset", "shapes3d", "--preset", "smoke", "--data-dir",
                   tmp_path / "empty", "--out", run_copy, "--force"])
    assert result.exit_code == 1
    assert {p.name: p.stat().st_mtime_ns for p in run_copy.iterdir()} == before


def test_training_that_diverges_exit_1(tmp_path):
    result = _cli(["ae", *SMOKE, "--set", "lr=1e30", "--out", tmp_path / "run"])
    assert result.exit_code == 1, result.output
    assert "training diverged: step" in _one_error_line(result.output)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_a_gpu_is_a_usage_error(run_copy, tmp_path):
    for args in (["ae", *SMOKE, "--device", "cuda", "--out", tmp_path / "new"],
                 ["--figures-only", run_copy, "--device", "cuda"]):
        result = _cli(args)
        assert result.exit_code == 2, result.output
        assert "CUDA is not available" in result.output
    assert not (tmp_path / "new").exists()


@pytest.mark.parametrize("error, code", [
    (RunFolderError("the CUDA device folder"), 2),   # a usage error, whatever it says
    (RunFileError("bad device in checkpoint"), 1),
    (DataError("needs CUDA memory"), 1),
    (FloatingPointError("step 3: non-finite"), 1),
    (ValueError("device"), 1),                       # unexpected: one line, exit 1
])
def test_errors_are_told_apart_by_type_not_by_text(monkeypatch, tmp_path, error, code):
    def fail(*_args, **_kwargs):
        raise error
    monkeypatch.setattr(loop, "train", fail)
    result = _cli(["ae", *SMOKE, "--out", tmp_path / "run"])
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    assert str(error) in result.output


# -- memory estimates ---------------------------------------------------------------------

@pytest.mark.parametrize("model", ["ae", "factorqvae", "qlae", "factorvqvae"])
def test_memory_estimate_counts_the_real_parameters(model):
    spec = _spec(model)
    estimate = estimate_model(model, spec.model_config)
    real = build_model(model, spec.model_config)
    assert estimate.parameters == sum(p.numel() for p in real.parameters())
    assert estimate.image_elements == 3 * 16 * 16
    # encoder, decoder (and discriminator) layer outputs for one image
    assert estimate.activations_per_image > 2 * 3 * 16 * 16


def test_training_memory_check_refuses_only_what_cannot_fit(monkeypatch):
    spec = _spec("ae")
    check_training_fits("ae", spec.model_config, batch_size=8, evaluation_rows=96,
                        n_factors=6, device=torch.device("cpu"))
    from disentangle_eval import _device
    monkeypatch.setattr(_device, "available_memory", lambda device: 1000)
    with pytest.raises(DataError, match=r"training 'ae' \(10,663 parameters, batch 8, width "
                                        r"4, .*\) needs about .* of memory but only 1000 bytes "
                                        r"is available; lower --batch-size"):
        check_training_fits("ae", spec.model_config, batch_size=8, evaluation_rows=96,
                            n_factors=6, device=torch.device("cpu"))
