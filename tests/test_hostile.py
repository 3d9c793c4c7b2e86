"""Hostile and extreme input at the scoring boundary: files, arrays, magnitudes, memory.

The memory cases run in a subprocess under a hard address-space ceiling
(``tests/limits.py``), so that a regression fails instead of making the machine swap.
"""
import io
import sys
import zipfile

import numpy as np
import pytest
import torch

from disentangle_eval import DataError, dci, infomec
from disentangle_eval._validation import (available_memory, check_inputs, display_text,
                                          require_memory)
from disentangle_eval.io import load_array, load_factor_names

from limits import python_limited, run_limited

RNG = np.random.default_rng(0)
FACTORS = RNG.integers(0, 4, size=(400, 2))
LATENTS = FACTORS + 0.1 * RNG.standard_normal(FACTORS.shape)


def score_limited(path, *args, max_bytes=3 * 2**30):
    return run_limited([sys.executable, "-m", "disentangle_eval.cli.main", "score", str(path),
                        "--factors", str(path), "--device", "cpu", *map(str, args)],
                       max_bytes=max_bytes)


def assert_one_line_error(proc, code, message):
    assert proc.returncode == code, proc.stderr
    assert proc.stderr.startswith("error: ") and len(proc.stderr.splitlines()) == 1, proc.stderr
    assert message in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr


# --------------------------------------------------------------------------------------
# Memory, under a hard ceiling
# --------------------------------------------------------------------------------------

def _npy_header(shape, descr="<f8") -> bytes:
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, {"descr": descr, "fortran_order": False,
                                                  "shape": shape})
    return buffer.getvalue()


@pytest.fixture(scope="module")
def zip_bomb(tmp_path_factory):
    """A ~5 MB .npz whose latents are 1 GiB of zeros once decompressed."""
    path = tmp_path_factory.mktemp("bomb") / "bomb.npz"
    chunk = bytes(2**24)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        with archive.open("latents.npy", "w", force_zip64=True) as member:
            member.write(_npy_header((2**27, 1)))
            for _ in range(2**30 // len(chunk)):
                member.write(chunk)
        archive.writestr("factors.npy", _npy_header((2**27, 1), "<i8"))
    assert path.stat().st_size < 8 * 2**20
    return path


def test_zip_bomb_is_refused_before_it_is_decompressed(zip_bomb):
    proc = score_limited(zip_bomb, "--metrics", "infomec", max_bytes=3 * 2**30 // 2)
    assert_one_line_error(proc, 1, "latents of shape (134217728, 1) (float64) needs about "
                                   "1.0 GiB of memory but only")
    assert "use fewer rows or a machine with more memory" in proc.stderr


def test_header_that_declares_more_than_the_file_holds(tmp_path):
    path = tmp_path / "liar.npy"
    path.write_bytes(_npy_header((10**6, 10**4)) + bytes(80))  # claims 80 GB, holds 80 B
    proc = score_limited(path, "--metrics", "infomec")
    assert_one_line_error(proc, 1, "the header declares latents of shape (1000000, 10000)")
    assert "truncated or corrupt" in proc.stderr


def test_factor_with_a_value_per_sample_is_refused_quickly(tmp_path):
    # The case: 320 KB of factors with 20000 distinct values sent DCI past 6.8 GB.
    n = 20_000
    factors = np.c_[RNG.permutation(n), RNG.integers(0, 3, n)]
    path = tmp_path / "ids.npz"
    np.savez(path, latents=RNG.standard_normal((n, 4)), factors=factors)
    proc = score_limited(path)
    assert_one_line_error(proc, 1, "factor column 0 has 20000 distinct values in 20000 "
                                   "samples (more than half): it looks like a continuous "
                                   "variable or an id column")


def test_sparse_tensor_too_large_to_densify_is_refused():
    proc = python_limited(
        "import torch\n"
        "from disentangle_eval._validation import check_inputs, DataError\n"
        "z = torch.sparse_coo_tensor(torch.tensor([[0, 1], [0, 1]]), torch.ones(2),"
        " (10**6, 10**5))\n"
        "try:\n"
        "    check_inputs(z, torch.zeros(10**6, 1))\n"
        "except DataError as exc:\n"
        "    print(exc)\n")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("latents (a torch.sparse_coo tensor of shape (1000000, "
                                  "100000)) as a dense array needs about 372.5 GiB")


def test_require_memory_sees_the_ceiling():
    proc = python_limited(
        "from disentangle_eval._validation import available_memory, require_memory,"
        " DataError\n"
        "print(available_memory() < 2**31)\n"
        "try:\n"
        "    require_memory(2**31, 'the test buffer', hint='ask for less')\n"
        "except DataError as exc:\n"
        "    print(exc)\n", max_bytes=2**31)
    assert proc.returncode == 0, proc.stderr
    first, second = proc.stdout.splitlines()
    assert first == "True"
    assert second.startswith("the test buffer needs about 2.0 GiB of memory but only ")
    assert second.endswith(" is available; ask for less")


def test_available_memory_without_a_ceiling_is_the_machines():
    assert 0 < available_memory() <= 2**63
    require_memory(2**20, "a megabyte")


# --------------------------------------------------------------------------------------
# Files that are not what they claim
# --------------------------------------------------------------------------------------

class _Payload:
    """Unpickling this creates a file: proof that a pickle ran."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_pickled_arrays_are_never_unpickled(tmp_path):
    marker = tmp_path / "pwned"
    evil = np.empty((2, 2), dtype=object)
    evil[:] = _Payload(str(marker))
    np.save(tmp_path / "evil.npy", evil, allow_pickle=True)
    np.savez(tmp_path / "evil.npz", latents=LATENTS, factors=FACTORS,
             factor_names=np.array([_Payload(str(marker))] * 2, dtype=object))
    with pytest.raises(DataError, match="holds Python objects .* never unpickled"):
        load_array(tmp_path / "evil.npy", "latents")
    with pytest.raises(DataError, match="factor_names: holds Python objects"):
        load_factor_names(tmp_path / "evil.npz", n_factors=2)
    assert not marker.exists()


def test_npz_member_that_is_not_an_array(tmp_path):
    path = tmp_path / "raw.npz"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("latents", b"not an array")
    with pytest.raises(DataError, match=r"array 'latents': not a readable NumPy array"):
        load_array(path, "latents")


def test_device_files_are_not_read():
    with pytest.raises(DataError, match="/dev/zero: is not a regular file"):
        load_array("/dev/zero", "latents")


def test_factor_names_of_the_wrong_type_in_a_file(tmp_path):
    path = tmp_path / "names.npz"
    np.savez(path, latents=LATENTS, factors=FACTORS, factor_names=np.array([0.5, 1.5]))
    with pytest.raises(DataError, match="factor_names must be strings, got dtype float64"):
        load_factor_names(path, n_factors=2)


# --------------------------------------------------------------------------------------
# Extreme magnitudes: labels compared exactly
# --------------------------------------------------------------------------------------

@pytest.mark.parametrize("labels", [
    np.array([0.0, 2.0**63, 2.0**64, 1e300]),
    np.array([0, 2**63, 2**63 + 1, 2**64 - 1], dtype=np.uint64),
    np.array([-2**63, -1, 2**62, 2**63 - 1], dtype=np.int64),
], ids=["float-beyond-int64", "uint64-high", "int64-extremes"])
def test_huge_factor_labels_stay_distinct(labels):
    inputs = check_inputs(LATENTS, labels[FACTORS], device="cpu")
    assert inputs.factor_sizes == (4, 4)
    np.testing.assert_array_equal(inputs.factors.numpy(), FACTORS)
    np.testing.assert_array_equal(infomec(LATENTS, labels[FACTORS], device="cpu").nmi,
                                  infomec(LATENTS, FACTORS, device="cpu").nmi)


@pytest.mark.parametrize("value", [2.0**51 + 0.5, 1e-300, 0.5, -(2.0**50) - 0.25])
def test_non_integer_labels_are_found_exactly(value):
    factors = FACTORS.astype(np.float64)
    factors[7, 1] = value
    with pytest.raises(DataError, match="non-integer values .* first at row 7, column 1"):
        check_inputs(LATENTS, factors, device="cpu")


def test_float32_labels_are_checked_in_their_own_dtype():
    factors = FACTORS.astype(np.float32)
    factors[3, 0] = np.float32(2**22 + 0.5)  # the last half a float32 can hold
    with pytest.raises(DataError, match="non-integer"):
        check_inputs(LATENTS, factors, device="cpu")


@pytest.mark.skipif(np.finfo(np.longdouble).max <= np.finfo(np.float64).max,
                    reason="longdouble is float64 here")
def test_latents_beyond_float64_are_refused():
    latents = LATENTS.astype(np.longdouble)
    latents[5, 1] = np.longdouble("1e400")
    with pytest.raises(DataError, match=r"beyond the float64 range .* row 5, column 1"):
        check_inputs(latents, FACTORS, device="cpu")
    assert check_inputs(LATENTS.astype(np.longdouble), FACTORS, device="cpu") \
        .raw_latents.dtype == torch.float64


# --------------------------------------------------------------------------------------
# Tensors and frames of every kind
# --------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float8_e4m3fn])
def test_narrow_float_tensors_are_widened_exactly(dtype):
    narrow = torch.as_tensor(LATENTS).to(dtype)
    inputs = check_inputs(narrow, torch.as_tensor(FACTORS), device="cpu")
    torch.testing.assert_close(inputs.raw_latents, narrow.float().double(), rtol=0, atol=0)


def test_sparse_tensors_and_matrices_are_densified():
    import scipy.sparse

    dense = check_inputs(LATENTS, FACTORS, device="cpu")
    for latents in (torch.as_tensor(LATENTS).to_sparse(), scipy.sparse.csr_matrix(LATENTS)):
        got = check_inputs(latents, FACTORS, device="cpu")
        torch.testing.assert_close(got.raw_latents, dense.raw_latents, rtol=0, atol=0)


def test_meta_tensor_is_refused():
    with pytest.raises(DataError, match="latents is a tensor on the 'meta' device, which "
                                        "holds no data"):
        check_inputs(torch.empty(400, 2, device="meta"), FACTORS, device="cpu")
    with pytest.raises(DataError, match="factors is a tensor on the 'meta' device"):
        check_inputs(LATENTS, torch.empty(400, 2, device="meta"), device="cpu")


def test_complex_and_other_unsupported_tensors():
    with pytest.raises(DataError, match="latents must be numeric, got dtype complex64"):
        check_inputs(torch.ones(400, 2, dtype=torch.complex64), FACTORS, device="cpu")


def test_pandas_nullable_dtypes_are_converted():
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame({"a": pd.array(FACTORS[:, 0], dtype="Int64"),
                          "b": pd.array(FACTORS[:, 1], dtype="UInt8")})
    latents = pd.DataFrame({"x": pd.array(LATENTS[:, 0], dtype="Float64"),
                            "y": LATENTS[:, 1]})
    got = check_inputs(latents, frame, device="cpu")
    expected = check_inputs(LATENTS, FACTORS, device="cpu")
    torch.testing.assert_close(got.factors, expected.factors, rtol=0, atol=0)
    torch.testing.assert_close(got.raw_latents, expected.raw_latents, rtol=0, atol=0)


def test_pandas_missing_values_and_text_columns_are_refused():
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame({"a": pd.array(FACTORS[:, 0], dtype="Int64"), "b": FACTORS[:, 1]})
    frame.loc[9, "a"] = pd.NA
    with pytest.raises(DataError, match=r"factors contain 1 missing value\(s\) \(NA\), first "
                                        "at row 9, column 0"):
        check_inputs(LATENTS, frame, device="cpu")
    text = pd.DataFrame({"a": FACTORS[:, 0].astype(str), "b": FACTORS[:, 1]})
    with pytest.raises(DataError, match="factors must be numeric, got column dtype"):
        check_inputs(LATENTS, text, device="cpu")
    categories = pd.DataFrame({"a": pd.Categorical(FACTORS[:, 0]), "b": FACTORS[:, 1]})
    with pytest.raises(DataError, match="column dtype.*category"):
        check_inputs(LATENTS, categories, device="cpu")


def test_pandas_integers_that_float64_cannot_hold():
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame({"a": FACTORS[:, 0] + 2**60, "b": FACTORS[:, 1].astype(float)})
    with pytest.raises(DataError, match="beyond 2\\*\\*53"):
        check_inputs(LATENTS, frame, device="cpu")


def test_masked_values_are_refused():
    masked = np.ma.masked_array(LATENTS, mask=np.zeros_like(LATENTS, dtype=bool))
    check_inputs(masked, FACTORS, device="cpu")
    masked[4, 0] = np.ma.masked
    with pytest.raises(DataError, match=r"latents is a masked array with 1 masked value"):
        check_inputs(masked, FACTORS, device="cpu")


# --------------------------------------------------------------------------------------
# Arguments name themselves and what they received
# --------------------------------------------------------------------------------------

def test_wrong_number_of_factor_names_through_the_api():
    with pytest.raises(DataError, match=r"factor_names has 1 entries but factors have 2 "
                                        r"columns: \['a'\]"):
        dci(LATENTS, FACTORS, factor_names=["a"], device="cpu")
    with pytest.raises(TypeError, match="factor_names must be a sequence of strings, one per "
                                        "factor, got the single string 'ab'"):
        check_inputs(LATENTS, FACTORS, factor_names="ab", device="cpu")


@pytest.mark.parametrize("kwargs,error,message", [
    ({"discrete": "yes"}, TypeError, "discrete must be True, False or None, got 'yes'"),
    ({"device": "bogus"}, ValueError, "device must be 'auto', 'cpu', 'cuda' or 'cuda:N', "
                                      "got 'bogus'"),
    ({"device": "meta"}, ValueError, "got 'meta'"),
])
def test_argument_checks_name_the_argument_and_value(kwargs, error, message):
    with pytest.raises(error, match=message.replace("(", r"\(").replace(")", r"\)")):
        check_inputs(LATENTS, FACTORS, **kwargs)


@pytest.mark.parametrize("latents,error,message", [
    (None, TypeError, "latents must be an array-like of shape (n_samples, n_columns), got "
                      "NoneType"),
    ({"a": 1}, TypeError, "got dict"),
    ([[1.0, 2.0], [3.0]], DataError, "latents must be a rectangular"),
])
def test_things_that_are_not_arrays(latents, error, message):
    with pytest.raises(error, match=message.replace("(", r"\(").replace(")", r"\)")):
        check_inputs(latents, FACTORS, device="cpu")


def test_display_text_escapes_what_a_terminal_would_obey():
    assert display_text("plain name, accents é") == "plain name, accents é"
    assert display_text("a\x1b[2Jb\nc\u202ed\x07") == "a\\x1b[2Jb\\nc\\u202ed\\x07"
    assert display_text("x" * 100) == "x" * 80 + "..."
    assert display_text(display_text("\x1b")) == "\\x1b"
