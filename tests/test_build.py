"""build(): specs, freeze policies, metadata, and clear errors."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

import tltf
from tltf.errors import SpecError


@pytest.fixture(scope="module")
def image_model():
    return tltf.build(
        "keras:MobileNetV2",
        class_names=["cat", "dog", "owl"],
        weights=None,
        input_shape=(32, 32, 3),
        freeze="top:2",
    )


def test_image_model_takes_raw_pixels_and_carries_metadata(image_model):
    out = image_model(np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 3)))
    assert out.shape == (2, 3)
    meta = tltf.info(image_model)
    assert meta["class_names"] == ["cat", "dog", "owl"]
    assert meta["modality"] == "image"
    assert meta["backbone"] == "keras:MobileNetV2"
    assert list(meta["groups"])[0] == "stem"
    assert len(meta["fingerprint"]) == 16


def _trainable_groups(model):
    groups = tltf.metadata.group_members(model)
    return [g for g, layers in groups.items() if any(layer.trainable_weights for layer in layers)]


@pytest.mark.parametrize("n", [0, 1, 3])
def test_top_n_makes_exactly_n_groups_trainable(image_model, n):
    tltf.set_freeze(image_model, f"top:{n}")
    names = list(tltf.info(image_model)["groups"])
    assert _trainable_groups(image_model) == names[len(names) - n :]
    assert tltf.info(image_model)["freeze"] == f"top:{n}"


def test_freeze_all_none_and_named_groups(image_model):
    names = list(tltf.info(image_model)["groups"])
    tltf.set_freeze(image_model, "all")
    assert _trainable_groups(image_model) == []
    head = [w for w in image_model.trainable_weights if "logits" in w.path]
    assert head, "the head always trains"
    tltf.set_freeze(image_model, "none")
    assert _trainable_groups(image_model) == names
    tltf.set_freeze(image_model, ["stage2", "stem"])
    assert _trainable_groups(image_model) == ["stem", "stage2"]


def test_frozen_bn_layers_are_never_trainable(image_model):
    tltf.set_freeze(image_model, "none", bn="frozen")
    bns = [
        layer
        for layer in tltf.metadata.backbone_model(image_model).layers
        if isinstance(layer, keras.layers.BatchNormalization)
    ]
    assert bns and not any(layer.trainable for layer in bns)
    tltf.set_freeze(image_model, "none", bn="train")
    assert all(layer.trainable for layer in bns)


def _bns(model):
    return [
        layer
        for layer in tltf.metadata.backbone_model(model).layers
        if isinstance(layer, keras.layers.BatchNormalization)
    ]


def test_bn_follows_the_weights_random_ones_train_with_a_fast_momentum(
    image_model, mobilenet_v2_32_weights
):
    meta = tltf.info(image_model)  # weights=None
    assert (meta["pretrained"], meta["bn"], meta["default_lr"]) == (False, "train", 1e-3)
    assert all(layer.momentum <= tltf.recipe.SCRATCH_BN_MOMENTUM for layer in _bns(image_model))
    pretrained = tltf.build(
        "keras:MobileNetV2",
        class_names=["a", "b"],
        weights=mobilenet_v2_32_weights,
        input_shape=(32, 32, 3),
        freeze="none",
    )
    meta = tltf.info(pretrained)
    assert (meta["pretrained"], meta["bn"], meta["default_lr"]) == (True, "frozen", 1e-4)
    assert {layer.momentum for layer in _bns(pretrained)} == {0.999}  # Keras' own, untouched
    assert not any(layer.trainable for layer in _bns(pretrained))


def test_text_model_tokenizes_inside_and_trims_padding(tiny_bert_dir):
    model = tltf.build(
        f"keras_hub:{tiny_bert_dir}", class_names=["a", "b"], sequence_length=16, freeze="top:1"
    )
    assert tltf.info(model)["groups"].keys() == {"embeddings", "layer_0", "layer_1"}
    pre = model.get_layer("text_preprocessor")
    feats = pre(tf.constant(["game", "math music sound"]))
    assert feats["token_ids"].shape == (2, 5)  # [CLS] 3 words [SEP], not 16
    assert model(tf.constant(["game play"])).shape == (1, 2)


def test_keras_save_and_load_keep_metadata_and_outputs(tiny_bert_dir, tmp_path):
    model = tltf.build(f"keras_hub:{tiny_bert_dir}", class_names=["x", "y"], sequence_length=16)
    path = str(tmp_path / "m.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    texts = tf.constant(["game score", "audio mixer music"])
    np.testing.assert_allclose(loaded(texts), model(texts), atol=1e-6)
    assert tltf.info(loaded)["class_names"] == ["x", "y"]


@pytest.mark.parametrize(
    "spec, match",
    [
        ("MobileNetV2", "no source prefix"),
        ("nosuch:thing", "unknown source 'nosuch'"),
        ("keras:NotAModel", "not a supported keras.applications model"),
        ("keras_hub:/no/such/folder", "no folder"),
    ],
)
def test_bad_spec_is_a_clear_error(spec, match):
    with pytest.raises(SpecError, match=match):
        tltf.build(spec, num_classes=2)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"freeze": "top:99"}, "N must be an integer from 0"),
        ({"freeze": "some"}, "use 'all', 'none', 'top:N'"),
        ({"freeze": ["stage99"]}, "unknown groups"),
        ({"bn": "maybe"}, "bn='maybe'"),
        ({"num_classes": 1, "class_names": None}, "at least 2 classes"),
    ],
)
def test_bad_options_are_clear_errors(kwargs, match):
    args = {"class_names": ["a", "b"], **kwargs}
    with pytest.raises(SpecError, match=match):
        tltf.build("keras:MobileNetV2", weights=None, input_shape=(32, 32, 3), **args)


def test_sha256_mismatch_refuses_to_load(tiny_bert_dir):
    with pytest.raises(tltf.BackboneUnavailable, match="sha256"):
        tltf.build(f"keras_hub:{tiny_bert_dir}", num_classes=2, sha256="0" * 64)


def test_load_model_restores_the_freeze_policy(tiny_bert_dir, tiny_text_data, tmp_path):
    texts, labels = tiny_text_data
    model = tltf.build(
        f"keras_hub:{tiny_bert_dir}",
        class_names=sorted(set(labels)),
        freeze="top:1",
        sequence_length=16,
    )
    path = str(tmp_path / "m.keras")
    model.save(path)
    loaded = tltf.load_model(path)
    assert _trainable_groups(loaded) == ["layer_1"]
    frozen = [w.numpy().copy() for w in tltf.metadata.group_members(loaded)["layer_0"][0].weights]
    ds = tf.data.Dataset.from_tensor_slices((texts, [sorted(set(labels)).index(y) for y in labels]))
    loaded.fit(ds.batch(8), epochs=1, verbose=0)
    after = tltf.metadata.group_members(loaded)["layer_0"][0].weights
    assert all(np.array_equal(a, w.numpy()) for a, w in zip(frozen, after, strict=True))


def test_sources_stays_a_function_after_a_source_loads():
    import tltf.backbones.keras_apps  # noqa: F401  (a tltf/sources/ package used to shadow it)

    assert tltf.sources() == ["file", "hf", "hub", "keras", "keras_hub", "speech"]
