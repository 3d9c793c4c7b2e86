"""The interface every dataset of the reference models shares.

A dataset here is a *fully crossed grid of discrete factors*: one image for every
combination of factor values.  Samples are addressed by their **combination index**, the
row-major (C order) position of the factor tuple in that grid, so that the last factor
varies fastest.  This is the order in which Shapes3D, MPI3D and Isaac3D store their images.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image

__all__ = [
    "DATA_DIR_ENV",
    "DatasetError",
    "FactorDataset",
    "default_data_dir",
    "resize_uint8",
    "resolve_data_dir",
]

#: Environment variable naming the folder that holds the published dataset files.
DATA_DIR_ENV = "DISENTANGLE_EVAL_DATA"


class DatasetError(ValueError):
    """A dataset cannot be built: a file is missing, malformed, or does not match.

    The message says which file was expected, what it should contain and where it is
    published, so that the command line can print it as one readable line (exit code 1).
    """


def default_data_dir() -> Path:
    """Return the folder used when no ``data_dir`` is given.

    ``$DISENTANGLE_EVAL_DATA`` when set, else ``~/.cache/disentangle-eval/data``.
    """
    from_env = os.environ.get(DATA_DIR_ENV)
    if from_env:
        return Path(from_env).expanduser()
    return Path.home() / ".cache" / "disentangle-eval" / "data"


def resolve_data_dir(data_dir: str | os.PathLike | None) -> Path:
    """Return ``data_dir`` as a :class:`~pathlib.Path`, or :func:`default_data_dir`."""
    if data_dir is None:
        return default_data_dir()
    return Path(data_dir).expanduser()


def resize_uint8(images: np.ndarray, size: int, *, resample=Image.BICUBIC) -> np.ndarray:
    """Resize a batch of RGB images with pillow.

    Parameters
    ----------
    images : ndarray of shape (n, H, W, 3), uint8
    size : int
        Output height and width.
    resample : pillow filter, default ``Image.BICUBIC``
        Bicubic, as the paper's code (torchvision ``Resize`` on PIL images).

    Returns
    -------
    ndarray of shape (n, size, size, 3), uint8
    """
    if images.shape[1] == size and images.shape[2] == size:
        return images
    out = np.empty((len(images), size, size, 3), dtype=np.uint8)
    for i, image in enumerate(images):
        out[i] = np.asarray(Image.fromarray(image).resize((size, size), resample=resample))
    return out


class FactorDataset:
    """Base class: a fully crossed grid of discrete factors with one image per combination.

    Subclasses set the attributes below in ``__init__`` and implement
    :meth:`_images_uint8_at`; everything else is derived here.

    Attributes
    ----------
    name : str
        Registry name (``"shapes3d"``, ``"toyshapes"``, ...).
    factor_names : tuple of str
        One name per factor, in the order of the factor columns.
    factor_sizes : tuple of int
        Number of values of each factor.
    factor_values : tuple of ndarray
        The label value of each factor index (e.g. Shapes3D's hues ``0.0 .. 0.9``);
        ``factor_values[i][k]`` is the value that factor index ``k`` of factor ``i`` stands
        for.  Integer ``arange`` where the publisher gives no values.
    image_size : int
        Images are ``image_size x image_size`` RGB.
    n_samples : int
        Number of images, ``prod(factor_sizes)``; also ``len(ds)``.

    Notes
    -----
    Indices passed to :meth:`images` and :meth:`factors` are combination indices
    ``0 .. n_samples - 1`` in row-major factor order (the last factor varies fastest), so
    ``ds.index_of(ds.factors(i)) == i``.  A training loop draws indices; the evaluation
    protocol draws factor tuples with :meth:`sample_factors` (10000 + 5000 of them with a
    seeded ``RandomState``) and renders them with ``ds.images(ds.index_of(factors))``.

    Examples
    --------
    >>> import numpy as np
    >>> from reference_models.data.registry import get_dataset
    >>> ds = get_dataset("toysprites", image_size=32)
    >>> factors = ds.sample_factors(4, np.random.RandomState(0))
    >>> ds.images(ds.index_of(factors)).shape
    (4, 3, 32, 32)
    """

    name: str
    factor_names: tuple[str, ...]
    factor_sizes: tuple[int, ...]
    factor_values: tuple[np.ndarray, ...]
    image_size: int

    # ----------------------------------------------------------------- sizes and indexing
    @property
    def n_samples(self) -> int:
        return int(np.prod(self.factor_sizes, dtype=np.int64))

    @property
    def n_factors(self) -> int:
        return len(self.factor_sizes)

    def __len__(self) -> int:
        return self.n_samples

    def __repr__(self) -> str:
        factors = ", ".join(f"{n}={s}" for n, s in zip(self.factor_names, self.factor_sizes))
        size = f"{self.image_size}x{self.image_size}"
        return f"{type(self).__name__}({self.name!r}, {size}, {factors})"

    def _check_indices(self, indices) -> np.ndarray:
        array = np.asarray(indices)
        if array.ndim == 0:
            array = array.reshape(1)
        if array.ndim != 1:
            raise ValueError(f"indices must be 1D: shape is {array.shape}")
        if array.size and not np.issubdtype(array.dtype, np.integer):
            raise TypeError(f"indices must be integers: dtype is {array.dtype}")
        array = array.astype(np.int64, copy=False)
        if array.size and (array.min() < 0 or array.max() >= self.n_samples):
            raise ValueError(
                f"indices must lie in [0, {self.n_samples}): received values from "
                f"{array.min()} to {array.max()}")
        return array

    def factors(self, indices) -> np.ndarray:
        """Factor indices of the given samples.

        Parameters
        ----------
        indices : array-like of int of shape (n,)
            Combination indices in ``[0, n_samples)``.

        Returns
        -------
        ndarray of shape (n, n_factors), int64
            ``factors[j, i]`` in ``0 .. factor_sizes[i] - 1``.
        """
        indices = self._check_indices(indices)
        columns = np.unravel_index(indices, self.factor_sizes)
        return np.stack(columns, axis=1).astype(np.int64, copy=False)

    def index_of(self, factor_values) -> np.ndarray:
        """Combination index of each row of factor indices (the inverse of :meth:`factors`).

        Parameters
        ----------
        factor_values : array-like of int of shape (n, n_factors)
            Factor *indices* (``0 .. factor_sizes[i] - 1``), not label values.

        Returns
        -------
        ndarray of shape (n,), int64
        """
        array = np.asarray(factor_values)
        if array.ndim != 2 or array.shape[1] != self.n_factors:
            raise ValueError(
                f"factor_values must have shape (n, {self.n_factors}): shape is {array.shape}")
        if array.size and not np.issubdtype(array.dtype, np.integer):
            raise TypeError(f"factor_values must be integers: dtype is {array.dtype}")
        sizes = np.asarray(self.factor_sizes)
        bad = (array < 0) | (array >= sizes)
        if bad.any():
            column = int(np.nonzero(bad.any(axis=0))[0][0])
            raise ValueError(
                f"factor_values[:, {column}] ({self.factor_names[column]}) must lie in "
                f"[0, {self.factor_sizes[column]}): received {array[bad[:, column], column][0]}")
        return np.ravel_multi_index(tuple(array.T), self.factor_sizes).astype(np.int64)

    def sample_factors(self, n: int, random_state: np.random.RandomState) -> np.ndarray:
        """Draw ``n`` factor tuples uniformly at random.

        One ``random_state.randint(size, size=n)`` call per factor column, in column
        order, as disentanglement_lib's ``sample_latent_factors``: the same seed gives the
        same draws there and here.

        Returns
        -------
        ndarray of shape (n, n_factors), int64
        """
        if not isinstance(random_state, np.random.RandomState):
            raise TypeError(
                f"random_state must be a numpy RandomState: received {type(random_state).__name__}")
        factors = np.zeros((int(n), self.n_factors), dtype=np.int64)
        for column, size in enumerate(self.factor_sizes):
            factors[:, column] = random_state.randint(size, size=int(n))
        return factors

    # ----------------------------------------------------------------------- images
    def images_uint8(self, indices) -> np.ndarray:
        """Images of the given samples as stored.

        Parameters
        ----------
        indices : array-like of int of shape (n,)
            Combination indices in ``[0, n_samples)``; repeats and any order are allowed.

        Returns
        -------
        ndarray of shape (n, image_size, image_size, 3), uint8
        """
        indices = self._check_indices(indices)
        if indices.size == 0:
            return np.zeros((0, self.image_size, self.image_size, 3), dtype=np.uint8)
        return self._images_uint8_at(indices)

    def images(self, indices) -> np.ndarray:
        """Images of the given samples, channels first, scaled to ``[-0.5, 0.5]``.

        ``pixel / 255 - 0.5``, as the paper's code (``ToTensor`` then ``x - 0.5``).

        Parameters
        ----------
        indices : array-like of int of shape (n,)

        Returns
        -------
        ndarray of shape (n, 3, image_size, image_size), float32
        """
        raw = self.images_uint8(indices)
        out = raw.transpose(0, 3, 1, 2).astype(np.float32)
        out /= np.float32(255.0)
        out -= np.float32(0.5)
        return out

    def _images_uint8_at(self, indices: np.ndarray) -> np.ndarray:
        """Return images (n, S, S, 3) uint8 for validated int64 combination indices."""
        raise NotImplementedError


def check_factor_sizes(factor_sizes: Sequence[int], n_factors: int, name: str) -> tuple[int, ...]:
    """Validate a ``factor_sizes`` override: ``n_factors`` positive integers."""
    sizes = tuple(int(s) for s in factor_sizes)
    if len(sizes) != n_factors or any(s < 1 for s in sizes):
        raise ValueError(
            f"{name}: factor_sizes must be {n_factors} positive integers: "
            f"received {tuple(factor_sizes)}")
    return sizes
