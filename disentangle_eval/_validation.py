"""Input checking for every metric, done once at the boundary.

All user-facing checks raise :class:`DataError` (a ``ValueError``) or ``TypeError`` with a
message that names the argument and what was received. The error type and the display of
names live in :mod:`~disentangle_eval._messages`, the device and memory checks in
:mod:`~disentangle_eval._device`; both are re-exported here, where the metrics and the
command line import them from.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from ._device import available_memory, require_memory, resolve_device
from ._messages import DataError, display_text, factor_label

__all__ = ["DataError", "ScoringInputs", "available_memory", "check_factor_names",
           "check_factors", "check_inputs", "check_latents", "display_text",
           "require_memory", "resolve_device"]

# A factor with more distinct values than this share of the samples is not a factor of
# variation but a continuous variable or an id column (and would size every per-class
# table of the metrics by the number of samples).
MAX_DISTINCT_SHARE = 0.5


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


def check_factor_names(factor_names, n_factors: int) -> tuple[str, ...] | None:
    """``factor_names`` as a tuple of ``n_factors`` strings (``None`` stays ``None``).

    Raises ``TypeError`` for a single string or a non-sequence and :class:`DataError`
    for the wrong number of names.
    """
    if factor_names is None:
        return None
    if isinstance(factor_names, (str, bytes)):
        raise TypeError("factor_names must be a sequence of strings, one per factor, got "
                        f"the single string {display_text(repr(factor_names))}")
    try:
        names = [n.decode("utf-8", "replace") if isinstance(n, bytes) else str(n)
                 for n in np.asarray(factor_names, dtype=object).reshape(-1)]
    except (TypeError, ValueError):
        raise TypeError("factor_names must be a sequence of strings, one per factor, got "
                        f"{type(factor_names).__name__}") from None
    if len(names) != n_factors:
        shown = display_text(repr(names))
        raise DataError(f"factor_names has {len(names)} entries but factors have {n_factors} "
                        f"columns: {shown}")
    return tuple(names)


# --------------------------------------------------------------------------------------
# Arrays
# --------------------------------------------------------------------------------------

def _from_torch(tensor: torch.Tensor, name: str) -> np.ndarray:
    if tensor.device.type == "meta":
        raise DataError(f"{name} is a tensor on the 'meta' device, which holds no data")
    if tensor.layout != torch.strided:
        require_memory(tensor.numel() * tensor.element_size(),
                       f"{name} (a {tensor.layout} tensor of shape {tuple(tensor.shape)}) "
                       "as a dense array")
        tensor = tensor.to_dense()
    tensor = tensor.detach().cpu().resolve_conj().resolve_neg()
    if tensor.dtype.is_floating_point and tensor.element_size() < 4:
        # bfloat16 and float8 values are all float32 values: the widening is exact.
        tensor = tensor.float()
    try:
        return tensor.numpy()
    except (TypeError, RuntimeError):
        raise DataError(f"{name} has torch dtype {tensor.dtype}, which cannot be scored; "
                        "convert it to a float or integer dtype") from None


def _from_pandas(frame, name: str) -> np.ndarray:
    missing = np.asarray(frame.isna()).reshape(len(frame), -1)
    if missing.any():
        rows, cols = np.nonzero(missing)
        raise DataError(f"{name} contain {int(missing.sum())} missing value(s) (NA), first at "
                        f"row {rows[0]}, column {cols[0]}")
    dtypes = list(frame.dtypes) if hasattr(frame, "columns") else [frame.dtype]
    numpy_dtypes = [getattr(d, "numpy_dtype", d) for d in dtypes]
    bad = [str(d) for d, n in zip(dtypes, numpy_dtypes)
           if not isinstance(n, np.dtype) or n.kind not in "biuf"]
    if bad:
        raise DataError(f"{name} must be numeric, got column dtype(s) {', '.join(bad)}")
    common = np.result_type(*numpy_dtypes)
    array = frame.to_numpy(dtype=common)
    if common.kind == "f" and any(n.kind in "iu" for n in numpy_dtypes):
        exact = frame.to_numpy(dtype=object)
        if not np.all(array == exact):
            raise DataError(f"{name} mix integer columns with values beyond 2**53 and "
                            "float columns; float64 cannot hold those integers exactly. "
                            "Pass columns of one dtype")
    return array


def _as_numpy(array, name: str) -> np.ndarray:
    """``array`` (numpy, torch, pandas, scipy.sparse, nested lists) as a numpy array."""
    if isinstance(array, torch.Tensor):
        return _from_torch(array, name)
    if hasattr(array, "isna") and hasattr(array, "to_numpy"):
        return _from_pandas(array, name)
    if np.ma.isMaskedArray(array):
        mask = np.ma.getmaskarray(array)
        if mask.any():
            raise DataError(f"{name} is a masked array with {int(mask.sum())} masked "
                            "value(s); fill or drop them first")
        array = np.ma.getdata(array)
    elif hasattr(array, "toarray") and hasattr(array, "nnz"):  # scipy.sparse
        dtype = np.dtype(getattr(array, "dtype", np.float64))
        require_memory(int(np.prod(array.shape)) * dtype.itemsize,
                       f"{name} (a sparse matrix of shape {array.shape}) as a dense array")
        array = array.toarray()
    try:
        out = np.asarray(array)
    except (ValueError, TypeError) as exc:  # ragged nested lists
        raise DataError(f"{name} must be a rectangular 2-D array: {exc}") from None
    if out.dtype == object:
        if not isinstance(array, (list, tuple, np.ndarray)):
            raise TypeError(f"{name} must be an array-like of shape (n_samples, n_columns), "
                            f"got {type(array).__name__}")
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


def _first_bad(bad: np.ndarray) -> str:
    rows, cols = np.nonzero(bad)
    return f"first at row {rows[0]}, column {cols[0]}"


def check_latents(latents, *, discrete: bool | None = None) -> tuple[np.ndarray, bool]:
    """Check a latent matrix; return it as a numpy array and whether it is discrete.

    Floats wider than float64 (``longdouble``) are returned as float64 when every value
    fits; the metrics compute in float64.
    """
    if discrete is not None and not isinstance(discrete, (bool, np.bool_)):
        raise TypeError(f"discrete must be True, False or None, got {discrete!r}")
    array = _as_numpy(latents, "latents")
    if array.dtype.kind not in "biuf":
        raise DataError(f"latents must be numeric, got dtype {array.dtype}")
    _check_2d(array, "latents")
    if array.dtype.kind == "f":
        bad = ~np.isfinite(array)
        if bad.any():
            raise DataError(f"latents contain {int(bad.sum())} NaN/Inf value(s), "
                            f"{_first_bad(bad)}")
        if array.dtype.itemsize > 8:
            with np.errstate(over="ignore"):
                narrowed = array.astype(np.float64)
            bad = ~np.isfinite(narrowed)
            if bad.any():
                raise DataError(f"latents hold {int(bad.sum())} value(s) beyond the float64 "
                                f"range (+-1.8e308), {_first_bad(bad)}")
            array = narrowed
    if discrete is None:
        discrete = array.dtype.kind in "biu"
    return array, bool(discrete)


def check_factors(factors, n_rows: int | None = None,
                  factor_names: Sequence[str] | None = None, *,
                  nonnegative: bool = False) -> tuple[np.ndarray, tuple[int, ...]]:
    """Check a factor matrix; return codes relabelled to 0..K-1 and the factor sizes.

    Labels are compared exactly in their own dtype (no cast: float labels beyond 2**63
    stay distinct). ``nonnegative=True`` also requires labels >= 0 (factor indices, as
    files store them). A factor with more distinct values than half the samples is
    refused: it is a continuous variable or an id column, not a factor of variation.
    """
    array = _as_numpy(factors, "factors")
    if array.dtype.kind not in "biuf":
        raise DataError(f"factors must be integer labels, got dtype {array.dtype}")
    _check_2d(array, "factors")
    if array.dtype.kind == "f":
        bad = ~np.isfinite(array)
        if bad.any():
            raise DataError(f"factors contain {int(bad.sum())} NaN/Inf value(s), "
                            f"{_first_bad(bad)}; factors must be integer labels")
        bad = np.floor(array) != array  # exact in every float dtype
        if bad.any():
            raise DataError(f"factors must be integer labels, got non-integer values "
                            f"(dtype {array.dtype}, {_first_bad(bad)}); discretise "
                            "continuous factors first")
    if n_rows is not None and array.shape[0] != n_rows:
        raise DataError(f"latents and factors must have the same number of rows: "
                        f"latents has {n_rows}, factors has {array.shape[0]}")
    factor_names = check_factor_names(factor_names, array.shape[1])
    if nonnegative and array.dtype.kind in "if":
        bad = array < 0
        if bad.any():
            rows, cols = np.nonzero(bad)
            raise DataError(f"factors must be non-negative integer indices, got "
                            f"{array[rows[0], cols[0]]} at row {rows[0]}, column {cols[0]}")
    n_samples = array.shape[0]
    codes = np.empty(array.shape, dtype=np.int64)
    sizes = []
    for i in range(array.shape[1]):
        values, codes[:, i] = np.unique(array[:, i], return_inverse=True)
        if len(values) < 2:
            raise DataError(f"factor {factor_label(i, factor_names)} has a single value "
                            f"({values[0]}); a constant factor carries no information and "
                            "cannot be scored")
        if len(values) > MAX_DISTINCT_SHARE * n_samples:
            raise DataError(
                f"factor {factor_label(i, factor_names)} has {len(values)} distinct values "
                f"in {n_samples} samples (more than half): it looks like a continuous "
                "variable or an id column, not a factor of variation; discretise it into "
                "bins (numpy.digitize) or leave it out")
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
        numpy arrays, torch tensors (any device, dense or sparse, bfloat16 included),
        pandas DataFrames (nullable dtypes included, no missing values) or nested lists.
    factors : array-like or torch.Tensor of shape (n_samples, n_factors), integer labels
        Integer or integral float labels; each factor needs at least 2 and at most
        ``n_samples / 2`` distinct values.
    discrete : bool or None
        ``None`` infers from the dtype of ``latents`` (integer -> discrete).
    device : str, torch.device or None
        ``None`` or ``"auto"``: CUDA when available, else CPU.
    factor_names : sequence of str, optional
        One name per factor; used in messages only (shown with control characters
        escaped).
    nonnegative_factors : bool, default False
        Also require factor labels >= 0 (indices, as files store them).

    Raises
    ------
    DataError
        Data that cannot be scored (shapes, NaN/Inf, labels, memory).
    TypeError
        An argument of the wrong type.
    """
    dev = resolve_device(device)
    lat, discrete = check_latents(latents, discrete=discrete)
    fac = _as_numpy(factors, "factors")
    n_samples, n_latents = lat.shape
    n_factors = fac.shape[1] if fac.ndim == 2 else 1
    # The float64 copy, the latent codes, the factor codes and np.unique's sorts.
    require_memory(n_samples * (3 * n_latents + 2 * n_factors) * 8,
                   f"checking {n_samples} x {n_latents} latents and {n_factors} factors")
    codes, sizes = check_factors(fac, n_rows=n_samples, factor_names=factor_names,
                                 nonnegative=nonnegative_factors)
    raw = torch.as_tensor(lat.astype(np.float64), device=dev)
    if discrete:
        # Discrete latents are categories: relabel each column by value (any numbers work).
        lat_codes = np.empty(lat.shape, dtype=np.int64)
        for j in range(n_latents):
            lat_codes[:, j] = np.unique(lat[:, j], return_inverse=True)[1]
        lat_t = torch.as_tensor(lat_codes, device=dev)
    else:
        lat_t = raw
    return ScoringInputs(latents=lat_t, factors=torch.as_tensor(codes, device=dev),
                         factor_sizes=sizes, discrete=discrete, raw_latents=raw)
