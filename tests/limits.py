"""Run a command in a subprocess under a hard address-space ceiling.

A memory regression then fails with MemoryError (or a refused allocation) inside the
child instead of making the test machine swap.
"""
from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys

__all__ = ["run_limited", "python_limited", "default_sigint"]

# Enough for the interpreter, torch, numpy, scikit-learn and a few hundred MB of work.
DEFAULT_CEILING = 3 * 2**30


def run_limited(args, *, max_bytes: int = DEFAULT_CEILING, timeout: float = 120, cwd=None,
                env=None) -> subprocess.CompletedProcess:
    """``subprocess.run(args)`` with ``RLIMIT_AS`` set to ``max_bytes`` in the child."""
    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (max_bytes, max_bytes))

    child_env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE", **(env or {})}
    return subprocess.run(args, preexec_fn=limit, capture_output=True, text=True,
                          timeout=timeout, cwd=cwd, env=child_env)


def python_limited(code: str, **kwargs) -> subprocess.CompletedProcess:
    """Run ``python -c code`` under the ceiling (see :func:`run_limited`)."""
    return run_limited([sys.executable, "-c", code], **kwargs)


def default_sigint() -> None:
    """``preexec_fn`` of a child that a test interrupts with SIGINT: a shell that starts
    the test run in the background sets SIGINT to "ignore", which children inherit and
    Python then keeps (it installs its KeyboardInterrupt handler only over the default)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
