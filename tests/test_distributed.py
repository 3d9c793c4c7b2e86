"""Data-parallel training: torchrun with 2 CPU processes (gloo), and nothing changed without.

The torchrun runs go through the installed console scripts, as a user starts them:
``torchrun --standalone --nproc_per_node 2 $(which train-reference) ...``.
"""
import hashlib
import json
import os
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from disentangle_eval.cli.train_reference import main
from reference_models.data.registry import get_dataset
from reference_models.models import build_model, list_models
from reference_models.training.distributed import (
    SINGLE, DistributedContext, check_batch_split, context_from_environment, gather_to_main,
    init_distributed, launched_by_torchrun, mean_across_ranks, on_main, rank_streams,
    wait_for_idle_threads,
)
from reference_models.training.loop import train
from reference_models.training.run_folder import (
    RunFileError, RunFolderError, build_spec, load_checkpoint,
)
from reference_models.training.schedules import temperature

TORCHRUN = shutil.which("torchrun")
TRAIN_REFERENCE = shutil.which("train-reference")
needs_torchrun = pytest.mark.skipif(TORCHRUN is None or TRAIN_REFERENCE is None,
                                    reason="torchrun or the train-reference script missing")
SMOKE = ["--dataset", "toyshapes", "--preset", "smoke", "--threads", "1", "--no-figures"]
ENV = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE", "OMP_NUM_THREADS": "1"}


def _torchrun(args, nproc=2, **kwargs):
    command = [TORCHRUN, "--standalone", "--nproc_per_node", str(nproc), TRAIN_REFERENCE, *args]
    return subprocess.run(command, env=ENV, capture_output=True, text=True, timeout=600,
                          **kwargs)


def _state(run_dir):
    return load_checkpoint(Path(run_dir) / "checkpoint.pt", map_location="cpu")


def _count_rows(path: Path) -> int:
    try:
        return max(0, len(path.read_text().splitlines()) - 1)
    except FileNotFoundError:
        return 0


# -- the pieces ------------------------------------------------------------------------

def test_context_from_environment():
    assert context_from_environment({}) is SINGLE
    assert not launched_by_torchrun({"LOCAL_RANK": "0"})
    context = context_from_environment({"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1"})
    assert (context.rank, context.world_size, context.local_rank) == (3, 4, 1)
    assert not context.is_main and context.enabled and context.backend is None
    assert context_from_environment({"RANK": "0", "WORLD_SIZE": "1"}) == DistributedContext()
    with pytest.raises(ValueError, match=r"WORLD_SIZE='two' is not an integer"):
        context_from_environment({"RANK": "0", "WORLD_SIZE": "two"})
    with pytest.raises(ValueError, match=r"RANK=2, LOCAL_RANK=0 and WORLD_SIZE=2 do not"):
        context_from_environment({"RANK": "2", "WORLD_SIZE": "2"})


def test_a_single_process_joins_no_group():
    context, device = init_distributed(torch.device("cpu"), {})
    assert context is SINGLE and device == torch.device("cpu")
    assert not torch.distributed.is_initialized()
    # the collectives are the identity for one process
    assert on_main(SINGLE, lambda: 5) == 5
    assert gather_to_main(SINGLE, {"a": 1}) == [{"a": 1}]
    assert mean_across_ranks(SINGLE, [1.5, 2.0], torch.device("cpu")) == [1.5, 2.0]
    with pytest.raises(KeyError):
        on_main(SINGLE, lambda: {}["missing"])


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="needs Linux's /proc")
def test_shutdown_waits_for_threads_still_at_work():
    """What ``shutdown`` waits for before the interpreter may finalise: no other thread
    left running (a gloo worker freeing the last collective's tensors)."""
    def spin(seconds):
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            pass

    worker = threading.Thread(target=spin, args=(0.3,))
    start = time.monotonic()
    worker.start()
    assert wait_for_idle_threads(timeout=10.0)
    assert time.monotonic() - start >= 0.29 and not worker.is_alive()
    worker.join()

    worker = threading.Thread(target=spin, args=(1.0,))
    worker.start()
    assert not wait_for_idle_threads(timeout=0.2)  # gives up: never waits without end
    worker.join()
    assert wait_for_idle_threads(timeout=1.0)


def test_batch_split():
    assert check_batch_split(256, 4) == 64
    assert check_batch_split(8, 1) == 8
    with pytest.raises(ValueError, match="batch size 30 does not split evenly across 4 "
                                         r"processes; choose a multiple of 4"):
        check_batch_split(30, 4)


def test_rank_streams_are_seeded_and_distinct():
    data_a, noise_a = rank_streams(1, 0)
    data_b, noise_b = rank_streams(1, 0)
    data_c, noise_c = rank_streams(1, 1)
    first = data_a.integers(0, 10**9, 8)
    np.testing.assert_array_equal(first, data_b.integers(0, 10**9, 8))
    assert noise_a == noise_b and noise_a != noise_c
    assert not np.array_equal(first, data_c.integers(0, 10**9, 8))
    assert rank_streams(2, 0)[1] != noise_a
    torch.manual_seed(noise_c)  # a valid torch seed


# -- without torchrun nothing changes ------------------------------------------------------

# sha256 (first 16 hex) of the parameters, the optimisers' states and log.csv of a
# 6-step smoke run of each model, computed by the training loop without data-parallel
# training (the presets' code, commit d023067, which stretches the schedules to the run's
# steps; torch 2.13.0+cpu, one thread), and of a full smoke run of FactorQVAE with its
# evaluation.
BEFORE_DDP = {
    "ae": "57f318c6b0b05c50", "betavae": "403eacf202b3d6c4", "bioae": "0523f1d70f05ce75",
    "dvae": "98b127e55f85abc0", "factordvae": "0dd4282f3b9480b9",
    "factorqvae": "fb6508f98209f4e8", "factorvae": "2a431f3957ce4be2",
    "factorvqvae": "80ec116885477b66", "qlae": "67c181ba2034db67",
    "qvae": "4aa1789e6f341bcd", "vqvae": "b34833dcdfa683de",
}
BEFORE_DDP_EVALUATED = {"digest": "5b209ea63ba60187", "latents": "d645a2c353508e4d",
                        "MSE": 965.9785251216225, "I": 0.17708333333333334}
RECORDED_WITH = "2.13.0+cpu"


def _digest(run_dir) -> str:
    state = _state(run_dir)
    digest = hashlib.sha256()
    for key in sorted(state["model"]):
        digest.update(key.encode())
        digest.update(state["model"][key].numpy().tobytes())
    for optimizer in ("vae_optimizer", "discriminator_optimizer"):
        if state[optimizer] is None:
            continue
        for pid in sorted(state[optimizer]["state"]):
            for _name, value in sorted(state[optimizer]["state"][pid].items()):
                digest.update(value.numpy().tobytes())
    digest.update((Path(run_dir) / "log.csv").read_bytes())
    return digest.hexdigest()[:16]


@pytest.fixture
def restore_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.mark.skipif(torch.__version__ != RECORDED_WITH,
                    reason=f"the reference bits were recorded with torch {RECORDED_WITH}")
def test_single_process_training_is_bit_identical_to_before(tmp_path, restore_threads):
    assert sorted(BEFORE_DDP) == sorted(list_models())
    for model in list_models():
        spec = build_spec(model, "toyshapes", preset="smoke", steps=6,
                          overrides={"log_every": "1", "checkpoint_every": "100"})
        # distributed=None and an explicit one-process context are the same run
        context = None if model.startswith("factor") else SINGLE
        train(tmp_path / model, spec, device="cpu", threads=1, evaluate=False,
              distributed=context)
        assert _digest(tmp_path / model) == BEFORE_DDP[model], model
    spec = build_spec("factorqvae", "toyshapes", preset="smoke")
    metrics = train(tmp_path / "evaluated", spec, device="cpu", threads=1, figures=False)
    latents = np.load(tmp_path / "evaluated" / "latents.npz")["latents"]
    assert _digest(tmp_path / "evaluated") == BEFORE_DDP_EVALUATED["digest"]
    assert hashlib.sha256(latents.tobytes()).hexdigest()[:16] == BEFORE_DDP_EVALUATED["latents"]
    assert metrics["table"]["MSE"] == BEFORE_DDP_EVALUATED["MSE"]
    assert metrics["table"]["I"] == BEFORE_DDP_EVALUATED["I"]
    config = json.loads((tmp_path / "evaluated" / "config.json").read_text())
    assert (config["world_size"], config["batch_per_rank"]) == (1, 8)
    assert _state(tmp_path / "evaluated")["world_size"] == 1


def test_a_resume_needs_the_world_size_the_run_was_started_with(tmp_path, restore_threads):
    spec = build_spec("ae", "toyshapes", preset="smoke", steps=4)
    train(tmp_path / "run", spec, device="cpu", threads=1, stop_after=2)
    config_path = tmp_path / "run" / "config.json"
    checkpoint_path = tmp_path / "run" / "checkpoint.pt"
    config = json.loads(config_path.read_text())
    state = torch.load(checkpoint_path, weights_only=True)

    torch.save({**state, "world_size": 2}, checkpoint_path)
    with pytest.raises(RunFileError, match=r"written by 2 process\(es\), but its config.json "
                                           "and this run have 1"):
        train(tmp_path / "run", None, device="cpu", threads=1, resume=True)
    for bad in ("2", None, 0):
        config_path.write_text(json.dumps({**config, "world_size": bad}))
        with pytest.raises(RunFileError, match="is not a number of processes"):
            train(tmp_path / "run", None, device="cpu", threads=1, resume=True)
    config_path.write_text(json.dumps({**config, "world_size": 4}))
    with pytest.raises(RunFolderError, match=r"was trained by 4 process\(es\), not 1; "
                                             "resume it with 4"):
        train(tmp_path / "run", None, device="cpu", threads=1, resume=True)
    config_path.write_text(json.dumps(config))
    torch.save(state, checkpoint_path)
    train(tmp_path / "run", None, device="cpu", threads=1, resume=True, evaluate=False)
    assert _state(tmp_path / "run")["step"] == 4


def test_figures_only_refuses_torchrun():
    result = CliRunner().invoke(main, ["--figures-only", "."],
                                env={"RANK": "0", "WORLD_SIZE": "2"})
    assert result.exit_code == 2
    assert "--figures-only runs in one process" in result.output


def test_malformed_torchrun_environment_is_a_usage_error():
    result = CliRunner().invoke(main, ["ae", *SMOKE], env={"RANK": "x", "WORLD_SIZE": "2"})
    assert result.exit_code == 2 and "RANK='x' is not an integer" in result.output


# -- torchrun, two CPU processes -----------------------------------------------------------

def _replayed_gradients(spec, tau):
    """The first step of a 2-process FactorQVAE run, replayed rank by rank in this process.

    Returns the mean over ranks of the VAE gradients (at the initial parameters) and of
    the discriminator gradients (after the VAE update), each in parameter order.
    """
    mcfg, tcfg = spec.model_config, spec.train_config
    dataset = get_dataset(spec.dataset, image_size=mcfg.image_size, seed=spec.dataset_seed)
    torch.manual_seed(tcfg.seed)
    initial = build_model(spec.model, mcfg)
    per_rank = tcfg.batch_size // 2
    ranks = []
    for rank in range(2):
        model = build_model(spec.model, mcfg)
        model.load_state_dict(initial.state_dict())
        data_rng, noise_seed = rank_streams(tcfg.seed, rank)
        torch.manual_seed(noise_seed)
        x = torch.from_numpy(dataset.images(data_rng.integers(0, dataset.n_samples, per_rank)))
        model.loss_terms(x, tau)["loss"].backward()
        ranks.append((model, data_rng, torch.get_rng_state()))
    vae_grads = [torch.stack([p.grad for p in zip_params]).mean(0) for zip_params in
                 zip(*(model.vae_parameters() for model, _, _ in ranks))]
    # the VAE update as the run made it (Adam's first step), then each rank's
    # discriminator step with its own batch x' and noise
    optimizer = torch.optim.Adam(initial.vae_parameters(), lr=tcfg.lr, betas=tcfg.betas)
    for param, grad in zip(initial.vae_parameters(), vae_grads):
        param.grad = grad.clone()
    optimizer.step()
    disc_grads = []
    for model, data_rng, rng_state in ranks:
        joint_codes = model._joint_codes
        model.load_state_dict(initial.state_dict())
        model.zero_grad(set_to_none=True)
        torch.set_rng_state(rng_state)
        x_prime = torch.from_numpy(
            dataset.images(data_rng.integers(0, dataset.n_samples, per_rank)))
        model.discriminator_loss(x_prime, tau, joint_codes=joint_codes)["loss"].backward()
        disc_grads.append([p.grad for p in model.discriminator_parameters()])
    return vae_grads, [torch.stack(pair).mean(0) for pair in zip(*disc_grads)]


@needs_torchrun
@pytest.mark.slow
def test_torchrun_trains_on_the_global_batch_and_only_rank_0_writes(tmp_path, restore_threads):
    """One step of 2 processes: the gradients DDP averaged are the mean of the ranks'
    gradients, each rank with its own batch and noise; both Algorithm 1 steps."""
    run_dir = tmp_path / "ddp"
    proc = _torchrun(["factorqvae", *SMOKE, "--steps", "1", "--out", str(run_dir)])
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.count("run folder:") == 1 and "Traceback" not in proc.stderr
    assert proc.stdout.count("MSE(x1e4)") == 1  # the scores, printed by rank 0 only
    config = json.loads((run_dir / "config.json").read_text())
    assert (config["world_size"], config["batch_per_rank"]) == (2, 4)
    state = _state(run_dir)
    assert state["world_size"] == 2 and len(state["rng_ranks"]) == 2
    assert not torch.equal(state["rng_ranks"][0]["torch"], state["rng_ranks"][1]["torch"])
    assert state["rng_ranks"][0]["data"] != state["rng_ranks"][1]["data"]
    assert (run_dir / "metrics.json").is_file() and (run_dir / "latents.npz").is_file()
    assert len((run_dir / "log.csv").read_text().splitlines()) == 2  # header and step 1

    spec = build_spec("factorqvae", "toyshapes", preset="smoke", steps=1)
    tau = temperature(0, rate=spec.train_config.tau_rate, minimum=spec.train_config.tau_min)
    vae_grads, disc_grads = _replayed_gradients(spec, tau)
    beta1 = 1 - spec.train_config.betas[0]  # Adam's first exp_avg is (1 - beta1) * grad
    for optimizer, grads in (("vae_optimizer", vae_grads),
                             ("discriminator_optimizer", disc_grads)):
        slots = state[optimizer]["state"]
        assert len(slots) == len(grads)
        for index, grad in enumerate(grads):
            torch.testing.assert_close(slots[index]["exp_avg"], beta1 * grad,
                                       rtol=1e-5, atol=1e-9)

    # a run of two processes continues only with two
    resumed = subprocess.run([TRAIN_REFERENCE, "factorqvae", *SMOKE, "--steps", "1",
                              "--out", str(run_dir), "--resume"], env=ENV,
                             capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 2
    assert "was trained by 2 process(es), not 1; resume it with 2" in resumed.stderr


@needs_torchrun
def test_torchrun_refuses_a_batch_that_does_not_split(tmp_path):
    proc = _torchrun(["ae", *SMOKE, "--batch-size", "7", "--out", str(tmp_path / "run")])
    assert proc.returncode != 0
    lines = [line for line in proc.stderr.splitlines() if "does not split evenly" in line]
    assert lines == ["Error: batch size 7 does not split evenly across 2 processes; choose "
                     "a multiple of 2 (--batch-size is the global batch)"]
    assert "Traceback" not in proc.stderr.split("failed (exitcode")[0]  # torchrun's own after
    assert not (tmp_path / "run").exists()


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(child) for child in path.read_text().split()] if path.exists() else []


@needs_torchrun
@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="needs Linux's /proc")
def test_torchrun_killed_and_resumed_matches_an_uninterrupted_run(tmp_path):
    """SIGKILL every process of a 2-process run mid-way, resume it under torchrun: the
    parameters, optimiser states and log equal an uninterrupted 2-process run's."""
    args = ["factorqvae", *SMOKE, "--steps", "60", "--set", "checkpoint_every=10"]
    full = _torchrun(args + ["--out", str(tmp_path / "full")])
    assert full.returncode == 0, full.stderr

    killed = tmp_path / "killed"
    proc = subprocess.Popen([TORCHRUN, "--standalone", "--nproc_per_node", "2",
                             TRAIN_REFERENCE, *args, "--out", str(killed)], env=ENV,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and proc.poll() is None:
            if (killed / "checkpoint.pt").exists() and _count_rows(killed / "log.csv") >= 25:
                break
            time.sleep(0.005)
        assert proc.poll() is None, "the run finished before it could be killed"
        workers = _children(proc.pid)  # torchrun's workers run in sessions of their own
        assert len(workers) == 2
        for pid in workers + [proc.pid]:
            os.kill(pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    step_at_kill = _state(killed)["step"]
    assert 0 < step_at_kill < 60
    assert not (killed / "metrics.json").exists()

    resumed = _torchrun(args + ["--out", str(killed), "--resume"])
    assert resumed.returncode == 0, resumed.stderr
    full_state, killed_state = _state(tmp_path / "full"), _state(killed)
    assert full_state["step"] == killed_state["step"] == 60
    for key in full_state["model"]:
        assert torch.equal(full_state["model"][key], killed_state["model"][key]), key
    for key in ("vae_optimizer", "discriminator_optimizer"):
        for pid, slot in full_state[key]["state"].items():
            for name, value in slot.items():
                assert torch.equal(value, killed_state[key]["state"][pid][name])
    for rank in range(2):
        assert torch.equal(full_state["rng_ranks"][rank]["torch"],
                           killed_state["rng_ranks"][rank]["torch"])
    assert (tmp_path / "full" / "log.csv").read_text() == (killed / "log.csv").read_text()
    np.testing.assert_array_equal(np.load(tmp_path / "full" / "latents.npz")["latents"],
                                  np.load(killed / "latents.npz")["latents"])
