"""A small training run for the subprocess tests: resumable training and distribution strategies.

    python tests/scripts/train_tiny.py OUT_DIR [--epochs 3] [--steps 30] [--sleep 0.0]
        [--strategy default|mirrored|multi_worker] [--logical-cpus N]
"""

import argparse
import json
import os
import sys
import time

parser = argparse.ArgumentParser()
parser.add_argument("out_dir")
parser.add_argument("--epochs", type=int, default=3)
parser.add_argument("--steps", type=int, default=30)
parser.add_argument("--sleep", type=float, default=0.0)
parser.add_argument("--strategy", default="default")
parser.add_argument("--logical-cpus", type=int, default=0)
args = parser.parse_args()

import tensorflow as tf  # noqa: E402

if args.logical_cpus:
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration() for _ in range(args.logical_cpus)])

from kerascnn.training.train import get_strategy  # noqa: E402  (imports no keras)

# Collective ops (MultiWorkerMirroredStrategy) must be set up before TensorFlow runs anything.
strategy = get_strategy(args.strategy)

import keras  # noqa: E402
import numpy as np  # noqa: E402

from kerascnn.training import Recipe, train  # noqa: E402


class Trace(keras.callbacks.Callback):
    """Records the epochs this process starts, and slows steps down so a test can kill it."""

    def on_epoch_begin(self, epoch, logs=None):
        with open(os.path.join(args.out_dir, f"started-{os.getpid()}.txt"), "a") as f:
            f.write(f"{epoch}\n")

    def on_train_batch_end(self, batch, logs=None):
        time.sleep(args.sleep)


rng = np.random.default_rng(0)
x = rng.uniform(-1, 1, (args.steps * 16, 16, 16, 3)).astype("float32")
y = (x[:, :8].mean(axis=(1, 2, 3)) > x[:, 8:].mean(axis=(1, 2, 3))).astype("int64")
data = tf.data.Dataset.from_tensor_slices((x, y)).batch(16)

with strategy.scope():
    import kerascnn

    model = kerascnn.build("resnet20_cifar", input_shape=(16, 16, 3), classes=2)
recipe = Recipe(optimizer="sgd", learning_rate=0.05, epochs=args.epochs, batch_size=16,
                warmup_epochs=0, precise_bn_steps=5)
os.makedirs(args.out_dir, exist_ok=True)
history = train(model, data, data.take(4), recipe, out_dir=args.out_dir,
                backup_every_steps=5, callbacks=[Trace()], verbose=0)
print(json.dumps({"replicas": strategy.num_replicas_in_sync, "loss": history.history["loss"],
                  "results": history.results}))
sys.stdout.flush()
