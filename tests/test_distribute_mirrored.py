"""MirroredStrategy over 2 logical CPU devices (configured before TensorFlow starts: a subprocess)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

SCRIPT = textwrap.dedent(
    """
    import json, sys
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

    import keras, numpy as np
    from keras.src.backend.tensorflow.trainer import TensorFlowTrainer
    import tltf

    out = {}
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (32, 32, 32, 3)).astype("float32")
    y = (x.mean(axis=(1, 2, 3)) > 127.5).astype("int64")

    def train(strategy, batch_size):
        keras.utils.set_random_seed(0)
        model = tltf.build(sys.argv[1], class_names=["a", "b"], preprocess="none",
                           freeze="top:1", head={"dropout": 0},
                           bn="frozen", strategy=strategy)  # replicas: no batch statistics
        history = tltf.fine_tune(model, (x, y), epochs=2, freeze_epochs=0, lr=1e-2,
                                 batch_size=batch_size, verbose=0)
        weights = [w.numpy().tolist() for w in model.trainable_weights[-2:]]
        return model, {"loss": history.history["loss"], "weights": weights}

    _, out["one"] = train("cpu", 16)
    mirrored = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    model, out["two"] = train(mirrored, 8)  # 8 per replica: the same global batch of 16
    out["replicas"] = model.distribute_strategy.num_replicas_in_sync
    out["same_strategy"] = model.distribute_strategy is mirrored
    out["patches"] = tltf.distribute.patch_keras_fit(model)

    # Text: a string batch on 2 replicas, through Keras' own first-batch build and tltf's.
    with mirrored.scope():
        words = keras.Input(shape=(), dtype="string")
        ids = keras.layers.StringLookup(vocabulary=["cat", "dog"])(words)
        text = keras.Model(words, keras.layers.Dense(2)(keras.layers.Embedding(3, 4)(ids)))
        text.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    pairs = tf.data.Dataset.from_tensor_slices((["cat", "dog"] * 8, [0, 1] * 8)).batch(4)
    try:
        batches = mirrored.experimental_distribute_dataset(pairs)
        TensorFlowTrainer._maybe_symbolic_build(text, iterator=[(0, 0, iter(batches))])
        out["keras_string_build"] = "ok"
    except Exception as exc:
        out["keras_string_build"] = f"{type(exc).__name__}: {str(exc)[:200]}"
    tltf.distribute.patch_keras_fit(text)
    out["text_loss"] = text.fit(pairs, epochs=1, verbose=0).history["loss"]
    print(json.dumps(out))
    """
)


@pytest.fixture(scope="module")
def result(tmp_path_factory, tiny_cnn):
    script = tmp_path_factory.mktemp("mirrored") / "mirrored.py"
    script.write_text(SCRIPT)
    done = subprocess.run(
        [sys.executable, str(script), tiny_cnn], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_two_replicas_train_like_one_device(result):
    assert result["replicas"] == 2 and result["same_strategy"]
    assert result["patches"] == ["first_batch"]
    assert np.allclose(result["two"]["loss"], result["one"]["loss"], rtol=1e-4)
    for two, one in zip(result["two"]["weights"], result["one"]["weights"], strict=True):
        assert np.allclose(two, one, rtol=1e-4, atol=1e-6)


def test_text_batches_train_on_two_replicas(result):
    assert np.isfinite(result["text_loss"]).all()


def test_keras_first_batch_bug_is_still_there(result):
    """Fails once Keras builds from a string batch on several replicas (keras #20585):
    then drop the "first_batch" workaround in tltf.distribute.patch_keras_fit for that version."""
    assert "InvalidArgumentError" in result["keras_string_build"], result["keras_string_build"]
    assert "string" in result["keras_string_build"]
