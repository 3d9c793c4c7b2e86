"""Where a metric computes, and whether what it needs fits there.

:func:`require_memory` is the shared "will this allocation fit" check: a metric estimates
what a request needs before allocating it and refuses, with one line, what cannot fit.
"""
from __future__ import annotations

import os
import resource

import torch

from ._messages import DataError

__all__ = ["available_memory", "require_memory", "resolve_device"]


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``None``/``"auto"``: CUDA when available, else CPU; otherwise ``torch.device(device)``.

    Only ``cpu`` and ``cuda`` (``cuda:N`` of an existing device) are accepted.
    """
    if device is None or (isinstance(device, str) and device == "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        resolved = None
    if resolved is None or resolved.type not in ("cpu", "cuda"):
        raise ValueError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {device!r}")
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError("device='cuda' was requested but CUDA is not available on "
                             "this machine")
        if resolved.index is not None and resolved.index >= torch.cuda.device_count():
            raise ValueError(f"device={device!r}: this machine has "
                             f"{torch.cuda.device_count()} CUDA device(s)")
    return resolved


def _format_bytes(n: float) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def _proc_kib(path: str, key: str) -> int | None:
    try:
        with open(path) as handle:
            for line in handle:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def available_memory(device: str | torch.device | None = None) -> int:
    """Bytes this process can still allocate, as far as the system says.

    On CPU: the smaller of the memory the kernel reports available (``MemAvailable`` of
    ``/proc/meminfo``, else free physical pages) and the room left under this process's
    address-space and data limits (``RLIMIT_AS``, ``RLIMIT_DATA``). On a CUDA device:
    the free memory of that device.
    """
    if device is not None and torch.device(device).type == "cuda":
        return int(torch.cuda.mem_get_info(torch.device(device))[0])
    candidates = []
    meminfo = _proc_kib("/proc/meminfo", "MemAvailable")
    if meminfo is not None:
        candidates.append(meminfo)
    else:
        try:
            candidates.append(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
        except (ValueError, OSError, AttributeError):
            pass
    for limit, used_key in ((resource.RLIMIT_AS, "VmSize"), (resource.RLIMIT_DATA, "VmData")):
        soft = resource.getrlimit(limit)[0]
        used = _proc_kib("/proc/self/status", used_key)
        if soft != resource.RLIM_INFINITY and used is not None:
            candidates.append(max(0, soft - used))
    return min(candidates) if candidates else 2**63 - 1


def require_memory(n_bytes: int, what: str, *, device: str | torch.device | None = None,
                   hint: str = "use fewer samples or a machine with more memory") -> None:
    """Refuse, with one line, an allocation of ``n_bytes`` that cannot fit.

    Parameters
    ----------
    n_bytes : int
        Estimated peak bytes of the request (all of its buffers together).
    what : str
        What needs the memory, for the message (``"the DCI histograms"``).
    device : str, torch.device or None
        Where the memory is allocated (``None``: CPU).
    hint : str
        What the user can do about it.

    Raises
    ------
    DataError
        ``"<what> needs about X GiB of memory but only Y GiB is available; <hint>"``.
    """
    available = available_memory(device)
    if n_bytes > available:
        where = "" if device is None or torch.device(device).type == "cpu" else f" on {device}"
        raise DataError(f"{what} needs about {_format_bytes(n_bytes)} of memory but only "
                        f"{_format_bytes(available)} is available{where}; {hint}")
