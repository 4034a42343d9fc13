"""fine_tune(run_dir=...): a process killed with SIGKILL mid-epoch resumes when run again."""

from __future__ import annotations

import functools
import json
import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from image_util import save_tiny_cnn

# Run with the same command each time (argv: the run folder, the backbone's .keras file);
# KILL_AT="epoch:batch" makes the process SIGKILL itself inside that batch. It prints one
# JSON line per epoch begun and ended, with the sum of the logits kernel's first column
# (both columns' sum stays put: their gradients cancel), and at the end the merged history. The backbone is a small CNN: resuming does not depend on its size.
SCRIPT = textwrap.dedent(
    """
    import json, os, signal, sys
    import numpy as np, keras, tensorflow as tf

    strategy = os.environ.get("STRATEGY", "auto")
    if strategy == "mirrored":  # 2 replicas on 2 logical CPUs, set before TensorFlow starts
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import tltf

    pipeline = os.environ.get("SHUFFLE", "")
    kill = os.environ.get("KILL_AT")
    kill = tuple(int(v) for v in kill.split(":")) if kill else None

    def say(**fields):
        print(json.dumps(fields), flush=True)

    class Watch(keras.callbacks.Callback):
        def kernel(self):
            return float(self.model.get_layer("logits").kernel.numpy()[:, 0].sum())

        def on_epoch_begin(self, epoch, logs=None):
            self.epoch = epoch
            say(begin=epoch, kernel=self.kernel())

        def on_train_batch_end(self, batch, logs=None):
            if kill == (self.epoch, batch):
                os.kill(os.getpid(), signal.SIGKILL)

        def on_epoch_end(self, epoch, logs=None):
            say(end=epoch, kernel=self.kernel(), loss=logs["loss"])

    keras.utils.set_random_seed(0)
    model = tltf.build(f"file:{sys.argv[2]}", class_names=["a", "b"], preprocess="none",
                       freeze="top:1", strategy=strategy)
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (24, 32, 32, 3)).astype("float32")
    data = tf.data.Dataset.from_tensor_slices((x, np.arange(24) % 2))
    if pipeline == "tf.data":  # a new order each epoch, from one seed
        data = data.shuffle(24, seed=1, reshuffle_each_iteration=True)
    data = data.batch(8)
    own = {}
    if pipeline == "tltf":  # tltf's own pipeline (shuffled, prefetched)
        data, own = tltf.data.from_arrays(x, np.array(["a", "b"] * 12)), dict(batch_size=8, seed=1)
    history = tltf.fine_tune(model, data, epochs=3, freeze_epochs=1, lr=1e-2, verbose=0,
                             run_dir=sys.argv[1], callbacks=[Watch()], **own)
    say(epochs=history.epoch, loss=history.history["loss"],
        kernel=float(model.get_layer("logits").kernel.numpy()[:, 0].sum()))
    """
)


def _script(folder):
    """The training script, and the small CNN it loads as its backbone, in `folder`."""
    save_tiny_cnn(folder / "tiny.keras")
    script = folder / "train.py"
    script.write_text(SCRIPT)
    return script


def _run(script, run_dir, kill_at=None, shuffle="", strategy=""):
    env = {k: v for k, v in os.environ.items() if k not in ("KILL_AT", "SHUFFLE", "STRATEGY")}
    if kill_at:
        env["KILL_AT"] = kill_at
    if shuffle:
        env["SHUFFLE"] = shuffle
    if strategy:
        env["STRATEGY"] = strategy
    done = subprocess.run(
        [sys.executable, str(script), str(run_dir), str(script.parent / "tiny.keras")],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    events = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    return done, events


def _kernels(events, key):
    return {e[key]: e["kernel"] for e in events if key in e}


def test_sigkill_mid_epoch_resumes_from_the_last_completed_epoch(tmp_path):
    script = _script(tmp_path)
    run_dir = tmp_path / "run"

    # 1: killed in epoch 1, the first of phase 2; only phase 1 (epoch 0) finished.
    first, events1 = _run(script, run_dir, kill_at="1:1")
    assert first.returncode == -signal.SIGKILL, first.stderr[-2000:]
    assert sorted(_kernels(events1, "end")) == [0]
    state = json.loads((run_dir / "tltf_run.json").read_text())
    assert state["phases"] == ["0-1"] and sorted(state["epochs"]) == ["0"]

    # 2: phase 1 is skipped (its weights reloaded); killed in epoch 2 after epoch 1 ended.
    second, events2 = _run(script, run_dir, kill_at="2:0")
    assert second.returncode == -signal.SIGKILL, second.stderr[-2000:]
    assert [e["begin"] for e in events2 if "begin" in e] == [1, 2]
    assert np.isclose(_kernels(events2, "begin")[1], _kernels(events1, "end")[0], atol=1e-6)

    # 3: phase 2 resumes from its backup of epoch 1, runs epochs 2 and 3, then finishes.
    third, events3 = _run(script, run_dir)
    assert third.returncode == 0, third.stderr[-2000:]
    assert [e["begin"] for e in events3 if "begin" in e] == [2, 3]
    assert np.isclose(_kernels(events3, "begin")[2], _kernels(events2, "end")[1], atol=1e-6)
    final = events3[-1]
    assert final["epochs"] == [0, 1, 2, 3]  # every epoch once, across the three processes
    logged = [events1[1]["loss"], events2[1]["loss"], *(e["loss"] for e in events3 if "end" in e)]
    assert np.allclose(final["loss"], logged)
    assert sorted(os.listdir(run_dir)) == [
        ".lock",  # the run folder's lock (`tltf.io.FolderLock`), free again
        "model.keras",
        "tltf_run.json",
        "weights-1-4.npz",
    ]

    # Run again after it finished: nothing trains, the same history comes back.
    again, events4 = _run(script, run_dir)
    assert again.returncode == 0 and not [e for e in events4 if "begin" in e]
    assert events4[-1] == final


@pytest.mark.parametrize(
    "pipeline, strategy, kills",
    [
        ("tltf", "", ("1:1", "3:0")),  # early in phase 2, then late in it
        # one kill: a skipped phase 1, then phase 2 from its backup of epoch 2
        ("tf.data", "mirrored", ("2:0",)),
    ],
)
def test_a_killed_and_resumed_run_trains_like_an_uninterrupted_one(
    tmp_path, pipeline, strategy, kills
):
    """Shuffled data, tltf's pipeline on one device, a user's tf.data pipeline on two
    replicas: each epoch's order comes back after a kill, so nothing changes (under a
    strategy Keras' `fit` draws one more order to build the model; docs/distribute.md)."""
    script = _script(tmp_path)
    run = functools.partial(_run, script, shuffle=pipeline, strategy=strategy)
    whole, events = run(tmp_path / "whole")
    assert whole.returncode == 0, whole.stderr[-2000:]
    uninterrupted = events[-1]
    for kill_at in kills:
        killed, _ = run(tmp_path / "resumed", kill_at=kill_at)
        assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    done, events = run(tmp_path / "resumed")
    assert done.returncode == 0, done.stderr[-2000:]
    resumed = events[-1]
    assert resumed["epochs"] == uninterrupted["epochs"] == [0, 1, 2, 3]
    np.testing.assert_allclose(resumed["loss"], uninterrupted["loss"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(resumed["kernel"], uninterrupted["kernel"], rtol=1e-5, atol=1e-6)
