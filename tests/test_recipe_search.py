"""benchmarks/recipe_search_jax.py: the GPU recipe search (Keras on JAX, NumPy-fed data).

Its training runs need a GPU to be useful; these tests check what they are built on: the scene
generator works without TensorFlow, the NumPy augmentations keep image and mask aligned, and the
variant tables are well formed.
"""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SCRIPT = REPO_ROOT / "benchmarks" / "recipe_search_jax.py"


@pytest.fixture(scope="module")
def search(load_benchmark):
    return load_benchmark("recipe_search_jax")


def test_scenes_are_made_without_tensorflow():
    """The GPU machine has no TensorFlow: kerascnn.data.scenes must not import it."""
    code = textwrap.dedent("""
        import sys
        import numpy as np
        from kerascnn.data.scenes import SCENE_CLASSES, generate_fashion_mnist_scenes
        rng = np.random.default_rng(0)
        items = (rng.integers(0, 256, (20, 28, 28)).astype(np.uint8), np.arange(20) % 10)
        images, masks = generate_fashion_mnist_scenes("train", 8, items=items, seed=0)
        assert images.shape == (8, 64, 64, 1) and masks.shape == (8, 64, 64), images.shape
        assert masks.max() <= len(SCENE_CLASSES) - 1
        loaded = sorted(m for m in sys.modules if m == "tensorflow" or m.startswith("tensorflow."))
        assert not loaded, loaded[:5]
        print("OK")
    """)
    env = dict(os.environ, KERAS_BACKEND="numpy",
               PYTHONPATH=os.pathsep.join(filter(None, [str(REPO_ROOT),
                                                        os.environ.get("PYTHONPATH")])))
    result = subprocess.run([sys.executable, "-c", code], env=env, cwd=REPO_ROOT,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0 and result.stdout.strip().endswith("OK"), result.stderr[-3000:]


def test_random_scale_moves_image_and_mask_together(search):
    rng = np.random.default_rng(1)
    mask = rng.integers(0, 11, (6, 16, 16)).astype(np.int32)
    image = mask[..., None].astype(np.float32) * 10.0  # the image encodes the mask
    out, out_mask = search.random_scale_nearest(image.copy(), mask.copy(), rng, (0.6, 1.6),
                                                fill=0.0)
    assert out.shape == image.shape and out_mask.shape == mask.shape
    np.testing.assert_array_equal(out[..., 0], out_mask * 10.0)
    assert not np.array_equal(out_mask, mask)  # it did transform something


def test_pad_crop_and_erase_keep_shapes(search):
    rng = np.random.default_rng(2)
    x = rng.uniform(-1, 1, (5, 12, 12, 3)).astype(np.float32)
    cropped = search.pad_crop(x, rng, 2, fill=-1.0)
    assert cropped.shape == x.shape
    erased = search.random_erase(x.copy(), rng, 1.0, (-1.0, 1.0))
    assert erased.shape == x.shape and not np.array_equal(erased, x)


def test_variant_tables(search):
    import kerascnn

    for task, table in search.TASKS.items():
        assert "smoke" in table, task
        for name, variant in table.items():
            assert variant.model in kerascnn.list_models(), (task, name, variant.model)
            assert variant.epochs >= 1 and variant.batch_size >= 1, (task, name)
    assert all(v.train_items for v in search.SEGMENT.values())
    assert {v.pretrain_on for v in search.SEGMENT.values()} == {"items", "scenes"}


def test_list_and_unknown_variant():
    env = dict(os.environ, KERAS_BACKEND=os.environ.get("KERAS_BACKEND", "tensorflow"))
    listed = subprocess.run([sys.executable, str(SCRIPT), "segment", "--list"], env=env,
                            capture_output=True, text=True, timeout=120)
    assert listed.returncode == 0 and "unet_16k" in listed.stdout, listed.stderr[-2000:]
    bad = subprocess.run([sys.executable, str(SCRIPT), "classify", "--variants", "nope",
                          "--out", os.devnull], env=env, capture_output=True, text=True,
                         timeout=120)
    assert bad.returncode != 0 and "nope" in bad.stderr and "base" in bad.stderr
