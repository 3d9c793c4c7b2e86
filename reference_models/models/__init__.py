"""Reference models of FactorQVAE and its baselines, registered by name.

>>> from reference_models.models.registry import list_models
>>> list_models()  # doctest: +NORMALIZE_WHITESPACE
['ae', 'betavae', 'bioae', 'dvae', 'factordvae', 'factorqvae', 'factorvae',
 'factorvqvae', 'qlae', 'qvae', 'vqvae']
"""
# Each module registers its model on import.
from reference_models.models import (  # noqa: F401
    ae, betavae, bioae, dvae, factordvae, factorqvae, factorvae, factorvqvae, qlae, qvae, vqvae,
)
from reference_models.models.base import FactorModelMixin, ReferenceModel
from reference_models.models.registry import build_model, list_models, register_model

__all__ = ["ReferenceModel", "FactorModelMixin", "build_model", "list_models", "register_model"]
