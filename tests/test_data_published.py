"""Loaders of the published files, on small files written here in the exact formats.

Small files hold a sub-grid of the factors (``factor_sizes=`` tells the loader which);
one Shapes3D file has the full published shape, with its 5.9 GB image array left
unwritten (HDF5 stores nothing for chunks never written), so the real validation path
with the real label values is exercised too.
"""
import zipfile

import h5py
import numpy as np
import pytest
from PIL import Image

from reference_models.data import DATA_DIR_ENV, DatasetError, get_dataset
from reference_models.data.isaac3d import Isaac3D
from reference_models.data.mpi3d import MPI3D
from reference_models.data.shapes3d import Shapes3D, shapes3d_factor_values

SHAPES_SUBGRID = (2, 3, 2, 2, 4, 3)      # 288 rows
MPI3D_SUBGRID = (2, 2, 2, 3, 1, 4, 5)    # 480 rows
ISAAC_SUBGRID = (3, 2, 1, 1, 2, 1, 1, 1, 2)  # 24 images


def coded_images(n: int, size: int = 64, seed: int = 0) -> np.ndarray:
    """Images whose first pixel spells their row number, over a random background."""
    images = np.random.RandomState(seed).randint(0, 256, size=(n, size, size, 3)).astype(np.uint8)
    rows = np.arange(n)
    images[:, 0, 0, 0] = rows % 256
    images[:, 0, 0, 1] = rows // 256
    return images


def row_numbers(images: np.ndarray) -> np.ndarray:
    return images[:, 0, 0, 0].astype(int) + 256 * images[:, 0, 0, 1].astype(int)


def grid_labels(value_lists) -> np.ndarray:
    """Label rows of the full grid over ``value_lists`` in row-major order."""
    mesh = np.meshgrid(*value_lists, indexing="ij")
    return np.stack([m.reshape(-1) for m in mesh], axis=1)


def shapes3d_labels(sizes) -> np.ndarray:
    return grid_labels([values[:k] for values, k in zip(shapes3d_factor_values(), sizes)])


def write_shapes3d(path, images, labels, *, drop=None):
    with h5py.File(path, "w") as handle:
        if drop != "images":
            handle.create_dataset("images", data=images)
        if drop != "labels":
            handle.create_dataset("labels", data=labels)
    return path


# ============================================================================ Shapes3D
@pytest.fixture
def shapes3d_file(tmp_path):
    n = int(np.prod(SHAPES_SUBGRID))
    images = coded_images(n)
    write_shapes3d(tmp_path / "3dshapes.h5", images, shapes3d_labels(SHAPES_SUBGRID))
    return tmp_path, images


def test_shapes3d_decodes_factors_from_labels(shapes3d_file):
    data_dir, images = shapes3d_file
    ds = get_dataset("shapes3d", data_dir=data_dir, factor_sizes=SHAPES_SUBGRID)
    assert len(ds) == 288 and ds.image_size == 64
    indices = np.array([5, 0, 287, 5, 100])  # any order, with a repeat
    np.testing.assert_array_equal(ds.images_uint8(indices), images[indices])
    np.testing.assert_array_equal(ds.factors([287])[0], np.array(SHAPES_SUBGRID) - 1)
    # The label values of the file are kept as the factor values.
    np.testing.assert_allclose(ds.factor_values[5], [-30.0, -25.714286, -21.428571], atol=1e-5)


def test_shapes3d_images_are_scaled_to_half_range(shapes3d_file):
    data_dir, images = shapes3d_file
    ds = Shapes3D(data_dir=data_dir, factor_sizes=SHAPES_SUBGRID)
    out = ds.images(np.arange(10))
    assert out.shape == (10, 3, 64, 64) and out.dtype == np.float32
    np.testing.assert_allclose(out, images[:10].transpose(0, 3, 1, 2) / 255.0 - 0.5, atol=1e-6)
    assert out.min() >= -0.5 and out.max() <= 0.5
    assert out.min() == -0.5 and out.max() == 0.5  # random pixels reach 0 and 255


def test_shapes3d_maps_shuffled_rows_by_their_labels(tmp_path):
    n = int(np.prod(SHAPES_SUBGRID))
    images = coded_images(n)
    labels = shapes3d_labels(SHAPES_SUBGRID)
    order = np.random.RandomState(1).permutation(n)
    write_shapes3d(tmp_path / "3dshapes.h5", images[order], labels[order])
    ds = Shapes3D(data_dir=tmp_path, factor_sizes=SHAPES_SUBGRID)
    # Combination c must come back as the image written for grid row c.
    np.testing.assert_array_equal(row_numbers(ds.images_uint8(np.arange(n))), np.arange(n))


def test_shapes3d_resizes_on_read(shapes3d_file):
    data_dir, images = shapes3d_file
    ds = get_dataset("shapes3d", data_dir=data_dir, image_size=32, factor_sizes=SHAPES_SUBGRID)
    out = ds.images_uint8([3, 4])
    expected = np.asarray(Image.fromarray(images[4]).resize((32, 32), Image.BICUBIC))
    assert out.shape == (2, 32, 32, 3)
    np.testing.assert_array_equal(out[1], expected)
    assert ds.images([3]).shape == (1, 3, 32, 32)


def test_shapes3d_full_size_file_with_real_labels(tmp_path):
    path = tmp_path / "3dshapes.h5"
    labels = shapes3d_labels((10, 10, 10, 8, 4, 15))
    with h5py.File(path, "w") as handle:
        handle.create_dataset("images", shape=(480000, 64, 64, 3), dtype=np.uint8,
                              chunks=(16, 64, 64, 3))
        handle["images"][1000:1002] = coded_images(2)
        handle.create_dataset("labels", data=labels, compression="gzip")
    ds = get_dataset("shapes3d", data_dir=tmp_path)
    assert ds.factor_sizes == (10, 10, 10, 8, 4, 15)
    np.testing.assert_array_equal(ds.factors([1000])[0], np.unravel_index(1000, ds.factor_sizes))
    np.testing.assert_array_equal(ds.images_uint8([1001, 1000]), coded_images(2)[::-1])
    factors = ds.sample_factors(5, np.random.RandomState(0))
    assert ds.images(ds.index_of(factors)).shape == (5, 3, 64, 64)
    ds.close()

    # Orientation labels in radians instead of degrees are caught.
    bad = labels.copy()
    bad[:, 5] = np.deg2rad(bad[:, 5])
    with h5py.File(path, "a") as handle:
        handle["labels"][...] = bad
    with pytest.raises(DatasetError, match=r"label values .* column 5 \(orientation\)"):
        get_dataset("shapes3d", data_dir=tmp_path)


def test_shapes3d_data_dir_from_environment(shapes3d_file, monkeypatch):
    data_dir, _ = shapes3d_file
    monkeypatch.setenv(DATA_DIR_ENV, str(data_dir))
    assert len(get_dataset("shapes3d", factor_sizes=SHAPES_SUBGRID)) == 288


def test_shapes3d_missing_file_says_what_and_where(tmp_path):
    with pytest.raises(DatasetError) as info:
        get_dataset("shapes3d", data_dir=tmp_path)
    message = str(info.value)
    assert str(tmp_path / "3dshapes.h5") in message
    assert "(480000, 64, 64, 3) uint8" in message
    assert "https://storage.googleapis.com/3d-shapes/3dshapes.h5" in message
    assert DATA_DIR_ENV in message
    assert isinstance(info.value, ValueError)


def test_shapes3d_small_file_against_the_published_shape(shapes3d_file):
    data_dir, _ = shapes3d_file
    with pytest.raises(DatasetError, match=r"has `images` \(288, 64, 64, 3\) uint8, "
                                           r"expected \(480000, 64, 64, 3\) uint8"):
        get_dataset("shapes3d", data_dir=data_dir)


def test_shapes3d_corrupt_file(tmp_path):
    (tmp_path / "3dshapes.h5").write_bytes(b"this is not HDF5" * 100)
    with pytest.raises(DatasetError, match="is not a readable HDF5 file.*3d-shapes"):
        get_dataset("shapes3d", data_dir=tmp_path)


def test_shapes3d_missing_dataset_key(tmp_path):
    n = int(np.prod(SHAPES_SUBGRID))
    write_shapes3d(tmp_path / "3dshapes.h5", coded_images(n), shapes3d_labels(SHAPES_SUBGRID),
                   drop="labels")
    with pytest.raises(DatasetError, match="has no dataset `labels`"):
        get_dataset("shapes3d", data_dir=tmp_path, factor_sizes=SHAPES_SUBGRID)


def test_shapes3d_wrong_label_shape_and_dtype(tmp_path):
    n = int(np.prod(SHAPES_SUBGRID))
    five_columns = shapes3d_labels(SHAPES_SUBGRID)[:, :5]
    write_shapes3d(tmp_path / "3dshapes.h5", coded_images(n), five_columns)
    with pytest.raises(DatasetError, match=r"has `labels` \(288, 5\), expected \(288, 6\)"):
        get_dataset("shapes3d", data_dir=tmp_path, factor_sizes=SHAPES_SUBGRID)
    write_shapes3d(tmp_path / "3dshapes.h5", coded_images(n).astype(np.float32),
                   shapes3d_labels(SHAPES_SUBGRID))
    with pytest.raises(DatasetError, match="float32, expected .* uint8"):
        get_dataset("shapes3d", data_dir=tmp_path, factor_sizes=SHAPES_SUBGRID)


def test_shapes3d_labels_that_are_not_a_grid(tmp_path):
    n = int(np.prod(SHAPES_SUBGRID))
    labels = shapes3d_labels(SHAPES_SUBGRID)
    labels[1] = labels[0]  # one combination twice, one missing
    write_shapes3d(tmp_path / "3dshapes.h5", coded_images(n), labels)
    with pytest.raises(DatasetError, match=r"every factor combination exactly once "
                                           r"\(1 combinations missing, 1 repeated\)"):
        get_dataset("shapes3d", data_dir=tmp_path, factor_sizes=SHAPES_SUBGRID)
    labels = shapes3d_labels(SHAPES_SUBGRID)
    labels[0, 4] = 7.0  # a fifth shape value
    write_shapes3d(tmp_path / "3dshapes.h5", coded_images(n), labels)
    with pytest.raises(DatasetError, match=r"5 distinct values in label column 4 \(shape\), "
                                           r"expected 4"):
        get_dataset("shapes3d", data_dir=tmp_path, factor_sizes=SHAPES_SUBGRID)


def test_shapes3d_survives_pickling_for_worker_processes(shapes3d_file):
    import pickle

    data_dir, images = shapes3d_file
    ds = Shapes3D(data_dir=data_dir, factor_sizes=SHAPES_SUBGRID)
    ds.images_uint8([0])  # opens the HDF5 handle
    copy = pickle.loads(pickle.dumps(ds))
    np.testing.assert_array_equal(copy.images_uint8([7]), images[[7]])
    ds.close()


# ============================================================================== MPI3D
def mpi3d_images(sizes=MPI3D_SUBGRID) -> np.ndarray:
    return coded_images(int(np.prod(sizes)), seed=2)


@pytest.mark.parametrize("compressed", [False, True], ids=["stored", "deflated"])
def test_mpi3d_reads_rows_in_factor_order(tmp_path, compressed):
    images = mpi3d_images()
    save = np.savez_compressed if compressed else np.savez
    save(tmp_path / "real3d_complicated_shapes_ordered.npz", images=images)
    ds = get_dataset("mpi3d", data_dir=tmp_path, factor_sizes=MPI3D_SUBGRID)
    assert ds.name == "mpi3d" and len(ds) == 480
    indices = np.array([479, 0, 17, 17, 250])
    np.testing.assert_array_equal(ds.images_uint8(indices), images[indices])
    np.testing.assert_array_equal(ds.factors([479])[0], np.array(MPI3D_SUBGRID) - 1)
    np.testing.assert_allclose(ds.images([3]), images[[3]].transpose(0, 3, 1, 2) / 255 - 0.5,
                               atol=1e-6)
    extracted = tmp_path / "real3d_complicated_shapes_ordered.images.npy"
    # Stored members are memory-mapped inside the zip; deflated ones are extracted once.
    assert extracted.is_file() == compressed
    assert isinstance(ds._images, np.memmap)
    if compressed:  # the extracted copy is reused
        stamp = extracted.stat().st_mtime_ns
        again = get_dataset("mpi3d", data_dir=tmp_path, factor_sizes=MPI3D_SUBGRID)
        np.testing.assert_array_equal(again.images_uint8([9]), images[[9]])
        assert extracted.stat().st_mtime_ns == stamp


@pytest.mark.parametrize("name,filename", [("mpi3d_toy", "mpi3d_toy.npz"),
                                           ("mpi3d_realistic", "mpi3d_realistic.npz"),
                                           ("mpi3d_real", "mpi3d_real.npz")])
def test_mpi3d_variants_by_name(tmp_path, name, filename):
    sizes = (3, 2, 2, 1, 1, 2, 2)
    images = mpi3d_images(sizes)
    np.savez(tmp_path / filename, images=images)
    ds = get_dataset(name, data_dir=tmp_path, factor_sizes=sizes, image_size=32)
    assert ds.name == name
    out = ds.images_uint8([5])
    np.testing.assert_array_equal(
        out[0], np.asarray(Image.fromarray(images[5]).resize((32, 32), Image.BICUBIC)))
    with pytest.raises(DatasetError, match=r"\(1036800, 64, 64, 3\) uint8"):
        get_dataset(name, data_dir=tmp_path)


def test_mpi3d_missing_file_says_where_it_is_published(tmp_path):
    with pytest.raises(DatasetError) as info:
        get_dataset("mpi3d", data_dir=tmp_path)
    message = str(info.value)
    assert "real3d_complicated_shapes_ordered.npz" in message
    assert "(460800, 64, 64, 3) uint8" in message
    assert "github.com/rr-learning/disentanglement_dataset" in message
    with pytest.raises(DatasetError, match="storage.googleapis.com/disentanglement_dataset/"
                                           "Final_Dataset/mpi3d_toy.npz"):
        get_dataset("mpi3d_toy", data_dir=tmp_path)


def test_mpi3d_malformed_files(tmp_path):
    path = tmp_path / "real3d_complicated_shapes_ordered.npz"
    path.write_bytes(b"garbage" * 50)
    with pytest.raises(DatasetError, match="is not a readable npz"):
        get_dataset("mpi3d", data_dir=tmp_path)
    np.savez(path, pictures=mpi3d_images())
    with pytest.raises(DatasetError, match=r"has no key `images` \(keys: \['pictures'\]\)"):
        get_dataset("mpi3d", data_dir=tmp_path, factor_sizes=MPI3D_SUBGRID)
    np.savez(path, images=mpi3d_images()[:-1])
    with pytest.raises(DatasetError, match=r"has `images` \(479, 64, 64, 3\) uint8, "
                                           r"expected \(480, 64, 64, 3\) uint8"):
        get_dataset("mpi3d", data_dir=tmp_path, factor_sizes=MPI3D_SUBGRID)
    # A truncated archive (a download cut short) is not mistaken for data.
    np.savez(path, images=mpi3d_images())
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(DatasetError, match="is not a readable npz"):
        get_dataset("mpi3d", data_dir=tmp_path, factor_sizes=MPI3D_SUBGRID)


def test_mpi3d_unknown_variant():
    with pytest.raises(ValueError, match="variant must be one of"):
        MPI3D("tiny")


# ============================================================================ Isaac3D
def write_isaac3d(root, sizes=ISAAC_SUBGRID, *, order=None):
    """An Isaac3D_down128 folder: labels.npy with values in [0, 1] and 128x128 PNGs."""
    folder = root / "Isaac3D_down128"
    (folder / "images").mkdir(parents=True)
    labels = grid_labels([np.linspace(0, 1, k) if k > 1 else np.zeros(1) for k in sizes])
    n = len(labels)
    images = coded_images(n, size=128, seed=4)
    order = np.arange(n) if order is None else order
    np.save(folder / "labels.npy", labels[order])
    for row, source in enumerate(order):
        Image.fromarray(images[source]).save(folder / "images" / f"{row:06d}.png")
    return folder, images


def bicubic(image, size):
    return np.asarray(Image.fromarray(image).resize((size, size), Image.BICUBIC))


def test_isaac3d_resizes_once_and_caches(tmp_path):
    folder, images = write_isaac3d(tmp_path)
    ds = get_dataset("isaac3d", data_dir=tmp_path, factor_sizes=ISAAC_SUBGRID)
    assert len(ds) == 24 and ds.image_size == 64
    cache = tmp_path / "isaac3d_64x64.npy"
    assert cache.is_file()
    out = ds.images_uint8([0, 23, 5])
    for got, row in zip(out, [0, 23, 5]):
        np.testing.assert_array_equal(got, bicubic(images[row], 64))
    assert ds.images([1]).shape == (1, 3, 64, 64)
    np.testing.assert_array_equal(ds.factors([23])[0], np.array(ISAAC_SUBGRID) - 1)
    # Later runs read the cache, not the PNGs.
    for png in (folder / "images").iterdir():
        png.unlink()
    again = get_dataset("isaac3d", data_dir=tmp_path, factor_sizes=ISAAC_SUBGRID)
    np.testing.assert_array_equal(again.images_uint8([5]), out[[2]])


def test_isaac3d_other_size_and_shuffled_rows(tmp_path):
    n = int(np.prod(ISAAC_SUBGRID))
    order = np.random.RandomState(3).permutation(n)
    _, images = write_isaac3d(tmp_path, order=order)
    ds = Isaac3D(data_dir=tmp_path, image_size=32, factor_sizes=ISAAC_SUBGRID)
    assert (tmp_path / "isaac3d_32x32.npy").is_file()
    for combination in (0, 7, 23):
        np.testing.assert_array_equal(ds.images_uint8([combination])[0],
                                      bicubic(images[combination], 32))


def test_isaac3d_errors(tmp_path):
    with pytest.raises(DatasetError, match=r"Isaac3D_down128/labels.npy .*not found.*"
                                           r"NVlabs/High-res-disentanglement-datasets"):
        get_dataset("isaac3d", data_dir=tmp_path)
    folder, _ = write_isaac3d(tmp_path)
    with pytest.raises(DatasetError, match=r"has shape \(24, 9\), expected \(737280, 9\)"):
        get_dataset("isaac3d", data_dir=tmp_path)
    (folder / "images" / "000005.png").unlink()
    with pytest.raises(DatasetError, match="lacks 1 of the 24 images, the first being 000005.png"):
        get_dataset("isaac3d", data_dir=tmp_path, factor_sizes=ISAAC_SUBGRID)
    (folder / "images" / "000005.png").write_bytes(b"not a png")
    with pytest.raises(DatasetError, match="000005.png is not a readable image"):
        get_dataset("isaac3d", data_dir=tmp_path, factor_sizes=ISAAC_SUBGRID)
    assert not (tmp_path / "isaac3d_64x64.npy.part").exists()
    assert not (tmp_path / "isaac3d_64x64.npy").exists()
    (folder / "labels.npy").write_bytes(b"broken")
    with pytest.raises(DatasetError, match="labels.npy is not a readable .npy array"):
        get_dataset("isaac3d", data_dir=tmp_path, factor_sizes=ISAAC_SUBGRID)


def test_npz_is_a_zip_of_npy_members(tmp_path):
    """The memory-mapping path relies on this layout of np.savez output."""
    np.savez(tmp_path / "a.npz", images=np.zeros((2, 2), np.uint8))
    with zipfile.ZipFile(tmp_path / "a.npz") as archive:
        info = archive.getinfo("images.npy")
        assert info.compress_type == zipfile.ZIP_STORED
