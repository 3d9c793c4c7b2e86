import os

# Two shared cores: a spinning OpenMP pool slows everything else down (see README).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import json
from pathlib import Path

import numpy as np
import pytest
import torch

torch.set_num_threads(min(2, os.cpu_count() or 1))

CONFORMANCE_DIR = Path(__file__).parent / "data" / "conformance"
CONFORMANCE_CASES = sorted(p.name[: -len(".expected.json")]
                           for p in CONFORMANCE_DIR.glob("*.expected.json"))


def load_case(name: str):
    """Return (npz arrays dict, expected json dict) of one conformance fixture."""
    with np.load(CONFORMANCE_DIR / f"{name}.npz") as data:
        arrays = {k: data[k] for k in data.files}
    expected = json.loads((CONFORMANCE_DIR / f"{name}.expected.json").read_text())
    return arrays, expected


@pytest.fixture(params=CONFORMANCE_CASES)
def conformance_case(request):
    arrays, expected = load_case(request.param)
    return request.param, arrays, expected


@pytest.fixture
def one_thread():
    """Tiny tensors: on two shared cores a second intra-op thread costs far more than it
    saves, so tests of many small operations run on one."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
