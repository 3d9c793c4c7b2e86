"""Input checking for every metric, done once at the boundary.

All user-facing checks raise :class:`DataError` (a ``ValueError``) or ``TypeError`` with a
message that names the argument and what was received.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

__all__ = ["DataError", "ScoringInputs", "check_inputs", "resolve_device"]


class DataError(ValueError):
    """The data handed to a metric cannot be scored (exit code 1 on the command line)."""


@dataclass(frozen=True)
class ScoringInputs:
    """Validated inputs of a metric.

    Attributes
    ----------
    latents : torch.Tensor of shape (n_samples, n_latents)
        float64 when the latents are continuous, int64 when discrete; on ``device``.
    factors : torch.Tensor of shape (n_samples, n_factors), int64
        Factor labels relabelled to ``0 .. factor_sizes[i] - 1`` (sorted order of the
        original labels); on ``device``.
    factor_sizes : tuple of int
        Number of distinct values of each factor.
    discrete : bool
        Whether the latents are treated as discrete codes.
    raw_latents : torch.Tensor of shape (n_samples, n_latents), float64
        The latents as given (before relabelling codes); on ``device``.
    """

    latents: torch.Tensor
    factors: torch.Tensor
    factor_sizes: tuple[int, ...]
    discrete: bool
    raw_latents: torch.Tensor

    @property
    def n_samples(self) -> int:
        return int(self.latents.shape[0])

    @property
    def n_latents(self) -> int:
        return int(self.latents.shape[1])

    @property
    def n_factors(self) -> int:
        return int(self.factors.shape[1])

    @property
    def device(self) -> torch.device:
        return self.latents.device


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``None``/``"auto"``: CUDA when available, else CPU; otherwise ``torch.device(device)``."""
    if device is None or (isinstance(device, str) and device == "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device='cuda' was requested but CUDA is not available on this machine")
    return device


def _as_numpy(array, name: str) -> np.ndarray:
    if isinstance(array, torch.Tensor):
        return array.detach().cpu().numpy()
    try:
        out = np.asarray(array)
    except (ValueError, TypeError) as exc:  # ragged nested lists
        raise DataError(f"{name} must be a rectangular 2-D array: {exc}") from None
    if out.dtype == object:
        raise DataError(f"{name} must be a rectangular numeric 2-D array, got dtype object "
                        "(ragged rows or mixed types)")
    return out


def _check_2d(array: np.ndarray, name: str) -> None:
    if array.ndim != 2:
        raise DataError(f"{name} must be 2-D (n_samples, n_columns): shape is {array.shape}")
    if array.shape[0] < 2:
        raise DataError(f"{name} must have at least 2 samples (rows): shape is {array.shape}")
    if array.shape[1] < 1:
        raise DataError(f"{name} must have at least one column: shape is {array.shape}")


def check_latents(latents, *, discrete: bool | None = None) -> tuple[np.ndarray, bool]:
    """Check a latent matrix; return it as a numpy array and whether it is discrete."""
    array = _as_numpy(latents, "latents")
    if array.dtype.kind not in "biuf":
        raise DataError(f"latents must be numeric, got dtype {array.dtype}")
    _check_2d(array, "latents")
    if array.dtype.kind == "f":
        bad = ~np.isfinite(array)
        if bad.any():
            rows, cols = np.nonzero(bad)
            raise DataError(
                f"latents contain {int(bad.sum())} NaN/Inf value(s), first at row {rows[0]}, "
                f"column {cols[0]}")
    if discrete is None:
        discrete = array.dtype.kind in "biu"
    return array, bool(discrete)


def check_factors(factors, n_rows: int | None = None,
                  factor_names: Sequence[str] | None = None, *,
                  nonnegative: bool = False) -> tuple[np.ndarray, tuple[int, ...]]:
    """Check a factor matrix; return codes relabelled to 0..K-1 and the factor sizes.

    ``nonnegative=True`` also requires labels >= 0 (factor indices, as files store them).
    """
    array = _as_numpy(factors, "factors")
    if array.dtype.kind == "f":
        if not np.all(np.isfinite(array)):
            raise DataError("factors contain NaN/Inf values; factors must be integer labels")
        if not np.all(array == np.round(array)):
            raise DataError("factors must be integer labels, got non-integer values "
                            f"(dtype {array.dtype}); discretise continuous factors first")
        array = array.astype(np.int64)
    elif array.dtype.kind not in "biu":
        raise DataError(f"factors must be integer labels, got dtype {array.dtype}")
    _check_2d(array, "factors")
    if nonnegative and (array < 0).any():
        rows, cols = np.nonzero(array < 0)
        raise DataError(f"factors must be non-negative integer indices, got {array[rows[0], cols[0]]} "
                        f"at row {rows[0]}, column {cols[0]}")
    if n_rows is not None and array.shape[0] != n_rows:
        raise DataError(f"latents and factors must have the same number of rows: "
                        f"latents has {n_rows}, factors has {array.shape[0]}")
    codes = np.empty(array.shape, dtype=np.int64)
    sizes = []
    for i in range(array.shape[1]):
        values, codes[:, i] = np.unique(array[:, i], return_inverse=True)
        if len(values) < 2:
            label = f"'{factor_names[i]}' (column {i})" if factor_names is not None else f"column {i}"
            raise DataError(f"factor {label} has a single value ({values[0]}); a constant "
                            "factor carries no information and cannot be scored")
        sizes.append(len(values))
    return codes, tuple(sizes)


def check_inputs(latents, factors, *, discrete: bool | None = None,
                 device: str | torch.device | None = None,
                 factor_names: Sequence[str] | None = None,
                 nonnegative_factors: bool = False) -> ScoringInputs:
    """Validate ``latents`` (N, d) and ``factors`` (N, F) and move them to ``device``.

    Parameters
    ----------
    latents : array-like or torch.Tensor of shape (n_samples, n_latents)
    factors : array-like or torch.Tensor of shape (n_samples, n_factors), integer labels
    discrete : bool or None
        ``None`` infers from the dtype of ``latents`` (integer -> discrete).
    device : str, torch.device or None
        ``None`` or ``"auto"``: CUDA when available, else CPU.
    factor_names : sequence of str, optional
        Used in error messages only.
    nonnegative_factors : bool, default False
        Also require factor labels >= 0 (indices, as files store them).
    """
    lat, discrete = check_latents(latents, discrete=discrete)
    codes, sizes = check_factors(factors, n_rows=lat.shape[0], factor_names=factor_names,
                                 nonnegative=nonnegative_factors)
    dev = resolve_device(device)
    raw = torch.as_tensor(lat.astype(np.float64), device=dev)
    if discrete:
        # Discrete latents are categories: relabel each column by value (any numbers work).
        lat_codes = np.empty(lat.shape, dtype=np.int64)
        for j in range(lat.shape[1]):
            lat_codes[:, j] = np.unique(lat[:, j], return_inverse=True)[1]
        lat_t = torch.as_tensor(lat_codes, device=dev)
    else:
        lat_t = raw
    return ScoringInputs(latents=lat_t, factors=torch.as_tensor(codes, device=dev),
                         factor_sizes=sizes, discrete=discrete, raw_latents=raw)
