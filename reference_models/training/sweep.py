"""Sweeps: many trainings (models x datasets x seeds x settings) as jobs through submitit.

:func:`plan_sweep` turns models, datasets, seeds and ``--set`` variants into
:class:`TrainingJob` s, one run folder each; :func:`run_sweep` submits them through
`submitit <https://github.com/facebookincubator/submitit>`_ as described by a
:class:`Launcher`, either to a SLURM cluster (``kind="slurm"``, one job per training,
as a job array) or to this machine (``kind="local"``, submitit's local executor, at most
``max_parallel`` at once), and waits for them while it reports progress.

A sweep is idempotent. A run whose folder holds ``metrics.json`` is done and is not
submitted again; a run whose job is still queued or running is left to it (the job of
each run is recorded in ``FOLDER/sweep.json``); any other run (never started, failed,
killed, preempted) is submitted, and its job resumes the run folder from its last
checkpoint. On SLURM, a job that is preempted or reaches its time limit is requeued by
submitit (:meth:`TrainingJob.checkpoint`) and resumes likewise. A job with
``Launcher(processes=N)`` trains one model with N processes (one per GPU) under
DistributedDataParallel, as ``torchrun --nproc_per_node N`` would.

Example
-------
>>> from reference_models.training.sweep import Launcher, plan_sweep, run_sweep
>>> jobs = plan_sweep(["ae", "factorqvae"], ["toyshapes"], [1, 2], out="runs/sweep",
...                   preset="smoke")                                    # doctest: +SKIP
>>> statuses = run_sweep(jobs, Launcher("local", max_parallel=2),
...                      folder="runs/sweep")                            # doctest: +SKIP
>>> [s.state for s in statuses]                                          # doctest: +SKIP
['done', 'done', 'done', 'done']

On a cluster, ``Launcher("slurm", partition="gpu", gpus_per_node=1, timeout_min=720,
mem_gb=32)``; ``run_sweep(..., wait=False)`` submits and returns, and
:func:`sweep_status` tells later how far the sweep is. The jobs inherit the environment of
the submitting process (on SLURM, sbatch's default): on shared CPU cores set
``OMP_WAIT_POLICY=PASSIVE`` there, as the commands do for themselves.
"""
from __future__ import annotations

import csv
import hashlib
import os
import re
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import submitit
from submitit.core.utils import JobPaths

from disentangle_eval._validation import resolve_device
from disentangle_eval.io import write_json
from reference_models.training.distributed import (
    SINGLE, check_batch_split, init_distributed, on_main, shutdown,
)
from reference_models.training.loop import train
from reference_models.training.run_folder import (
    CONFIG, LOG, METRICS, MAX_CONFIG_BYTES, build_spec, one_line, read_json,
)

__all__ = ["TrainingJob", "Launcher", "RunStatus", "plan_sweep", "make_executor",
           "submit_sweep", "sweep_status", "run_sweep", "format_status", "run_training_job",
           "MANIFEST", "LAUNCHERS"]

MANIFEST = "sweep.json"
LAUNCHERS = ("local", "slurm")
# submitit's files (pickled jobs, logs) go to this subfolder of the sweep folder.
_SUBMITIT = "submitit"
# A folder name tag of --set values: readable when short and plain, else a digest.
_PLAIN = re.compile(r"[A-Za-z0-9_.,=+-]{1,48}")
# SLURM states of a job that will still run (sacct's names; UNKNOWN: not yet accounted).
_WAITING = {"PENDING", "REQUEUED", "CONFIGURING", "RESIZING", "SUSPENDED", "REQUEUE_HOLD",
            "REQUEUE_FED", "UNKNOWN", "NO PROCESS AND NO RESULT"}
_RUNNING = {"RUNNING", "COMPLETING", "SIGNALING", "STAGE_OUT"}


@dataclass(frozen=True)
class TrainingJob:
    """One training of a sweep, as submitit runs it (a picklable callable).

    Parameters
    ----------
    name : str
        The run's name in the sweep (its folder's name).
    run_dir : str
        The run folder.
    model, dataset : str
        Registered names.
    seed : int
    preset : {"paper", "cpu", "smoke"} or None
        None: the dataset's default (as ``train-reference``).
    overrides : tuple of (str, str)
        ``--set key=value`` pairs.
    data_dir : str, optional
        Folder of the published dataset files.
    device : {"auto", "cpu", "cuda"}, default "auto"
    threads : int, optional
        Torch threads (None: torch's default).
    checkpoint_minutes : float, default 5
        Wall time between checkpoints.
    figures : bool, default True
        Draw the figures at the end.
    """

    name: str
    run_dir: str
    model: str
    dataset: str
    seed: int
    preset: str | None = None
    overrides: tuple[tuple[str, str], ...] = ()
    data_dir: str | None = None
    device: str = "auto"
    threads: int | None = None
    checkpoint_minutes: float = 5.0
    figures: bool = True

    def __call__(self) -> str:
        return run_training_job(self)

    def checkpoint(self, *args: Any, **kwargs: Any) -> submitit.helpers.DelayedSubmission:
        """submitit's hook on preemption or time-out: requeue the job, which resumes."""
        return submitit.helpers.DelayedSubmission(self)

    def spec(self):
        """The :class:`~reference_models.training.run_folder.RunSpec` this job trains.

        Raises
        ------
        ValueError, TypeError
            An unknown model, dataset, preset or field, or a value of the wrong type.
        """
        return build_spec(self.model, self.dataset, preset=self.preset,
                          data_dir=self.data_dir, seed=self.seed, overrides=dict(self.overrides))


@dataclass(frozen=True)
class Launcher:
    """Where the jobs of a sweep run, and with what resources.

    Parameters
    ----------
    kind : {"local", "slurm"}, default "local"
        submitit's local executor (this machine) or SLURM (``sbatch``).
    max_parallel : int, optional
        Jobs running at once: local, default 1; SLURM, the job array's parallelism
        (default: the scheduler's choice).
    timeout_min : int, default 1440
        Time limit of a job in minutes (SLURM's ``--time``). On SLURM a job that reaches
        it is requeued and resumes.
    processes : int, default 1
        Processes per job training one model together (DistributedDataParallel), one per
        GPU; the preset's batch is split across them.
    gpus_per_node, cpus_per_task : int, optional
        Resources of a job (SLURM's ``--gpus-per-node``, ``--cpus-per-task``).
    mem_gb : float, optional
        Memory of a job (SLURM's ``--mem``).
    partition : str, optional
        SLURM partition.
    parameters : mapping, optional
        Any other submitit parameter, e.g. ``{"slurm_account": "lab",
        "slurm_qos": "high", "slurm_setup": ["module load cuda"]}``.
    """

    kind: str = "local"
    max_parallel: int | None = None
    timeout_min: int = 24 * 60
    processes: int = 1
    gpus_per_node: int | None = None
    cpus_per_task: int | None = None
    mem_gb: float | None = None
    partition: str | None = None
    parameters: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in LAUNCHERS:
            raise ValueError(f"launcher must be one of {', '.join(LAUNCHERS)}: got "
                             f"{self.kind!r}")
        for name in ("max_parallel", "timeout_min", "processes", "gpus_per_node",
                     "cpus_per_task", "mem_gb"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool)
                                      or not isinstance(value, (int, float)) or value <= 0
                                      and not (name == "gpus_per_node" and value == 0)):
                raise ValueError(f"{name} must be a positive number: got {value!r}")

    def submitit_parameters(self) -> dict[str, Any]:
        """The parameters for ``AutoExecutor.update_parameters``."""
        parameters: dict[str, Any] = {"name": "train-reference",
                                      "timeout_min": int(self.timeout_min),
                                      "tasks_per_node": self.processes, "nodes": 1}
        for key in ("gpus_per_node", "cpus_per_task", "mem_gb"):
            if getattr(self, key) is not None:
                parameters[key] = getattr(self, key)
        if self.partition is not None:
            parameters["slurm_partition"] = self.partition
        if self.max_parallel is not None:
            parameters["slurm_array_parallelism"] = self.max_parallel
        if self.processes > 1:  # one failed process ends the job instead of hanging it
            parameters["slurm_srun_args"] = ["--kill-on-bad-exit=1"]
        parameters.update(self.parameters)
        return parameters


@dataclass(frozen=True)
class RunStatus:
    """Where a run of a sweep stands.

    ``state`` is ``"done"`` (``metrics.json`` written), ``"running"``, ``"queued"``,
    ``"failed"`` (its job ended without finishing the run; ``detail`` is the last error
    line of the job's log), ``"interrupted"`` (started earlier, no job now: it resumes when
    submitted) or ``"not started"``. ``detail`` of a running run is its last logged step.
    """

    name: str
    run_dir: str
    state: str
    detail: str = ""
    job_id: str | None = None


def _tag(variant: Mapping[str, str]) -> str:
    text = ",".join(f"{key}={value}" for key, value in sorted(variant.items()))
    if _PLAIN.fullmatch(text):
        return text
    return hashlib.sha256(text.encode()).hexdigest()[:10]


def plan_sweep(models: Iterable[str], datasets: Iterable[str], seeds: Iterable[int], *,
               out: str | os.PathLike, variants: Sequence[Mapping[str, str]] | None = None,
               preset: str | None = None, overrides: Mapping[str, str] | None = None,
               data_dir: str | os.PathLike | None = None, device: str = "auto",
               threads: int | None = None, checkpoint_minutes: float = 5.0,
               figures: bool = True) -> list[TrainingJob]:
    """One :class:`TrainingJob` for every model x dataset x seed x variant.

    Parameters
    ----------
    models, datasets : iterable of str
        Registered names.
    seeds : iterable of int
    out : path-like
        Folder of the run folders: ``OUT/MODEL-DATASET-SEED``, with ``-TAG`` for a
        non-empty variant (its ``key=value`` pairs, or a digest of them when they are
        long or hold other characters).
    variants : sequence of mapping, optional
        ``--set`` overrides that differ between runs (default: one empty variant).
    preset, data_dir, device, threads, checkpoint_minutes, figures
        As :class:`TrainingJob`'s, for every run.
    overrides : mapping of str to str, optional
        ``--set`` overrides of every run (a variant's win).

    Returns
    -------
    list of TrainingJob
        In the order variants, seeds, datasets, models.

    Raises
    ------
    ValueError, TypeError
        A run's settings are invalid (checked for every run before anything is
        submitted), or two runs would share a folder.
    """
    out = Path(out).absolute()  # the jobs may start elsewhere
    data_dir = None if data_dir is None else str(Path(data_dir).absolute())
    jobs: list[TrainingJob] = []
    names: set[str] = set()
    models, datasets, seeds = list(models), list(datasets), list(seeds)
    for variant in (variants or [{}]):
        merged = {**(overrides or {}), **variant}
        for seed in seeds:
            for dataset in datasets:
                for model in models:
                    name = f"{model}-{dataset}-{seed}" + (f"-{_tag(variant)}" if variant else "")
                    if name in names:
                        raise ValueError(f"two runs of the sweep are both named {name!r}")
                    names.add(name)
                    job = TrainingJob(
                        name=name, run_dir=str(out / name), model=model, dataset=dataset,
                        seed=int(seed), preset=preset,
                        overrides=tuple(sorted((str(k), str(v)) for k, v in merged.items())),
                        data_dir=data_dir,
                        device=device, threads=threads,
                        checkpoint_minutes=checkpoint_minutes, figures=figures)
                    job.spec()  # every setting checked before anything runs
                    jobs.append(job)
    return jobs


def run_training_job(job: TrainingJob) -> str:
    """Train ``job`` where submitit started it: nothing when done, else start or resume.

    In a job of several tasks (``Launcher(processes=N)``) every task is one rank of a
    DistributedDataParallel training, joined through submitit's description of the job.
    A failure is reported as one line ``error: ...`` on stderr (the sweep's progress shows
    it) and re-raised, so that the scheduler counts the job as failed.

    Returns
    -------
    str
        ``"done"`` (already finished) or ``"trained"``.
    """
    run_dir = Path(job.run_dir)
    if (run_dir / METRICS).exists():
        return "done"
    context = SINGLE
    completed = False
    try:
        spec = job.spec()
        # (called outside a submitit job, say to debug it, the job trains in this process)
        if "SUBMITIT_EXECUTOR" in os.environ and submitit.JobEnvironment().num_tasks > 1:
            # RANK, WORLD_SIZE, MASTER_ADDR, ... as torchrun sets them; every task sees
            # all GPUs of its node and takes the one of its local rank.
            submitit.helpers.TorchDistributedEnvironment().export(
                set_cuda_visible_devices=False)
        context, device = init_distributed(resolve_device(job.device))
        resume = on_main(context, (run_dir / CONFIG).exists)
        train(run_dir, spec, device=device, resume=resume, threads=job.threads,
              checkpoint_seconds=60.0 * job.checkpoint_minutes, progress=False,
              figures=job.figures, distributed=context)
        completed = True
    except Exception as exc:
        if context.is_main or not getattr(exc, "from_main_rank", False):
            text = (f"training diverged: {exc}" if isinstance(exc, FloatingPointError)
                    else str(exc) if isinstance(exc, ValueError)
                    else f"{type(exc).__name__}: {exc}")
            prefix = f"rank {context.rank}: " if not context.is_main else ""
            print(f"error: {prefix}{one_line(text)}", file=sys.stderr, flush=True)
        raise
    finally:
        shutdown(context, completed=completed)
    return "trained"


def make_executor(launcher: Launcher, folder: str | os.PathLike) -> submitit.Executor:
    """submitit's executor for ``launcher``, its files in ``FOLDER/submitit``.

    Raises
    ------
    RuntimeError
        ``kind="slurm"`` where SLURM's ``srun`` is not on the PATH.
    ValueError
        A parameter that the executor does not know.
    """
    executor = submitit.AutoExecutor(folder=Path(folder) / _SUBMITIT, cluster=launcher.kind)
    executor.update_parameters(**launcher.submitit_parameters())
    return executor


def _read_manifest(folder: Path) -> dict[str, dict[str, str]]:
    """The job of each run, as recorded by earlier submissions (empty when unreadable)."""
    path = folder / MANIFEST
    try:
        data = read_json(path, max_bytes=MAX_CONFIG_BYTES)
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {name: entry for name, entry in data.items()
            if isinstance(entry, dict) and isinstance(entry.get("job_id"), str)
            and entry.get("launcher") in LAUNCHERS}


def _local_job_running(job_id: str) -> bool:
    """Whether submitit's local controller ``job_id`` (its process id) still runs."""
    try:
        command = Path(f"/proc/{int(job_id)}/cmdline").read_bytes()
    except (OSError, ValueError):
        return False
    return b"submitit.local._local" in command


def _job_state(entry: Mapping[str, str], live: Mapping[str, submitit.Job],
               name: str, folder: Path) -> str:
    """"running", "queued" or the scheduler's final state of the run's recorded job."""
    job = live.get(name)
    if entry["launcher"] == "local":
        if job is not None:
            return "running" if job.state == "RUNNING" else "FINISHED"
        return "running" if _local_job_running(entry["job_id"]) else "FINISHED"
    if job is None:
        job = submitit.SlurmJob(folder / _SUBMITIT, entry["job_id"])
    state = job.state.upper()
    if state in _RUNNING:
        return "running"
    if state in _WAITING:
        return "queued"
    return state


def _last_error_line(folder: Path, job_id: str) -> str:
    """The last ``error:`` line of a job's stderr log, else its last line."""
    path = JobPaths(folder / _SUBMITIT, job_id=job_id, task_id=0).stderr
    try:
        with open(path, "rb") as handle:
            handle.seek(max(0, path.stat().st_size - 65536))
            lines = [line.strip() for line in
                     handle.read().decode("utf-8", "replace").splitlines() if line.strip()]
    except OSError:
        return ""
    errors = [line for line in lines if line.startswith("error:")]
    return one_line((errors or lines or [""])[-1], 240)


def _last_step(run_dir: Path) -> str:
    """"step N/T" from the run's log.csv and config.json ("" before the first row)."""
    try:
        with open(run_dir / LOG, newline="") as handle:
            rows = list(csv.reader(handle))
        total = read_json(run_dir / CONFIG, max_bytes=MAX_CONFIG_BYTES)["train_config"]["steps"]
    except (OSError, ValueError, KeyError, TypeError):
        return ""
    steps = [row[0] for row in rows[1:] if row and row[0].isdigit()]
    return f"step {steps[-1]}/{one_line(total, 20)}" if steps else ""


def _status(job: TrainingJob, entry: Mapping[str, str] | None,
            live: Mapping[str, submitit.Job], folder: Path) -> RunStatus:
    run_dir = Path(job.run_dir)
    if (run_dir / METRICS).exists():
        return RunStatus(job.name, job.run_dir, "done",
                         job_id=entry["job_id"] if entry else None)
    if entry is not None:
        state = _job_state(entry, live, job.name, folder)
        if state == "running":
            return RunStatus(job.name, job.run_dir, "running", _last_step(run_dir),
                             entry["job_id"])
        if state == "queued":
            return RunStatus(job.name, job.run_dir, "queued", job_id=entry["job_id"])
        detail = _last_error_line(folder, entry["job_id"])
        if state not in ("FINISHED", "COMPLETED", "FAILED"):
            detail = f"{state}: {detail}" if detail else state
        return RunStatus(job.name, job.run_dir, "failed", detail or "no metrics.json",
                         entry["job_id"])
    if (run_dir / CONFIG).exists():
        return RunStatus(job.name, job.run_dir, "interrupted", _last_step(run_dir))
    return RunStatus(job.name, job.run_dir, "not started")


def sweep_status(jobs: Sequence[TrainingJob], folder: str | os.PathLike, *,
                 live: Mapping[str, submitit.Job] | None = None) -> list[RunStatus]:
    """Where each run of the sweep in ``folder`` stands (reads only).

    Parameters
    ----------
    jobs : sequence of TrainingJob
    folder : path-like
        The sweep folder (``sweep.json`` and ``submitit/``).
    live : mapping of str to submitit.Job, optional
        Jobs submitted by this process, by run name (their processes are known).
    """
    folder = Path(folder)
    manifest = _read_manifest(folder)
    return [_status(job, manifest.get(job.name), live or {}, folder) for job in jobs]


def submit_sweep(jobs: Sequence[TrainingJob], launcher: Launcher, folder: str | os.PathLike,
                 *, limit: int | None = None, executor: submitit.Executor | None = None,
                 live: dict[str, submitit.Job] | None = None,
                 exclude: Iterable[str] = ()) -> list[RunStatus]:
    """Submit every run of the sweep that is neither done nor queued nor running.

    Parameters
    ----------
    jobs : sequence of TrainingJob
    launcher : Launcher
    folder : path-like
        The sweep folder: ``sweep.json`` records the job of each run, ``submitit/`` holds
        submitit's files and the jobs' logs.
    limit : int, optional
        Submit at most this many.
    executor : submitit.Executor, optional
        Made by :func:`make_executor` when not given.
    live : dict, optional
        Updated with the jobs submitted, by run name.
    exclude : iterable of str
        Names of runs not to submit (say, already submitted by this process).

    Returns
    -------
    list of RunStatus
        Of every run, after the submission.

    Raises
    ------
    ValueError
        A job's batch does not split across ``launcher.processes``.
    """
    folder = Path(folder)
    live = {} if live is None else live
    excluded = set(exclude)
    statuses = sweep_status(jobs, folder, live=live)
    todo = [job for job, status in zip(jobs, statuses)
            if status.state in ("failed", "interrupted", "not started")
            and job.name not in excluded]
    if limit is not None:
        todo = todo[:max(0, limit)]
    if not todo:
        return statuses
    for job in todo:
        check_batch_split(job.spec().train_config.batch_size, launcher.processes)
    if executor is None:
        executor = make_executor(launcher, folder)
    with executor.batch():
        submitted = [executor.submit(job) for job in todo]
    manifest = _read_manifest(folder)
    for job, handle in zip(todo, submitted):
        live[job.name] = handle
        manifest[job.name] = {"launcher": launcher.kind, "job_id": str(handle.job_id)}
    folder.mkdir(parents=True, exist_ok=True)
    write_json(folder / MANIFEST, manifest)
    return sweep_status(jobs, folder, live=live)


def format_status(statuses: Sequence[RunStatus]) -> str:
    """A summary line (counts by state) and one line per run that is not done."""
    order = ("done", "running", "queued", "failed", "interrupted", "not started")
    counts = {state: sum(s.state == state for s in statuses) for state in order}
    lines = [", ".join(f"{state} {count}" for state, count in counts.items() if count)]
    for status in statuses:
        if status.state != "done":
            lines.append(f"  {status.name}: {status.state}"
                         + (f" ({status.detail})" if status.detail else ""))
    return "\n".join(lines)


def _report_to_stderr(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def run_sweep(jobs: Sequence[TrainingJob], launcher: Launcher, folder: str | os.PathLike, *,
              wait: bool = True, poll_seconds: float = 10.0,
              report: Callable[[str], None] | None = _report_to_stderr,
              report_seconds: float = 600.0,
              on_finished: Callable[[RunStatus, float], None] | None = None
              ) -> list[RunStatus]:
    """Submit the sweep's runs that need it and, with ``wait``, follow them to the end.

    Each run is submitted at most once per call: a run that fails is reported as failed
    and is resubmitted (and resumes) by the next call. With the local launcher at most
    ``launcher.max_parallel`` (default 1) jobs run at once; on SLURM every run is
    submitted at once, as a job array limited to ``max_parallel`` running tasks.

    Parameters
    ----------
    jobs : sequence of TrainingJob
    launcher : Launcher
    folder : path-like
        The sweep folder (see :func:`submit_sweep`).
    wait : bool, default True
        Follow the jobs until none is queued or running; else return after submitting.
    poll_seconds : float, default 10
        Time between looks at the jobs.
    report : callable, optional
        Receives :func:`format_status` text whenever a run changes state, and at least
        every ``report_seconds`` while waiting (default: with the time, on stderr); None:
        silent.
    report_seconds : float, default 600
    on_finished : callable, optional
        Called with the status and the seconds since its submission of each run that
        this call submitted, when it ends (done or failed).

    Returns
    -------
    list of RunStatus
        Of every run, at the end.
    """
    for job in jobs:  # every run's settings, before the first submission
        check_batch_split(job.spec().train_config.batch_size, launcher.processes)
    executor = make_executor(launcher, folder)
    live: dict[str, submitit.Job] = {}
    submitted_at: dict[str, float] = {}
    finished: set[str] = set()
    last_states, last_report = None, 0.0
    while True:
        statuses = sweep_status(jobs, folder, live=live)
        limit = None
        if launcher.kind == "local":
            limit = (launcher.max_parallel or 1) - sum(
                s.state in ("running", "queued") for s in statuses)
        if limit is None or limit > 0:
            statuses = submit_sweep(jobs, launcher, folder, limit=limit, executor=executor,
                                    live=live, exclude=set(live))
        now = time.monotonic()
        for status in statuses:
            if status.name in live:
                submitted_at.setdefault(status.name, now)
                if status.state in ("done", "failed") and status.name not in finished:
                    finished.add(status.name)
                    if on_finished is not None:
                        on_finished(status, now - submitted_at[status.name])
        states = [(status.name, status.state) for status in statuses]
        if report is not None and (states != last_states
                                   or now - last_report >= report_seconds):
            report(format_status(statuses))
            last_states, last_report = states, now
        waiting = any(s.state in ("running", "queued") for s in statuses)
        unsubmitted = any(s.state in ("failed", "interrupted", "not started")
                          and s.name not in live for s in statuses)
        if not wait or not (waiting or unsubmitted):
            return statuses
        time.sleep(poll_seconds)
