"""Fine-tuning control: set_freeze recompiles, BN policy, describe, per-group learning rates
(exact for SGD, ordered for Adam, under MirroredStrategy), gradual unfreezing, lr_find."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf

import tltf
from tltf.errors import SpecError, TltfError
from tltf.rates import group_multipliers, group_variables

TEXTS = ["game play score", "math algebra matrix", "sound audio", "the level", "number solver"] * 2
LABELS = ["games", "math", "sound", "games", "math"] * 2
CLASSES = ["games", "math", "sound"]


@pytest.fixture
def eager():
    """Runs Keras' train step op by op: the same code, without the 10-30 s graph build per
    compile that a 2-core CPU pays (tests of *what* trains, not of speed)."""
    tf.config.run_functions_eagerly(True)
    yield
    tf.config.run_functions_eagerly(False)


@pytest.fixture(scope="module")
def still_bert_dir(tmp_path_factory) -> str:
    """The tiny BERT without dropout, so that one training step is deterministic."""
    from conftest import save_tiny_bert

    return save_tiny_bert(str(tmp_path_factory.mktemp("still_bert")), seed=1, dropout=0.0)


@pytest.fixture(scope="module")
def still_model(still_bert_dir):
    return tltf.build(
        f"keras_hub:{still_bert_dir}",
        class_names=CLASSES,
        freeze="none",
        head={"dropout": 0},
        sequence_length=16,
    )


def _batch():
    labels = [CLASSES.index(c) for c in LABELS]
    return tf.data.Dataset.from_tensor_slices((TEXTS, labels)).batch(len(TEXTS))


def _one_step(model, optimizer, skip: str = "") -> dict[str, list[np.ndarray]]:
    """Per group (and "head"), each trainable variable's change in one step (but those whose
    path contains `skip`, when given); then undoes the step."""
    start = [w.numpy() for w in model.weights]
    tltf.compile_model(model, optimizer=optimizer)
    model.fit(_batch(), epochs=1, verbose=0)
    groups = group_variables(model)
    grouped = {id(w) for ws in groups.values() for w in ws}
    groups["head"] = [w for w in model.trainable_weights if id(w) not in grouped]
    before = {id(w): v for w, v in zip(model.weights, start, strict=True)}
    deltas = {
        g: [w.numpy() - before[id(w)] for w in ws if w.trainable and not (skip and skip in w.path)]
        for g, ws in groups.items()
    }
    for w, v in zip(model.weights, start, strict=True):
        w.assign(v)
    return deltas


def test_sgd_step_moves_each_group_in_proportion_to_its_multiplier(still_model):
    meta = tltf.set_lr_decay(still_model, None)
    reference = _one_step(still_model, keras.optimizers.SGD(1.0))
    try:
        for lr_decay in (0.5, {"embeddings": 0.0, "layer_0": 2.0, "head": 0.3}):
            tltf.set_lr_decay(still_model, lr_decay)
            rates = group_multipliers(lr_decay, list(meta["groups"]))
            scaled = _one_step(still_model, keras.optimizers.SGD(1.0))
            for group, deltas in scaled.items():
                assert deltas, group
                for d, ref in zip(deltas, reference[group], strict=True):
                    np.testing.assert_allclose(
                        d, rates[group] * ref, rtol=1e-4, atol=3e-7
                    )  # float32 rounding of w
        assert rates["embeddings"] == 0 and all(not d.any() for d in scaled["embeddings"]), (
            "multiplier 0 freezes a group"
        )
    finally:
        tltf.set_lr_decay(still_model, None)


def test_adam_step_sizes_follow_the_group_rates(still_model):
    meta = tltf.set_lr_decay(still_model, 0.5)
    try:
        # Not the embedding tables: Keras' Adam squares their sparse gradients before summing
        # repeated ids, so a repeated token or segment id steps further than the rate.
        deltas = _one_step(still_model, keras.optimizers.Adam(1e-3), skip="_embedding/")
    finally:
        tltf.set_lr_decay(still_model, None)
    rates = group_multipliers(0.5, list(meta["groups"]))
    # Adam's first step is lr * g / (|g| + eps'): about the group's rate for every weight.
    sizes = {g: max(float(np.abs(d).max()) for d in ds) for g, ds in deltas.items()}
    assert list(sizes) == ["embeddings", "layer_0", "layer_1", "head"]
    assert sizes["embeddings"] < sizes["layer_0"] < sizes["layer_1"] < sizes["head"]
    for group, size in sizes.items():
        assert size == pytest.approx(1e-3 * rates[group], rel=0.02), group


MIRRORED = textwrap.dedent(
    """
    import json, os, sys
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import keras, numpy as np, tltf
    from tltf.rates import group_variables

    # op by op, like the `eager` fixture
    tf.config.run_functions_eagerly(True)
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    with strategy.scope():
        model = tltf.build(sys.argv[1], class_names=["a", "b"], preprocess="none",
                           freeze="none", bn="train", head={"dropout": 0})
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 255, (8, 32, 32, 3)).astype("float32")
    data = tf.data.Dataset.from_tensor_slices((images, np.arange(8) % 2)).batch(8)
    start = {id(w): w.numpy() for w in model.weights}
    groups = list(tltf.info(model)["groups"])
    decay = {groups[0]: 0.0, groups[-1]: 0.25}
    moved = []
    for lr_decay in (None, decay):
        for w in model.weights:
            w.assign(start[id(w)])
        tltf.set_lr_decay(model, lr_decay)
        with strategy.scope():
            tltf.compile_model(model, optimizer=keras.optimizers.SGD(0.1))
        model.fit(data, epochs=1, verbose=0)
        moved.append({g: [float(np.abs(w.numpy() - start[id(w)]).sum()) for w in ws
                          if w.trainable] for g, ws in group_variables(model).items()})
    # set_freeze and lr_find make their optimizers in the model's strategy
    tltf.set_freeze(model, "top:1")
    model.fit(data, epochs=1, verbose=0)
    before = [w.numpy() for w in model.weights]
    tltf.lr_find(model, (images, np.arange(8) % 2), steps=6, batch_size=8, plot=None)
    restored = all(np.array_equal(b, w.numpy()) for b, w in zip(before, model.weights))
    print(json.dumps({"replicas": strategy.num_replicas_in_sync, "groups": groups,
                      "moved": moved, "restored": restored,
                      "strategy": type(model.optimizer._distribution_strategy).__name__}))
    """
)


def test_group_rates_set_freeze_and_lr_find_under_mirrored_strategy(tiny_cnn):
    result = subprocess.run(
        [sys.executable, "-c", MIRRORED, tiny_cnn],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=os.path.dirname(os.path.dirname(__file__)),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["replicas"] == 2 and out["restored"]
    assert out["strategy"] == "MirroredStrategy"
    plain, scaled = out["moved"]
    first, middle, last = out["groups"][0], out["groups"][1], out["groups"][-1]
    assert all(m > 0 for g in plain.values() for m in g)
    assert all(m == 0 for m in scaled[first])
    np.testing.assert_allclose(scaled[last], np.array(plain[last]) * 0.25, rtol=1e-3)
    np.testing.assert_allclose(scaled[middle], plain[middle], rtol=1e-3)


def test_set_freeze_recompiles_with_the_same_optimizer_loss_and_metrics(still_model):
    model = still_model
    model.compile(
        optimizer=keras.optimizers.SGD(0.05, momentum=0.5),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=[keras.metrics.SparseCategoricalAccuracy(name="acc")],
        jit_compile=False,
    )
    old = model.optimizer
    start = [w.numpy() for w in model.weights]
    try:
        assert tltf.set_freeze(model, "top:1") == ["layer_1"]
        opt = model.optimizer
        assert opt is not old and type(opt) is keras.optimizers.SGD
        assert float(opt.learning_rate) == pytest.approx(0.05) and opt.momentum == 0.5
        assert isinstance(model.loss, keras.losses.SparseCategoricalCrossentropy)
        groups = group_variables(model)
        before = {g: [w.numpy() for w in ws] for g, ws in groups.items()}
        logs = model.fit(_batch(), epochs=1, verbose=0).history
        assert "acc" in logs
        changed = {
            g
            for g, ws in groups.items()
            if any(not np.array_equal(w.numpy(), b) for w, b in zip(ws, before[g], strict=True))
        }
        assert changed == {"layer_1"}, "the newly opened group trains without a manual compile"
    finally:
        for w, v in zip(model.weights, start, strict=True):
            w.assign(v)
        tltf.set_freeze(model, "none")
        task = tltf.heads.get_task("classification")
        meta = tltf.info(model)
        tltf.compile_model(model, loss=task.loss(meta), metrics=task.metrics(meta))


def test_describe_shows_groups_params_trainable_state_and_rates(still_model):
    tltf.set_freeze(still_model, "top:1")
    tltf.set_lr_decay(still_model, 0.5)
    try:
        lines = []
        text = tltf.describe(still_model, print_fn=lines.append)
    finally:
        tltf.set_lr_decay(still_model, None)
        tltf.set_freeze(still_model, "none")
    assert lines == [text]
    rows = {line.split()[0]: line.split() for line in text.splitlines()[2:]}
    for group, ws in group_variables(still_model).items():
        assert int(rows[group][2].replace(",", "")) == sum(int(np.prod(w.shape)) for w in ws)
        assert rows[group][3] == ("yes" if group == "layer_1" else "no")
    assert rows["head"][-1] == "yes"
    assert text.splitlines()[-1] == (
        "learning-rate multipliers: embeddings x0.125, layer_0 x0.25, layer_1 x0.5, head x1"
    )


def test_describe_prints_nothing_itself_so_print_shows_the_table_once(still_model, capsys):
    text = tltf.describe(still_model)
    assert capsys.readouterr().out == ""
    print(text)
    assert capsys.readouterr().out.count("group            members") == 1
    assert repr(text) == str(text)  # a notebook cell shows the table, not a quoted string


def test_bn_policy_frozen_keeps_and_train_updates_moving_statistics(eager):
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (16, 32, 32, 3)).astype("float32")
    y = np.arange(16) % 2
    model = tltf.build(
        "keras:MobileNetV2", class_names=["a", "b"], weights=None, input_shape=(32, 32, 3),
        freeze="none", bn="frozen",
    )  # fmt: skip
    stats = [w for w in model.weights if "moving_" in w.path]
    assert len(stats) > 50

    def fine_tune_changes():
        before = [w.numpy().copy() for w in stats]
        tltf.fine_tune(model, (x, y), epochs=1, freeze_epochs=0, batch_size=8, verbose=0)
        return sum(not np.array_equal(b, w.numpy()) for b, w in zip(before, stats, strict=True))

    assert fine_tune_changes() == 0
    tltf.set_freeze(model, "none", bn="train")
    assert fine_tune_changes() == len(stats)
    assert tltf.info(model)["bn"] == "train"


class _GroupSnapshots(keras.callbacks.Callback):
    def __init__(self, model):
        super().__init__()
        self.groups = group_variables(model)
        self.last = self._snap()
        self.changed: list[set[str]] = []

    def _snap(self):
        return {g: [w.numpy().copy() for w in ws] for g, ws in self.groups.items()}

    def on_epoch_end(self, epoch, logs=None):
        now = self._snap()
        self.changed.append(
            {
                g
                for g in now
                if any(not np.array_equal(a, b) for a, b in zip(now[g], self.last[g], strict=True))
            }
        )
        self.last = now


def test_gradual_unfreezing_opens_one_group_per_epoch_from_the_top(tiny_bert_dir, eager):
    model = tltf.build(
        f"keras_hub:{tiny_bert_dir}", class_names=CLASSES, freeze="none", sequence_length=16
    )
    snaps = _GroupSnapshots(model)
    history = tltf.fine_tune(
        model,
        (TEXTS, LABELS),
        epochs=4,
        freeze_epochs=1,
        unfreeze="gradual",
        lr_decay=0.5,
        batch_size=5,
        callbacks=[snaps],
        verbose=0,
    )
    assert snaps.changed == [
        set(),  # head-only warm-up
        {"layer_1"},
        {"layer_0", "layer_1"},
        {"embeddings", "layer_0", "layer_1"},  # the policy: every group
        {"embeddings", "layer_0", "layer_1"},
    ]
    assert history.epoch == [0, 1, 2, 3, 4] and len(history.history["loss"]) == 5
    assert tltf.info(model)["freeze"] == "none" and tltf.info(model)["lr_decay"] == 0.5
    with pytest.raises(SpecError, match="unfreeze='sometimes'"):
        tltf.fine_tune(model, (TEXTS, LABELS), unfreeze="sometimes")


def test_stages_of_gradual_unfreezing_stop_at_the_policy():
    from tltf.training import _stages

    groups = ["stem", "stage1", "stage2", "stage3"]
    assert _stages("top:2", groups, 3, "gradual") == [(["stage3"], 1), ("top:2", 2)]
    assert _stages("none", groups, 2, "gradual") == [(["stage3"], 1), (["stage2", "stage3"], 1)]
    assert _stages(["stem", "stage3"], groups, 2, "gradual") == [
        (["stage3"], 1),
        (["stem", "stage3"], 1),
    ]
    assert _stages("top:2", groups, 3, "at_once") == [("top:2", 3)]


def test_lr_find_restores_the_model_and_suggests_a_rate_in_range(tiny_bert_dir, tmp_path, eager):
    model = tltf.build(
        f"keras_hub:{tiny_bert_dir}", class_names=CLASSES, freeze="top:1", sequence_length=16
    )
    optimizer = model.optimizer
    weights = [w.numpy().copy() for w in model.weights]
    plot = str(tmp_path / "sweep" / "lr.png")
    found = tltf.lr_find(
        model, (TEXTS, LABELS), min_lr=1e-5, max_lr=10.0, steps=40, batch_size=5, plot=plot
    )
    assert all(np.array_equal(a, w.numpy()) for a, w in zip(weights, model.weights, strict=True))
    assert model.optimizer is optimizer and int(optimizer.iterations) == 0
    assert 1e-5 <= found.suggestion <= 10.0 and 1e-6 <= found.min_lr_over_10 <= 1.0
    assert found.lrs == sorted(found.lrs) and len(found.lrs) == len(found.losses) <= 40
    with open(found.plot, "rb") as fh:
        assert found.plot == plot and fh.read(8) == b"\x89PNG\r\n\x1a\n"


def test_lr_find_without_matplotlib_skips_the_plot_with_a_note(tiny_bert_dir, monkeypatch, eager):
    import tltf.plots

    def no_matplotlib():
        raise TltfError("Plots need matplotlib: pip install 'tltf[plots]'.")

    monkeypatch.setattr(tltf.plots, "_figure", no_matplotlib)
    model = tltf.build(f"keras_hub:{tiny_bert_dir}", class_names=CLASSES, sequence_length=16)
    found = tltf.lr_find(model, (TEXTS, LABELS), steps=8, batch_size=5)
    assert found.plot is None and "matplotlib" in found.note


def test_lr_decay_is_checked_and_stored(tiny_bert_dir):
    model = tltf.build(
        f"keras_hub:{tiny_bert_dir}", class_names=CLASSES, sequence_length=16, lr_decay=0.5
    )
    assert tltf.info(model)["lr_decay"] == 0.5
    assert group_multipliers(0.5, ["a", "b"]) == {"a": 0.25, "b": 0.5, "head": 1.0}
    with pytest.raises(SpecError, match="unknown groups \\['layer_9'\\]"):
        tltf.build(
            f"keras_hub:{tiny_bert_dir}",
            class_names=CLASSES,
            sequence_length=16,
            lr_decay={"layer_9": 0.1},
        )
    with pytest.raises(SpecError, match="lr_decay=2"):
        tltf.fine_tune(model, (TEXTS, LABELS), lr_decay=2)
