"""What a result was computed with: versions and device."""
from __future__ import annotations

import platform
import sys
from importlib import metadata

import numpy
import torch

from . import __version__

__all__ = ["environment_info"]


def environment_info(device=None) -> dict:
    """Versions of Python and the numerical stack, the platform and the device used.

    scipy's and scikit-learn's versions come from the installed distributions' metadata:
    importing them only to ask would cost a scoring run a second or more.
    """
    info = {
        "disentangle_eval": __version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "scipy": metadata.version("scipy"),
        "scikit_learn": metadata.version("scikit-learn"),
        "cuda_available": torch.cuda.is_available(),
        "torch_threads": torch.get_num_threads(),
    }
    if device is not None:
        device = torch.device(device)
        info["device"] = str(device)
        if device.type == "cuda":
            info["device_name"] = torch.cuda.get_device_name(device)
        else:
            info["device_name"] = platform.processor() or platform.machine()
    return info
