"""fine_tune(): phases, which weights move, merged history, label handling."""

from __future__ import annotations

import numpy as np
import pytest

import tltf
from tltf.errors import DataError


def _snapshot(model):
    backbone = tltf.metadata.backbone_model(model)
    return {
        group: [w.numpy().copy() for layer in layers for w in layer.weights]
        for group, layers in tltf.metadata.group_members(model).items()
    } | {"_backbone_all": [w.numpy().copy() for w in backbone.weights]}


def _changed(before, after):
    return {
        g
        for g in before
        if g != "_backbone_all"
        and any(not np.allclose(a, b) for a, b in zip(before[g], after[g], strict=True))
    }


def test_text_fine_tune_moves_only_the_policy_groups(tiny_bert_dir, tiny_text_data, monkeypatch):
    texts, labels = tiny_text_data
    model = tltf.build(
        f"keras_hub:{tiny_bert_dir}",
        class_names=sorted(set(labels)),
        freeze="top:1",
        sequence_length=16,
    )
    head_before = model.get_layer("logits").kernel.numpy().copy()
    before = _snapshot(model)
    compiles = []
    compile = type(model).compile

    def counting(self, *args, **kwargs):
        compiles.extend([tltf.info(self).freeze] if self is model else [])
        return compile(self, *args, **kwargs)

    monkeypatch.setattr(type(model), "compile", counting)
    history = tltf.fine_tune(
        model,
        (texts, labels),
        validation_data=(texts[:6], labels[:6]),
        epochs=2,
        freeze_epochs=1,
        lr=1e-2,
        batch_size=8,
        verbose=0,
    )
    after = _snapshot(model)
    assert _changed(before, after) == {"layer_1"}
    assert not np.allclose(head_before, model.get_layer("logits").kernel.numpy())
    assert history.epoch == [0, 1, 2]
    assert len(history.history["loss"]) == 3 and len(history.history["val_accuracy"]) == 3
    assert tltf.info(model)["freeze"] == "top:1"
    assert compiles == ["all", "top:1"], "each phase compiles once, applying a plan never"


def test_freeze_epochs_only_train_the_head(tiny_bert_dir, tiny_text_data):
    texts, labels = tiny_text_data
    model = tltf.build(
        f"keras_hub:{tiny_bert_dir}",
        class_names=sorted(set(labels)),
        freeze="none",
        sequence_length=16,
    )
    before = _snapshot(model)
    tltf.fine_tune(model, (texts, labels), epochs=0, freeze_epochs=1, batch_size=8, verbose=0)
    assert _changed(before, _snapshot(model)) == set()


def test_image_fine_tune_keeps_bn_statistics_frozen(tiny_cnn):
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (16, 32, 32, 3)).astype("float32")
    y = np.arange(16) % 2
    model = tltf.build(
        tiny_cnn, class_names=["a", "b"], preprocess="none", freeze="none", bn="frozen"
    )
    stats = [w for w in model.weights if "moving_" in w.path]
    assert len(stats) == 4  # two BatchNorm layers' means and variances
    before = [w.numpy().copy() for w in stats]
    kernels = [w for w in model.weights if w.path.endswith("kernel") and "logits" not in w.path]
    k_before = [w.numpy().copy() for w in kernels]
    tltf.fine_tune(model, (x, y), epochs=1, freeze_epochs=0, lr=1e-2, batch_size=8, verbose=0)
    assert all(np.array_equal(a, w.numpy()) for a, w in zip(before, stats, strict=True))
    assert any(not np.allclose(a, w.numpy()) for a, w in zip(k_before, kernels, strict=True))


def test_unseen_label_is_a_clear_error(tiny_bert_dir):
    model = tltf.build(f"keras_hub:{tiny_bert_dir}", class_names=["a", "b"], sequence_length=16)
    with pytest.raises(DataError, match="'c' at position 2 was not seen in training"):
        tltf.fine_tune(model, (["x", "y", "z"], ["a", "b", "c"]), epochs=1, verbose=0)


def test_augmentation_is_active_in_training_only_and_exports(tmp_path, tiny_bert_dir):
    model = tltf.build(
        "keras:MobileNetV2",
        class_names=["a", "b"],
        weights=None,
        input_shape=(32, 32, 3),
        augment="light",
        freeze="top:1",
    )
    x = np.random.default_rng(0).uniform(0, 255, (4, 32, 32, 3)).astype("float32")
    infer = [model(x, training=False).numpy() for _ in range(2)]
    np.testing.assert_array_equal(infer[0], infer[1])
    pre = model.layers[1]
    assert not np.allclose(pre(x, training=True), x), "augmentation must change training pixels"
    np.testing.assert_array_equal(pre(x, training=False), x)
    path = tltf.export(model, str(tmp_path / "aug"))  # parity check: served == inference
    assert path.endswith("1")
    with pytest.raises(tltf.SpecError, match="for image or audio backbones"):
        tltf.build(f"keras_hub:{tiny_bert_dir}", num_classes=2, sequence_length=16, augment="light")


def test_balanced_class_weight_reaches_fit(tiny_bert_dir, tiny_text_data, monkeypatch):
    texts, labels = tiny_text_data
    texts, labels = texts[:20] + texts[21::3], labels[:20] + labels[21::3]
    data = tltf.data.from_arrays(texts, labels)
    model = tltf.build(
        f"keras_hub:{tiny_bert_dir}", class_names=data.class_names, sequence_length=16
    )
    seen = []
    fit = model.fit
    monkeypatch.setattr(
        model, "fit", lambda *a, **k: seen.append(k.get("class_weight")) or fit(*a, **k)
    )
    tltf.fine_tune(model, data, epochs=1, class_weight="balanced", cache_features=False, verbose=0)
    expected = data.class_weight("balanced")
    assert seen and seen[0] == expected and len(set(expected.values())) > 1
    with pytest.raises(DataError, match="balanced"):
        tltf.fine_tune(model, (texts, labels), epochs=1, class_weight="balanced", verbose=0)
