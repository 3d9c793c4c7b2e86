"""Shared pieces of the loaders of published files: where each file comes from, error
messages, label decoding and row-order checks."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .base import DATA_DIR_ENV, DatasetError

__all__ = ["PublishedFile", "decode_labels", "missing_file", "rows_for_combinations"]


@dataclass(frozen=True)
class PublishedFile:
    """Where a published dataset file comes from and what it holds.

    Attributes
    ----------
    dataset : str
        Registry name of the dataset the file belongs to.
    relative_path : str
        Path of the file (or folder) under the data dir.
    contents : str
        What it holds, e.g. ``"HDF5: images (480000, 64, 64, 3) uint8, labels (480000, 6)"``.
    url : str or None
        Direct download URL, when there is one that :mod:`.download` can fetch.
    homepage : str
        The publisher's page.
    manual_steps : str
        What to do by hand when there is no direct URL (e.g. unzip an archive).
    """

    dataset: str
    relative_path: str
    contents: str
    url: str | None
    homepage: str
    manual_steps: str = ""

    def where(self) -> str:
        """One sentence saying where to get the file."""
        if self.url:
            how = (f"download {self.url} (publisher: {self.homepage}), e.g. with "
                   f"`python -m reference_models.data.download {self.dataset}`")
        else:
            how = f"get it from {self.homepage}"
            if self.manual_steps:
                how += f" ({self.manual_steps})"
        return (f"{how}; put it in the data dir (--data-dir or ${DATA_DIR_ENV})")


def missing_file(spec: PublishedFile, path: Path) -> DatasetError:
    """The error for a file that is not there."""
    return DatasetError(
        f"{spec.dataset}: expected {path} ({spec.contents}), not found; {spec.where()}")


def malformed_file(spec: PublishedFile, path: Path, problem: str) -> DatasetError:
    """The error for a file that is there but cannot be used."""
    return DatasetError(
        f"{spec.dataset}: {path} {problem}; expected {spec.contents}. {spec.where()}")


def decode_labels(labels: np.ndarray, factor_sizes: tuple[int, ...],
                  factor_names: tuple[str, ...], *, spec: PublishedFile, path: Path,
                  decimals: int = 6) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
    """Turn label values into factor indices by ranking each column's distinct values.

    Parameters
    ----------
    labels : ndarray of shape (n, n_factors)
        Label values as published (floats such as hues and angles, or integers).
    factor_sizes : tuple of int
        Expected number of distinct values per column.
    decimals : int, default 6
        Values are rounded to this many decimals first, so that float noise in a stored
        value (0.30000000000000004) does not make a new distinct value.

    Returns
    -------
    factors : ndarray of shape (n, n_factors), int64
        ``factors[j, i]`` is the rank of ``labels[j, i]`` among column ``i``'s values.
    values : tuple of ndarray
        The sorted distinct values of each column (index -> label value).
    """
    labels = np.asarray(labels)
    factors = np.empty(labels.shape, dtype=np.int64)
    values = []
    for column, (size, name) in enumerate(zip(factor_sizes, factor_names)):
        rounded = np.round(labels[:, column].astype(np.float64), decimals)
        distinct, inverse = np.unique(rounded, return_inverse=True)
        if len(distinct) != size:
            raise malformed_file(
                spec, path, f"has {len(distinct)} distinct values in label column {column} "
                            f"({name}), expected {size}")
        factors[:, column] = inverse.reshape(-1)
        values.append(distinct)
    return factors, tuple(values)


def rows_for_combinations(factors: np.ndarray, factor_sizes: tuple[int, ...], *,
                          spec: PublishedFile, path: Path) -> np.ndarray | None:
    """Map combination indices to file rows.

    Returns ``None`` when the file is in row-major factor order (row ``i`` holds
    combination ``i``, as every publisher here stores it), else the array whose entry
    ``c`` is the row that holds combination ``c``.  Raises :class:`DatasetError` when
    some combination is missing or repeated, i.e. the rows are not a full factor grid.
    """
    combination = np.ravel_multi_index(tuple(factors.T), factor_sizes)
    if np.array_equal(combination, np.arange(len(combination))):
        return None
    counts = np.bincount(combination, minlength=int(np.prod(factor_sizes)))
    if (counts != 1).any():
        missing = int((counts == 0).sum())
        raise malformed_file(
            spec, path, f"does not hold every factor combination exactly once "
                        f"({missing} combinations missing, {int((counts > 1).sum())} repeated)")
    rows = np.empty_like(combination)
    rows[combination] = np.arange(len(combination))
    return rows


def read_rows(read, rows: np.ndarray) -> np.ndarray:
    """Read ``rows`` (any order, repeats allowed) through ``read(sorted_unique_rows)``.

    Lazy stores (HDF5 datasets, memory maps) read fastest in increasing row order, and
    h5py requires it; contiguous runs are read as one slice.
    """
    unique, inverse = np.unique(rows, return_inverse=True)
    if unique[-1] - unique[0] + 1 == len(unique):
        block = read(slice(int(unique[0]), int(unique[-1]) + 1))
    else:
        block = read(unique)
    return np.asarray(block)[inverse.reshape(-1)]
