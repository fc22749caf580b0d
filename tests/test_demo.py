"""The main job (`kerascnn demo`) end to end with a tiny budget: train, QAT, export, table."""

import json
import subprocess
import sys

import pytest

from kerascnn.demo import FORMATS, DemoConfig, format_summary, run_demo
from kerascnn.export.bundle import FILES
from kerascnn.quantization.checks import integer_report

pytestmark = pytest.mark.xdist_group("demo")


def test_demo_tiny_budget_end_to_end(tmp_path, capsys):
    out = tmp_path / "bundle"
    summary = run_demo(DemoConfig(epochs=1, steps_per_epoch=2, qat_steps=2, alpha=0.35,
                                  batch_size=32, eval_samples=64, latency_runs=2, out=str(out)),
                       verbose=0)
    printed = capsys.readouterr().out
    for stage in ("[1/4] Training mobilenet_v2", "[2/4] Quantization-aware", "[3/4] Exporting",
                  "[4/4] Result"):
        assert stage in printed
    for fmt in FORMATS:
        assert (out / FILES[fmt]).exists(), fmt
    for name in ("metadata.json", "labels.txt", "report.json", "report.md", "demo.json"):
        assert (out / name).exists(), name
    assert json.loads((out / "demo.json").read_text()) == json.loads(json.dumps(summary))
    assert summary["test_samples"] == 64
    variants = summary["variants"]
    assert set(variants) == {f for f in FORMATS if f.startswith("tflite_")}
    for v in variants.values():
        assert 0.0 <= v["accuracy"] <= 1.0 and v["size_bytes"] > 0
    # The QAT file is fully integer, less than half the float file, and the app's default model.
    assert integer_report((out / FILES["tflite_qat_int8"]).read_bytes())["fully_integer"]
    assert variants["tflite_qat_int8"]["size_bytes"] < variants["tflite_float32"]["size_bytes"] / 2
    metadata = json.loads((out / "metadata.json").read_text())
    assert metadata["default_model"] == "tflite_qat_int8"
    assert metadata["class_names"][0] == "T-shirt/top"
    assert "model_qat_int8.tflite" in printed and str(out) in printed
    assert format_summary(summary) in printed


@pytest.mark.parametrize("field, value", [("epochs", 0), ("batch_size", -1), ("qat_epochs", -1),
                                          ("eval_samples", 0)])
def test_demo_config_rejects_bad_values(field, value):
    with pytest.raises(ValueError, match=f"Received: {field}={value}"):
        DemoConfig(**{field: value})


def test_demo_label_smoothing_reaches_the_recipe(monkeypatch):
    """--label-smoothing and --learning-rate override the data set's recipe for the float
    training (the demo stops at the first training call here)."""
    import kerascnn.training
    from kerascnn.cli import main

    seen = {}

    def fake_train(model, train_data, test_data, recipe, **kwargs):
        seen["recipe"] = recipe
        raise KeyboardInterrupt

    monkeypatch.setattr(kerascnn.training, "train", fake_train)
    with pytest.raises(KeyboardInterrupt):
        main(["demo", "--label-smoothing", "0.1", "--learning-rate", "0.05", "--alpha", "0.35",
              "--eval-samples", "8"])
    assert seen["recipe"].label_smoothing == 0.1 and seen["recipe"].learning_rate == 0.05
    assert seen["recipe"].augment == ("flip",)  # the rest is the Fashion-MNIST recipe's


def test_demo_cli_reports_bad_input():
    result = subprocess.run([sys.executable, "-m", "kerascnn", "demo", "--model", "mobilenet_v9"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 2
    assert "mobilenet_v9" in result.stderr and "mobilenet_v2" in result.stderr
