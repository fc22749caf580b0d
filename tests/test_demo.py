"""The main job (`kerascnn demo`) end to end with a tiny budget: train, QAT, export, table."""

import json
import subprocess
import sys

import pytest

from kerascnn.demo import (EVAL_BATCH_COST, FORMATS, MONITOR_IMAGES, STEP_MARGIN, DemoConfig,
                           format_summary, plan_epochs, run_demo)
from kerascnn.export.bundle import FILES
from kerascnn.quantization.checks import integer_report

pytestmark = pytest.mark.xdist_group("demo")


def test_demo_tiny_budget_end_to_end(tmp_path, capsys, monkeypatch):
    """The whole job in a few steps. Its time budget (0.01 minutes) is too small for the two
    epochs asked for, so the demo times the step, trains one epoch and says so."""
    import kerascnn.quantization

    qat_calls = []
    real_qat = kerascnn.quantization.qat

    def spy_qat(*args, **kwargs):
        qat_calls.append(kwargs)
        return real_qat(*args, **kwargs)

    monkeypatch.setattr(kerascnn.quantization, "qat", spy_qat)
    out = tmp_path / "bundle"
    summary = run_demo(DemoConfig(epochs=2, steps_per_epoch=2, qat_steps=2, alpha=0.35,
                                  batch_size=32, eval_samples=64, latency_runs=2, out=str(out),
                                  time_budget=0.01),
                       verbose=0)
    printed = capsys.readouterr().out
    plan = summary["time_plan"]
    assert summary["epochs_trained"] == plan["epochs"] == 1 and plan["epochs_asked"] == 2
    assert plan["step_ms"] > 0 and plan["fits"] is False
    assert "2 epochs would not fit 0.01 minutes, training 1" in printed
    assert "Warning: even one epoch" in printed
    assert "for 1 epoch\n" in printed
    assert "Epochs: 1 of 2, to fit the 0.01-minute budget" in format_summary(summary)
    # Fashion-MNIST's recipe trains with flips, so the exported files average each image with
    # its mirror image; the table also shows the float model's one-pass accuracy.
    assert summary["flip_average"] is True
    assert 0.0 <= summary["keras_float_one_pass_accuracy"] <= 1.0
    assert "Keras float, one pass" in printed and "mirror image" in printed
    assert "REVERSE_V2" in integer_report((out / FILES["tflite_int8"]).read_bytes())["ops"]
    # The files still output probabilities (the app must not apply a softmax again).
    output = json.loads((out / "metadata.json").read_text())["output"]
    assert output == {"classes": 10, "activation": "softmax", "flip_averaged": True}
    for stage in ("[1/4] Training mobilenet_v2", "[2/4] Quantization-aware", "[3/4] Exporting",
                  "[4/4] Result"):
        assert stage in printed
    for fmt in FORMATS:
        assert (out / FILES[fmt]).exists(), fmt
    for name in ("metadata.json", "labels.txt", "report.json", "report.md", "demo.json"):
        assert (out / name).exists(), name
    assert json.loads((out / "demo.json").read_text()) == json.loads(json.dumps(summary))
    assert summary["test_samples"] == 64
    timings = summary["timings"]
    assert {"train_s", "train_fit_s", "train_precise_bn_s", "train_evaluation_s", "qat_s",
            "export_s", "total_s"} <= set(timings)
    assert timings["train_fit_s"] + timings["train_precise_bn_s"] <= timings["train_s"]
    assert {"qat_quantize_s", "qat_calibrate_s", "qat_fit_s"} <= set(timings)
    assert timings["qat_calibrate_s"] + timings["qat_fit_s"] <= timings["qat_s"]
    # QAT ran once, at the demo's gentle rate (the default config's), for the steps asked.
    assert [(c["learning_rate"], c["steps_per_epoch"]) for c in qat_calls] == [(1e-5, 2)]
    assert summary["config"]["qat_learning_rate"] == 1e-5
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
                                          ("eval_samples", 0), ("time_budget", 0),
                                          ("time_budget", -2.5), ("time_budget", "14"),
                                          ("qat_learning_rate", 0), ("qat_learning_rate", -1e-5),
                                          ("qat_learning_rate", 1.5), ("qat_learning_rate", "1e-5"),
                                          ("qat_learning_rate", True),
                                          ("overwrite_run_dir", "yes")])
def test_demo_config_rejects_bad_values(field, value):
    with pytest.raises(ValueError, match=f"Received: {field}={value!r}"):
        DemoConfig(**{field: value})


def test_plan_epochs_fits_the_budget():
    """The plan for the default job (468 steps and 79 test batches per epoch, 150 QAT steps,
    14 minutes) on the two machines measured in docs/main_job.md."""
    job = dict(epochs=10, steps_per_epoch=468, eval_batches=79, qat_steps=150)
    fast = plan_epochs(840, 20, 0.088, **job)  # the machine of the fourth session
    assert fast["epochs"] == 10 and fast["fits"]
    slow = plan_epochs(840, 35, 0.170, **job)  # the tenth session's: 10 epochs took 15 min 53 s
    assert 1 < slow["epochs"] < 10 and slow["fits"] and slow["estimate_s"] <= 840
    assert plan_epochs(840, 35, 0.170, **{**job, "epochs": 2})["epochs"] == 2  # never more
    hopeless = plan_epochs(60, 30, 1.0, **job)
    assert hopeless["epochs"] == 1 and not hopeless["fits"]
    # One more epoch than planned would not have fitted.
    assert slow["estimate_s"] + slow["epoch_s"] > 840
    # 64x64 (sixteenth session): at 134 ms per step, 10 epochs took 891 s after 25 s of set-up,
    # over the 14 minutes, so the plan must stop earlier.
    wide = plan_epochs(840, 25, 0.134, **job)
    assert wide["epochs"] < 10 and wide["fits"]
    # The time left to a clock-stopped training: the budget less set-up, reserve and one
    # validation; at the timed (unmargined) step it holds more than the margined whole epochs.
    for plan, spent, step in ((slow, 35, 0.170), (wide, 25, 0.134)):
        assert plan["train_s"] == pytest.approx(
            840 - spent - plan["reserve_s"] - EVAL_BATCH_COST * 79 * step * STEP_MARGIN, abs=0.2)
        epoch_s = (468 + EVAL_BATCH_COST * 79) * step
        assert plan["epochs_in_time"] == pytest.approx(plan["train_s"] / epoch_s, abs=0.06)
        assert plan["epochs"] <= plan["epochs_in_time"] < (plan["epochs"] + 1) * STEP_MARGIN


def test_demo_cli_time_budget(monkeypatch):
    """--time-budget MIN sets the budget, 0 turns it off; an explicit --epochs trains all of
    them unless --time-budget is given too; the default is DemoConfig's 14 minutes."""
    import kerascnn.demo
    from kerascnn.cli import main

    seen = []
    monkeypatch.setattr(kerascnn.demo, "run_demo", lambda config: seen.append(config))
    for argv in ([], ["--time-budget", "5"], ["--time-budget", "0"], ["--epochs", "30"],
                 ["--epochs", "30", "--time-budget", "20"]):
        assert main(["demo", *argv]) == 0
    assert [c.time_budget for c in seen] == [14.0, 5.0, None, None, 20.0]
    assert seen[3].epochs == 30


def test_demo_cli_qat_learning_rate(monkeypatch):
    import kerascnn.demo
    from kerascnn.cli import main

    seen = []
    monkeypatch.setattr(kerascnn.demo, "run_demo", lambda config: seen.append(config))
    for argv in ([], ["--qat-learning-rate", "3e-5"]):
        assert main(["demo", *argv]) == 0
    assert [c.qat_learning_rate for c in seen] == [1e-5, 3e-5]


def test_demo_cli_flip_average(monkeypatch):
    import kerascnn.demo
    from kerascnn.cli import main

    seen = []
    monkeypatch.setattr(kerascnn.demo, "run_demo", lambda config: seen.append(config))
    for argv in ([], ["--flip-average", "off"], ["--flip-average", "on"]):
        assert main(["demo", *argv]) == 0
    assert [c.flip_average for c in seen] == ["auto", False, True]
    with pytest.raises(ValueError, match="Received: flip_average='yes'"):
        DemoConfig(flip_average="yes")


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
        main(["demo", "--label-smoothing", "0.2", "--learning-rate", "0.05", "--alpha", "0.35",
              "--eval-samples", "8", "--time-budget", "0"])
    assert seen["recipe"].label_smoothing == 0.2 and seen["recipe"].learning_rate == 0.05
    assert seen["recipe"].augment == ("flip",)  # the rest is the Fashion-MNIST recipe's


def test_demo_gives_the_training_the_time_left(monkeypatch):
    """With a budget that holds several epochs, the float training gets the asked epochs as its
    cap and the time the plan leaves as its limit; with progressive resizing (laid out over
    epochs) it gets whole epochs and no limit."""
    import kerascnn.training

    seen, monitored = [], []

    def fake_train(model, train_data, test_data, recipe, **kwargs):
        seen.append((recipe, kwargs.get("time_limit")))
        monitored.append(int(test_data.cardinality()))
        raise KeyboardInterrupt

    monkeypatch.setattr(kerascnn.training, "train", fake_train)
    monkeypatch.setattr(kerascnn.training, "time_training_step", lambda *a, **k: 0.01)
    for schedule in ((), ((0.5, 32),)):
        with pytest.raises(KeyboardInterrupt):
            run_demo(DemoConfig(epochs=20, alpha=0.35, eval_samples=8, time_budget=14,
                                progressive_resizing=schedule), verbose=0)
    (recipe, limit), (staged, staged_limit) = seen
    # Each epoch's progress line scores MONITOR_IMAGES test images: 20 batches of 128.
    assert monitored == [20, 20] == [-(-MONITOR_IMAGES // 128)] * 2
    # 469 steps of 10 ms per epoch: the plan fits all 20 epochs with time to spare.
    assert recipe.epochs == 20 and 600 < limit < 14 * 60
    assert staged.epochs == 20 and staged_limit is None
    # The run directory and the permission to replace a finished run there reach train().
    kept = []

    def keep_train_arguments(model, train_data, test_data, recipe, **kwargs):
        kept.append(kwargs)
        raise KeyboardInterrupt

    monkeypatch.setattr(kerascnn.training, "train", keep_train_arguments)
    with pytest.raises(KeyboardInterrupt):
        run_demo(DemoConfig(epochs=2, alpha=0.35, eval_samples=8, time_budget=None,
                            run_dir="runs/x", overwrite_run_dir=True), verbose=0)
    assert kept[0]["out_dir"] == "runs/x" and kept[0]["overwrite"] is True


def test_demo_cli_reports_bad_input():
    result = subprocess.run([sys.executable, "-m", "kerascnn", "demo", "--model", "mobilenet_v9"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 2
    assert "mobilenet_v9" in result.stderr and "mobilenet_v2" in result.stderr
