"""benchmarks/qat_learning_rate.py: QAT draws by learning rate on a saved (flip-averaged) model."""

import json

import pytest

from kerascnn.data.fashion_mnist import DEBIAN_DIR

pytestmark = pytest.mark.skipif(not (DEBIAN_DIR / "t10k-images-idx3-ubyte.gz").exists(),
                                reason="Debian's dataset-fashion-mnist is not installed")


def test_draws_and_docs_on_a_flip_averaged_model(load_benchmark, tmp_path, monkeypatch):
    import keras

    import kerascnn
    from kerascnn.layers import flip_averaged

    bench = load_benchmark("qat_learning_rate")
    keras.utils.set_random_seed(0)
    model = flip_averaged(kerascnn.build("mobilenet_v2", input_shape=(32, 32, 3), classes=10,
                                         alpha=0.35))
    path = tmp_path / "model.keras"
    model.save(path)
    monkeypatch.setattr(bench, "DOCS", tmp_path / "docs")
    bench.main(["--checkpoint", str(path), "--learning-rates", "0", "1e-3", "--seeds", "1",
                "--steps", "2", "--test-images", "300"])
    result = json.loads((tmp_path / "docs" / "qat_learning_rate.json").read_text())
    draws = result["draws"]
    assert result["test_images"] == 300
    assert [(d["learning_rate"], d["seed"]) for d in draws] == [(0.0, 1), (1e-3, 1)]
    for d in draws:
        assert 0 <= d["accuracy"] <= 1 and 0 <= d["keras_accuracy"] <= 1
        assert 0 <= d["agreement"] <= 1 and d["qat_seconds"] > 0
        assert d["change"] == pytest.approx(d["accuracy"] - result["float_accuracy"])
    text = (tmp_path / "docs" / "qat_learning_rate.md").read_text()
    assert "| 0.001 | 1 |" in text and "--steps 2" in text and "(300 test images)" in text


def test_bad_arguments_are_refused(load_benchmark, capsys):
    bench = load_benchmark("qat_learning_rate")
    with pytest.raises(SystemExit):
        bench.main(["--checkpoint", "x.keras", "--learning-rates=-1e-5"])
    assert "Received: --learning-rates [-1e-05] --steps 50" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        bench.main(["--checkpoint", "x.keras", "--steps", "0"])
    assert "--steps 0" in capsys.readouterr().err
