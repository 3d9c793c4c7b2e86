"""disentangle-eval: disentanglement metrics for latents from any encoder.

The metrics are pure functions over ``(n_samples, n_latents)`` latents and
``(n_samples, n_factors)`` integer factors, computed in PyTorch on CPU or GPU.
Implementation modules are private (``_dci``, ``_infomec``, ...); this package is the
public surface.
"""
from ._dci import (DCIResult, completeness, completeness_per_factor, dci, disentanglement,
                   disentanglement_per_code)
from ._infoe import predictive_information
from ._infomec import (InfoMECResult, active_latents, infomec, modularity_compactness,
                       normalized_mutual_information)
from ._irs import IRSResult, irs
from ._mig import MIGResult, mig
from ._modularity import ModularityExplicitnessResult, modularity_explicitness
from ._intervals import Interval
from ._sap import SAPResult, sap
from ._uncertainty import (Comparison, MetricIntervals, ScoresWithIntervals,
                           compare_representations, confidence_intervals)
from ._validation import DataError

__version__ = "0.1.0"

__all__ = ["DataError", "DCIResult", "InfoMECResult", "active_latents", "completeness",
           "completeness_per_factor", "dci", "disentanglement", "disentanglement_per_code",
           "infomec", "modularity_compactness", "normalized_mutual_information",
           "predictive_information", "__version__",
           "MIGResult", "mig", "SAPResult", "sap", "ModularityExplicitnessResult",
           "modularity_explicitness", "IRSResult", "irs",
           "Comparison", "Interval", "MetricIntervals", "ScoresWithIntervals",
           "compare_representations", "confidence_intervals"]
