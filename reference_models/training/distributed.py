"""Data-parallel training: the process group, ranks, per-rank random streams, sharing.

``torchrun`` (or a multi-task submitit job, see :mod:`reference_models.training.sweep`)
starts one process per device and describes the group in environment variables
(``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``).
:func:`init_distributed` joins that group (backend ``nccl`` on CUDA, ``gloo`` on the CPU)
and returns a :class:`DistributedContext`; :func:`reference_models.training.loop.train`
takes it and trains with ``DistributedDataParallel``. A world of one process needs no
group: the context is :data:`SINGLE` and training is exactly the single-process one.

What each rank does (see ``train``): the preset's batch is the global batch, split
evenly, so every rank draws ``batch_size / world_size`` indices per step; the batch
indices and the Gumbel/permutation noise come from streams of its own
(:func:`rank_streams`, from the run seed and the rank); only rank 0 reads and writes the
run folder, and what it finds (the spec, a checkpoint, an error) reaches the other ranks
through :func:`on_main`.
"""
from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any, TypeVar

import numpy as np
import torch
import torch.distributed as dist

__all__ = ["DistributedContext", "SINGLE", "launched_by_torchrun", "context_from_environment",
           "init_distributed", "shutdown", "wait_for_idle_threads", "rank_streams",
           "check_batch_split", "on_main", "broadcast_from_main", "gather_to_main",
           "mean_across_ranks"]

T = TypeVar("T")


@dataclass(frozen=True)
class DistributedContext:
    """Where this process stands in a data-parallel run.

    Parameters
    ----------
    rank : int, default 0
        Global rank (0 writes the run folder).
    world_size : int, default 1
        Number of processes; 1 is an ordinary single-process run.
    local_rank : int, default 0
        Rank on this machine: the CUDA device index of this process.
    backend : {"gloo", "nccl"} or None
        Backend of the joined process group; None when there is none (one process).
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None

    @property
    def is_main(self) -> bool:
        """True on rank 0, the one that reads and writes the run folder."""
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        """True when several processes train together."""
        return self.world_size > 1


SINGLE = DistributedContext()


def launched_by_torchrun(environ: Mapping[str, str] | None = None) -> bool:
    """True when the environment describes a process group (torchrun sets ``RANK``...)."""
    environ = os.environ if environ is None else environ
    return "RANK" in environ and "WORLD_SIZE" in environ


def context_from_environment(environ: Mapping[str, str] | None = None) -> DistributedContext:
    """The rank, world size and local rank that torchrun describes (no group is joined).

    Without torchrun's variables this is :data:`SINGLE`.

    Raises
    ------
    ValueError
        A variable is not an integer, or the ranks do not fit the world size.
    """
    environ = os.environ if environ is None else environ
    if not launched_by_torchrun(environ):
        return SINGLE
    values = {}
    for name, default in (("RANK", None), ("WORLD_SIZE", None), ("LOCAL_RANK", "0")):
        text = environ.get(name, default)
        try:
            values[name] = int(text)
        except (TypeError, ValueError):
            raise ValueError(f"environment variable {name}={text!r} is not an integer") \
                from None
    rank, world_size, local_rank = values["RANK"], values["WORLD_SIZE"], values["LOCAL_RANK"]
    if world_size < 1 or not 0 <= rank < world_size or not 0 <= local_rank <= rank:
        raise ValueError(f"RANK={rank}, LOCAL_RANK={local_rank} and WORLD_SIZE={world_size} "
                         "do not describe a process group")
    return DistributedContext(rank=rank, world_size=world_size, local_rank=local_rank)


def check_batch_split(batch_size: int, world_size: int) -> int:
    """The per-rank batch of a global ``batch_size`` split across ``world_size`` ranks.

    Raises
    ------
    ValueError
        ``batch_size`` is not a multiple of ``world_size``.
    """
    if batch_size % world_size:
        raise ValueError(f"batch size {batch_size} does not split evenly across "
                         f"{world_size} processes; choose a multiple of {world_size} "
                         "(--batch-size is the global batch)")
    return batch_size // world_size


def init_distributed(device: torch.device, environ: Mapping[str, str] | None = None
                     ) -> tuple[DistributedContext, torch.device]:
    """Join the process group the environment describes; return it and this rank's device.

    A world of one process joins nothing and keeps ``device``. On CUDA each process
    takes the device of its local rank and the ``nccl`` backend; on the CPU ``gloo``.

    Raises
    ------
    ValueError
        The environment does not describe a process group (see
        :func:`context_from_environment`), or names more CUDA devices than there are.
    """
    context = context_from_environment(environ)
    if not context.enabled:
        return context, device
    if device.type == "cuda":
        if context.local_rank >= torch.cuda.device_count():
            raise ValueError(f"LOCAL_RANK={context.local_rank} but this machine has "
                             f"{torch.cuda.device_count()} CUDA device(s); start at most "
                             "one process per GPU (torchrun --nproc_per_node)")
        device = torch.device("cuda", context.local_rank)
        torch.cuda.set_device(device)
        backend = "nccl"
    else:
        backend = "gloo"
    dist.init_process_group(backend, rank=context.rank, world_size=context.world_size)
    return replace(context, backend=backend), device


def shutdown(context: DistributedContext, *, completed: bool = False) -> None:
    """Leave the process group of ``context`` (nothing for a single process).

    ``completed``: every rank got through the run, so all of them wait here for the others
    first. A rank that tore the group down while another still finished its last
    collective (rank 0's broadcast after the evaluation) could abort in gloo's threads.

    Then it waits (at most a few seconds) for the backend's worker threads to go idle.
    ``DistributedDataParallel`` keeps the backend alive past ``destroy_process_group``, so
    its threads are not joined, and a worker that frees the last collective's tensors
    after the interpreter has begun to finalise takes the GIL from a dying interpreter
    and aborts the process ("terminate called without an active exception", SIGABRT,
    after a run that succeeded; 4 of ~95 two-rank runs on a loaded 2-core machine; the
    PyTorch issue is pytorch/pytorch#179291).
    """
    if context.enabled and dist.is_initialized():
        if completed:
            dist.barrier()
        dist.destroy_process_group()
        wait_for_idle_threads()


def _busy_threads() -> int | None:
    """How many threads of this process other than the calling one are running or
    runnable (Linux's ``/proc/self/task``); None where that cannot be read."""
    tasks = "/proc/self/task"
    try:
        names = os.listdir(tasks)
    except OSError:
        return None
    busy = 0
    for name in names:
        if int(name) == threading.get_native_id():
            continue
        try:
            with open(f"{tasks}/{name}/stat", "rb") as handle:
                stat = handle.read()
        except OSError:  # the thread has just exited
            continue
        state = stat[stat.rindex(b")") + 2:][:1]  # after "pid (comm) "
        busy += state in (b"R", b"D")
    return busy


def wait_for_idle_threads(timeout: float = 5.0, poll: float = 0.005,
                          settled_polls: int = 3) -> bool:
    """Sleep (releasing the GIL) until no other thread of this process has run for
    ``settled_polls`` polls in a row, or ``timeout`` seconds; True when they settled.

    A thread that waits for the GIL gets it during the sleep, so what is left running
    afterwards is work that has not finished. Without ``/proc`` it sleeps ``poll`` x
    ``settled_polls`` x 10 seconds and returns False.
    """
    deadline = time.monotonic() + timeout
    settled = 0
    while time.monotonic() < deadline:
        time.sleep(poll)
        busy = _busy_threads()
        if busy is None:
            time.sleep(poll * settled_polls * 10)
            return False
        settled = settled + 1 if busy == 0 else 0
        if settled >= settled_polls:
            return True
    return False


def rank_streams(seed: int, rank: int) -> tuple[np.random.Generator, int]:
    """The batch-index generator and the torch noise seed of ``rank`` in a seeded run.

    Two independent children of ``SeedSequence(seed, spawn_key=(rank,))``: every rank
    draws other batches and other Gumbel/permutation noise, and the same run seed
    gives the same streams again.
    """
    data, noise = np.random.SeedSequence(seed, spawn_key=(rank,)).spawn(2)
    return np.random.default_rng(data), int(noise.generate_state(1, np.uint64)[0])


def broadcast_from_main(context: DistributedContext, value: T | None) -> T:
    """Rank 0's ``value`` on every rank (``value`` is ignored elsewhere)."""
    if not context.enabled:
        return value
    box = [value if context.is_main else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def on_main(context: DistributedContext, function: Callable[[], T]) -> T:
    """Run ``function`` on rank 0 only; its result, or its error, on every rank.

    The other ranks raise an exception of the same type and message, with the attribute
    ``from_main_rank = True`` so that a command can leave the reporting to rank 0.
    """
    if not context.enabled:
        return function()
    outcome: tuple[str, Any] | None = None
    error = None
    if context.is_main:
        try:
            outcome = ("ok", function())
        except Exception as exc:  # noqa: BLE001 - shared with the other ranks, re-raised
            error = exc
            outcome = ("error", (type(exc), str(exc)))
    kind, value = broadcast_from_main(context, outcome)
    if kind == "ok":
        return value
    if error is not None:
        raise error
    error_type, message = value
    try:
        mirrored = error_type(message)
    except Exception:  # noqa: BLE001 - a type that takes other arguments
        mirrored = RuntimeError(message)
    mirrored.from_main_rank = True
    raise mirrored


def gather_to_main(context: DistributedContext, value: T) -> list[T] | None:
    """Every rank's ``value``, in rank order, on rank 0; None on the other ranks."""
    if not context.enabled:
        return [value]
    gathered: list[T] | None = [None] * context.world_size if context.is_main else None
    dist.gather_object(value, gathered, dst=0)
    return gathered


def mean_across_ranks(context: DistributedContext, values: list[float],
                      device: torch.device) -> list[float]:
    """The mean over ranks of each of ``values`` (one all-reduce, float64)."""
    if not context.enabled:
        return list(values)
    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(tensor)
    return (tensor / context.world_size).tolist()
