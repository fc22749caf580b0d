"""benchmarks/segmentation.py: the CPU segmentation benchmark of issue 5, run as a smoke run.

The full runs take from ten minutes to hours (docs/segmentation*.md); `--quick` runs the same code
on a few hundred scenes. These tests check that the pretraining on one-item scenes feeds the
backbone, that the export still matches Keras, that `--out-dir` keeps the classifier for a
later run instead of training it again, and that `--init-from` continues a kept model.
"""

import json

import pytest

from kerascnn.data.fashion_mnist import DEBIAN_DIR

pytestmark = pytest.mark.skipif(not (DEBIAN_DIR / "t10k-images-idx3-ubyte.gz").exists(),
                                reason="Debian's dataset-fashion-mnist is not installed")


@pytest.fixture(scope="module")
def bench(load_benchmark):
    return load_benchmark("segmentation")


def test_quick_run_with_a_scene_pretrained_backbone(bench, tmp_path, monkeypatch, capsys):
    rows_path, out = tmp_path / "rows.json", tmp_path / "run"
    bench.main(["--quick", "--models", "unet_mobilenet_v2", "--pretrain-epochs", "1",
                "--pretrain-on", "scenes", "--upsampling", "bilinear", "--out-dir", str(out),
                "--decoder-filters", "48", "32", "24", "16", "8", "--separable-decoder",
                "--flip-average", "--json", str(rows_path)])
    (row,) = json.loads(rows_path.read_text())
    assert row["model"] == "unet_mobilenet_v2"
    assert row["kwargs"] == {"decoder_filters": [48, 32, 24, 16, 8], "upsampling": "bilinear",
                             "separable": True}
    assert row["copied_layers"] > 50  # every backbone layer of MobileNetV2 came from the classifier
    assert row["resumed"] is False
    assert row["argmax_agreement"] > 0.999 and row["max_abs_diff"] < 1e-4
    assert 0.0 <= row["keras_miou"] <= 1.0
    assert abs(row["keras_miou"] - row["tflite_miou"]) < 0.01
    assert (out / "unet_mobilenet_v2" / "last.keras").exists()
    # The split of the score into finding and naming the items agrees with the mean IoU.
    breakdown = row["breakdown"]
    assert breakdown["mean_iou"] == pytest.approx(row["keras_miou"])
    assert breakdown["mean_iou_true_classes"] >= breakdown["mean_iou"] - 1e-9
    assert 0.0 <= breakdown["foreground_iou"] <= 1.0 and breakdown["regions"] > 64  # 64 scenes
    # Flip averaging: a second figure from the same model, and its export matches Keras too.
    flip = row["flip_average"]
    assert flip["argmax_agreement"] > 0.999 and flip["max_abs_diff"] < 1e-4
    assert abs(flip["breakdown"]["mean_iou"] - flip["tflite_miou"]) < 0.01
    assert flip["breakdown"]["mean_iou"] != row["keras_miou"]  # two passes, another prediction

    # The doc (a --quick run writes none): the breakdown table and a cached classifier's note.
    doc = tmp_path / "doc.md"
    doc_args = bench.argparse.Namespace(
        image_size=64, train_scenes=256, test_scenes=64, items_per_scene=(1, 3),
        item_scale=(1.0, 1.5), pretrain_epochs=1, pretrain_on="scenes", alpha=0.35,
        learning_rate=5e-3, batch_size=32, epochs=1, scale_range=(0.75, 1.25),
        from_checkpoint=False)
    bench.write_doc(doc, [row], doc_args, "COMMAND", 1.0, "0 0 0", "0 0 0",
                    {"accuracy": 0.5, "seconds": 60.0, "cached": True})
    text = doc.read_text()
    assert "| `unet_mobilenet_v2` | " + f"{breakdown['foreground_iou']:.3f}" in text
    assert "loaded; that time is not in this run's total" in text
    assert f"| `unet_mobilenet_v2` | **{flip['breakdown']['mean_iou']:.3f}** | " in text
    assert " (one pass); flip-averaged, by: " in text

    # --from-checkpoint evaluates the kept model without training it again: the same figures.
    again_path = tmp_path / "again.json"
    bench.main(["--quick", "--models", "unet_mobilenet_v2", "--pretrain-epochs", "1",
                "--pretrain-on", "scenes", "--upsampling", "bilinear", "--out-dir", str(out),
                "--decoder-filters", "48", "32", "24", "16", "8", "--separable-decoder",
                "--from-checkpoint", "--json", str(again_path)])
    (again,) = json.loads(again_path.read_text())
    assert again["from_checkpoint"] == str(out / "unet_mobilenet_v2" / "last.keras")
    assert again["train_s"] is None and again["copied_layers"] is None
    assert again["unfinished"] is False and again["flip_average"] is None
    assert again["keras_miou"] == pytest.approx(row["keras_miou"], abs=1e-9)
    assert again["train_miou"] == pytest.approx(row["train_miou"], rel=1e-6)
    doc_args.from_checkpoint = True
    bench.write_doc(doc, [again], doc_args, "COMMAND", 1.0, "0 0 0", "0 0 0",
                    {"accuracy": None, "seconds": None, "cached": True})
    text = doc.read_text()
    assert "It trains nothing" in text and "| earlier run (checkpoint) |" in text
    assert "its time and accuracy are not on record" in text
    # Options that build another model than the one kept are refused, naming both sizes.
    with pytest.raises(ValueError, match="--from-checkpoint: .* parameters .* these settings"):
        bench.main(["--quick", "--models", "unet_mobilenet_v2", "--out-dir", str(out),
                    "--from-checkpoint"])
    # Training again into the folder of the finished run is refused; its files are untouched.
    kept = {name: (out / "unet_mobilenet_v2" / name).read_bytes()
            for name in ("last.keras", "provenance.json")}
    with pytest.raises(FileExistsError, match="unet_mobilenet_v2 holds an earlier run"):
        bench.main(["--quick", "--models", "unet_mobilenet_v2", "--pretrain-epochs", "1",
                    "--pretrain-on", "scenes", "--upsampling", "bilinear", "--out-dir", str(out),
                    "--decoder-filters", "48", "32", "24", "16", "8", "--separable-decoder",
                    "--epochs", "2"])
    assert {name: (out / "unet_mobilenet_v2" / name).read_bytes() for name in kept} == kept

    # --init-from: a warm restart from that checkpoint into another folder; the earlier run's
    # checkpoint is only read, its schedule is named in the doc, and no classifier is trained.
    loaded, load = [], bench._load_checkpoint

    def spy(path, **kwargs):
        loaded.append((path, kwargs.get("flag")))
        return load(path, **kwargs)

    monkeypatch.setattr(bench, "_load_checkpoint", spy)
    kept = (out / "unet_mobilenet_v2" / "last.keras").read_bytes()
    more, more_path = tmp_path / "more", tmp_path / "more.json"
    bench.main(["--quick", "--models", "unet_mobilenet_v2", "--pretrain-epochs", "1",
                "--pretrain-on", "scenes", "--upsampling", "bilinear", "--out-dir", str(more),
                "--decoder-filters", "48", "32", "24", "16", "8", "--separable-decoder",
                "--init-from", str(out), "--json", str(more_path)])
    (cont,) = json.loads(more_path.read_text())
    assert loaded == [(out / "unet_mobilenet_v2" / "last.keras", "--init-from")]
    # The first run kept its provenance next to its checkpoint; the restart reads it back.
    first = str(out / "unet_mobilenet_v2" / "last.keras")
    assert {k: cont["init_from"][k] for k in ("path", "epochs", "learning_rate", "augmentation",
                                              "model_size", "init_from")} == {
        "path": first, "epochs": 1, "learning_rate": 5e-3,
        "augmentation": "flip + random scale 0.75-1.25", "model_size": 64, "init_from": None}
    assert cont["init_from"]["command"].startswith("PYTHONPATH=. python benchmarks/segmentation.py")
    assert f"--out-dir {out}" in cont["init_from"]["command"]
    restart = json.loads((more / "unet_mobilenet_v2" / "provenance.json").read_text())
    assert restart["init_from"] == cont["init_from"] and restart["epochs"] == 1
    assert cont["copied_layers"] is None and cont["train_s"] > 0
    assert (more / "unet_mobilenet_v2" / "last.keras").exists()
    assert not list(more.glob("classifier_*"))  # the classifier was not trained again
    assert (out / "unet_mobilenet_v2" / "last.keras").read_bytes() == kept
    doc_args.from_checkpoint, doc_args.init_from = False, str(out)
    bench.write_doc(doc, [cont], doc_args, "COMMAND", 1.0, "0 0 0", "0 0 0",
                    {"accuracy": 0.5, "seconds": 60.0, "cached": True})
    text = doc.read_text()
    assert ("continued (a warm restart: a fresh warm-up and cosine schedule) from the final "
            "checkpoint of an earlier run (its weights, in the model this command builds): "
            f"`unet_mobilenet_v2` from "
            f"`{out / 'unet_mobilenet_v2' / 'last.keras'}` (1 epoch at peak lr 0.005, flip + "
            "random scale 0.75-1.25, at 64x64); in that run, the backbone initialised from a "
            "MobileNetV2 classifier") in text
    assert "batch 32, 1 more epoch, " in text
    assert f"\n    {cont['init_from']['command']}\n" in text  # the earlier run's command
    assert "cached classifier this run loaded" not in text  # it loaded only that run's model
    # It is refused where it would write over what it starts from, or build another model.
    with pytest.raises(SystemExit):
        bench.main(["--quick", "--out-dir", str(out), "--init-from", str(out)])
    assert "would write over the checkpoints it starts from" in capsys.readouterr().err
    with pytest.raises(ValueError, match="--init-from: .* parameters .* these settings"):
        bench.main(["--quick", "--models", "unet_mobilenet_v2", "--init-from", str(out)])

    # The classifier is kept: a second run with the same settings loads it instead of training.
    (cache,) = out.glob("classifier_scenes64_*_e1_*_quick")
    meta = json.loads((cache / "meta.json").read_text())
    args = bench.argparse.Namespace(out_dir=str(out), pretrain_on="scenes", pretrain_epochs=1,
                                    alpha=0.35, seed=0, image_size=64, item_scale=(1.0, 1.5),
                                    quick=True, verbose=False)
    assert bench.classifier_cache(args) == cache
    model, accuracy, seconds = bench.pretrain_classifier(args)
    assert (accuracy, seconds) == (meta["accuracy"], meta["seconds"])
    assert model.input_shape == (None, 64, 64, 3)  # trained at the scenes' size, not 32x32


def test_pretrain_on_rejects_unknown_sources(bench, capsys):
    with pytest.raises(SystemExit):
        bench.main(["--quick", "--pretrain-on", "imagenet"])
    assert "invalid choice: 'imagenet'" in capsys.readouterr().err


def test_from_checkpoint_needs_the_run_folder(bench, capsys, tmp_path):
    with pytest.raises(SystemExit):
        bench.main(["--quick", "--from-checkpoint"])
    assert "--from-checkpoint needs --out-dir" in capsys.readouterr().err
    with pytest.raises(FileNotFoundError, match="no checkpoint at .*last.keras"):
        bench.main(["--quick", "--models", "unet_mobilenet_v2", "--out-dir", str(tmp_path),
                    "--from-checkpoint"])


def test_atrous_rates_and_output_stride_reach_only_the_deeplab_models(bench, capsys):
    args = bench.argparse.Namespace(upsampling=None, decoder_filters=None,
                                    separable_decoder=False, atrous_rates=[1, 2, 3],
                                    output_stride=8)
    assert bench.model_kwargs("deeplabv3_plus_mobilenet_v2", args) == {
        "separable": True, "atrous_rates": (1, 2, 3), "output_stride": 8}
    unet = bench.model_kwargs("unet_mobilenet_v2", args)
    assert "atrous_rates" not in unet and "output_stride" not in unet
    args.atrous_rates = args.output_stride = None
    assert bench.model_kwargs("deeplabv3_plus_mobilenet_v2", args) == {"separable": True}
    with pytest.raises(SystemExit):
        bench.main(["--quick", "--output-stride", "4"])
    assert "--output-stride: invalid choice: 4" in capsys.readouterr().err


def test_init_from_copies_weights_into_the_model_these_options_build(bench, tmp_path):
    """A checkpoint trained at output stride 16 fine-tunes at stride 8 (the DeepLabv3 recipe):
    the weights come from the checkpoint, the dilations from the command line."""
    import keras
    import numpy as np

    import kerascnn

    def build(stride):
        return kerascnn.build("deeplabv3_plus_mobilenet_v2", input_shape=(64, 64, 3), classes=11,
                              alpha=0.35, separable=True, output_stride=stride)

    def dilations(model):
        return {layer.dilation_rate[0] for layer in model._flatten_layers()
                if hasattr(layer, "dilation_rate")}

    keras.utils.set_random_seed(1)
    kept = build(16)
    kept.save(tmp_path / "last.keras")
    keras.utils.set_random_seed(2)
    started = bench._weights_from(tmp_path / "last.keras", fresh := build(8), flag="--init-from")
    assert started is fresh
    # Stride 16: the last stage at rate 2, the ASPP at 6/12/18; stride 8: 2 and 4, and 12/24/36.
    assert dilations(kept) == {1, 2, 6, 12, 18} and dilations(started) == {1, 2, 4, 12, 24, 36}
    for a, b in zip(started.weights, kept.weights, strict=True):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b))


def test_model_size_runs_the_model_at_another_resolution_than_the_scenes(bench, tmp_path):
    """--model-size 80: the model is built at 80x80 and fed the 64x64 scenes resized inside it;
    its scores come back at 64x64, and the exported file takes the scenes as they are."""
    rows_path = tmp_path / "rows.json"
    bench.main(["--quick", "--models", "deeplabv3_plus_mobilenet_v2", "--model-size", "80",
                "--json", str(rows_path)])
    (row,) = json.loads(rows_path.read_text())
    assert row["model_size"] == 80
    assert row["argmax_agreement"] > 0.999 and row["max_abs_diff"] < 1e-3
    assert abs(row["keras_miou"] - row["tflite_miou"]) < 0.01
    assert row["breakdown"]["regions"] > 64  # scored on the 64 scenes at their own size
    doc = tmp_path / "doc.md"
    doc_args = bench.argparse.Namespace(
        image_size=64, train_scenes=256, test_scenes=64, items_per_scene=(1, 3),
        item_scale=(1.0, 1.5), pretrain_epochs=0, pretrain_on="items", alpha=0.35,
        learning_rate=5e-3, batch_size=32, epochs=1, scale_range=(0.75, 1.25),
        from_checkpoint=False, init_from=None)
    bench.write_doc(doc, [row], doc_args, "COMMAND", 1.0, "0 0 0", "0 0 0")
    text = doc.read_text()
    assert "| `deeplabv3_plus_mobilenet_v2`, separable=True, run at 80x80 | " in text
    assert "takes the scenes resized to it (bilinear, inside the model" in text
    with pytest.raises(SystemExit):
        bench.main(["--quick", "--model-size", "0"])


def test_a_chain_of_warm_restarts_is_followed_back_to_its_start(bench, tmp_path):
    """Each run keeps its provenance with its checkpoint, so the doc of the third run in a chain
    names all three schedules, the augmentation of each (flip only at --scale-range 1 1) and the
    commands that made them."""
    first, second = tmp_path / "a" / "unet_mobilenet_v2", tmp_path / "b" / "unet_mobilenet_v2"
    bench._write_json_atomically(first / "provenance.json", {
        "command": "CMD-A --out-dir a", "epochs": 10, "learning_rate": 5e-3,
        "augmentation": "flip + random scale 0.75-1.25", "model_size": 64, "init_from": None})
    bench._write_json_atomically(second / "provenance.json", {
        "command": "CMD-B --init-from a --out-dir b", "epochs": 1, "learning_rate": 5e-4,
        "augmentation": "flip only", "model_size": 80,
        "init_from": bench._earlier_run(first)})
    assert not list(tmp_path.rglob("*.partial"))
    rows = [{"model": "unet_mobilenet_v2", "init_from": bench._earlier_run(second)}]
    text = bench._continued(rows)
    assert (f"`unet_mobilenet_v2` from `{second / 'last.keras'}` (1 epoch at peak lr 0.0005, "
            f"flip only, at 80x80), which continued from `{first / 'last.keras'}` (10 epochs at "
            "peak lr 0.005, flip + random scale 0.75-1.25, at 64x64); in the first of those "
            "runs, ") in text
    lines = bench._earlier_commands(rows)
    assert lines[-2:] == ["    CMD-A --out-dir a", "    CMD-B --init-from a --out-dir b"]
    # A checkpoint folder without provenance (runs before it was kept): its schedule alone.
    (tmp_path / "old" / "m").mkdir(parents=True)
    assert bench._earlier_run(tmp_path / "old" / "m") == {
        "path": str(tmp_path / "old" / "m" / "last.keras"), "epochs": None, "learning_rate": None}
    assert bench._augmentation((1.0, 1.0)) == (("flip",), "flip only")
    assert bench._augmentation((0.75, 1.25))[0] == ("flip", "random_scale")
