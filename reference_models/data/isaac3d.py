"""``isaac3d``: NVlabs' Isaac3D, from the published folder of 128x128 PNGs.

The folder ``Isaac3D_down128/`` holds ``images/000000.png ...`` (737280 RGB images,
128x128) and ``labels.npy`` (737280, 9): object_shape 3, robot_x 8, robot_y 5,
camera_height 4, object_scale 4, lighting_intensity 4, lighting_y_dir 6, object_color 4,
wall_color 4.  The first use resizes every PNG to ``image_size`` (bicubic, as the paper's
code) into one ``isaac3d_<size>x<size>.npy`` in the data dir, memory-mapped from then on.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image, UnidentifiedImageError
from tqdm import tqdm

from ._published import (PublishedFile, decode_labels, malformed_file, missing_file,
                         read_rows, rows_for_combinations)
from .base import DatasetError, FactorDataset, check_factor_sizes, resolve_data_dir

__all__ = ["Isaac3D", "ISAAC3D_FILE", "ISAAC3D_FACTOR_NAMES", "ISAAC3D_FACTOR_SIZES"]

ISAAC3D_FACTOR_NAMES = ("object_shape", "robot_x", "robot_y", "camera_height", "object_scale",
                        "lighting_intensity", "lighting_y_dir", "object_color", "wall_color")
ISAAC3D_FACTOR_SIZES = (3, 8, 5, 4, 4, 4, 6, 4, 4)
ISAAC3D_FILE = PublishedFile(
    dataset="isaac3d",
    relative_path="Isaac3D_down128",
    contents="a folder with images/000000.png ... (737280 RGB PNGs, 128x128) and labels.npy "
             "(737280, 9)",
    url=None,
    homepage="https://github.com/NVlabs/High-res-disentanglement-datasets",
    manual_steps="download Isaac3D_down128 and unzip it",
)


def _png_files(folder: Path) -> dict[int, str]:
    """Map image number -> file name for ``NNNNNN.png`` files (any zero padding)."""
    found = {}
    with os.scandir(folder) as entries:
        for entry in entries:
            stem, dot, ext = entry.name.rpartition(".")
            if dot and ext.lower() == "png" and stem.isdigit():
                found[int(stem)] = entry.name
    return found


class Isaac3D(FactorDataset):
    """Isaac3D from NVlabs' ``Isaac3D_down128`` folder, resized once and memory-mapped.

    Parameters
    ----------
    data_dir : path-like, optional
        Folder holding ``Isaac3D_down128/``, and where the resized cache is written;
        default :func:`~.base.default_data_dir`.
    image_size : int, optional
        Size the PNGs are resized to (bicubic); default 64, as in the paper.
    factor_sizes : sequence of 9 int, optional
        The factor grid the folder must hold; default Isaac3D's.  Only for folders cut
        down to a sub-grid (the tests write such folders).
    folder : path-like, optional
        The ``Isaac3D_down128`` folder itself, overriding ``data_dir`` (the cache then
        goes next to it).

    Raises
    ------
    DatasetError
        ``labels.npy`` is missing or malformed, its labels are not a full factor grid, or
        (when the cache is built) a PNG is missing or unreadable.
    """

    def __init__(self, *, data_dir=None, image_size: int | None = None,
                 factor_sizes: Sequence[int] | None = None, folder=None):
        self.name = "isaac3d"
        self.factor_names = ISAAC3D_FACTOR_NAMES
        self.factor_sizes = (ISAAC3D_FACTOR_SIZES if factor_sizes is None
                             else check_factor_sizes(factor_sizes, 9, "isaac3d"))
        self.image_size = 64 if image_size is None else int(image_size)
        self.folder = Path(folder) if folder is not None else (
            resolve_data_dir(data_dir) / ISAAC3D_FILE.relative_path)
        labels_path = self.folder / "labels.npy"
        if not labels_path.is_file():
            raise missing_file(ISAAC3D_FILE, labels_path)
        n = self.n_samples
        try:
            labels = np.load(labels_path, allow_pickle=False)
        except (ValueError, OSError, EOFError) as exc:
            raise malformed_file(ISAAC3D_FILE, labels_path,
                                 f"is not a readable .npy array ({exc})") from None
        if labels.shape != (n, 9):
            raise malformed_file(ISAAC3D_FILE, labels_path,
                                 f"has shape {labels.shape}, expected {(n, 9)}")
        factors, self.factor_values = decode_labels(
            labels, self.factor_sizes, self.factor_names, spec=ISAAC3D_FILE, path=labels_path)
        self._rows = rows_for_combinations(factors, self.factor_sizes,
                                           spec=ISAAC3D_FILE, path=labels_path)
        size = self.image_size
        self.cache_path = self.folder.parent / f"isaac3d_{size}x{size}.npy"
        self._images = self._cached_images()

    def _cached_images(self) -> np.ndarray:
        expected = (self.n_samples, self.image_size, self.image_size, 3)
        if self.cache_path.is_file():
            try:
                array = np.load(self.cache_path, mmap_mode="r")
                if array.shape == expected and array.dtype == np.uint8:
                    return array
            except (ValueError, OSError):
                pass
            self.cache_path.unlink()  # stale or broken: it is derived, so make it again
        self._build_cache(expected)
        return np.load(self.cache_path, mmap_mode="r")

    def _build_cache(self, shape: tuple[int, ...]) -> None:
        image_folder = self.folder / "images"
        if not image_folder.is_dir():
            raise missing_file(ISAAC3D_FILE, image_folder)
        files = _png_files(image_folder)
        missing = [i for i in range(self.n_samples) if i not in files]
        if missing:
            raise malformed_file(
                ISAAC3D_FILE, image_folder,
                f"lacks {len(missing)} of the {self.n_samples} images, the first being "
                f"{missing[0]:06d}.png")
        partial = self.cache_path.with_name(self.cache_path.name + ".part")
        out = np.lib.format.open_memmap(partial, mode="w+", dtype=np.uint8, shape=shape)
        try:
            for row in tqdm(range(self.n_samples), disable=None, unit="img",
                            desc=f"resizing Isaac3D to {self.image_size}x{self.image_size}"):
                path = image_folder / files[row]
                try:
                    with Image.open(path) as image:
                        resized = image.convert("RGB").resize(
                            (self.image_size, self.image_size), resample=Image.BICUBIC)
                except (UnidentifiedImageError, OSError) as exc:
                    raise malformed_file(ISAAC3D_FILE, path,
                                         f"is not a readable image ({exc})") from None
                out[row] = np.asarray(resized)
            out.flush()
        except (DatasetError, KeyboardInterrupt):
            del out
            partial.unlink(missing_ok=True)
            raise
        del out
        os.replace(partial, self.cache_path)  # atomic: a half-built cache is never used

    def _images_uint8_at(self, indices: np.ndarray) -> np.ndarray:
        rows = indices if self._rows is None else self._rows[indices]
        return read_rows(lambda selection: self._images[selection], rows)
