"""Sweeps through submitit: planning, the local executor end to end, resubmission after a
kill, and the SLURM path up to the sbatch script (a fake sbatch records it)."""
import importlib.util
import json
import os
import signal
import stat
import time
from pathlib import Path

import numpy as np
import pytest
import submitit
import torch
from click.testing import CliRunner

from disentangle_eval.cli.main import main as disentangle_eval
from reference_models.training.loop import train
from reference_models.training.run_folder import load_checkpoint
from reference_models.training.sweep import (
    MANIFEST, Launcher, RunStatus, TrainingJob, format_status, plan_sweep, run_sweep,
    sweep_status,
)
from reference_models.training.table import collect_metrics, format_table, summarise

LOCAL = Launcher("local", max_parallel=2, timeout_min=10)
_SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "reproduce_table.py"
_SPEC = importlib.util.spec_from_file_location("reproduce_table_launcher", _SCRIPT)
reproduce_table = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(reproduce_table)
SMOKE = dict(preset="smoke", threads=1, figures=False)


def _count_rows(path: Path) -> int:
    try:
        return max(0, len(path.read_text().splitlines()) - 1)
    except FileNotFoundError:
        return 0


# -- planning ------------------------------------------------------------------------------

def test_plan_crosses_models_datasets_seeds_and_variants(tmp_path):
    jobs = plan_sweep(["ae", "qvae"], ["toyshapes", "toysprites"], [1, 2], out=tmp_path,
                      variants=[{}, {"beta": "0.001"}, {"lr": "1e-3", "betas": "(0.5, 0.9)"}],
                      overrides={"steps": "5", "beta": "0.5"}, **SMOKE)
    assert len(jobs) == 2 * 2 * 2 * 3
    assert [job.name for job in jobs[:5]] == [
        "ae-toyshapes-1", "qvae-toyshapes-1", "ae-toysprites-1", "qvae-toysprites-1",
        "ae-toyshapes-2"]
    assert jobs[0].run_dir == str(tmp_path / "ae-toyshapes-1")
    assert jobs[0].overrides == (("beta", "0.5"), ("steps", "5"))
    variant = jobs[8]
    assert variant.name == "ae-toyshapes-1-beta=0.001"
    assert dict(variant.overrides) == {"beta": "0.001", "steps": "5"}  # the variant wins
    hashed = jobs[16].name
    assert hashed.startswith("ae-toyshapes-1-") and len(hashed.rsplit("-", 1)[1]) == 10
    assert jobs[16].spec().train_config.betas == (0.5, 0.9)
    assert variant.spec().model_config.beta == 0.001
    assert variant.spec().train_config.steps == 5


def test_plan_checks_every_run_before_anything_runs(tmp_path):
    with pytest.raises(ValueError, match="unknown field"):
        plan_sweep(["ae"], ["toyshapes"], [1], out=tmp_path, overrides={"nope": "1"})
    with pytest.raises(ValueError, match="unknown model 'nope'"):
        plan_sweep(["ae", "nope"], ["toyshapes"], [1], out=tmp_path)
    with pytest.raises(ValueError, match="both named 'ae-toyshapes-1'"):
        plan_sweep(["ae", "ae"], ["toyshapes"], [1], out=tmp_path)
    assert not any(tmp_path.iterdir())


def test_launcher_parameters():
    with pytest.raises(ValueError, match="launcher must be one of local, slurm: got 'pbs'"):
        Launcher("pbs")
    with pytest.raises(ValueError, match="processes must be a positive number: got 0"):
        Launcher(processes=0)
    parameters = Launcher("slurm", partition="gpu", gpus_per_node=4, processes=4,
                          mem_gb=64, max_parallel=8,
                          parameters={"slurm_account": "lab"}).submitit_parameters()
    assert parameters == {"name": "train-reference", "timeout_min": 1440,
                          "tasks_per_node": 4, "nodes": 1, "gpus_per_node": 4, "mem_gb": 64,
                          "slurm_partition": "gpu", "slurm_array_parallelism": 8,
                          "slurm_srun_args": ["--kill-on-bad-exit=1"],
                          "slurm_account": "lab"}


def test_a_finished_run_is_not_trained_again(tmp_path):
    (job,) = plan_sweep(["ae"], ["toyshapes"], [1], out=tmp_path, **SMOKE)
    Path(job.run_dir).mkdir()
    (Path(job.run_dir) / "metrics.json").write_text("{}")
    assert job() == "done"
    assert sorted(p.name for p in Path(job.run_dir).iterdir()) == ["metrics.json"]
    assert sweep_status([job], tmp_path) == [RunStatus(job.name, job.run_dir, "done")]


def test_a_job_called_in_this_process_trains(tmp_path, monkeypatch):
    monkeypatch.delenv("SUBMITIT_EXECUTOR", raising=False)
    (job,) = plan_sweep(["ae"], ["toyshapes"], [1], out=tmp_path, overrides={"steps": "2"},
                        **SMOKE)
    threads = torch.get_num_threads()
    try:
        assert job() == "trained"
        assert job() == "done"
    finally:
        torch.set_num_threads(threads)
    assert (Path(job.run_dir) / "metrics.json").is_file()
    assert sweep_status([job], tmp_path)[0].state == "done"


def test_format_status():
    text = format_status([RunStatus("a", "x/a", "done"), RunStatus("b", "x/b", "running",
                                                                   "step 3/9", "12"),
                          RunStatus("c", "x/c", "failed", "error: no data", "13")])
    assert text.splitlines() == ["done 1, running 1, failed 1", "  b: running (step 3/9)",
                                 "  c: failed (error: no data)"]


# -- the local executor ----------------------------------------------------------------------

@pytest.mark.slow
def test_local_sweep_end_to_end(tmp_path, capsys):
    """A 2 x 2 sweep (models x seeds) of smoke trainings and a run that fails, two at a
    time through submitit's local executor; then the table of what finished."""
    sweep = tmp_path / "sweep"
    good = plan_sweep(["ae", "factorqvae"], ["toyshapes"], [1, 2], out=sweep,
                      overrides={"steps": "4"}, **SMOKE)
    bad = plan_sweep(["ae"], ["shapes3d"], [1], out=sweep, data_dir=tmp_path / "no-data",
                     **SMOKE)
    reports, finished = [], []
    statuses = run_sweep(good + bad, LOCAL, sweep, poll_seconds=0.5, report=reports.append,
                         on_finished=lambda status, seconds: finished.append(status.name))
    states = {status.name: status.state for status in statuses}
    assert states == {**{job.name: "done" for job in good}, bad[0].name: "failed"}, statuses
    detail = statuses[-1].detail
    assert detail.startswith("error: ") and "3dshapes.h5" in detail, detail
    assert sorted(finished) == sorted(job.name for job in good + bad)
    assert reports[-1].splitlines()[0] == "done 4, failed 1"
    summaries = [report.splitlines()[0] for report in reports]
    running = [int(line.split("running ")[1].split(",")[0]) for line in summaries
               if "running " in line]
    assert running and max(running) <= 2  # at most max_parallel at once
    manifest = json.loads((sweep / MANIFEST).read_text())
    assert sorted(manifest) == sorted(job.name for job in good + bad)
    assert {entry["launcher"] for entry in manifest.values()} == {"local"}

    table = format_table(summarise(collect_metrics([job.run_dir for job in good])), "csv")
    assert table.count("toyshapes") == 2  # one row per model, the two seeds together
    result = CliRunner().invoke(disentangle_eval, ["table", *sorted(
        str(path) for path in sweep.glob("*/metrics.json"))])
    assert result.exit_code == 0 and "FactorQVAE" in result.output

    # again: nothing left to do for the finished runs, and nothing submitted
    jobs_before = sorted(p.name for p in (sweep / "submitit").iterdir())
    again = run_sweep(good, LOCAL, sweep, poll_seconds=0.5, report=None)
    assert [status.state for status in again] == ["done"] * 4
    assert sorted(p.name for p in (sweep / "submitit").iterdir()) == jobs_before
    assert json.loads((sweep / MANIFEST).read_text()) == manifest

    # reproduce_table.py on the same runs: all finished, nothing submitted, their table
    args = ["--preset", "smoke", "--models", "ae,factorqvae", "--seeds", "1,2", "--out",
            str(sweep), "--set", "steps=4", "--threads", "1"]
    assert reproduce_table.main(args) == 0
    output = capsys.readouterr()
    assert "| AE |" in output.out and "| FactorQVAE |" in output.out
    assert output.err.strip().endswith("done 4")
    assert (sweep / "table.md").read_text() == output.out
    assert reproduce_table.main(args + ["--status"]) == 0
    assert capsys.readouterr().err.strip() == "done 4"
    assert sorted(p.name for p in (sweep / "submitit").iterdir()) == jobs_before


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(child) for child in path.read_text().split()] if path.exists() else []


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="needs Linux's /proc")
def test_a_killed_job_is_resumed_by_the_next_submission(tmp_path):
    sweep = tmp_path / "sweep"
    jobs = plan_sweep(["factorqvae"], ["toyshapes"], [3], out=sweep,
                      overrides={"steps": "300", "checkpoint_every": "10"}, **SMOKE)
    run_dir = Path(jobs[0].run_dir)
    (status,) = run_sweep(jobs, LOCAL, sweep, wait=False, report=None)
    controller = int(status.job_id)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and not (
            (run_dir / "checkpoint.pt").exists() and _count_rows(run_dir / "log.csv") >= 45):
        time.sleep(0.005)
    tasks = _children(controller)
    assert len(tasks) == 1, "the job ended before it could be killed"
    for pid in tasks + [controller]:  # the job and the controller die at once
        os.kill(pid, signal.SIGKILL)
    step_at_kill = load_checkpoint(run_dir / "checkpoint.pt")["step"]
    assert 0 < step_at_kill < 300
    time.sleep(0.2)
    (killed,) = sweep_status(jobs, sweep)
    assert killed.state == "failed" and killed.job_id == str(controller)

    (resumed,) = run_sweep(jobs, LOCAL, sweep, poll_seconds=0.5, report=None)
    assert resumed.state == "done" and resumed.job_id != str(controller)

    # the same as a run that was never interrupted
    threads = torch.get_num_threads()
    try:
        train(tmp_path / "uninterrupted", jobs[0].spec(), device="cpu", threads=1,
              figures=False)
    finally:
        torch.set_num_threads(threads)
    full = load_checkpoint(tmp_path / "uninterrupted" / "checkpoint.pt")
    again = load_checkpoint(run_dir / "checkpoint.pt")
    for key in full["model"]:
        assert torch.equal(full["model"][key], again["model"][key]), key
    assert (tmp_path / "uninterrupted" / "log.csv").read_text() == \
        (run_dir / "log.csv").read_text()
    np.testing.assert_array_equal(
        np.load(tmp_path / "uninterrupted" / "latents.npz")["latents"],
        np.load(run_dir / "latents.npz")["latents"])


# -- SLURM, up to the submission script --------------------------------------------------------

@pytest.fixture
def fake_slurm(tmp_path, monkeypatch):
    """srun, sbatch and sacct stand-ins: sbatch keeps each script and answers a job id,
    sacct prints the file sacct.txt."""
    record = tmp_path / "slurm"
    bin_dir = record / "bin"
    bin_dir.mkdir(parents=True)
    scripts = {
        "srun": "#!/bin/sh\nexit 0\n",
        "sbatch": f'#!/bin/sh\nn=$(ls "{record}" | grep -c "^submission")\n'
                  f'cp "$1" "{record}/submission-$n.sh"\necho "Submitted batch job 4242"\n',
        "sacct": f'#!/bin/sh\ncat "{record}/sacct.txt" 2>/dev/null\nexit 0\n',
    }
    for name, text in scripts.items():
        path = bin_dir / name
        path.write_text(text)
        path.chmod(path.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    submitit.SlurmJob.watcher.clear()
    yield record
    submitit.SlurmJob.watcher.clear()


def test_slurm_submission_script_carries_the_options(tmp_path, fake_slurm):
    sweep = tmp_path / "sweep"
    jobs = plan_sweep(["ae", "factorqvae"], ["toyshapes"], [1], out=sweep, preset="smoke",
                      device="cuda")
    launcher = Launcher("slurm", partition="gpu", gpus_per_node=2, processes=2,
                        cpus_per_task=8, mem_gb=32, timeout_min=90, max_parallel=1,
                        parameters={"slurm_account": "lab"})
    statuses = run_sweep(jobs, launcher, sweep, wait=False, report=None)
    assert [(s.state, s.job_id) for s in statuses] == [("queued", "4242_0"),
                                                       ("queued", "4242_1")]
    script = (fake_slurm / "submission-0.sh").read_text()
    lines = script.splitlines()
    for option in ("--partition=gpu", "--gpus-per-node=2", "--ntasks-per-node=2",
                   "--cpus-per-task=8", "--mem=32GB", "--time=90", "--nodes=1",
                   "--account=lab", "--array=0-1%1", "--job-name=train-reference"):
        assert f"#SBATCH {option}" in lines, option
    assert any(line.startswith("#SBATCH --signal=USR2@") for line in lines)  # requeue
    command = lines[-1] if lines[-1] else lines[-2]
    assert command.startswith("srun --unbuffered") and "--kill-on-bad-exit=1" in command
    assert "-m submitit.core._submit" in command and str(sweep / "submitit") in command
    # the pickled jobs are the trainings (as submitit will load them on the cluster)
    for index, job in enumerate(jobs):
        delayed = submitit.core.utils.DelayedSubmission.load(
            sweep / "submitit" / f"4242_{index}_submitted.pkl")
        assert delayed.function == job and isinstance(delayed.function, TrainingJob)

    # one running, one failed: the failed one is submitted again, alone
    (fake_slurm / "sacct.txt").write_text("JobID|State|NodeList\n4242_0|RUNNING|n1\n"
                                          "4242_1|FAILED|n2\n")
    log = sweep / "submitit" / "4242_1_0_log.err"
    log.write_text("submitit INFO starting\nerror: out of memory\nTraceback ...\n"
                   "RuntimeError: out of memory\n")
    submitit.SlurmJob.watcher.clear()
    statuses = sweep_status(jobs, sweep)
    assert [(s.state, s.detail) for s in statuses] == [
        ("running", ""), ("failed", "error: out of memory")]
    run_sweep(jobs, launcher, sweep, wait=False, report=None)
    second = (fake_slurm / "submission-1.sh").read_text()
    assert "--array" not in second and "#SBATCH --partition=gpu" in second
    assert not (fake_slurm / "submission-2.sh").exists()


def test_slurm_without_a_cluster_says_so(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    jobs = plan_sweep(["ae"], ["toyshapes"], [1], out=tmp_path, preset="smoke")
    with pytest.raises(RuntimeError, match="srun"):
        run_sweep(jobs, Launcher("slurm"), tmp_path, wait=False, report=None)


# -- benchmarks/reproduce_table.py on the sweep API -----------------------------------------

def test_reproduce_table_slurm_options_reach_sbatch(tmp_path, fake_slurm, capsys):
    out = tmp_path / "reproduce"
    assert reproduce_table.main([
        "--launcher", "slurm", "--partition", "a100", "--gpus", "2", "--cpus", "16",
        "--mem-gb", "64", "--time", "600", "--jobs", "4", "--sbatch", "account=lab",
        "--sbatch", "qos=high", "--preset", "smoke", "--seeds", "1,2", "--device", "cuda",
        "--out", str(out), "--no-wait"]) == 0
    assert "queued 18" in capsys.readouterr().err
    lines = (fake_slurm / "submission-0.sh").read_text().splitlines()
    for option in ("--partition=a100", "--gpus-per-node=2", "--ntasks-per-node=2",
                   "--cpus-per-task=16", "--mem=64GB", "--time=600", "--array=0-17%4",
                   "--account=lab", "--qos=high"):
        assert f"#SBATCH {option}" in lines, option
    delayed = submitit.core.utils.DelayedSubmission.load(
        out / "submitit" / "4242_17_submitted.pkl")
    job = delayed.function
    assert (job.name, job.device, job.threads, job.seed) == ("factorqvae-toyshapes-2",
                                                             "cuda", 16, 2)
    assert reproduce_table.main(["--launcher", "slurm", "--preset", "smoke", "--gpus", "3",
                                 "--out", str(tmp_path / "odd"), "--no-wait"]) == 2
    assert "batch size 8 does not split evenly across 3 processes" in capsys.readouterr().err
    assert reproduce_table.main(["--set", "nope", "--out", str(tmp_path / "x")]) == 2
    assert "--set: expected KEY=VALUE, got 'nope'" in capsys.readouterr().err
