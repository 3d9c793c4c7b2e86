"""``mpi3d`` (MPI3D-complex, the paper's MPI3D) and ``mpi3d_toy``/``_realistic``/``_real``.

Each is one ``.npz`` with the key ``images`` (N, 64, 64, 3) uint8 in row-major factor order
(object_color, object_shape, object_size, camera_height, background_color,
horizontal_axis, vertical_axis; the last varies fastest).  No labels are stored: the
factors follow from the row index.

Reading without loading 5-13 GB: an ``.npz`` is a zip archive of ``.npy`` members.  A
*stored* (uncompressed, ``np.savez``) member is memory-mapped where it lies inside the zip.
A *deflated* member (``np.savez_compressed``) cannot be memory-mapped, so it is
decompressed once, streaming, into ``<name>.images.npy`` next to the archive and that file
is memory-mapped from then on (it needs the array's size in free disk space).
"""
from __future__ import annotations

import os
import struct
import zipfile
from pathlib import Path
from typing import Sequence

import numpy as np
from tqdm import tqdm

from ._published import PublishedFile, malformed_file, missing_file, read_rows
from .base import FactorDataset, check_factor_sizes, resize_uint8, resolve_data_dir

__all__ = ["MPI3D", "MPI3D_FILES", "MPI3D_FACTOR_NAMES"]

MPI3D_FACTOR_NAMES = ("object_color", "object_shape", "object_size", "camera_height",
                      "background_color", "horizontal_axis", "vertical_axis")
_COMPLEX_SIZES = (4, 4, 2, 3, 3, 40, 40)
_SIX_SHAPE_SIZES = (6, 6, 2, 3, 3, 40, 40)
_HOMEPAGE = "https://github.com/rr-learning/disentanglement_dataset"
_BUCKET = "https://storage.googleapis.com/disentanglement_dataset/Final_Dataset/"
_NATIVE_SIZE = 64


def _spec(dataset: str, filename: str, sizes: tuple[int, ...], url: str | None,
          manual: str = "") -> PublishedFile:
    n = int(np.prod(sizes))
    return PublishedFile(
        dataset=dataset, relative_path=filename,
        contents=f"npz with `images` ({n}, 64, 64, 3) uint8, {n * 64 * 64 * 3 / 1e9:.1f} GB "
                 f"of pixels",
        url=url, homepage=_HOMEPAGE, manual_steps=manual)


#: variant -> (registry name, file spec, factor sizes)
MPI3D_FILES = {
    "complex": (_spec("mpi3d", "real3d_complicated_shapes_ordered.npz", _COMPLEX_SIZES, None,
                      "MPI3D-complex; the copy the paper's authors download is "
                      "https://drive.google.com/file/d/1Tp8eTdHxgUMtsZv5uAoYAbJR1BOa_OQm"),
                _COMPLEX_SIZES),
    "toy": (_spec("mpi3d_toy", "mpi3d_toy.npz", _SIX_SHAPE_SIZES,
                  _BUCKET + "mpi3d_toy.npz"),
            _SIX_SHAPE_SIZES),
    "realistic": (_spec("mpi3d_realistic", "mpi3d_realistic.npz", _SIX_SHAPE_SIZES,
                        _BUCKET + "mpi3d_realistic.npz"),
                  _SIX_SHAPE_SIZES),
    "real": (_spec("mpi3d_real", "mpi3d_real.npz", _SIX_SHAPE_SIZES,
                   _BUCKET + "mpi3d_real.npz"),
             _SIX_SHAPE_SIZES),
}

_LOCAL_HEADER = struct.Struct("<4s5H3L2H")  # zip local file header, 30 bytes


def _npy_header(stream) -> tuple[tuple[int, ...], bool, np.dtype]:
    version = np.lib.format.read_magic(stream)
    if version == (1, 0):
        return np.lib.format.read_array_header_1_0(stream)
    return np.lib.format.read_array_header_2_0(stream)


def _member_data_offset(path: Path, info: zipfile.ZipInfo) -> int:
    """Byte offset of a zip member's data: after its local header, whose extra field can
    differ from the central directory's (zip64), so it is read from the file."""
    with open(path, "rb") as raw:
        raw.seek(info.header_offset)
        fields = _LOCAL_HEADER.unpack(raw.read(_LOCAL_HEADER.size))
        if fields[0] != b"PK\x03\x04":
            raise zipfile.BadZipFile("bad local file header")
        name_length, extra_length = fields[-2], fields[-1]
        return info.header_offset + _LOCAL_HEADER.size + name_length + extra_length


class MPI3D(FactorDataset):
    """An MPI3D variant from its published ``.npz``, memory-mapped.

    Parameters
    ----------
    variant : {"complex", "toy", "realistic", "real"}, default "complex"
        ``complex`` is ``real3d_complicated_shapes_ordered.npz`` (460800 images, 4 colours
        and 4 shapes), the paper's MPI3D; the others are ``mpi3d_<variant>.npz``
        (1036800 images, 6 colours and 6 shapes).
    data_dir : path-like, optional
        Folder holding the ``.npz``; default :func:`~.base.default_data_dir`.
    image_size : int, optional
        Output size; default 64, the file's.  Other sizes are resized on read (bicubic).
    factor_sizes : sequence of 7 int, optional
        The factor grid the file must hold; default the variant's.  Only for files cut
        down to a sub-grid (the tests write such files).
    path : path-like, optional
        The file itself, overriding ``data_dir``.

    Raises
    ------
    DatasetError
        The file is missing, not an npz, lacks ``images`` or has the wrong shape or dtype.
    """

    def __init__(self, variant: str = "complex", *, data_dir=None, image_size: int | None = None,
                 factor_sizes: Sequence[int] | None = None, path=None):
        if variant not in MPI3D_FILES:
            raise ValueError(f"variant must be one of {sorted(MPI3D_FILES)}: received {variant!r}")
        spec, published_sizes = MPI3D_FILES[variant]
        self.spec = spec
        self.variant = variant
        self.name = spec.dataset
        self.factor_names = MPI3D_FACTOR_NAMES
        self.factor_sizes = (published_sizes if factor_sizes is None
                             else check_factor_sizes(factor_sizes, 7, spec.dataset))
        self.factor_values = tuple(np.arange(s) for s in self.factor_sizes)
        self.image_size = _NATIVE_SIZE if image_size is None else int(image_size)
        self.path = Path(path) if path is not None else (
            resolve_data_dir(data_dir) / spec.relative_path)
        if not self.path.is_file():
            raise missing_file(spec, self.path)
        self._images = self._open_images()

    def _check_header(self, shape, fortran_order, dtype, where: Path) -> None:
        expected = (self.n_samples, _NATIVE_SIZE, _NATIVE_SIZE, 3)
        if tuple(shape) != expected or np.dtype(dtype) != np.uint8 or fortran_order:
            raise malformed_file(
                self.spec, where, f"has `images` {tuple(shape)} {np.dtype(dtype)}"
                                  f"{' (Fortran order)' if fortran_order else ''}, "
                                  f"expected {expected} uint8")

    def _open_images(self) -> np.ndarray:
        try:
            archive = zipfile.ZipFile(self.path)
        except (zipfile.BadZipFile, OSError) as exc:
            raise malformed_file(self.spec, self.path,
                                 f"is not a readable npz (zip) archive ({exc})") from None
        with archive:
            try:
                info = archive.getinfo("images.npy")
            except KeyError:
                keys = [member.removesuffix(".npy") for member in archive.namelist()]
                raise malformed_file(self.spec, self.path,
                                     f"has no key `images` (keys: {keys})") from None
            try:
                with archive.open(info) as member:
                    shape, fortran_order, dtype = _npy_header(member)
                    header_length = member.tell()
            except (ValueError, zipfile.BadZipFile, OSError) as exc:
                raise malformed_file(self.spec, self.path,
                                     f"has an unreadable `images` array ({exc})") from None
            self._check_header(shape, fortran_order, dtype, self.path)
            if info.compress_type == zipfile.ZIP_STORED:
                try:
                    offset = _member_data_offset(self.path, info) + header_length
                    return np.memmap(self.path, dtype=np.uint8, mode="r", offset=offset,
                                     shape=tuple(shape))
                except (ValueError, OSError, zipfile.BadZipFile) as exc:
                    raise malformed_file(self.spec, self.path,
                                         f"has a truncated `images` array ({exc})") from None
            return self._extracted(archive, info)

    def _extracted(self, archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> np.ndarray:
        """Memory-map the decompressed copy of a deflated member, making it once."""
        target = self.path.with_name(self.path.name.removesuffix(".npz") + ".images.npy")
        if target.is_file():
            try:
                array = np.load(target, mmap_mode="r")
                self._check_header(array.shape, False, array.dtype, target)
                return array
            except (ValueError, OSError):
                target.unlink()  # a stale or broken copy: make it again

        partial = target.with_name(target.name + ".part")
        with archive.open(info) as member, open(partial, "wb") as out, tqdm(
                total=info.file_size, unit="B", unit_scale=True, disable=None,
                desc=f"decompressing {self.path.name}") as bar:
            while chunk := member.read(1 << 24):
                out.write(chunk)
                bar.update(len(chunk))
        os.replace(partial, target)
        return np.load(target, mmap_mode="r")

    def _images_uint8_at(self, indices: np.ndarray) -> np.ndarray:
        images = read_rows(lambda selection: self._images[selection], indices)
        return resize_uint8(images, self.image_size)
