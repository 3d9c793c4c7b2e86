"""One strict registry of the reference models, by name.

Model modules register their class with ``@register_model("name", paper_position=...)``;
registering a name twice is an error. Importing this module first imports its package
``reference_models.models``, whose ``__init__`` imports (and so registers) every built-in
model, so ``list_models()`` is always complete. The registry is the one list of the
models: what the results table shows (display names, the paper's order) comes from it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, TypeVar

from reference_models.config import ModelConfig

if TYPE_CHECKING:
    from reference_models.models.base import ReferenceModel

__all__ = ["ModelInfo", "ModelRegistry", "register_model", "build_model", "list_models",
           "get_model_class", "get_model_info", "list_model_infos"]

ModelT = TypeVar("ModelT", bound=type)


@dataclass(frozen=True)
class ModelInfo:
    """What the registry knows about a model besides its class.

    Attributes
    ----------
    name : str
        Registry name (``"factorqvae"``).
    display_name : str
        Name in tables and figures (``"FactorQVAE"``); the class name unless given.
    paper_position : int or None
        Row of the model in the FactorQVAE paper's Table 1, continued by the
        vector-quantisation ablation of its Table 2; None for models not in the paper.
    """

    name: str
    display_name: str
    paper_position: int | None = None


class ModelRegistry:
    """Map from model name to model class; duplicates and unknown names are errors."""

    def __init__(self) -> None:
        self._classes: dict[str, type] = {}
        self._infos: dict[str, ModelInfo] = {}

    def register(self, name: str, *, display_name: str | None = None,
                 paper_position: int | None = None) -> Callable[[ModelT], ModelT]:
        """Class decorator registering a model class under ``name`` (sets ``cls.name``)."""
        if not isinstance(name, str) or not name:
            raise TypeError(f"model name must be a non-empty string: got {name!r}")
        if paper_position is not None and (isinstance(paper_position, bool)
                                           or not isinstance(paper_position, int)):
            raise TypeError(f"paper_position must be an int or None: got {paper_position!r}")

        def decorator(cls: ModelT) -> ModelT:
            if name in self._classes:
                raise ValueError(f"model name {name!r} is already registered to "
                                 f"{self._classes[name].__qualname__}")
            taken = [info.name for info in self._infos.values()
                     if paper_position is not None and info.paper_position == paper_position]
            if taken:
                raise ValueError(f"paper_position {paper_position} of {name!r} is already "
                                 f"that of {taken[0]!r}")
            cls.name = name
            self._classes[name] = cls
            self._infos[name] = ModelInfo(name, display_name or cls.__name__, paper_position)
            return cls

        return decorator

    def get(self, name: str) -> type:
        """The class registered under ``name``; ValueError naming the valid ones otherwise."""
        try:
            return self._classes[name]
        except (KeyError, TypeError):
            raise ValueError(f"unknown model {name!r}; valid models: "
                             f"{', '.join(self.names())}") from None

    def info(self, name: str) -> ModelInfo:
        """The :class:`ModelInfo` of ``name``; ValueError as :meth:`get`."""
        self.get(name)
        return self._infos[name]

    def names(self) -> list[str]:
        """Registered names, sorted."""
        return sorted(self._classes)

    def infos(self) -> list[ModelInfo]:
        """Infos of every model: the paper's in its order, then the others by name."""
        return sorted(self._infos.values(), key=_paper_order)


def _paper_order(info: ModelInfo) -> tuple:
    return (info.paper_position is None, info.paper_position or 0, info.name)


_REGISTRY = ModelRegistry()


def register_model(name: str, *, display_name: str | None = None,
                   paper_position: int | None = None) -> Callable[[ModelT], ModelT]:
    """Register a model class under ``name`` in the project's registry.

    Parameters
    ----------
    name : str
        Registry name (lower case, as typed on the command line).
    display_name : str, optional
        Name in tables; default the class name.
    paper_position : int, optional
        Row in the paper's tables (see :class:`ModelInfo`).

    Examples
    --------
    >>> @register_model("mymodel")  # doctest: +SKIP
    ... class MyModel(ReferenceModel): ...
    """
    return _REGISTRY.register(name, display_name=display_name, paper_position=paper_position)


def get_model_class(name: str) -> type[ReferenceModel]:
    """The class registered under ``name``."""
    return _REGISTRY.get(name)


def get_model_info(name: str) -> ModelInfo:
    """The :class:`ModelInfo` of the model registered under ``name``."""
    return _REGISTRY.info(name)


def list_model_infos() -> list[ModelInfo]:
    """Infos of every registered model, in the paper's order, then the others by name."""
    return _REGISTRY.infos()


def build_model(name: str, config: ModelConfig) -> ReferenceModel:
    """Build the model ``name`` from ``config``.

    Parameters
    ----------
    name : str
        A name from :func:`list_models`.
    config : ModelConfig
        Architecture and loss weights (see :func:`reference_models.presets.get_preset`).

    Returns
    -------
    ReferenceModel
        Freshly initialised, in training mode, on the CPU.

    Raises
    ------
    ValueError
        If ``name`` is not registered (the message lists the valid names) or the config
        does not suit the model.
    """
    if not isinstance(config, ModelConfig):
        raise TypeError(f"config must be a ModelConfig: got {type(config).__name__}")
    return _REGISTRY.get(name)(config)


def list_models() -> list[str]:
    """Names of every registered model, sorted."""
    return _REGISTRY.names()
