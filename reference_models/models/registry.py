"""One strict registry of the reference models, by name.

Model modules register their class with ``@register_model("name")``; registering a name
twice is an error. Importing this module first imports its package
``reference_models.models``, whose ``__init__`` imports (and so registers) every built-in
model, so ``list_models()`` is always complete.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Callable, TypeVar

if TYPE_CHECKING:
    from reference_models.config import ModelConfig
    from reference_models.models.base import ReferenceModel

__all__ = ["ModelRegistry", "register_model", "build_model", "list_models", "get_model_class"]

ModelT = TypeVar("ModelT", bound=type)


class ModelRegistry:
    """Map from model name to model class; duplicates and unknown names are errors."""

    def __init__(self) -> None:
        self._classes: dict[str, type] = {}

    def register(self, name: str) -> Callable[[ModelT], ModelT]:
        """Class decorator registering a model class under ``name`` (sets ``cls.name``)."""
        if not isinstance(name, str) or not name:
            raise TypeError(f"model name must be a non-empty string: got {name!r}")

        def decorator(cls: ModelT) -> ModelT:
            if name in self._classes:
                raise ValueError(f"model name {name!r} is already registered to "
                                 f"{self._classes[name].__qualname__}")
            cls.name = name
            self._classes[name] = cls
            return cls

        return decorator

    def get(self, name: str) -> type:
        """The class registered under ``name``; ValueError naming the valid ones otherwise."""
        try:
            return self._classes[name]
        except (KeyError, TypeError):
            raise ValueError(f"unknown model {name!r}; valid models: "
                             f"{', '.join(self.names())}") from None

    def names(self) -> list[str]:
        """Registered names, sorted."""
        return sorted(self._classes)


_REGISTRY = ModelRegistry()


def register_model(name: str) -> Callable[[ModelT], ModelT]:
    """Register a model class under ``name`` in the project's registry.

    Examples
    --------
    >>> @register_model("mymodel")  # doctest: +SKIP
    ... class MyModel(ReferenceModel): ...
    """
    return _REGISTRY.register(name)


def get_model_class(name: str) -> type[ReferenceModel]:
    """The class registered under ``name``."""
    return _REGISTRY.get(name)


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
    from reference_models.config import ModelConfig

    if not isinstance(config, ModelConfig):
        raise TypeError(f"config must be a ModelConfig: got {type(config).__name__}")
    return _REGISTRY.get(name)(config)


def list_models() -> list[str]:
    """Names of every registered model, sorted."""
    return _REGISTRY.names()

