"""Procedural datasets (toyshapes, toysprites), the shared interface and the registry."""
import numpy as np
import pytest
from click.testing import CliRunner

from reference_models.data import get_dataset, list_datasets
from reference_models.data.toyshapes import ToyShapes, hues_to_rgb, shading_templates
from reference_models.data.toysprites import ToySprites

PROCEDURAL = ["toyshapes", "toysprites"]


def image_hashes(images: np.ndarray, salt: int = 0) -> np.ndarray:
    """A 64-bit hash per image: a random linear form of its bytes, wrapping mod 2**64.

    Two different images collide only with negligible probability, so counting distinct
    hashes counts distinct images without holding all of them.
    """
    flat = np.ascontiguousarray(images.reshape(len(images), -1))
    words = flat.view(np.uint64)  # image sizes here are multiples of 8 bytes
    multipliers = np.random.RandomState(1234 + salt).randint(
        1, 2**63, size=words.shape[1], dtype=np.int64).astype(np.uint64) | np.uint64(1)
    with np.errstate(over="ignore"):
        return (words * multipliers).sum(axis=1, dtype=np.uint64)


def all_hashes(ds, batch: int = 40000) -> np.ndarray:
    return np.concatenate([
        image_hashes(ds.images_uint8(np.arange(start, min(start + batch, len(ds)))))
        for start in range(0, len(ds), batch)])


@pytest.fixture(scope="module", params=[(name, size) for name in PROCEDURAL for size in (32, 64)],
                ids=lambda p: f"{p[0]}-{p[1]}")
def procedural(request):
    name, size = request.param
    return get_dataset(name, image_size=size)


# ------------------------------------------------------------------------- interface
def test_interface_shapes_and_ranges(procedural):
    ds = procedural
    size = ds.image_size
    assert len(ds) == ds.n_samples == int(np.prod(ds.factor_sizes))
    assert len(ds.factor_names) == len(ds.factor_sizes) == len(ds.factor_values)
    assert all(len(v) == s for v, s in zip(ds.factor_values, ds.factor_sizes))
    indices = np.array([0, len(ds) - 1, 12345 % len(ds), 7])
    raw = ds.images_uint8(indices)
    assert raw.shape == (4, size, size, 3) and raw.dtype == np.uint8
    scaled = ds.images(indices)
    assert scaled.shape == (4, 3, size, size) and scaled.dtype == np.float32
    assert scaled.min() >= -0.5 and scaled.max() <= 0.5
    np.testing.assert_allclose(scaled, raw.transpose(0, 3, 1, 2) / 255.0 - 0.5, atol=1e-6)
    assert ds.images_uint8([]).shape == (0, size, size, 3)


def test_factors_and_index_of_round_trip(procedural):
    ds = procedural
    indices = np.random.RandomState(0).randint(0, len(ds), size=500)
    factors = ds.factors(indices)
    assert factors.dtype == np.int64 and factors.shape == (500, ds.n_factors)
    assert (factors >= 0).all() and (factors < np.array(ds.factor_sizes)).all()
    np.testing.assert_array_equal(ds.index_of(factors), indices)
    # Row-major: the last factor varies fastest.
    np.testing.assert_array_equal(ds.factors([1])[0], [0] * (ds.n_factors - 1) + [1])
    np.testing.assert_array_equal(ds.factors([len(ds) - 1])[0], np.array(ds.factor_sizes) - 1)


def test_sample_factors_matches_disentanglement_lib_draw_order(procedural):
    ds = procedural
    drawn = ds.sample_factors(1000, np.random.RandomState(7))
    reference = np.random.RandomState(7)
    expected = np.stack([reference.randint(s, size=1000) for s in ds.factor_sizes], axis=1)
    np.testing.assert_array_equal(drawn, expected)
    assert drawn.dtype == np.int64


def test_bad_indices_and_factors_are_reported():
    ds = get_dataset("toysprites", image_size=32)
    with pytest.raises(ValueError, match=r"indices must lie in \[0, 55296\)"):
        ds.images([55296])
    with pytest.raises(ValueError, match="indices must be 1D"):
        ds.images(np.zeros((2, 2), dtype=int))
    with pytest.raises(TypeError, match="indices must be integers"):
        ds.images([0.5])
    with pytest.raises(ValueError, match=r"factor_values\[:, 1\] \(scale\) must lie in \[0, 6\)"):
        ds.index_of([[0, 6, 0, 0, 0]])
    with pytest.raises(ValueError, match=r"shape \(n, 5\)"):
        ds.index_of([[0, 0, 0]])
    with pytest.raises(TypeError, match="RandomState"):
        ds.sample_factors(3, np.random.default_rng(0))


def test_image_size_is_checked():
    with pytest.raises(ValueError, match="toyshapes: image_size"):
        ToyShapes(image_size=48)
    with pytest.raises(ValueError, match="toysprites: image_size must be a multiple of 32"):
        ToySprites(image_size=48)


# -------------------------------------------------------- every factor shows in the image
def test_every_factor_value_changes_the_image(procedural):
    """From several starting tuples, each factor's values give pairwise different images."""
    ds = procedural
    starts = ds.sample_factors(6, np.random.RandomState(3))
    for start in starts:
        for column, size in enumerate(ds.factor_sizes):
            traversal = np.repeat(start[None], size, axis=0)
            traversal[:, column] = np.arange(size)
            hashes = image_hashes(ds.images_uint8(ds.index_of(traversal)))
            assert len(np.unique(hashes)) == size, (ds.factor_names[column], start)


def test_toysprites_tuples_all_give_distinct_images():
    ds = get_dataset("toysprites", image_size=32)
    assert len(np.unique(all_hashes(ds))) == len(ds)
    ds = get_dataset("toysprites", image_size=64)
    indices = np.random.RandomState(6).choice(len(ds), size=20000, replace=False)
    assert len(np.unique(image_hashes(ds.images_uint8(indices)))) == len(indices)


def test_toyshapes_random_tuples_give_distinct_images():
    ds = get_dataset("toyshapes", image_size=32)
    indices = np.random.RandomState(5).choice(len(ds), size=40000, replace=False)
    assert len(np.unique(image_hashes(ds.images_uint8(indices)))) == len(indices)


@pytest.mark.slow
def test_toyshapes_all_480000_tuples_give_distinct_images_at_32px():
    ds = get_dataset("toyshapes", image_size=32)
    assert len(np.unique(all_hashes(ds))) == len(ds)


def test_toyshapes_objects_are_large_enough_to_learn_from():
    """The object covers a fair share of the image: at 32 px, the smallest object still
    owns dozens of pixels, and scale changes the covered area monotonically."""
    templates = shading_templates(32, 0).reshape(8, 4, 15, 32 * 32, 6)
    object_pixels = (templates[..., 2] > 0.05).sum(axis=-1)          # (scale, shape, orient)
    assert object_pixels.min() >= 30
    assert object_pixels.max() >= 150
    assert (np.diff(object_pixels.mean(axis=(1, 2))) > 0).all()


# ------------------------------------------------------------------------ determinism
@pytest.mark.parametrize("name", PROCEDURAL)
def test_same_seed_gives_the_same_bytes(name):
    indices = np.random.RandomState(11).randint(0, 40000, size=300)
    first = get_dataset(name, image_size=32, seed=3).images_uint8(indices)
    shading_templates.cache_clear()  # render the templates again from scratch
    second = get_dataset(name, image_size=32, seed=3).images_uint8(indices)
    assert first.tobytes() == second.tobytes()


@pytest.mark.parametrize("name", PROCEDURAL)
def test_an_image_does_not_depend_on_its_batch(name):
    ds = get_dataset(name, image_size=32)
    indices = np.random.RandomState(12).randint(0, len(ds), size=3000)
    batch = ds.images_uint8(indices)
    np.testing.assert_array_equal(ds.images_uint8(indices[::-1])[::-1], batch)
    for position in (0, 1234, 2999):
        np.testing.assert_array_equal(ds.images_uint8([indices[position]])[0], batch[position])


def test_toyshapes_seed_only_changes_the_texture():
    indices = np.arange(0, 480000, 997)
    a = get_dataset("toyshapes", image_size=32, seed=0).images_uint8(indices).astype(int)
    b = get_dataset("toyshapes", image_size=32, seed=1).images_uint8(indices).astype(int)
    assert (a != b).any()
    assert np.abs(a - b).mean() < 4  # a faint texture, not a different scene


def test_hues_match_hsv():
    import colorsys

    for hue in np.linspace(0, 0.9, 10):
        np.testing.assert_allclose(hues_to_rgb(hue, 0.9, 1.0), colorsys.hsv_to_rgb(hue, 0.9, 1.0),
                                   atol=1e-12)


def test_toyshapes_label_values_are_shapes3d_values():
    ds = get_dataset("toyshapes", image_size=32)
    np.testing.assert_allclose(ds.factor_values[0], np.arange(10) / 10)
    np.testing.assert_allclose(ds.factor_values[3], np.linspace(0.75, 1.25, 8))
    np.testing.assert_allclose(ds.factor_values[5], np.linspace(-30, 30, 15))


# ------------------------------------------------------------------------- registry
def test_registry_lists_every_dataset():
    infos = {info.name: info for info in list_datasets()}
    assert set(infos) == {"toyshapes", "toysprites", "shapes3d", "mpi3d", "mpi3d_toy",
                          "mpi3d_realistic", "mpi3d_real", "isaac3d"}
    assert infos["shapes3d"].factor_sizes == (10, 10, 10, 8, 4, 15)
    assert infos["mpi3d"].factor_sizes == (4, 4, 2, 3, 3, 40, 40)
    assert infos["mpi3d_toy"].n_samples == 1036800
    assert infos["isaac3d"].n_samples == 737280
    assert not infos["toyshapes"].needs_download and infos["shapes3d"].needs_download
    assert infos["toyshapes"].factor_names == infos["shapes3d"].factor_names


def test_unknown_dataset_names_the_choices():
    with pytest.raises(ValueError, match="unknown dataset 'shapes4d': choose one of .*toyshapes"):
        get_dataset("shapes4d")


def test_train_reference_list_datasets():
    from disentangle_eval.cli.train_reference import main

    result = CliRunner().invoke(main, ["--list-datasets"])
    assert result.exit_code == 0, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == len(list_datasets())
    assert ("shapes3d: floor_hue 10, wall_hue 10, object_hue 10, scale 8, shape 4, "
            "orientation 15") in lines
    assert ("mpi3d: object_color 4, object_shape 4, object_size 2, camera_height 3, "
            "background_color 3, horizontal_axis 40, vertical_axis 40") in lines
    assert any(line.startswith("isaac3d: object_shape 3, robot_x 8") for line in lines)
    assert any(line.startswith("toysprites: shape 3, scale 6") for line in lines)
