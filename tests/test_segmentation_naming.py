"""benchmarks/segmentation_naming.py: the split of a segmentation model's naming error by item
count and by how much of each item is left visible."""

import json

import numpy as np
import pytest

from kerascnn.data import generate_fashion_mnist_scenes
from kerascnn.data.fashion_mnist import DEBIAN_DIR


@pytest.fixture(scope="module")
def naming(load_benchmark):
    return load_benchmark("segmentation_naming")


def _squares():
    return np.full((3, 28, 28), 200, np.uint8), np.array([0, 4, 8])  # every pixel is foreground


def test_perfect_and_wrong_predictions_by_visibility(naming):
    sources, labels = _squares()
    _, masks, where = generate_fashion_mnist_scenes(
        num_scenes=40, image_size=40, items_per_scene=(1, 3), scale_range=(1, 1),
        background="black", items=(sources, labels), seed=2, return_placements=True)
    fractions, right = naming.named_right_by_visibility(where, masks)
    visible = where["active"] & (where["visible"] > 0)
    assert len(fractions) == visible.sum() and right.all()
    np.testing.assert_allclose(np.sort(fractions), np.sort(where["visible"][visible] / 784))
    assert (fractions < 1).any() and (fractions == 1).any()  # squares in 40x40 overlap

    # Every item pixel predicted as class 1 (label 0): only the items of label 0 are right.
    wrong = np.where(masks > 0, 1, 0)
    fractions, right = naming.named_right_by_visibility(where, wrong)
    np.testing.assert_array_equal(right, where["label"][visible] == 0)
    # Background predicted everywhere: no item is named.
    assert not naming.named_right_by_visibility(where, np.zeros_like(masks))[1].any()

    rows = naming.visibility_table(np.array([0.1, 0.3, 0.3, 0.99, 1.0, 1.0]),
                                   np.array([True, False, True, True, False, True]))
    assert [n for _, n, _ in rows] == [1, 2, 0, 1, 2]
    np.testing.assert_array_equal([share for _, _, share in rows], [1.0, 0.5, np.nan, 1.0, 0.5])


@pytest.mark.skipif(not (DEBIAN_DIR / "t10k-images-idx3-ubyte.gz").exists(),
                    reason="Debian's dataset-fashion-mnist is not installed")
def test_runs_on_a_saved_model(naming, tmp_path):
    import kerascnn

    model = kerascnn.build("unet_mobilenet_v2", input_shape=(64, 64, 3), classes=11, alpha=0.35,
                           decoder_filters=(16, 16, 16, 8, 8))
    path = tmp_path / "model.keras"
    model.save(path)
    doc, rows = tmp_path / "naming.md", tmp_path / "naming.json"
    (result,) = naming.main([str(path), "--test-scenes", "6", "--train-scenes", "40",
                             "--doc", str(doc), "--json", str(rows)])
    assert set(result["by_item_count"]) == {1, 2, 3}
    assert result["by_item_count"][2]["regions"] <= 12
    assert 6 <= sum(n for _, n, _ in result["by_visibility"]) <= 18  # 6 scenes, 1-3 items each
    assert json.loads(rows.read_text())[0]["model"] == "unet_mobilenet_v2"
    text = doc.read_text()
    assert "| the same, flip test-time augmentation |" in text and "--doc" not in text
    assert "## `unet_mobilenet_v2`" in text
    # 6 of the 40 training scenes, scored like the test scenes: 6-18 item regions.
    assert 6 <= result["train_scenes"]["regions"] <= 18
    assert "| 6 of its 40 training scenes (no augmentation) |" in text
    with pytest.raises(SystemExit):
        naming.main([str(tmp_path / "missing.keras")])
    with pytest.raises(SystemExit):
        naming.main([str(path), "--draws", "-1"])


@pytest.mark.skipif(not (DEBIAN_DIR / "t10k-images-idx3-ubyte.gz").exists(),
                    reason="Debian's dataset-fashion-mnist is not installed")
def test_other_draws_of_the_test_scenes_and_a_model_run_at_another_size(naming, tmp_path):
    """--draws scores more test sets drawn like the benchmark's; a model wrapped by
    resized_input (the benchmark's --model-size) is taken by its registered name."""
    import kerascnn
    from kerascnn.layers import resized_input

    core = kerascnn.build("deeplabv3_plus_mobilenet_v2", input_shape=(80, 80, 3), classes=11,
                          alpha=0.35, atrous_rates=(1, 2, 3))
    model = resized_input(core, (64, 64, 3))
    assert model.name == "deeplabv3_plus_mobilenet_v2_from64x64"
    assert naming.registered_name(model.name) == "deeplabv3_plus_mobilenet_v2"
    path = tmp_path / "wrapped.keras"
    model.save(path)
    doc = tmp_path / "draws.md"
    (result,) = naming.main([str(path), "--test-scenes", "5", "--draws", "2", "--seed", "3",
                             "--doc", str(doc)])
    assert set(result["draws"]) == {104, 105}  # --seed + 101, + 102
    for b in result["draws"].values():
        assert set(b) == {"one_pass", "flip_tta"} and 5 <= b["one_pass"]["regions"] <= 15
    # Another draw is other scenes: its regions or its score differ from the benchmark's.
    first = result["draws"][104]["one_pass"]
    assert (first["regions"], first["mean_iou"]) != (result["test_scenes"]["regions"],
                                                    result["test_scenes"]["mean_iou"])
    text = doc.read_text()
    assert "| the benchmark's | 4 | " in text and "| another draw | 105 | " in text
    assert "| the other draws: mean (range) | | " in text
