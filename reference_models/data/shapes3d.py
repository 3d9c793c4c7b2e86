"""``shapes3d``: DeepMind's 3dshapes, read lazily from the published ``3dshapes.h5``.

The file holds ``images`` (480000, 64, 64, 3) uint8 and ``labels`` (480000, 6) float64 in
row-major factor order (floor_hue, wall_hue, object_hue, scale, shape, orientation; the
last varies fastest).  Images are read from the HDF5 file per request, never all at once
(the array is 5.9 GB); the labels (23 MB) are read once to decode factor indices and to
check the row order.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np

from ._published import (PublishedFile, decode_labels, malformed_file, missing_file,
                         read_rows, rows_for_combinations)
from .base import FactorDataset, check_factor_sizes, resize_uint8, resolve_data_dir

__all__ = ["Shapes3D", "SHAPES3D_FILE", "SHAPES3D_FACTOR_NAMES", "SHAPES3D_FACTOR_SIZES",
           "shapes3d_factor_values"]

SHAPES3D_FACTOR_NAMES = ("floor_hue", "wall_hue", "object_hue", "scale", "shape", "orientation")
SHAPES3D_FACTOR_SIZES = (10, 10, 10, 8, 4, 15)


def shapes3d_factor_values() -> tuple[np.ndarray, ...]:
    """The label values Shapes3D's ``labels`` column holds for each factor index."""
    hues = np.linspace(0.0, 0.9, 10)
    return (hues, hues.copy(), hues.copy(), np.linspace(0.75, 1.25, 8),
            np.arange(4, dtype=np.float64), np.linspace(-30.0, 30.0, 15))


SHAPES3D_FILE = PublishedFile(
    dataset="shapes3d",
    relative_path="3dshapes.h5",
    contents="HDF5 with `images` (480000, 64, 64, 3) uint8, 5.9 GB of pixels, and `labels` "
             "(480000, 6) float64",
    url="https://storage.googleapis.com/3d-shapes/3dshapes.h5",
    homepage="https://github.com/google-deepmind/3dshapes-dataset",
)
_NATIVE_SIZE = 64


class Shapes3D(FactorDataset):
    """Shapes3D from DeepMind's ``3dshapes.h5``, read lazily.

    Parameters
    ----------
    data_dir : path-like, optional
        Folder holding ``3dshapes.h5``; default :func:`~.base.default_data_dir`
        (``$DISENTANGLE_EVAL_DATA`` or ``~/.cache/disentangle-eval/data``).
    image_size : int, optional
        Output size; default 64, the file's.  Other sizes are resized on read (bicubic).
    factor_sizes : sequence of 6 int, optional
        The factor grid the file must hold; default Shapes3D's (10, 10, 10, 8, 4, 15).
        Only for files cut down to a sub-grid (the tests write such files); the label
        values are then not compared with Shapes3D's.
    path : path-like, optional
        The file itself, overriding ``data_dir``.

    Raises
    ------
    DatasetError
        The file is missing, is not HDF5, lacks ``images``/``labels``, has the wrong
        shapes or dtype, or its labels are not a full factor grid.
    """

    def __init__(self, *, data_dir=None, image_size: int | None = None,
                 factor_sizes: Sequence[int] | None = None, path=None):
        import h5py

        self.name = "shapes3d"
        self.factor_names = SHAPES3D_FACTOR_NAMES
        published = factor_sizes is None
        self.factor_sizes = (SHAPES3D_FACTOR_SIZES if published
                             else check_factor_sizes(factor_sizes, 6, "shapes3d"))
        self.image_size = _NATIVE_SIZE if image_size is None else int(image_size)
        self.path = Path(path) if path is not None else (
            resolve_data_dir(data_dir) / SHAPES3D_FILE.relative_path)
        if not self.path.is_file():
            raise missing_file(SHAPES3D_FILE, self.path)
        n = self.n_samples
        try:
            handle = h5py.File(self.path, "r")
        except OSError as exc:
            raise malformed_file(SHAPES3D_FILE, self.path,
                                 f"is not a readable HDF5 file ({exc})") from None
        with handle:
            for key in ("images", "labels"):
                if not isinstance(handle.get(key), h5py.Dataset):
                    raise malformed_file(SHAPES3D_FILE, self.path, f"has no dataset `{key}`")
            images, labels = handle["images"], handle["labels"]
            expected = (n, _NATIVE_SIZE, _NATIVE_SIZE, 3)
            if images.shape != expected or images.dtype != np.uint8:
                raise malformed_file(
                    SHAPES3D_FILE, self.path,
                    f"has `images` {images.shape} {images.dtype}, expected {expected} uint8")
            if labels.shape != (n, 6):
                raise malformed_file(SHAPES3D_FILE, self.path,
                                     f"has `labels` {labels.shape}, expected {(n, 6)}")
            label_values = labels[()]
        factors, values = decode_labels(label_values, self.factor_sizes, self.factor_names,
                                        spec=SHAPES3D_FILE, path=self.path)
        if published:
            for column, (got, want) in enumerate(zip(values, shapes3d_factor_values())):
                if not np.allclose(got, want, atol=1e-4):
                    raise malformed_file(
                        SHAPES3D_FILE, self.path,
                        f"has label values {np.round(got, 4).tolist()} in column {column} "
                        f"({self.factor_names[column]}), expected {np.round(want, 4).tolist()}")
            values = shapes3d_factor_values()
        self.factor_values = values
        # The published file is in row-major order; any other order is mapped, not assumed.
        self._rows = rows_for_combinations(factors, self.factor_sizes,
                                           spec=SHAPES3D_FILE, path=self.path)
        self._handle = None
        self._handle_pid = None

    def _images_dataset(self):
        import h5py

        # One handle per process: h5py handles must not cross a fork (DataLoader workers).
        if self._handle is None or self._handle_pid != os.getpid():
            self._handle = h5py.File(self.path, "r")
            self._handle_pid = os.getpid()
        return self._handle["images"]

    def close(self) -> None:
        """Close the HDF5 file (it reopens on the next read)."""
        if self._handle is not None and self._handle_pid == os.getpid():
            self._handle.close()
        self._handle = None

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_handle"] = None
        return state

    def _images_uint8_at(self, indices: np.ndarray) -> np.ndarray:
        rows = indices if self._rows is None else self._rows[indices]
        dataset = self._images_dataset()
        images = read_rows(lambda selection: dataset[selection], rows)
        return resize_uint8(images, self.image_size)
