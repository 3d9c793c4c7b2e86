"""Reading latents/factors files, and writing results atomically.

Reading (:func:`load_array`, :func:`load_factor_names`, from
:mod:`~disentangle_eval._safe_load`) never unpickles and never allocates before checking
an array's declared size against the file and the memory available.

Writing: :func:`atomic_write` writes one file to a temporary name and renames it into
place; :func:`staged_output` makes a whole folder of results appear at once (one
``rename`` of a folder written beside it), so that a reader, a second run or a kill
never sees a partial or mixed set.
"""
from __future__ import annotations

import ctypes
import errno
import os
import shutil
import socket
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Collection, Iterator

import numpy as np

from ._results import strict_json
from ._safe_load import load_array, load_factor_names

__all__ = ["load_array", "load_factor_names", "atomic_write", "write_json", "write_npy",
           "OutputFolderError", "staged_output"]


# --------------------------------------------------------------------------------------
# Writing one file
# --------------------------------------------------------------------------------------

def _umask() -> int:
    """The process umask, read without changing it (Linux), else by setting it back."""
    try:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb"):
    """Write to a temporary file beside ``path`` and rename it into place on success.

    The file gets the permissions of any new file (``0o666`` less the umask), not the
    private ``0o600`` of the temporary file.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, mode) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_json(path: str | os.PathLike, obj) -> None:
    """``obj`` as strict JSON (no NaN/Infinity: non-finite floats become null)."""
    text = strict_json(obj)
    with atomic_write(path, "w") as handle:
        handle.write(text + "\n")


def write_npy(path: str | os.PathLike, array: np.ndarray) -> None:
    with atomic_write(path, "wb") as handle:
        np.save(handle, array, allow_pickle=False)


# --------------------------------------------------------------------------------------
# Writing a folder of results at once
# --------------------------------------------------------------------------------------

class OutputFolderError(Exception):
    """An output folder that cannot receive results: it holds other files, another run
    filled it meanwhile, or it cannot be written."""


def _staging_prefix(dest: Path) -> str:
    return f".{dest.name}.partial-{socket.gethostname()}-"


def _remove_stale_staging(dest: Path) -> None:
    """Remove staging folders beside ``dest`` left by runs of this host that were killed."""
    prefix = _staging_prefix(dest)
    try:
        entries = list(dest.parent.iterdir())
    except OSError:
        return
    for entry in entries:
        if not entry.name.startswith(prefix) or not entry.is_dir() or entry.is_symlink():
            continue
        try:
            pid = int(entry.name[len(prefix):].split("-")[0])
            os.kill(pid, 0)
        except ProcessLookupError:
            if (entry / "old").is_dir() and not os.path.lexists(dest):
                os.rename(entry / "old", dest)  # killed in the middle of a swap: undo it
            shutil.rmtree(entry, ignore_errors=True)
        except (ValueError, PermissionError, OSError):
            continue  # alive, another user's, or not ours


def _check_replaceable(dest: Path, force: bool, replaceable: Collection[str]) -> None:
    try:
        entries = sorted(os.listdir(dest))
    except FileNotFoundError:
        return
    except NotADirectoryError:
        if not dest.exists():
            return  # a file on the way there: reported when the folder is created
        raise OutputFolderError(f"{dest}: exists and is not a directory") from None
    except OSError as exc:
        raise OutputFolderError(f"{dest}: cannot be read ({exc.strerror})") from None
    if not entries:
        return
    shown = ", ".join(entries[:5]) + (f" and {len(entries) - 5} more" if len(entries) > 5 else "")
    if not force:
        raise OutputFolderError(f"{dest}: already holds {shown}; pass --force to replace "
                                "those results, or choose a new or empty folder")
    foreign = [e for e in entries if e not in replaceable]
    if foreign:
        shown = ", ".join(foreign[:5]) + (f" and {len(foreign) - 5} more"
                                          if len(foreign) > 5 else "")
        raise OutputFolderError(f"{dest}: holds files that are not results of this command "
                                f"({shown}); it is never replaced, even with --force; "
                                "choose a new or empty folder")


_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one step (Linux ``renameat2(RENAME_EXCHANGE)``); False if the
    system or the file system cannot."""
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError):
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p,
                          ctypes.c_uint]
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP):
        return False
    raise OSError(code, os.strerror(code), str(b))


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _publish(staging: Path, dest: Path, force: bool, replaceable: Collection[str]) -> None:
    """Move the complete ``staging`` folder onto ``dest`` in one step."""
    try:
        # rename(2) onto a missing or empty folder succeeds and fails on a non-empty one:
        # of two runs racing for a new folder exactly one wins.
        os.rename(staging, dest)
    except OSError as exc:
        if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST):
            raise OutputFolderError(f"{dest}: results cannot be moved there "
                                    f"({exc.strerror})") from None
        if not force:
            raise OutputFolderError(f"{dest}: another run wrote results there meanwhile; "
                                    "nothing was written (pass --force to replace them)") \
                from None
        _check_replaceable(dest, force, replaceable)
        try:
            _swap_in(staging, dest)
        except OSError as exc:
            raise OutputFolderError(f"{dest}: results cannot be moved there "
                                    f"({exc.strerror})") from None
    _fsync_dir(dest.parent)


def _swap_in(staging: Path, dest: Path) -> None:
    """Replace the non-empty folder ``dest`` by ``staging``; the old one is deleted."""
    if _exchange(staging, dest):
        shutil.rmtree(staging, ignore_errors=True)  # now holds the replaced results
        return
    # No atomic swap on this system: move the old set aside first (a kill in between
    # leaves it, whole, in a staging folder beside dest, which a later run removes).
    aside = Path(tempfile.mkdtemp(prefix=_staging_prefix(dest) + f"{os.getpid()}-",
                                  dir=dest.parent))
    os.rename(dest, aside / "old")
    try:
        os.rename(staging, dest)
    except OSError:
        os.rename(aside / "old", dest)
        shutil.rmtree(aside, ignore_errors=True)
        raise
    shutil.rmtree(aside, ignore_errors=True)


@contextmanager
def staged_output(dest: str | os.PathLike, *, force: bool = False,
                  replaceable: Collection[str] = ()) -> Iterator[Path]:
    """A temporary folder beside ``dest`` that replaces ``dest`` in one step on success.

    Checked on entry, before any work: ``dest`` must be missing or empty, or (with
    ``force``) hold only files named in ``replaceable``; its parent must be writable (the
    staging folder is created there, with the umask's permissions). On a normal exit the
    staging folder becomes ``dest`` with one ``rename``; on an exception (Ctrl-C
    included) it is removed and ``dest`` is as it was. Staging folders of killed runs of
    this host are removed on entry.

    Raises
    ------
    OutputFolderError
        ``dest`` cannot receive the results (see above), on entry or, when another run
        filled it meanwhile, on exit.
    """
    dest = Path(os.path.realpath(dest))
    cwd = Path(os.path.realpath(os.getcwd()))
    if dest == cwd or dest in cwd.parents:
        raise OutputFolderError(f"{dest}: is the current folder or one above it; results "
                                "go to a folder of their own")
    _check_replaceable(dest, force, replaceable)
    created = [p for p in [dest.parent, *dest.parent.parents] if not p.exists()]
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        _remove_stale_staging(dest)
        staging = Path(tempfile.mkdtemp(prefix=_staging_prefix(dest) + f"{os.getpid()}-",
                                        dir=dest.parent))
    except OSError as exc:
        for folder in created:
            _rmdir_quietly(folder)
        why = f"{exc.strerror}: {exc.filename}" if exc.strerror and exc.filename else exc
        raise OutputFolderError(f"{dest}: cannot write there ({why})") from None
    try:
        mode = (dest.stat().st_mode & 0o7777) if dest.is_dir() else 0o777 & ~_umask()
        os.chmod(staging, mode)
        yield staging
        _publish(staging, dest, force, replaceable)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        for folder in created:
            _rmdir_quietly(folder)
        raise


def _rmdir_quietly(folder: Path) -> None:
    try:
        folder.rmdir()
    except OSError:
        pass
