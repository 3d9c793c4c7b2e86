"""disentangle-eval: disentanglement metrics for latents from any encoder.

The metrics are pure functions over ``(n_samples, n_latents)`` latents and
``(n_samples, n_factors)`` integer factors, computed in PyTorch on CPU or GPU.
"""
from ._validation import DataError
from .dci import DCIResult, completeness, dci, disentanglement
from .infomec import InfoMECResult, infomec, normalized_mutual_information

__version__ = "0.1.0"

__all__ = ["DataError", "DCIResult", "InfoMECResult", "completeness", "dci",
           "disentanglement", "infomec", "normalized_mutual_information", "__version__"]
