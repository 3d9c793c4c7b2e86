"""Reading latents and factors from .npz/.npy files, safely.

Reading never unpickles and never allocates before checking: an array's header (shape x
itemsize) and, inside an .npz, the member's declared size are compared with the file and
with the memory available before a byte of data is read.
"""
from __future__ import annotations

import os
import zipfile
from pathlib import Path

import numpy as np

from ._device import require_memory
from ._messages import DataError

__all__ = ["METADATA_KEYS", "load_array", "load_factor_names"]

# Arrays that describe factors rather than hold data; never picked as "the only array".
METADATA_KEYS = ("factor_names", "factor_sizes", "latent_names")

_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")
_NPY_MAGIC = b"\x93NUMPY"
_HINT_ROWS = "use fewer rows or a machine with more memory"


def _read_header(handle, source: str) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype from an .npy header, without reading the data."""
    try:
        version = np.lib.format.read_magic(handle)
        if version == (1, 0):
            shape, _, dtype = np.lib.format.read_array_header_1_0(handle)
        elif version == (2, 0):
            shape, _, dtype = np.lib.format.read_array_header_2_0(handle)
        else:
            raise ValueError(f"unsupported .npy version {version}")
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        raise DataError(f"{source}: not a readable NumPy array ({exc})") from None
    if dtype.hasobject:
        raise DataError(f"{source}: holds Python objects (dtype {dtype}), which are never "
                        "unpickled; save numeric arrays")
    return shape, dtype


def _read_npy(handle, size: int, source: str, role: str) -> np.ndarray:
    """The array of an .npy stream of ``size`` bytes, checked before it is allocated."""
    shape, dtype = _read_header(handle, source)
    n_bytes = int(np.prod(shape, dtype=object)) * dtype.itemsize
    available = size - handle.tell()
    if n_bytes > available:
        raise DataError(f"{source}: the header declares {role} of shape {shape} ({dtype}, "
                        f"{n_bytes} bytes) but only {available} bytes follow; the file is "
                        "truncated or corrupt")
    require_memory(n_bytes, f"{source}: {role} of shape {shape} ({dtype})", hint=_HINT_ROWS)
    handle.seek(0)
    try:
        return np.lib.format.read_array(handle, allow_pickle=False)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        raise DataError(f"{source}: {role} cannot be read ({exc})") from None


def _magic(path: Path) -> bytes:
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file")
    if path.is_dir():
        raise DataError(f"{path}: is a directory, expected a .npz or .npy file")
    if not path.is_file():
        raise DataError(f"{path}: is not a regular file (a device, pipe or socket), expected "
                        "a .npz or .npy file")
    with open(path, "rb") as handle:
        magic = handle.read(6)
    if not magic:
        raise DataError(f"{path}: the file is empty")
    if not (magic.startswith(_ZIP_MAGIC) or magic == _NPY_MAGIC):
        raise DataError(f"{path}: not a readable NumPy .npz/.npy file (corrupt, truncated, "
                        "or another format)")
    return magic


def _open_zip(path: Path) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError):
        raise DataError(f"{path}: not a readable NumPy .npz/.npy file (corrupt, truncated, "
                        "or another format)") from None


def _npz_members(archive: zipfile.ZipFile) -> dict[str, zipfile.ZipInfo]:
    """Array name -> zip member (``name.npy`` is read as ``name``, as numpy does)."""
    return {(info.filename[:-4] if info.filename.endswith(".npy") else info.filename): info
            for info in archive.infolist()}


def _read_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, source: str,
                 role: str) -> np.ndarray:
    try:
        with archive.open(info) as handle:
            # The declared size bounds what zipfile will decompress; the header's shape
            # is checked against it and against memory before the array is allocated.
            return _read_npy(handle, info.file_size, source, role)
    except (zipfile.BadZipFile, OSError, EOFError, NotImplementedError, RuntimeError) as exc:
        raise DataError(f"{source}: cannot be read ({exc})") from None


def load_array(path: str | os.PathLike, role: str, key: str | None = None) -> np.ndarray:
    """Load the ``role`` array (``"latents"`` or ``"factors"``) from a .npz or .npy file.

    From an .npz: the array under ``key`` if given, else under ``role`` when the file
    holds several arrays, else its only data array. From an .npy: the array itself.

    Raises
    ------
    FileNotFoundError
        ``path`` does not exist.
    DataError
        Unreadable, truncated, pickled or too large for the memory available, a missing
        key, or not a 2-D array.
    """
    path = Path(path)
    magic = _magic(path)
    if magic == _NPY_MAGIC:
        if key is not None:
            raise DataError(f"{path}: a .npy file holds a single array; --{role}-key "
                            "applies to .npz files only")
        with open(path, "rb") as handle:
            array = _read_npy(handle, path.stat().st_size, str(path), role)
    else:
        with _open_zip(path) as archive:
            members = _npz_members(archive)
            names = list(members)
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
            if chosen not in members:
                raise DataError(f"{path}: no array named {chosen!r} (keys: {names})")
            array = _read_member(archive, members[chosen], f"{path}: array {chosen!r}", role)
    if array.ndim != 2:
        raise DataError(f"{path}: {role} must be a 2-D array (n_samples, n_columns), "
                        f"got shape {array.shape}")
    return array


def load_factor_names(*paths: str | os.PathLike, n_factors: int) -> list[str] | None:
    """``factor_names`` from the first .npz among ``paths`` that has them, else None.

    Raises :class:`DataError` when that array cannot be read or does not hold one name
    per factor.
    """
    for path in paths:
        path = Path(path)
        if not path.is_file() or _magic(path) == _NPY_MAGIC:
            continue
        with _open_zip(path) as archive:
            members = _npz_members(archive)
            if "factor_names" not in members:
                continue
            array = _read_member(archive, members["factor_names"],
                                 f"{path}: factor_names", "factor_names")
        if array.dtype.kind not in "USiu":
            raise DataError(f"{path}: factor_names must be strings, got dtype {array.dtype}")
        names = [n.decode("utf-8", "replace") if isinstance(n, bytes) else str(n)
                 for n in array.reshape(-1)]
        if len(names) != n_factors:
            raise DataError(f"{path}: factor_names has {len(names)} entries but factors have "
                            f"{n_factors} columns")
        return names
    return None
