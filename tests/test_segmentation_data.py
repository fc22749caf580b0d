"""Segmentation data: the Fashion-MNIST scene set, the TFDS mask path, the (image, mask) pipeline
and mean IoU (NumPy against keras.metrics.MeanIoU), plus `train` on a per-pixel model."""

import numpy as np
import pytest
import tensorflow as tf

import kerascnn
from kerascnn.data import (SCENE_CLASSES, fashion_mnist_scenes, from_segmentation_arrays,
                           from_tfds_segmentation, generate_fashion_mnist_scenes,
                           make_segmentation_pipeline, segmentation_pipeline_for, to_model_input)
from kerascnn.data.fashion_mnist import DEBIAN_DIR
from kerascnn.training import mean_iou
from kerascnn.training.metrics import iou_per_class

UNIT = {"scale": (1.0, 1.0, 1.0), "offset": (0.0, 0.0, 0.0), "channel_order": "RGB"}
HAVE_FMNIST = (DEBIAN_DIR / "t10k-images-idx3-ubyte.gz").exists()
needs_fmnist = pytest.mark.skipif(not HAVE_FMNIST, reason="Debian's dataset-fashion-mnist is not installed")


def _collect(dataset):
    xs, ys = zip(*((x.numpy(), y.numpy()) for x, y in dataset))
    return np.concatenate(xs), np.concatenate(ys)


def _items(n=6, side=28, seed=0):
    """Random item images (values 0-255, many below any threshold) with labels 0..n-1."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, side, side), dtype=np.uint8), np.arange(n) % 10


# --- scenes -------------------------------------------------------------------------------------

@needs_fmnist
def test_scenes_shapes_dtypes_and_classes():
    images, masks = generate_fashion_mnist_scenes("test", 300, image_size=64, seed=0)
    assert images.shape == (300, 64, 64, 1) and images.dtype == np.uint8
    assert masks.shape == (300, 64, 64) and masks.dtype == np.uint8
    assert set(np.unique(masks)) == set(range(11))  # 300 scenes hold every class
    assert 0.3 < (masks == 0).mean() < 0.9
    # The textured background is not black, so "pixel > 0" is not the mask.
    assert images[masks == 0].mean() > 10

    ds = fashion_mnist_scenes("train", 5, image_size=96, color=True, scale_range=(1.5, 2.5), seed=1)
    assert ds.class_names == list(SCENE_CLASSES) and len(SCENE_CLASSES) == 11
    assert ds.element_spec == (tf.TensorSpec((96, 96, 3), tf.uint8), tf.TensorSpec((96, 96), tf.uint8))
    assert len(list(ds)) == 5


@pytest.mark.parametrize("factor", [1, 2])
@pytest.mark.parametrize("background", ["black", "texture"])
def test_one_item_mask_is_the_item_above_threshold_at_its_position(factor, background):
    sources, labels = _items()
    images, masks, where = generate_fashion_mnist_scenes(
        num_scenes=20, image_size=64, items_per_scene=1, scale_range=(factor, factor),
        threshold=100, background=background, items=(sources, labels), seed=3,
        return_placements=True)
    assert where["active"].all() and where["top"].shape == (20, 1)
    assert len(set(where["top"][:, 0])) > 3  # positions vary
    for k in range(20):
        item = sources[where["index"][k, 0]]
        item = np.repeat(np.repeat(item, factor, 0), factor, 1)  # nearest-neighbour upscaling
        top, left = where["top"][k, 0], where["left"][k, 0]
        expected = np.zeros((64, 64), bool)
        expected[top:top + item.shape[0], left:left + item.shape[1]] = item > 100
        np.testing.assert_array_equal(masks[k] != 0, expected)
        assert set(np.unique(masks[k][expected])) <= {labels[where["index"][k, 0]] + 1}
        np.testing.assert_array_equal(images[k, ..., 0][expected],
                                      item[item > 100])  # the item's own pixels are shown
        if background == "black":
            assert not images[k, ..., 0][~expected].any()
        # One item: all of it is visible, and the instance mask is its foreground.
        assert where["area"][k, 0] == where["visible"][k, 0] == expected.sum()
        np.testing.assert_array_equal(where["instance"][k], np.where(expected, 0, -1))


def test_later_items_occlude_earlier_ones():
    sources = np.full((2, 28, 28), 200, np.uint8)  # solid squares: every pixel is foreground
    images, masks, where = generate_fashion_mnist_scenes(
        num_scenes=30, image_size=40, items_per_scene=2, scale_range=(1, 1), background="black",
        items=(sources, np.array([3, 7])), seed=0, return_placements=True)
    for k in range(30):
        boxes = [(where["top"][k, j], where["left"][k, j], where["label"][k, j]) for j in range(2)]
        expected = np.zeros((40, 40), np.uint8)
        owner = np.full((40, 40), -1)
        for j, (top, left, label) in enumerate(boxes):
            expected[top:top + 28, left:left + 28] = label + 1
            owner[top:top + 28, left:left + 28] = j
        np.testing.assert_array_equal(masks[k], expected)
        np.testing.assert_array_equal(where["instance"][k], owner)
        # The second square covers the first where they overlap: (28 - |dy|) x (28 - |dx|).
        overlap = (max(0, 28 - abs(int(boxes[0][0] - boxes[1][0])))
                   * max(0, 28 - abs(int(boxes[0][1] - boxes[1][1]))))
        assert list(where["area"][k]) == [784, 784]
        assert list(where["visible"][k]) == [784 - overlap, 784]


def test_scenes_are_deterministic_and_argument_errors():
    items = _items()
    kwargs = dict(num_scenes=16, image_size=64, items=items)
    a, b = generate_fashion_mnist_scenes(seed=5, **kwargs), generate_fashion_mnist_scenes(seed=5, **kwargs)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    c = generate_fashion_mnist_scenes(seed=6, **kwargs)
    assert not np.array_equal(a[0], c[0]) and not np.array_equal(a[1], c[1])
    counts = generate_fashion_mnist_scenes(seed=0, items_per_scene=(0, 2), return_placements=True,
                                           **kwargs)[2]["active"].sum(axis=1)
    assert set(counts) <= {0, 1, 2}
    with pytest.raises(ValueError, match="largest item, 28 \\* 2.0 = 56"):
        generate_fashion_mnist_scenes(num_scenes=2, image_size=48, items=items, scale_range=(1, 2))
    with pytest.raises(ValueError, match="Received: background='grass'"):
        generate_fashion_mnist_scenes(num_scenes=2, image_size=64, items=items, background="grass")
    with pytest.raises(ValueError, match="items_per_scene"):
        generate_fashion_mnist_scenes(num_scenes=2, image_size=64, items=items, items_per_scene=(3, 1))


@needs_fmnist
def test_train_and_test_scenes_use_their_own_split():
    train = generate_fashion_mnist_scenes("train", 4, image_size=64, seed=0)
    test = generate_fashion_mnist_scenes("test", 4, image_size=64, seed=0)
    assert not np.array_equal(train[0], test[0])


def test_from_segmentation_arrays_checks_its_input():
    ds = from_segmentation_arrays(np.zeros((3, 8, 9), np.uint8), np.ones((3, 8, 9, 1), np.int64))
    assert ds.element_spec == (tf.TensorSpec((8, 9, 1), tf.uint8), tf.TensorSpec((8, 9), tf.uint8))
    with pytest.raises(ValueError, match="mask of its size"):
        from_segmentation_arrays(np.zeros((3, 8, 9), np.uint8), np.zeros((3, 8, 8), np.uint8))
    with pytest.raises(ValueError, match="integer"):
        from_segmentation_arrays(np.zeros((3, 8, 9), np.float32), np.zeros((3, 8, 9), np.uint8))
    with pytest.raises(ValueError, match="masks"):
        from_segmentation_arrays(np.zeros((3, 8, 9), np.uint8), -np.ones((3, 8, 9), np.int32))


# --- pipeline -----------------------------------------------------------------------------------

def _coded_pairs(n=24, size=32, seed=0):
    """Images whose pixels encode the mask: value = 20 * class + 10, with blocky random masks."""
    rng = np.random.default_rng(seed)
    masks = np.kron(rng.integers(0, 5, (n, size // 4, size // 4)), np.ones((4, 4), np.int64))
    masks[:, :, : size // 3] = 0  # an asymmetric left band, so flips are visible
    images = (20 * masks + 10).astype(np.uint8)[..., None]
    return images, masks.astype(np.uint8)


@pytest.mark.parametrize("augment", ["flip", "crop", "random_scale", ("flip", "random_scale", "crop")])
def test_augmentation_moves_image_and_mask_together(augment):
    images, masks = _coded_pairs()
    ds = make_segmentation_pipeline(from_segmentation_arrays(images, masks), input_shape=(32, 32, 1),
                                    preprocessing=UNIT, training=True, augment=augment,
                                    batch_size=8, seed=1, resize_method="nearest")
    xs, ys = _collect(ds)
    assert xs.shape == (24, 32, 32, 1) and xs.dtype == np.float32
    assert ys.shape == (24, 32, 32) and ys.dtype == np.int32
    x = xs[..., 0]
    padded = x == 0  # pixels brought in by padding are black with class 0
    np.testing.assert_array_equal(ys[padded], 0)
    np.testing.assert_array_equal(x[~padded], 20 * ys[~padded] + 10)
    originals = {tuple(m.ravel()) for m in masks}
    changed = sum(tuple(y.ravel()) not in originals for y in ys)
    assert changed > 4, "the augmentation should change most masks"


def test_flip_is_a_mirror_and_bilinear_scale_keeps_mask_classes():
    images, masks = _coded_pairs()
    by_mask = {tuple(m.ravel()): m for m in masks}
    ds = make_segmentation_pipeline(from_segmentation_arrays(images, masks), input_shape=(32, 32, 1),
                                    preprocessing=UNIT, training=True, augment="flip", batch_size=8,
                                    seed=0)
    kinds = set()
    for x, y in zip(*_collect(ds)):
        if tuple(y.ravel()) in by_mask:
            kinds.add("same")
        else:
            assert tuple(y[:, ::-1].ravel()) in by_mask
            kinds.add("flipped")
        np.testing.assert_array_equal(x[..., 0], 20 * y + 10)
    assert kinds == {"same", "flipped"}

    scaled = make_segmentation_pipeline(from_segmentation_arrays(images, masks),
                                        input_shape=(32, 32, 1), preprocessing=UNIT, training=True,
                                        augment="random_scale", batch_size=8, seed=0)
    _, ys = _collect(scaled)
    assert set(np.unique(ys)) <= set(np.unique(masks))  # nearest: no interpolated classes


def test_validation_pipeline_normalises_resizes_and_keeps_order():
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (10, 48, 48), dtype=np.uint8)
    masks = rng.integers(0, 11, (10, 48, 48), dtype=np.uint8)
    prep = kerascnn.model_info("mobilenet_v2").preprocessing
    ds = make_segmentation_pipeline(from_segmentation_arrays(images, masks), input_shape=(32, 32, 3),
                                    preprocessing=prep, training=False, batch_size=4)
    xs, ys = _collect(ds)
    assert xs.shape == (10, 32, 32, 3) and ys.shape == (10, 32, 32)  # last batch kept
    np.testing.assert_allclose(xs, to_model_input(images, (32, 32, 3), prep), atol=1e-5)
    expected = tf.image.resize(masks[..., None], (32, 32), method="nearest").numpy()[..., 0]
    np.testing.assert_array_equal(ys, expected)

    import keras
    custom = keras.Sequential([keras.Input((16, 16, 3)), keras.layers.Conv2D(11, 1)], name="tiny_seg")
    with pytest.raises(ValueError, match="preprocessing="):
        segmentation_pipeline_for(custom, from_segmentation_arrays(images, masks), training=False)
    ds = segmentation_pipeline_for(custom, from_segmentation_arrays(images, masks), training=False,
                                   preprocessing=UNIT)
    assert ds.element_spec[0].shape[1:] == (16, 16, 3) and ds.element_spec[1].shape[1:] == (16, 16)


def _pipeline_epochs(seed):
    images, masks = _coded_pairs(n=16)
    ds = make_segmentation_pipeline(from_segmentation_arrays(images, masks), input_shape=(32, 32, 3),
                                    preprocessing=UNIT, training=True, batch_size=4, seed=seed,
                                    augment=("flip", "random_scale", "crop"), deterministic=True)
    return [[(x.numpy(), y.numpy()) for x, y in ds] for _ in range(2)]


def test_deterministic_mode_repeats_batches():
    first, second = _pipeline_epochs(7), _pipeline_epochs(7)
    for epoch_a, epoch_b in zip(first, second):
        for (xa, ya), (xb, yb) in zip(epoch_a, epoch_b):
            np.testing.assert_array_equal(xa, xb)
            np.testing.assert_array_equal(ya, yb)
    assert not np.array_equal(first[0][0][1], first[1][0][1])  # each epoch draws anew
    assert not np.array_equal(first[0][0][1], _pipeline_epochs(8)[0][0][1])


def test_pipeline_argument_errors():
    ds = from_segmentation_arrays(np.zeros((2, 8, 8), np.uint8), np.zeros((2, 8, 8), np.uint8))
    common = dict(input_shape=(8, 8, 3), preprocessing=UNIT)
    with pytest.raises(ValueError, match="Received: augment="):
        make_segmentation_pipeline(ds, training=True, augment="random_resized_crop", **common)
    with pytest.raises(ValueError, match="seed"):
        make_segmentation_pipeline(ds, training=True, deterministic=True, **common)
    with pytest.raises(ValueError, match="scale_range"):
        make_segmentation_pipeline(ds, training=True, scale_range=(2.0, 0.5), **common)
    with pytest.raises(ValueError, match=r"\(image, mask\)"):
        make_segmentation_pipeline(ds.map(lambda x, y: x), training=False, **common)
    with pytest.raises(ValueError, match="Received: resize_method='cubic'"):
        make_segmentation_pipeline(ds, training=False, resize_method="cubic", **common)
    with pytest.raises(ValueError, match="Received: batch_size=-1"):
        make_segmentation_pipeline(ds, training=False, batch_size=-1, **common)
    with pytest.raises(ValueError, match="input_shape"):
        make_segmentation_pipeline(ds, training=False, input_shape=(8, None, 3), preprocessing=UNIT)
    with pytest.raises(ValueError, match="`preprocessing` is required"):
        make_segmentation_pipeline(ds, training=False, input_shape=(8, 8, 3), preprocessing=None)
    with pytest.raises(ValueError, match=r"offset has 2 values for a 3-channel input"):
        make_segmentation_pipeline(ds, training=False, input_shape=(8, 8, 3),
                                   preprocessing={"scale": 1.0, "offset": (0.0, 1.0)})


# --- TFDS ---------------------------------------------------------------------------------------

def test_tfds_pets_mock_maps_trimap_values_and_resizes(tmp_path):
    tfds = pytest.importorskip("tensorflow_datasets")
    sizes = [(40, 30), (25, 50), (64, 64)]

    def as_dataset(self, split, **kwargs):
        def examples():
            for k, (h, w) in enumerate(sizes):
                mask = np.full((h, w, 1), 2, np.uint8)  # 2 = background in the trimap
                mask[h // 4: 3 * h // 4, w // 4: 3 * w // 4] = 1  # pet
                mask[h // 4, w // 4: 3 * w // 4] = 3  # border
                yield {"image": np.full((h, w, 3), 10 * k, np.uint8), "segmentation_mask": mask}

        return tf.data.Dataset.from_generator(examples, output_signature={
            "image": tf.TensorSpec((None, None, 3), tf.uint8),
            "segmentation_mask": tf.TensorSpec((None, None, 1), tf.uint8)})

    with tfds.testing.mock_data(as_dataset_fn=as_dataset):
        raw = from_tfds_segmentation("oxford_iiit_pet", "train", data_dir=tmp_path)
        assert raw.class_names == ["background", "pet", "border"]
        assert raw.element_spec == (tf.TensorSpec((None, None, 3), tf.uint8),
                                    tf.TensorSpec((None, None), tf.int32))
        for (image, mask), (h, w) in zip(raw, sizes):
            mask = mask.numpy()
            assert mask.shape == (h, w) and set(np.unique(mask)) == {0, 1, 2}
            assert mask[0, 0] == 0 and mask[h // 2, w // 2] == 1 and mask[h // 4, w // 2] == 2

        sized = from_tfds_segmentation("oxford_iiit_pet", "test", data_dir=tmp_path, image_size=32)
        xs, ys = _collect(sized.batch(3))
        assert xs.shape == (3, 32, 32, 3) and ys.shape == (3, 32, 32)
        assert set(np.unique(ys)) <= {0, 1, 2}
        assert ys[:, 0, 0].tolist() == [0, 0, 0] and ys[:, 16, 16].tolist() == [1, 1, 1]

        batches = make_segmentation_pipeline(raw, input_shape=(24, 24, 3), preprocessing=UNIT,
                                             training=True, batch_size=3, seed=0)
        x, y = next(iter(batches))
        assert x.shape == (3, 24, 24, 3) and y.shape == (3, 24, 24)


def test_tfds_default_mock_and_absent_data(tmp_path):
    tfds = pytest.importorskip("tensorflow_datasets")
    # The default mock draws random bytes that follow the builder's feature spec (metadata comes
    # from the builder's code here), so only shapes and types can be checked.
    with tfds.testing.mock_data(num_examples=2):
        ds = from_tfds_segmentation("oxford_iiit_pet", "train", data_dir=tmp_path, image_size=(20, 30))
        xs, ys = _collect(ds.batch(2))
        assert xs.shape == (2, 20, 30, 3) and ys.shape == (2, 20, 30) and ys.dtype == np.int32
    with pytest.raises(FileNotFoundError) as info:
        from_tfds_segmentation("oxford_iiit_pet", data_dir=str(tmp_path))
    for part in (str(tmp_path), "cannot download", "tfds build oxford_iiit_pet", "fashion_mnist_scenes"):
        assert part in str(info.value)
    with pytest.raises(ValueError, match="no dataset named"):
        from_tfds_segmentation("no_such_dataset_xyz", data_dir=str(tmp_path))
    with pytest.raises(ValueError, match="mask_key"):
        from_tfds_segmentation("mnist", data_dir=str(tmp_path))


# --- mean IoU -----------------------------------------------------------------------------------

def test_mean_iou_hand_computed():
    y_true = np.array([[0, 0, 1, 1], [2, 2, 2, 0]])
    y_pred = np.array([[0, 1, 1, 1], [2, 2, 0, 0]])
    # class 0: TP 2, FP 1, FN 1 -> 2/4; class 1: TP 2, FP 1 -> 2/3; class 2: TP 2, FN 1 -> 2/3;
    # class 3 occurs nowhere and is left out of the mean.
    np.testing.assert_allclose(iou_per_class(y_true, y_pred, 4)[:3], [0.5, 2 / 3, 2 / 3])
    assert np.isnan(iou_per_class(y_true, y_pred, 4)[3])
    assert mean_iou(y_true, y_pred, 4) == pytest.approx((0.5 + 2 / 3 + 2 / 3) / 3)
    assert mean_iou(y_true, np.eye(4)[y_pred], 4) == pytest.approx((0.5 + 2 / 3 + 2 / 3) / 3)
    # Ignoring class 2 drops its pixels: class 0 then has TP 2, FN 1 -> 2/3.
    assert mean_iou(y_true, y_pred, 4, ignore_class=2) == pytest.approx((2 / 3 + 2 / 3) / 2)
    with pytest.raises(ValueError, match="outside"):
        mean_iou(y_true, y_pred + 2, 4)
    with pytest.raises(ValueError, match="shape"):
        mean_iou(y_true, y_pred[:1], 4)


@pytest.mark.parametrize("ignore_class", [None, 0])
def test_mean_iou_matches_keras(ignore_class):
    import keras
    rng = np.random.default_rng(0)
    y_true = rng.integers(0, 6, (4, 16, 16))
    logits = rng.normal(size=(4, 16, 16, 6)) + 2.0 * np.eye(6)[y_true]  # better than chance
    probs = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    metric = keras.metrics.MeanIoU(6, sparse_y_pred=False, ignore_class=ignore_class)
    for k in range(0, 4, 2):  # accumulated over batches, as during evaluation
        metric.update_state(y_true[k:k + 2], probs[k:k + 2])
    expected = float(metric.result())
    assert 0.2 < expected < 0.9
    assert mean_iou(y_true, probs, 6, ignore_class=ignore_class) == pytest.approx(expected, rel=1e-6)


def test_error_breakdown_separates_finding_from_naming():
    from kerascnn.training import error_breakdown

    # Two images of 2x4 pixels; background 0, classes 1-3.
    y_true = np.array([[[0, 1, 1, 1], [0, 0, 2, 2]],
                       [[3, 3, 0, 0], [3, 3, 0, 0]]])
    y_pred = np.array([[[0, 1, 1, 2], [0, 2, 0, 2]],   # class 1 named 1,1,2; class 2: 1 pixel missed
                       [[2, 2, 2, 0], [0, 0, 0, 0]]])  # class 3 found half, all named 2
    out = error_breakdown(y_true, y_pred, 4)
    assert out["mean_iou"] == pytest.approx(mean_iou(y_true, y_pred, 4))
    # Foreground: true 9 pixels, predicted 8 (two of them false alarms), 6 in both.
    assert out["foreground_iou"] == pytest.approx(6 / 11)
    # Of those 6 pixels, the right class: two of class 1, one of class 2 -> 3/6.
    assert out["class_accuracy"] == pytest.approx(3 / 6)
    # Regions (image, class): (0, 1) votes 1,1,2 -> right; (0, 2) votes 2 -> right (the missed
    # pixel does not vote); (1, 3) votes 2,2 -> wrong.
    assert out["regions"] == 3
    assert out["region_accuracy"] == pytest.approx(2 / 3)
    # With every found pixel given its true class, only the shapes' errors are left.
    fixed = np.where((y_true > 0) & (y_pred > 0), y_true, y_pred)
    assert out["mean_iou_true_classes"] == pytest.approx(mean_iou(y_true, fixed, 4))
    assert out["mean_iou_true_classes"] > out["mean_iou"]
    # Probabilities give the same figures as their argmax.
    assert error_breakdown(y_true, np.eye(4)[y_pred], 4) == out
    assert all(type(v) in (float, int) for v in out.values())  # JSON-ready
    # A perfect prediction: every figure at 1.
    perfect = error_breakdown(y_true, y_true, 4)
    assert all(perfect[k] == 1.0 for k in ("mean_iou", "foreground_iou", "class_accuracy",
                                           "mean_iou_true_classes", "region_accuracy"))
    # A region predicted all background counts as wrong, not as absent.
    assert error_breakdown(y_true, np.where(y_true == 3, 0, y_true), 4)["region_accuracy"] \
        == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="image axis"):
        error_breakdown(y_true[0, 0], y_pred[0, 0], 4)
    with pytest.raises(ValueError, match="background"):
        error_breakdown(y_true, y_pred, 4, background=4)
    with pytest.raises(ValueError, match="outside"):
        error_breakdown(y_true, y_pred + 2, 4)


# --- training on masks --------------------------------------------------------------------------

def test_train_segmentation_model_with_mean_iou(tmp_path):
    import keras
    images, masks = _coded_pairs(n=32, size=16)
    pipeline = dict(input_shape=(16, 16, 1), preprocessing=UNIT, batch_size=8)
    train_ds = make_segmentation_pipeline(from_segmentation_arrays(images, masks), training=True,
                                          seed=0, **pipeline)
    val_ds = make_segmentation_pipeline(from_segmentation_arrays(images, masks), training=False,
                                        **pipeline)
    inputs = keras.Input((16, 16, 1))
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(inputs)
    x = keras.layers.BatchNormalization()(x)
    outputs = keras.layers.Conv2D(5, 1, activation="softmax", name="logits")(x)
    model = keras.Model(inputs, outputs, name="tiny_seg")
    recipe = kerascnn.training.get_recipe("default", optimizer="adamw", learning_rate=1e-2,
                                          epochs=2, warmup_epochs=0, label_smoothing=0.1,
                                          precise_bn_steps=2)
    history = kerascnn.training.train(model, train_ds, val_ds, recipe, out_dir=tmp_path, verbose=0)
    assert {"accuracy", "mean_iou", "val_mean_iou"} <= set(history.history)
    assert np.isfinite(history.history["loss"]).all()
    assert (tmp_path / "best.keras").exists() and "mean_iou" in history.results
    xs, ys = _collect(val_ds)
    numpy_iou = mean_iou(ys, model.predict(xs, verbose=0), 5)
    assert numpy_iou == pytest.approx(history.results["mean_iou"], abs=1e-5)
