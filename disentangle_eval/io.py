"""Reading latents/factors files and writing results atomically."""
from __future__ import annotations

import json
import os
import tempfile
import zipfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from ._validation import DataError

__all__ = ["load_array", "load_factor_names", "atomic_write", "write_json", "write_npy"]

# Arrays that describe factors rather than hold data; never picked as "the only array".
METADATA_KEYS = ("factor_names", "factor_sizes", "latent_names")


def _open(path: Path):
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file")
    if path.is_dir():
        raise DataError(f"{path}: is a directory, expected a .npz or .npy file")
    if path.stat().st_size == 0:
        raise DataError(f"{path}: the file is empty")
    try:
        return np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile):
        # numpy's own messages talk about pickles and zip internals; the user needs less.
        raise DataError(f"{path}: not a readable NumPy .npz/.npy file (corrupt, truncated, "
                        "or another format)") from None


def load_array(path: str | os.PathLike, role: str, key: str | None = None) -> np.ndarray:
    """Load the ``role`` array (``"latents"`` or ``"factors"``) from a .npz or .npy file.

    From an .npz: the array under ``key`` if given, else under ``role`` when the file
    holds several arrays, else its only data array. From an .npy: the array itself.
    """
    path = Path(path)
    loaded = _open(path)
    if isinstance(loaded, np.ndarray):
        if key is not None:
            raise DataError(f"{path}: a .npy file holds a single array; --{role}-key "
                            "applies to .npz files only")
        array = loaded
    else:
        with loaded as npz:
            names = list(npz.files)
            data_names = [n for n in names if n not in METADATA_KEYS]
            if key is not None:
                chosen = key
            elif role in names:
                chosen = role
            elif len(data_names) == 1:
                chosen = data_names[0]
            elif not data_names:
                raise DataError(f"{path}: the .npz holds no data array (keys: {names})")
            else:
                raise DataError(f"{path}: no array named '{role}' among {names}; choose one "
                                f"with --{role}-key")
            if chosen not in names:
                raise DataError(f"{path}: no array named '{chosen}' (keys: {names})")
            try:
                array = npz[chosen]
            except (ValueError, OSError, zipfile.BadZipFile, EOFError) as exc:
                raise DataError(f"{path}: array '{chosen}' cannot be read ({exc})") from None
    if array.dtype == object:
        raise DataError(f"{path}: {role} has dtype object (ragged or pickled data)")
    if array.ndim != 2:
        raise DataError(f"{path}: {role} must be a 2-D array (n_samples, n_columns), "
                        f"got shape {array.shape}")
    return array


def load_factor_names(*paths: str | os.PathLike, n_factors: int) -> list[str] | None:
    """``factor_names`` from the first .npz among ``paths`` that has them, else None."""
    for path in paths:
        path = Path(path)
        if path.suffix != ".npz":
            continue
        try:
            with np.load(path, allow_pickle=False) as npz:
                if "factor_names" not in npz.files:
                    continue
                names = [str(n) for n in np.asarray(npz["factor_names"]).reshape(-1)]
        except (ValueError, OSError, zipfile.BadZipFile, EOFError):
            continue
        if len(names) != n_factors:
            raise DataError(f"{path}: factor_names has {len(names)} entries but factors have "
                            f"{n_factors} columns")
        return names
    return None


@contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb"):
    """Write to a temporary file beside ``path`` and rename it into place on success."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
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
    with atomic_write(path, "w") as handle:
        json.dump(obj, handle, indent=2)
        handle.write("\n")


def write_npy(path: str | os.PathLike, array: np.ndarray) -> None:
    with atomic_write(path, "wb") as handle:
        np.save(handle, array)
