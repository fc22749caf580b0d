"""Training: recipes, BN statistics, mixed precision, auxiliary heads, resuming after a kill, and
distribution strategies (run in subprocesses, since device set-up is per process)."""

import csv
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

import keras
import kerascnn
from kerascnn.data import load_fashion_mnist
from kerascnn.training import (Recipe, get_recipe, multi_worker_compat, precise_batchnorm,
                               set_bn_momentum, time_training_step, train)

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "tests" / "scripts" / "train_tiny.py"


def _env(**extra):
    env = dict(os.environ, PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="3", **extra)
    env.pop("TF_CONFIG", None)
    env.update(extra)
    return env


def test_recipe_validation_and_overrides():
    recipe = get_recipe("mobilenet_fashion_mnist", epochs=2)
    assert recipe.optimizer == "sgd" and recipe.epochs == 2 and recipe.augment == ("flip",)
    with pytest.raises(ValueError, match="Received: optimizer='adam'"):
        Recipe(optimizer="adam")
    with pytest.raises(ValueError, match="learning_rate"):
        Recipe(learning_rate=0)
    with pytest.raises(ValueError, match="Unknown recipe 'fast'"):
        get_recipe("fast")
    with pytest.raises(TypeError, match="lr"):
        get_recipe("default", lr=0.1)


def test_precise_batchnorm_averages_batch_statistics():
    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.BatchNormalization(momentum=0.999)(inputs))
    batches = [np.full((8, 4), value, "float32") + np.arange(8)[:, None] for value in (0.0, 10.0, 20.0)]
    used = precise_batchnorm(model, tf.data.Dataset.from_tensor_slices(np.stack(batches)), steps=3)
    bn = model.layers[-1]
    assert used == 3 and bn.momentum == 0.999  # restored
    np.testing.assert_allclose(bn.moving_mean.numpy(), np.full(4, 13.5), rtol=1e-5)
    np.testing.assert_allclose(bn.moving_variance.numpy(), np.full(4, np.var(np.arange(8))), rtol=1e-4)


@pytest.mark.parametrize("splits", [1, 2])
def test_training_step_is_traced_once(splits):
    """`train` creates the optimizer's slots before `fit`: created inside the first trace of the
    training step, they make TensorFlow trace the step a second time."""
    rng = np.random.default_rng(0)
    x = rng.random((64, 32, 32, 3), dtype=np.float32)
    data = tf.data.Dataset.from_tensor_slices((x, rng.integers(0, 4, 64))).batch(
        16, drop_remainder=True)
    model = kerascnn.build("mobilenet_v2", input_shape=(32, 32, 3), classes=4, alpha=0.35)
    traces = []

    class CountTraces(keras.callbacks.Callback):
        """The step's Python runs only while it is traced, and calls `optimizer.apply` once."""

        def on_train_begin(self, logs=None):
            apply = self.model.optimizer.apply

            def counting(*args, **kwargs):
                traces.append(1)
                return apply(*args, **kwargs)

            self.model.optimizer.apply = counting

    recipe = get_recipe("default", epochs=2, batch_size=16, batch_splits=splits,
                        precise_bn_steps=0)
    train(model, data, None, recipe, callbacks=[CountTraces()], verbose=0)
    assert len(traces) == 1
    assert model.optimizer.iterations.numpy() == 8


def test_time_training_step_measures_a_copy():
    """The step timer trains a copy: the model's weights and compile state stay as they were;
    a bigger batch takes longer per step; bad step counts are rejected."""
    model = kerascnn.build("lenet5", input_shape=(32, 32, 1), classes=10)
    before = [w.copy() for w in model.get_weights()]
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 1, (512, 32, 32, 1)).astype("float32")
    labels = rng.integers(0, 10, 512)

    def data(batch):
        return tf.data.Dataset.from_tensor_slices((images, labels)).batch(batch)

    small = time_training_step(model, data(8), "cifar_resnet", steps=10, warmup_steps=3)
    large = time_training_step(model, data(256), "cifar_resnet", steps=10, warmup_steps=3)
    assert 0 < small < large < 10
    for old, new in zip(before, model.get_weights()):
        np.testing.assert_array_equal(old, new)
    assert not model.compiled
    for name, value in (("steps", 0), ("warmup_steps", 0), ("steps", 2.5)):
        with pytest.raises(ValueError, match=f"Received: {name}={value}"):
            time_training_step(model, data(8), steps=value if name == "steps" else 5,
                               warmup_steps=value if name == "warmup_steps" else 1)


def _bn_net(momentum=0.5):
    inputs = keras.Input((6, 6, 3))
    x = keras.layers.Conv2D(5, 3, padding="same")(inputs)
    x = keras.layers.BatchNormalization(momentum=momentum, epsilon=1e-3)(x)
    x = keras.layers.ReLU()(x)
    x = keras.layers.Conv2D(4, 1)(x)
    x = keras.layers.BatchNormalization(momentum=momentum, center=False, scale=False)(x)
    model = keras.Model(inputs, x)
    rng = np.random.default_rng(1)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization) and layer.scale:
            layer.gamma.assign(rng.uniform(0.5, 2, layer.gamma.shape))
            layer.beta.assign(rng.uniform(-1, 1, layer.beta.shape))
    return model


def test_fused_batchnorm_matches_keras_batchnorm():
    """Outputs, gradients and moving statistics of the fused kernel equal Keras' own layer."""
    from kerascnn.training import fused_batchnorm

    keras_model, fused_model = _bn_net(), _bn_net()
    fused_model.set_weights(keras_model.get_weights())
    x = np.random.default_rng(0).normal(2, 3, (4, 6, 6, 3)).astype("float32")
    results = []
    for model, fused in ((keras_model, False), (fused_model, True)):
        with fused_batchnorm(model, enabled=fused) as patched:
            assert patched == (2 if fused else 0)
            with tf.GradientTape() as tape:
                y = model(x, training=True)
                loss = tf.reduce_sum(tf.sin(y) * tf.range(1, 5, dtype=y.dtype))
            grads = tape.gradient(loss, model.trainable_variables)
            inference = model(x, training=False)
        results.append((y, grads, [v.numpy() for v in model.non_trainable_variables], inference))
    (y1, g1, s1, i1), (y2, g2, s2, i2) = results
    np.testing.assert_allclose(y2, y1, atol=1e-5)
    for a, b in zip(g1, g2):
        np.testing.assert_allclose(b, a, atol=1e-4 * max(float(np.abs(g).max()) for g in g1))
    for a, b in zip(s1, s2):  # moving mean and (biased) moving variance
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(i2, i1, atol=1e-5)
    # Restored on exit: the layers are plain Keras layers again and save as such.
    assert all("call" not in vars(layer) for layer in fused_model.layers)
    assert all(type(layer).__module__.startswith("keras") for layer in fused_model.layers)


def test_fused_batchnorm_leaves_other_layers_alone_and_recipe_validates():
    from kerascnn.training import fused_batchnorm

    inputs = keras.Input((4,))
    dense = keras.Model(inputs, keras.layers.BatchNormalization()(inputs))
    with fused_batchnorm(dense) as patched:  # 2-D input: Keras' own path
        assert patched == 0
    image = keras.Input((4, 4, 2))
    tiny_epsilon = keras.Model(image, keras.layers.BatchNormalization(epsilon=1e-6)(image))
    with fused_batchnorm(tiny_epsilon) as patched:  # below the kernel's minimum epsilon
        assert patched == 0
    with pytest.raises(ValueError, match="fused_bn=True` needs"):
        train(dense, tf.data.Dataset.from_tensor_slices((np.ones((4, 4), "float32"),
                                                         np.zeros(4, "int64"))).batch(2),
              None, Recipe(epochs=1, fused_bn=True, precise_bn_steps=0), verbose=0)
    with pytest.raises(ValueError, match="fused_bn"):
        Recipe(fused_bn="yes")


def test_precise_batchnorm_on_a_conv_net_uses_batch_averages():
    model = _bn_net(momentum=0.99)
    x = np.random.default_rng(2).normal(1, 2, (3, 4, 6, 6, 3)).astype("float32")
    features = keras.Model(model.inputs, model.layers[1].output)
    expected = np.mean([features(b).numpy().mean(axis=(0, 1, 2)) for b in x], axis=0)
    expected_var = np.mean([features(b).numpy().var(axis=(0, 1, 2)) for b in x], axis=0)
    assert precise_batchnorm(model, tf.data.Dataset.from_tensor_slices(x), steps=3) == 3
    bn = model.layers[2]
    assert bn.momentum == 0.99 and "call" not in vars(bn)
    np.testing.assert_allclose(bn.moving_mean.numpy(), expected, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(bn.moving_variance.numpy(), expected_var, rtol=1e-4)


def test_configure_for_hardware_sets_cpu_threads_before_tensorflow_starts():
    code = ("import json, tensorflow as tf\n"
            "from kerascnn.training import configure_for_hardware\n"
            "from kerascnn.training.train import cpu_threads\n"
            "first = configure_for_hardware(threads=(3, 1))\n"
            "tf.constant(1.0) + 1.0  # starts the runtime\n"
            "late = configure_for_hardware(threads='cpu')\n"
            "print(json.dumps([first['threads'], late['threads'], cpu_threads(),\n"
            "    tf.config.threading.get_inter_op_parallelism_threads(),\n"
            "    tf.config.threading.get_intra_op_parallelism_threads()]))\n")
    run = subprocess.run([sys.executable, "-c", code], env=_env(), capture_output=True,
                         text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    first, late, plan, inter, intra = json.loads(run.stdout.strip().splitlines()[-1])
    assert first == [3, 1] and (inter, intra) == (3, 1)
    assert late is None  # too late: the counts stay, and the caller is told
    assert plan[0] == (os.cpu_count() or 1) and plan[1] == max(1, plan[0] // 2)
    with pytest.raises(ValueError, match="threads"):
        kerascnn.training.configure_for_hardware(threads=(0, 1))


def _fashion(n_train, n_test, size=32):
    x, y = load_fashion_mnist("train")
    xt, yt = load_fashion_mnist("test")

    def prep(a):
        a = np.pad(a, ((0, 0), (2, 2), (2, 2)))[..., None].astype("float32") / 127.5 - 1
        return np.repeat(a, 3, axis=-1)

    return prep(x[:n_train]), y[:n_train], prep(xt[:n_test]), yt[:n_test]


def test_from_scratch_mobilenet_v2_inference_matches_training_mode(tmp_path):
    """keras.applications' BN momentum 0.999 leaves inference mode at chance after a short run
    from scratch; the recipe's momentum and precise BN keep the two modes within 3 points."""
    x, y, xt, yt = _fashion(12000, 2000)
    keras.utils.set_random_seed(0)
    model = kerascnn.build("mobilenet_v2", alpha=0.35, input_shape=(32, 32, 3), classes=10,
                           bn_momentum=0.999)
    data = tf.data.Dataset.from_tensor_slices((x, y)).shuffle(12000, seed=0).batch(128)
    recipe = get_recipe("mobilenet_fashion_mnist", epochs=2, precise_bn_steps=50)
    history = train(model, data, None, recipe, out_dir=tmp_path / "run", verbose=0)
    assert history.results["precise_bn_batches"] == 50
    inference = np.mean(model.predict(xt, verbose=0, batch_size=256).argmax(-1) == yt)
    training = np.mean(np.concatenate([keras.ops.convert_to_numpy(model(xt[i:i + 256], training=True))
                                       for i in range(0, len(xt), 256)]).argmax(-1) == yt)
    assert training > 0.6, f"the short run should learn something: {training:.3f}"
    assert abs(inference - training) <= 0.03, (inference, training)
    assert {p.name for p in (tmp_path / "run").iterdir()} >= {"last.keras", "best.keras",
                                                              "history.csv", "results.json", "logs"}
    assert not (tmp_path / "run" / "backup").exists(), "the backup is removed after a finished run"


def test_mixed_precision_output_is_float32():
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_float16")
    try:
        model = kerascnn.build("mobilenet_v3_small", input_shape=(32, 32, 3), classes=4)
        data = tf.data.Dataset.from_tensor_slices(
            (np.random.default_rng(0).uniform(-1, 1, (16, 32, 32, 3)).astype("float32"),
             np.arange(16) % 4)).batch(8)
        history = train(model, data, None, Recipe(epochs=1, precise_bn_steps=1, warmup_epochs=0),
                        verbose=0)
        assert np.isfinite(history.history["loss"]).all()
        assert model.output.dtype == "float32"
        assert keras.backend.standardize_dtype(model(np.zeros((1, 32, 32, 3))).dtype) == "float32"
    finally:
        keras.config.set_dtype_policy(previous)


def test_googlenet_auxiliary_heads_train_with_weight_0_3():
    model = kerascnn.build("googlenet", input_shape=(65, 65, 3), classes=3, aux_logits=True)
    rng = np.random.default_rng(0)
    data = tf.data.Dataset.from_tensor_slices(
        (rng.uniform(-1, 1, (8, 65, 65, 3)).astype("float32"), np.arange(8) % 3)).batch(4)
    history = train(model, data, None, Recipe(epochs=1, warmup_epochs=0, precise_bn_steps=0),
                    verbose=0)
    assert model.get_compile_config()["loss_weights"] == [1.0, 0.3, 0.3]
    assert np.isfinite(history.history["loss"]).all()


def _read_epochs(csv_path):
    with open(csv_path) as f:
        return [int(row["epoch"]) for row in csv.DictReader(f)]


def test_killed_run_resumes_from_its_backup(tmp_path):
    """A real SIGKILL mid-epoch, then the same command again: it resumes from the backup and
    finishes with the epoch count it was asked for."""
    out = tmp_path / "run"
    command = [sys.executable, str(SCRIPT), str(out), "--epochs", "3", "--steps", "30",
               "--sleep", "0.05"]
    first = subprocess.Popen(command, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 240
    while time.time() < deadline and first.poll() is None:
        if _backup_epoch(out) >= 1:  # a backup was taken during the second epoch
            break
        time.sleep(0.05)
    assert first.poll() is None, "the first run ended before it could be killed: " + first.stderr.read().decode()[-2000:]
    first.send_signal(signal.SIGKILL)
    first.wait()
    assert first.returncode == -signal.SIGKILL
    assert (out / "backup").exists() and not (out / "results.json").exists()

    second = subprocess.run(command, env=_env(), capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stderr[-3000:]
    started = {p.name: [int(e) for e in p.read_text().split()] for p in out.glob("started-*.txt")}
    second_epochs = started[f"started-{_pid_of(second, started, first.pid)}.txt"]
    assert second_epochs[0] >= 1, f"the second run restarted from scratch: {started}"
    assert _read_epochs(out / "history.csv")[-1] == 2
    assert json.loads((out / "results.json").read_text())["epochs"] == 3
    keras.saving.load_model(out / "last.keras")  # a complete checkpoint


def test_run_killed_again_in_its_first_resumed_epoch_keeps_its_place(tmp_path):
    """Killed in epoch 2, resumed, killed again in that resumed epoch after a backup: the backup
    records epoch 2 (Keras's own callback wrote 0 there, and the third run started over)."""
    out = tmp_path / "run"
    command = [sys.executable, str(SCRIPT), str(out), "--epochs", "3", "--steps", "30",
               "--sleep", "0.05"]

    def run_until(condition):
        process = subprocess.Popen(command, env=_env(), stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE)
        deadline = time.time() + 240
        while time.time() < deadline and process.poll() is None and not condition():
            time.sleep(0.05)
        assert process.poll() is None, "ended before it could be killed: " + \
            process.stderr.read().decode()[-2000:]
        process.send_signal(signal.SIGKILL)
        process.wait()
        return process

    first = run_until(lambda: _backup_epoch(out) >= 1)
    backup = out / "backup" / "training_metadata.json"
    first_backup = backup.stat().st_mtime_ns
    # The second run restores epoch 1 and writes its first backup 5 steps into that epoch.
    second = run_until(lambda: backup.exists() and backup.stat().st_mtime_ns != first_backup)
    started = {p.name: [int(e) for e in p.read_text().split()] for p in out.glob("started-*.txt")}
    assert started[f"started-{second.pid}.txt"][0] == 1
    assert _backup_epoch(out) == 1

    third = subprocess.run(command, env=_env(), capture_output=True, text=True, timeout=300)
    assert third.returncode == 0, third.stderr[-3000:]
    started = {p.name: [int(e) for e in p.read_text().split()] for p in out.glob("started-*.txt")}
    (third_epochs,) = [epochs for name, epochs in started.items()
                       if name not in {f"started-{first.pid}.txt", f"started-{second.pid}.txt"}]
    assert third_epochs == [1, 2], started
    assert json.loads((out / "results.json").read_text())["epochs"] == 3


def _train_lenet(out, *, images, epochs, **kwargs):
    """A fresh two-class LeNet-5 trained in `out` on `images` random 32x32 images, batch 4."""
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (images, 32, 32, 3)).astype("float32")
    data = tf.data.Dataset.from_tensor_slices((x, np.arange(images) % 2)).batch(4)
    recipe = Recipe(optimizer="sgd", learning_rate=0.01, epochs=epochs, batch_size=4,
                    warmup_epochs=0, precise_bn_steps=0)
    return train(kerascnn.build("lenet5", input_shape=(32, 32, 3), classes=2), data, None,
                 recipe, out_dir=out, verbose=0, **kwargs)


def test_run_killed_just_after_an_epoch_ends_resumes_at_the_next_epoch(tmp_path):
    """With step backups (every 4 of 6 steps), Keras's last backup of an epoch records that
    epoch: a kill before the next step backup ran the finished epoch again. The backup taken at
    the epoch's end records the next one."""
    snapshot = tmp_path / "backup-after-epoch-1"

    class SnapshotBackup(keras.callbacks.Callback):  # runs after the backup callback
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 0:
                shutil.copytree(tmp_path / "first" / "backup", snapshot)

    _train_lenet(tmp_path / "first", images=24, epochs=2, backup_every_steps=4,
                 callbacks=[SnapshotBackup()])
    assert json.loads((snapshot / "training_metadata.json").read_text())["epoch"] == 1

    # The same run restarted from that backup, as if killed then.
    shutil.copytree(snapshot, tmp_path / "second" / "backup")
    started = []
    trace = keras.callbacks.LambdaCallback(on_epoch_begin=lambda epoch, logs: started.append(epoch))
    _train_lenet(tmp_path / "second", images=24, epochs=2, backup_every_steps=4,
                 callbacks=[trace])
    assert started == [1]


def test_a_new_run_refuses_to_overwrite_a_finished_one(tmp_path):
    """A finished run's checkpoints are not trained over unless asked; `overwrite=True` starts
    a clean run (its history holds its own epochs only); an out_dir left by a run killed before
    its first checkpoint (only a history header) just trains."""

    def run(out, **kwargs):
        return _train_lenet(out, images=8, epochs=1, **kwargs)

    out = tmp_path / "run"
    run(out)
    kept = {name: (out / name).read_bytes() for name in ("results.json", "best.keras", "last.keras")}
    with pytest.raises(FileExistsError, match=r"holds an earlier run \(results.json, best.keras, "
                                              r"last.keras\).*overwrite=True"):
        run(out)
    assert {name: (out / name).read_bytes() for name in kept} == kept
    run(out, overwrite=True)
    assert _read_epochs(out / "history.csv") == [0]

    early = tmp_path / "killed-early"
    early.mkdir()
    (early / "history.csv").write_text("epoch,accuracy,loss\n0,0.5,0.7\n")
    run(early)
    assert _read_epochs(early / "history.csv") == [0]


def _backup_epoch(out):
    try:
        return json.loads((out / "backup" / "training_metadata.json").read_text())["epoch"]
    except (OSError, ValueError, KeyError):
        return -1


def _pid_of(completed, started, first_pid):
    (pid,) = [name[len("started-"):-len(".txt")] for name in started if name != f"started-{first_pid}.txt"]
    return pid


def test_mirrored_strategy_over_two_logical_cpus(tmp_path):
    run = subprocess.run([sys.executable, str(SCRIPT), str(tmp_path / "m"), "--epochs", "1",
                          "--steps", "8", "--strategy", "mirrored", "--logical-cpus", "2"],
                         env=_env(), capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    report = json.loads(run.stdout.strip().splitlines()[-1])
    assert report["replicas"] == 2 and np.isfinite(report["loss"]).all()


def _free_ports(n):
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def test_multi_worker_mirrored_strategy_with_two_local_workers(tmp_path):
    """Two worker processes over loopback train one model: Keras 3 alone fails here
    (keras-team/keras#20585); `multi_worker_compat`, which `train` applies, works around it."""
    workers = [f"127.0.0.1:{port}" for port in _free_ports(2)]
    out = tmp_path / "run"  # the same out_dir for both, as train() asks
    procs = []
    for index in range(2):
        tf_config = json.dumps({"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}})
        procs.append(subprocess.Popen(
            [sys.executable, str(SCRIPT), str(out), "--epochs", "2", "--steps", "8", "--strategy",
             "multi_worker"], env=_env(TF_CONFIG=tf_config),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    outputs = [p.communicate(timeout=300) for p in procs]
    for p, (_, err) in zip(procs, outputs):
        assert p.returncode == 0, err[-3000:]
    reports = [json.loads(stdout.strip().splitlines()[-1]) for stdout, _ in outputs]
    assert all(r["replicas"] == 2 for r in reports)
    assert all(np.isfinite(r["loss"]).all() and len(r["loss"]) == 2 for r in reports)
    np.testing.assert_allclose(reports[0]["loss"], reports[1]["loss"], rtol=1e-5)
    assert _outcome(reports[0]["results"]) == _outcome(reports[1]["results"])
    # The chief writes to out_dir, the other worker to out_dir/worker-1; each worker trained on
    # its own shard of the batches, so equal weights mean the gradients were reduced across them.
    chief, other = (keras.saving.load_model(d / "last.keras") for d in (out, out / "worker-1"))
    for a, b in zip(chief.get_weights(), other.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert _read_epochs(out / "history.csv") == _read_epochs(out / "worker-1" / "history.csv") == [0, 1]


def _outcome(results):
    """`train`'s results without the seconds of its phases, which differ between processes."""
    assert set(results["phase_s"]) >= {"fit"}
    return {k: v for k, v in results.items() if k != "phase_s"}


def test_cli_train_with_two_workers(tmp_path):
    """`kerascnn train --strategy multi_worker`, as two worker processes over loopback would run
    it on two machines: both finish, and the chief's run directory holds the results."""
    if not Path("/usr/share/datasets/fashion-mnist").exists() and not os.environ.get(
            "KERASCNN_FASHION_MNIST_DIR"):
        if os.environ.get("CI"):
            pytest.fail("Fashion-MNIST is missing: scripts/setup.sh installs dataset-fashion-mnist")
        pytest.skip("Debian's dataset-fashion-mnist is not installed")
    workers = [f"127.0.0.1:{port}" for port in _free_ports(2)]
    out = tmp_path / "run"
    procs = [subprocess.Popen(
        [sys.executable, "-m", "kerascnn", "train", "lenet5", "--epochs", "1", "--steps-per-epoch",
         "3", "--batch-size", "32", "--strategy", "multi_worker", "--out", str(out)],
        env=_env(TF_CONFIG=json.dumps({"cluster": {"worker": workers},
                                       "task": {"type": "worker", "index": index}})),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for index in range(2)]
    outputs = [p.communicate(timeout=300) for p in procs]
    for p, (_, err) in zip(procs, outputs):
        assert p.returncode == 0, err[-3000:]
    assert all("replicas: 2;" in stdout for stdout, _ in outputs)
    chief = json.loads((out / "results.json").read_text())
    assert _outcome(chief) == _outcome(json.loads((out / "worker-1" / "results.json").read_text()))
    assert chief["epochs"] == 1 and 0.0 <= chief["accuracy"] <= 1.0


def test_multi_worker_compat_leaves_other_models_alone():
    model = kerascnn.build("lenet5", classes=3)
    steps = (model.train_step, model.test_step)
    with multi_worker_compat(model):
        assert (model.train_step, model.test_step) == steps
        assert "_maybe_symbolic_build" not in vars(model)


def test_bn_momentum_is_set_on_every_layer():
    model = kerascnn.build("mobilenet_v2", alpha=0.35, input_shape=(32, 32, 3), classes=2)
    assert set_bn_momentum(model, 0.9) == len([l for l in model.layers
                                               if isinstance(l, keras.layers.BatchNormalization)])
    assert {l.momentum for l in model.layers if isinstance(l, keras.layers.BatchNormalization)} == {0.9}


def test_cli_train_then_evaluate(tmp_path, capsys):
    """`kerascnn train` on the offline Fashion-MNIST default writes a run directory whose best
    checkpoint `kerascnn evaluate` reads back."""
    from kerascnn.cli import main

    if not Path("/usr/share/datasets/fashion-mnist").exists() and not os.environ.get(
            "KERASCNN_FASHION_MNIST_DIR"):
        if os.environ.get("CI"):
            pytest.fail("Fashion-MNIST is missing: scripts/setup.sh installs dataset-fashion-mnist")
        pytest.skip("Debian's dataset-fashion-mnist is not installed")
    out = tmp_path / "run"
    status = main(["train", "mobilenet_v2", "--alpha", "0.35", "--epochs", "1",
                   "--steps-per-epoch", "4", "--batch-size", "32", "--recipe",
                   "mobilenet_fashion_mnist", "--label-smoothing", "0.2", "--weight-decay",
                   "1e-4", "--batch-splits", "2", "--time-limit", "10", "--out", str(out)])
    assert status == 0
    printed = capsys.readouterr().out
    assert "at 32x32 on fashion_mnist (10 classes)" in printed
    assert "replicas: 1;" in printed  # --strategy auto: no GPUs here, the default strategy
    results = json.loads((out / "results.json").read_text())
    assert results["epochs"] == 1
    # The recipe as trained: the named recipe with the command line's overrides.
    assert results["recipe"]["label_smoothing"] == 0.2 and results["recipe"]["weight_decay"] == 1e-4
    assert results["recipe"]["learning_rate"] == 0.1 and results["recipe"]["augment"] == ["flip"]
    assert results["recipe"]["batch_splits"] == 2 and results["batch_splits"] == 2
    # Ten minutes outlast the four steps: the epochs ended first.
    assert results["time_limit_s"] == 600 and results["stopped_at_step"] is None
    assert results["steps_trained"] == 4
    assert main(["evaluate", str(out / "best.keras"), "--steps", "2"]) == 0
    assert '"accuracy"' in capsys.readouterr().out
    # The same command again: the finished run is kept, and the error says how to replace it.
    again = ["train", "mobilenet_v2", "--alpha", "0.35", "--epochs", "1", "--steps-per-epoch", "2",
             "--batch-size", "32", "--out", str(out)]
    best = (out / "best.keras").read_bytes()
    assert main(again) == 2
    assert f"{out} holds an earlier run" in capsys.readouterr().err
    assert (out / "best.keras").read_bytes() == best
    assert main(again + ["--overwrite"]) == 0
    assert "time_limit_s" not in json.loads((out / "results.json").read_text())  # the new run's
    assert _read_epochs(out / "history.csv") == [0]
    assert main(["train", "mobilenet_v2", "--recipe", "fast"]) == 2
    assert "Unknown recipe 'fast'" in capsys.readouterr().err
    assert main(["train", "mobilenet_v2", "--batch-splits", "0"]) == 2
    assert "Received: batch_splits=0" in capsys.readouterr().err
    assert main(["train", "mobilenet_v2", "--time-limit", "0"]) == 2
    assert "--time-limit must be a positive number of minutes. Received: 0" in (
        capsys.readouterr().err)
