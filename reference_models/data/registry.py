"""Every dataset by name: ``get_dataset(name, ...)`` and ``list_datasets()``.

Published datasets are read from the data dir: ``data_dir=`` when given, else the
environment variable ``DISENTANGLE_EVAL_DATA``, else ``~/.cache/disentangle-eval/data``.
Procedural datasets (``toyshapes``, ``toysprites``) need no files.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from .base import DatasetError, FactorDataset
from .isaac3d import ISAAC3D_FACTOR_NAMES, ISAAC3D_FACTOR_SIZES, ISAAC3D_FILE, Isaac3D
from .mpi3d import MPI3D, MPI3D_FACTOR_NAMES, MPI3D_FILES
from .shapes3d import SHAPES3D_FACTOR_NAMES, SHAPES3D_FACTOR_SIZES, SHAPES3D_FILE, Shapes3D
from .toyshapes import ToyShapes
from .toysprites import SPRITE_FACTOR_NAMES, SPRITE_FACTOR_SIZES, ToySprites

# DatasetError is re-exported so that callers catching dataset problems need one import.
__all__ = ["DatasetError", "DatasetInfo", "get_dataset", "get_dataset_info", "dataset_names",
           "list_datasets", "register_dataset"]


@dataclass(frozen=True)
class DatasetInfo:
    """What a dataset is, known without building it.

    Attributes
    ----------
    name : str
        Registry name.
    factor_names : tuple of str
    factor_sizes : tuple of int
    image_size : int
        Default (native) image size.
    description : str
        One line.
    needs_download : bool
        Whether the images come from published files (``files`` under the data dir).
    files : tuple of str
        Paths under the data dir the dataset reads.
    url : str or None
        Direct download URL, when one exists.
    homepage : str or None
        The publisher's page.
    paper_position : int or None
        Position among the datasets of the FactorQVAE paper's tables (0: Shapes3D,
        1: Isaac3D, 2: MPI3D); None for the others.
    """

    name: str
    factor_names: tuple[str, ...]
    factor_sizes: tuple[int, ...]
    image_size: int
    description: str
    needs_download: bool
    files: tuple[str, ...] = ()
    url: str | None = None
    homepage: str | None = None
    paper_position: int | None = None

    @property
    def n_factors(self) -> int:
        return len(self.factor_sizes)

    @property
    def n_samples(self) -> int:
        n = 1
        for size in self.factor_sizes:
            n *= size
        return n


_REGISTRY: dict[str, tuple[DatasetInfo, Callable[..., FactorDataset]]] = {}


def register_dataset(info: DatasetInfo, factory: Callable[..., FactorDataset]) -> None:
    """Register ``factory(data_dir=, image_size=, seed=, **options)`` under ``info.name``.

    Raises
    ------
    ValueError
        The name is taken.
    """
    if info.name in _REGISTRY:
        raise ValueError(f"dataset {info.name!r} is already registered")
    _REGISTRY[info.name] = (info, factory)


def list_datasets() -> list[DatasetInfo]:
    """Infos of all registered datasets, procedural ones first, then by name."""
    return sorted((info for info, _ in _REGISTRY.values()),
                  key=lambda info: (info.needs_download, info.name))


def dataset_names() -> list[str]:
    """Names of all registered datasets, in the order of :func:`list_datasets`."""
    return [info.name for info in list_datasets()]


def get_dataset_info(name: str) -> DatasetInfo:
    """The :class:`DatasetInfo` of the dataset registered as ``name``.

    Raises
    ------
    ValueError
        Unknown name (the message lists the registered ones).
    """
    try:
        return _REGISTRY[name][0]
    except (KeyError, TypeError):
        raise ValueError(f"unknown dataset {name!r}: choose one of "
                         f"{', '.join(dataset_names())}") from None


def get_dataset(name: str, *, data_dir=None, image_size: int | None = None, seed: int = 0,
                **options) -> FactorDataset:
    """Build the dataset registered as ``name``.

    Parameters
    ----------
    name : str
        One of ``[info.name for info in list_datasets()]``.
    data_dir : path-like, optional
        Folder with the published files; default ``$DISENTANGLE_EVAL_DATA`` or
        ``~/.cache/disentangle-eval/data``.  Ignored by procedural datasets.
    image_size : int, optional
        Image size; default the dataset's own (64).
    seed : int, default 0
        Seed of procedural datasets (``toyshapes``: the fixed surface texture).
        Published datasets ignore it.
    **options
        Passed to the dataset class (e.g. ``factor_sizes=`` for a cut-down file).

    Raises
    ------
    ValueError
        Unknown name.
    DatasetError
        A published file is missing or malformed (a ``ValueError`` too).

    Examples
    --------
    >>> from reference_models.data.registry import get_dataset
    >>> ds = get_dataset("toyshapes", image_size=32)
    >>> ds.factor_sizes
    (10, 10, 10, 8, 4, 15)
    """
    get_dataset_info(name)
    _, factory = _REGISTRY[name]
    return factory(data_dir=data_dir, image_size=image_size, seed=seed, **options)


def _register_builtin() -> None:
    def procedural(cls):
        def build(*, data_dir=None, image_size=None, seed=0, **options):
            return cls(image_size=64 if image_size is None else image_size, seed=seed, **options)
        return build

    register_dataset(DatasetInfo(
        "toyshapes", SHAPES3D_FACTOR_NAMES, SHAPES3D_FACTOR_SIZES, 64,
        "Shapes3D-like room scene rendered in numpy (64 or 32 px), no download",
        needs_download=False), procedural(ToyShapes))
    register_dataset(DatasetInfo(
        "toysprites", SPRITE_FACTOR_NAMES, SPRITE_FACTOR_SIZES, 64,
        "dSprites-like white shapes on black (64 or 32 px), no download",
        needs_download=False), procedural(ToySprites))

    def published(spec, factory, names, sizes, description, paper_position=None):
        register_dataset(DatasetInfo(
            spec.dataset, names, sizes, 64, description, needs_download=True,
            files=(spec.relative_path,), url=spec.url, homepage=spec.homepage,
            paper_position=paper_position), factory)

    published(SHAPES3D_FILE,
              lambda *, data_dir=None, image_size=None, seed=0, **options: Shapes3D(
                  data_dir=data_dir, image_size=image_size, **options),
              SHAPES3D_FACTOR_NAMES, SHAPES3D_FACTOR_SIZES,
              "DeepMind 3dshapes (3dshapes.h5), read lazily", paper_position=0)
    published(ISAAC3D_FILE,
              lambda *, data_dir=None, image_size=None, seed=0, **options: Isaac3D(
                  data_dir=data_dir, image_size=image_size, **options),
              ISAAC3D_FACTOR_NAMES, ISAAC3D_FACTOR_SIZES,
              "NVlabs Isaac3D (Isaac3D_down128 PNGs), resized to 64 px once and cached",
              paper_position=1)
    descriptions = {"complex": "MPI3D-complex (real3d_complicated_shapes_ordered.npz), the "
                               "paper's MPI3D",
                    "toy": "MPI3D toy renderings (mpi3d_toy.npz)",
                    "realistic": "MPI3D realistic renderings (mpi3d_realistic.npz)",
                    "real": "MPI3D real photographs (mpi3d_real.npz)"}
    for variant, (spec, sizes) in MPI3D_FILES.items():
        def build(*, data_dir=None, image_size=None, seed=0, _variant=variant, **options):
            return MPI3D(_variant, data_dir=data_dir, image_size=image_size, **options)
        published(spec, build, MPI3D_FACTOR_NAMES, sizes, descriptions[variant],
                  paper_position=2 if variant == "complex" else None)


_register_builtin()
