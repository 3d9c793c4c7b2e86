"""What a result was computed with: versions and device."""
from __future__ import annotations

import platform
import sys

__all__ = ["environment_info"]


def environment_info(device=None) -> dict:
    """Versions of Python and the numerical stack, the platform and the device used."""
    import numpy
    import scipy
    import sklearn
    import torch

    from . import __version__

    info = {
        "disentangle_eval": __version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "scipy": scipy.__version__,
        "scikit_learn": sklearn.__version__,
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
