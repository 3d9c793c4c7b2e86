"""The memory ceiling that the hostile-input tests rely on works."""
from limits import python_limited


def test_ceiling_allows_the_toolkit_and_refuses_a_huge_allocation():
    ok = python_limited("import torch, disentangle_eval; print(torch.zeros(10).sum().item())")
    assert ok.returncode == 0 and ok.stdout.strip() == "0.0"
    big = python_limited("import numpy as np; np.ones(2**31, dtype=np.float64)")
    assert big.returncode != 0 and "MemoryError" in big.stderr
