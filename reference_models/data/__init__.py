"""Datasets of the reference models: published (Shapes3D, MPI3D, Isaac3D) and procedural.

Build one with :func:`get_dataset` (``get_dataset("toyshapes", image_size=32)``); every
dataset has the interface of :class:`FactorDataset`.  Published files are looked for in
``data_dir``, else ``$DISENTANGLE_EVAL_DATA``, else ``~/.cache/disentangle-eval/data``.
"""
from .base import DATA_DIR_ENV, DatasetError, FactorDataset, default_data_dir
from .registry import DatasetInfo, get_dataset, list_datasets, register_dataset

__all__ = ["DATA_DIR_ENV", "DatasetError", "DatasetInfo", "FactorDataset", "default_data_dir",
           "get_dataset", "list_datasets", "register_dataset"]
