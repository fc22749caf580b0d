"""kerascnn.data: sources on small real files, the pipeline's augmentation, mixing, determinism and
normalisation (checked against the NumPy `to_model_input`)."""

import gzip
import logging
import struct

import numpy as np
import pytest
import tensorflow as tf

import kerascnn
from kerascnn.data import (check_image_file, from_arrays, from_fashion_mnist, from_image_folder,
                           from_tfds, load, make_pipeline, pipeline_for, to_model_input)

UNIT = {"scale": (1.0, 1.0, 1.0), "offset": (0.0, 0.0, 0.0), "channel_order": "RGB"}


def _collect(dataset):
    xs, ys = [], []
    for x, y in dataset:
        xs.append(x.numpy())
        ys.append(y.numpy())
    return np.concatenate(xs), np.concatenate(ys)


def _write_idx(path, array, type_code=0x08):
    header = bytes([0, 0, type_code, array.ndim]) + b"".join(struct.pack(">I", d) for d in array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def _label_images(labels, size=(32, 32), channels=3):
    """Constant images whose pixel value encodes the label: 20 * label + 30."""
    values = (20 * np.asarray(labels) + 30).astype(np.uint8)
    return np.broadcast_to(values[:, None, None, None], (len(labels), *size, channels)).copy()


# --- sources ----------------------------------------------------------------------------------

def test_fashion_mnist_reads_idx_files_back_exactly(tmp_path):
    rng = np.random.default_rng(0)
    data = {}
    for split, stem, n in (("train", "train", 12), ("test", "t10k", 5)):
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, n, dtype=np.uint8)
        _write_idx(tmp_path / f"{stem}-images-idx3-ubyte.gz", images)
        _write_idx(tmp_path / f"{stem}-labels-idx1-ubyte.gz", labels)
        data[split] = (images, labels)
    for split, (images, labels) in data.items():
        ds = from_fashion_mnist(split, directory=tmp_path)
        assert ds.element_spec[0] == tf.TensorSpec((28, 28, 1), tf.uint8)
        assert ds.element_spec[1] == tf.TensorSpec((), tf.int64)
        assert ds.class_names[0] == "T-shirt/top" and len(ds.class_names) == 10
        got_x, got_y = _collect(ds.batch(64))
        np.testing.assert_array_equal(got_x[..., 0], images)
        np.testing.assert_array_equal(got_y, labels)
    got_x, _ = _collect(load("fashion_mnist", "test", data_dir=tmp_path).batch(64))
    np.testing.assert_array_equal(got_x[..., 0], data["test"][0])
    with pytest.raises(FileNotFoundError, match="dataset-fashion-mnist"):
        from_fashion_mnist("train", directory=tmp_path / "missing")


def test_from_arrays_dtypes_and_errors():
    images = np.arange(4 * 5 * 6, dtype=np.uint8).reshape(4, 5, 6)
    ds = from_arrays(images, [0, 1, 2, 3])
    assert ds.element_spec[0] == tf.TensorSpec((5, 6, 1), tf.uint8)
    assert ds.element_spec[1].dtype == tf.int64
    got_x, got_y = _collect(ds.batch(4))
    np.testing.assert_array_equal(got_x[..., 0], images)
    np.testing.assert_array_equal(got_y, [0, 1, 2, 3])
    floats = from_arrays(images.astype(np.float64) + 0.5, np.array([[0], [1], [2], [3]]))
    assert floats.element_spec[0] == tf.TensorSpec((5, 6, 1), tf.float32)
    with pytest.raises(ValueError, match="one per image"):
        from_arrays(images, [0, 1])
    with pytest.raises(ValueError, match=r"\[0, 255\]"):
        from_arrays(images * 3.0, [0, 1, 2, 3])
    with pytest.raises(ValueError, match="class indices"):
        from_arrays(images, [0.5, 1, 2, 3])


def _write_image(path, array, kind):
    encoded = tf.io.encode_png(array) if kind == "png" else tf.io.encode_jpeg(array, quality=95)
    path.write_bytes(encoded.numpy())


def _make_image_folder(root):
    """cat (value 40): RGB PNG, grayscale PNG, JPEG; dog (value 200): RGBA PNG, JPEG, plus bad files."""
    cat, dog = root / "cat", root / "dog"
    cat.mkdir(parents=True)
    (dog / "more").mkdir(parents=True)
    _write_image(cat / "a.png", np.full((20, 30, 3), 40, np.uint8), "png")
    _write_image(cat / "b_gray.png", np.full((16, 16, 1), 40, np.uint8), "png")
    _write_image(cat / "c.jpg", np.full((24, 24, 3), 40, np.uint8), "jpeg")
    rgba = np.full((10, 12, 4), 200, np.uint8)
    rgba[..., 3] = 128
    _write_image(dog / "a_rgba.png", rgba, "png")
    _write_image(dog / "more" / "b.JPEG", np.full((33, 17, 3), 200, np.uint8), "jpeg")
    noise = np.random.default_rng(0).integers(0, 256, (48, 48, 3), dtype=np.uint8)
    whole = tf.io.encode_jpeg(noise).numpy()
    (dog / "truncated.jpg").write_bytes(whole[: len(whole) // 2])
    (dog / "x.jpg").write_text("this is a text file, not an image\n")
    (dog / "notes.txt").write_text("ignored: not an image extension\n")
    return {str(dog / "truncated.jpg"), str(dog / "x.jpg")}


def test_image_folder_skips_and_reports_bad_files(tmp_path, caplog):
    bad = _make_image_folder(tmp_path)
    report = []
    with caplog.at_level(logging.WARNING, logger="kerascnn.data"):
        ds, names = from_image_folder(tmp_path, report=report)
    assert names == ["cat", "dog"] and ds.class_names == names
    assert {path for path, _ in report} == bad
    reasons = dict(report)
    assert "truncated" in reasons[str(tmp_path / "dog" / "truncated.jpg")]
    assert "not a decodable image" in reasons[str(tmp_path / "dog" / "x.jpg")]
    assert all(path in caplog.text for path in bad)

    assert ds.element_spec[0] == tf.TensorSpec((None, None, 3), tf.uint8)
    items = [(x.numpy(), int(y)) for x, y in ds]
    assert [y for _, y in items] == [0, 0, 0, 1, 1]
    assert [x.shape for x, _ in items] == [(20, 30, 3), (16, 16, 3), (24, 24, 3), (10, 12, 3),
                                           (33, 17, 3)]
    for x, y in items:  # the pixel values encode the label (JPEG within a few levels)
        np.testing.assert_allclose(x, 40 if y == 0 else 200, atol=3)

    sized, _ = from_image_folder(tmp_path, image_size=(16, 16), class_names=["dog", "cat"])
    xs, ys = _collect(sized.batch(8))
    assert xs.shape == (5, 16, 16, 3) and xs.dtype == np.uint8
    np.testing.assert_array_equal(ys, [0, 0, 1, 1, 1])

    # Mixed sizes without image_size: the pipeline resizes them.
    batches = make_pipeline(ds, input_shape=(32, 32, 3), preprocessing=UNIT, training=True,
                            batch_size=2, seed=0)
    shapes = [tuple(x.shape) for x, _ in batches]
    assert shapes == [(2, 32, 32, 3), (2, 32, 32, 3)]


def test_image_folder_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        from_image_folder(tmp_path / "missing")
    with pytest.raises(ValueError, match="no class sub-folders"):
        from_image_folder(tmp_path)
    (tmp_path / "only").mkdir()
    (tmp_path / "only" / "x.png").write_text("not a png")
    report = []
    with pytest.raises(ValueError, match="No usable images"):
        from_image_folder(tmp_path, report=report)
    assert len(report) == 1


def test_check_image_file_truncated_jpeg(tmp_path):
    noise = np.random.default_rng(1).integers(0, 256, (40, 40, 3), dtype=np.uint8)
    whole = tf.io.encode_jpeg(noise).numpy()
    for name, data in (("ok.jpg", whole), ("padded.jpg", whole + b"\x00" * 8),
                       ("half.jpg", whole[: len(whole) // 2]), ("no_eoi.jpg", whole[:-2]),
                       ("empty.jpg", b"")):
        (tmp_path / name).write_bytes(data)
    assert check_image_file(tmp_path / "ok.jpg") is None
    assert check_image_file(tmp_path / "padded.jpg") is None
    assert "truncated" in check_image_file(tmp_path / "half.jpg")
    assert "truncated" in check_image_file(tmp_path / "no_eoi.jpg")
    assert check_image_file(tmp_path / "empty.jpg") == "empty file"


def test_tfds_mock_data(tmp_path):
    tfds = pytest.importorskip("tensorflow_datasets")
    with tfds.testing.mock_data(num_examples=6):
        ds = from_tfds("cifar10", split="train", data_dir=tmp_path)
        assert ds.element_spec[0] == tf.TensorSpec((32, 32, 3), tf.uint8)
        assert ds.element_spec[1] == tf.TensorSpec((), tf.int64)
        assert len(ds.class_names) == 10
        xs, ys = _collect(ds.batch(8))
        assert xs.shape == (6, 32, 32, 3) and ys.min() >= 0 and ys.max() < 10
        fmnist = load("tfds:fashion_mnist", "test")
        assert fmnist.element_spec[0] == tf.TensorSpec((28, 28, 1), tf.uint8)
        batches = make_pipeline(fmnist, input_shape=(32, 32, 3), training=False, batch_size=4,
                                preprocessing=kerascnn.model_info("mobilenet_v2").preprocessing)
        assert [tuple(x.shape) for x, _ in batches] == [(4, 32, 32, 3), (2, 32, 32, 3)]


def test_tfds_absent_data_error(tmp_path):
    pytest.importorskip("tensorflow_datasets")
    with pytest.raises(FileNotFoundError) as info:
        from_tfds("cifar10", data_dir=str(tmp_path))
    message = str(info.value)
    for part in (str(tmp_path), "cannot download", "tfds build cifar10", "from_fashion_mnist"):
        assert part in message
    with pytest.raises(ValueError, match="no dataset named"):
        from_tfds("no_such_dataset_xyz", data_dir=str(tmp_path))


def test_load_dispatch(tmp_path):
    images = np.zeros((3, 8, 8), np.uint8)
    assert load((images, [0, 1, 2])).element_spec[0].shape == (8, 8, 1)
    _make_image_folder(tmp_path / "train")
    ds = load(str(tmp_path), "train")
    assert ds.class_names == ["cat", "dog"]
    assert load(tmp_path / "train").class_names == ["cat", "dog"]
    for bad in ("mnist_typo", str(tmp_path / "missing"), 42):
        with pytest.raises(ValueError, match="Received: source="):
            load(bad)


# --- pipeline: augmentation, mixing, determinism ----------------------------------------------

@pytest.mark.parametrize("augment,input_shape", [
    (("flip",), (32, 32, 3)), (("crop",), (32, 32, 3)), (("random_resized_crop",), (32, 32, 3)),
    (("flip", "crop"), (28, 36, 3)), ("none", (32, 32, 3))])
def test_augmentation_keeps_shapes_and_labels(augment, input_shape):
    labels = np.arange(40) % 10
    ds = from_arrays(_label_images(labels, input_shape[:2]), labels)
    batches = make_pipeline(ds, input_shape=input_shape, preprocessing=UNIT, training=True,
                            augment=augment, batch_size=16, seed=3)
    xs, ys = _collect(batches)
    assert xs.shape == (32, *input_shape)  # drop_remainder for training: 2 full batches
    assert ys.dtype == np.int64
    center = xs[:, input_shape[0] // 2, input_shape[1] // 2, 0]
    np.testing.assert_array_equal(center, 20 * ys + 30)


def _gradient_images(n, size=16):
    rng = np.random.default_rng(5)
    return rng.integers(0, 256, (n, size, size, 1), dtype=np.uint8)


def test_flip_and_crop_are_the_documented_transforms():
    images = _gradient_images(24)
    labels = np.arange(24)
    originals = {int(k): images[k, ..., 0].astype(np.float32) for k in labels}

    flipped = _collect(make_pipeline(from_arrays(images, labels), input_shape=(16, 16, 1),
                                     preprocessing=UNIT, training=True, augment="flip",
                                     batch_size=8, seed=0))
    kinds = []
    for x, y in zip(*flipped):
        original = originals[int(y)]
        if np.array_equal(x[..., 0], original):
            kinds.append("same")
        else:
            np.testing.assert_array_equal(x[..., 0], original[:, ::-1])
            kinds.append("flipped")
    assert set(kinds) == {"same", "flipped"}

    cropped = _collect(make_pipeline(from_arrays(images, labels), input_shape=(16, 16, 1),
                                     preprocessing=UNIT, training=True, augment="crop",
                                     batch_size=8, seed=0))
    pad = 2  # 16 / 8
    shifts = []
    for x, y in zip(*cropped):
        padded = np.pad(originals[int(y)], pad)
        matches = [(dy, dx) for dy in range(2 * pad + 1) for dx in range(2 * pad + 1)
                   if np.array_equal(padded[dy:dy + 16, dx:dx + 16], x[..., 0])]
        assert matches, "a crop must be a window of the zero-padded image"
        shifts.append(matches[0])
    assert len(set(shifts)) > 1


def test_argument_errors():
    ds = from_arrays(np.zeros((4, 8, 8), np.uint8), [0, 1, 2, 3])
    common = dict(input_shape=(8, 8, 3), preprocessing=UNIT)
    with pytest.raises(ValueError, match="Received: augment="):
        make_pipeline(ds, training=True, augment=("flip", "rotate"), **common)
    with pytest.raises(ValueError, match="num_classes"):
        make_pipeline(ds, training=True, mixup_alpha=0.2, **common)
    with pytest.raises(ValueError, match="seed"):
        make_pipeline(ds, training=True, deterministic=True, **common)
    with pytest.raises(ValueError, match="resize_method"):
        make_pipeline(ds, training=False, resize_method="cubic", **common)
    with pytest.raises(ValueError, match="input_shape"):
        make_pipeline(ds, training=False, input_shape=(8, 8), preprocessing=UNIT)
    with pytest.raises(ValueError, match=r"1 or 3 channels. Received: input_shape=\(8, 8, 2\)"):
        make_pipeline(ds, training=False, input_shape=(8, 8, 2), preprocessing=UNIT)
    with pytest.raises(ValueError, match="Received: batch_size=0"):
        make_pipeline(ds, training=False, batch_size=0, **common)
    with pytest.raises(ValueError, match="`preprocessing` is required"):
        make_pipeline(ds, training=False, input_shape=(8, 8, 3), preprocessing=None)
    with pytest.raises(ValueError, match=r"needs 'scale' and 'offset'. Received: preprocessing="):
        make_pipeline(ds, training=False, input_shape=(8, 8, 3), preprocessing={"scale": 1.0})
    with pytest.raises(ValueError, match=r"scale has 2 values for a 3-channel input"):
        make_pipeline(ds, training=False, input_shape=(8, 8, 3),
                      preprocessing={"scale": (1.0, 0.5), "offset": 0.0})


@pytest.mark.parametrize("mixup_alpha,cutmix_alpha", [(0.4, 0.0), (0.0, 1.0), (0.4, 1.0)])
def test_mixup_cutmix_one_hot_labels_match_the_images(mixup_alpha, cutmix_alpha):
    labels = np.arange(64) % 10
    ds = from_arrays(_label_images(labels, (16, 16)), labels)
    batches = make_pipeline(ds, input_shape=(16, 16, 3), preprocessing=UNIT, training=True,
                            augment="none", mixup_alpha=mixup_alpha, cutmix_alpha=cutmix_alpha,
                            num_classes=10, batch_size=16, seed=1)
    xs, ys = _collect(batches)
    assert ys.shape == (64, 10) and ys.dtype == np.float32
    np.testing.assert_allclose(ys.sum(axis=1), 1.0, atol=1e-6)
    assert ys.min() >= 0
    assert (ys.max(axis=1) < 0.999).sum() > 10, "most images should be mixed"
    # Each image is made of constant images of value 20k + 30 in proportion to its label weights.
    class_values = 20 * np.arange(10) + 30.0
    np.testing.assert_allclose(xs.mean(axis=(1, 2, 3)), ys @ class_values, rtol=1e-4)
    if cutmix_alpha and not mixup_alpha:  # CutMix pastes pixels: only the two sources' values
        for x, y in zip(xs, ys):
            assert set(np.unique(x)) <= set(class_values[y > 0])

    val = make_pipeline(ds, input_shape=(16, 16, 3), preprocessing=UNIT, training=False,
                        mixup_alpha=mixup_alpha, cutmix_alpha=cutmix_alpha, num_classes=10)
    _, val_y = _collect(val)
    np.testing.assert_array_equal(val_y, np.eye(10, dtype=np.float32)[labels])


def _epochs(seed, epochs=2):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (48, 20, 20, 3), dtype=np.uint8)
    labels = rng.integers(0, 5, 48)
    ds = make_pipeline(from_arrays(images, labels), input_shape=(24, 24, 3), training=True,
                       preprocessing=kerascnn.model_info("mobilenet_v2").preprocessing,
                       augment=("random_resized_crop", "flip", "crop"), mixup_alpha=0.2,
                       cutmix_alpha=1.0, num_classes=5, batch_size=8, seed=seed,
                       deterministic=True)
    return [[(x.numpy(), y.numpy()) for x, y in ds] for _ in range(epochs)]


def test_deterministic_mode_repeats_batches():
    first, second = _epochs(seed=7), _epochs(seed=7)
    for epoch_a, epoch_b in zip(first, second):
        assert len(epoch_a) == len(epoch_b) == 6
        for (xa, ya), (xb, yb) in zip(epoch_a, epoch_b):
            np.testing.assert_array_equal(xa, xb)
            np.testing.assert_array_equal(ya, yb)
    # A new epoch reshuffles and re-draws the augmentation; another seed gives other batches.
    assert not np.array_equal(first[0][0][0], first[1][0][0])
    assert not np.array_equal(first[0][0][0], _epochs(seed=8, epochs=1)[0][0][0])


# --- pipeline: normalisation ------------------------------------------------------------------

@pytest.mark.parametrize("name,input_shape", [("mobilenet_v2", (32, 32, 3)),
                                              ("resnet50", (32, 32, 3)), ("lenet5", (32, 32, 1))])
@pytest.mark.parametrize("source_channels", [1, 3])
def test_normalisation_matches_to_model_input(name, input_shape, source_channels):
    rng = np.random.default_rng(2)
    images = rng.integers(0, 256, (20, 20, 24, source_channels), dtype=np.uint8)
    labels = rng.integers(0, 10, 20)
    prep = kerascnn.model_info(name).preprocessing
    for method in ("bilinear", "nearest"):
        batches = make_pipeline(from_arrays(images, labels), input_shape=input_shape,
                                preprocessing=prep, training=False, batch_size=8,
                                resize_method=method)
        xs, ys = _collect(batches)
        expected = to_model_input(images, input_shape, prep, resize_method=method)
        assert xs.shape == expected.shape and xs.dtype == np.float32
        np.testing.assert_allclose(xs, expected, atol=1e-5, rtol=0)
        np.testing.assert_array_equal(ys, labels)  # validation keeps order and the last batch


@pytest.mark.parametrize("source_channels", [1, 3])
def test_enlarged_images_with_flips_are_resized_per_batch_to_the_same_values(source_channels):
    """Bilinear enlargement with flips only: the pipeline resizes whole batches after the cache
    (see make_pipeline); every image must still be the model input of its source image or its
    mirror image, both must occur, and the cache must hold the source size."""
    rng = np.random.default_rng(5)
    images = rng.integers(0, 256, (64, 28, 28, source_channels), dtype=np.uint8)
    labels = rng.integers(0, 10, 64)
    prep = kerascnn.model_info("mobilenet_v2").preprocessing
    batches = make_pipeline(from_arrays(images, labels), input_shape=(56, 56, 3),
                            preprocessing=prep, training=True, batch_size=16, augment=("flip",),
                            shuffle_buffer=0, seed=0, deterministic=True)
    xs, ys = _collect(batches)
    expected = to_model_input(images, (56, 56, 3), prep)
    np.testing.assert_array_equal(ys, labels)
    flipped = 0
    for x, plain in zip(xs, expected):
        if np.allclose(x, plain, atol=1e-5):
            continue
        np.testing.assert_allclose(x, plain[:, ::-1], atol=1e-5)
        flipped += 1
    assert 0 < flipped < len(xs)
    # The cache sits before the per-batch resize, at the source size.
    cached = [d for d in _upstream(batches) if type(d).__name__ == "CacheDataset"]
    assert cached and tuple(cached[0].element_spec[0].shape[:2]) == (28, 28)


def _upstream(dataset):
    """The datasets a tf.data pipeline is built from, outermost first."""
    seen, stack = [], [dataset]
    while stack:
        d = stack.pop()
        seen.append(d)
        stack.extend(getattr(d, "_inputs", lambda: [])())
    return seen


def test_grayscale_to_rgb_model_and_pipeline_for():
    rng = np.random.default_rng(3)
    images = rng.integers(0, 256, (10, 28, 28), dtype=np.uint8)
    ds = from_arrays(images, np.arange(10))
    model = kerascnn.build("mobilenet_v2", input_shape=(32, 32, 3), classes=10, alpha=0.35)
    xs, ys = _collect(pipeline_for(model, ds, training=False, batch_size=4))
    assert xs.shape == (10, 32, 32, 3)
    np.testing.assert_array_equal(xs[..., 0], xs[..., 1])
    np.testing.assert_array_equal(xs[..., 0], xs[..., 2])
    np.testing.assert_allclose(xs, to_model_input(images, (32, 32, 3), model_info_prep()), atol=1e-5)
    assert xs.min() >= -1 and xs.max() <= 1

    by_name = pipeline_for("lenet5", ds, training=False, batch_size=4)
    assert by_name.element_spec[0].shape[1:] == kerascnn.model_info("lenet5").default_input_shape

    import keras
    custom = keras.Sequential([keras.Input((16, 16, 3)), keras.layers.Flatten()], name="my_net")
    with pytest.raises(ValueError, match="preprocessing="):
        pipeline_for(custom, ds, training=False)
    assert pipeline_for(custom, ds, training=False, preprocessing=UNIT).element_spec[0].shape[1:] == (16, 16, 3)


def test_rgba_drops_alpha():
    rgba = np.random.default_rng(4).integers(0, 256, (6, 12, 12, 4), dtype=np.uint8)
    common = dict(input_shape=(16, 16, 3), preprocessing=UNIT, training=False)
    with_alpha, _ = _collect(make_pipeline(from_arrays(rgba, np.arange(6)), **common))
    without, _ = _collect(make_pipeline(from_arrays(rgba[..., :3], np.arange(6)), **common))
    np.testing.assert_array_equal(with_alpha, without)


def model_info_prep():
    return kerascnn.model_info("mobilenet_v2").preprocessing
