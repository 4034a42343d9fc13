"""``file:`` source: the user's own .keras file or SavedModel folder."""

from __future__ import annotations

import hashlib
import os

import keras
import numpy as np
import pytest
from test_sources_util import (
    check_export,
    check_frozen_and_fine_tuned,
    check_keras_round_trip,
    fit_once,
)

import tltf
from tltf.errors import BackboneUnavailable, SpecError
from tltf.rates import group_variables


def _classifier() -> keras.Model:
    """The user's network: a small CNN with BatchNorm and a softmax head."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Rescaling(1 / 255, name="scale")(inputs)
    x = keras.layers.Conv2D(8, 3, name="conv_a")(x)
    x = keras.layers.BatchNormalization(name="bn_a")(x)
    x = keras.layers.ReLU(name="relu_a")(x)
    x = keras.layers.Conv2D(8, 3, strides=2, activation="relu", name="conv_b")(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    x = keras.layers.Dense(6, activation="relu", name="embedding")(x)
    outputs = keras.layers.Dense(5, activation="softmax", name="predictions")(x)
    return keras.Model(inputs, outputs, name="users_classifier")


@pytest.fixture(scope="module")
def keras_file(tmp_path_factory) -> str:
    path = str(tmp_path_factory.mktemp("user") / "classifier.keras")
    _classifier().save(path)
    return path


@pytest.fixture(scope="module")
def saved_model_dir(tmp_path_factory) -> str:
    folder = str(tmp_path_factory.mktemp("user_sm") / "encoder")
    network = _classifier()
    keras.Model(network.input, network.get_layer("embedding").output).export(folder, verbose=False)
    return folder


def _pixels(n: int = 12) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (n, 16, 16, 3)).astype("float32")


def test_cut_drops_the_head_and_groups_follow_the_layers(keras_file):
    network = keras.models.load_model(keras_file)
    embedding = keras.Model(network.input, network.get_layer("embedding").output)
    for cut in (-1, "embedding"):
        bb = tltf.load_backbone(f"file:{keras_file}", preprocess="none", cut=cut)
        assert bb.modality == "image" and bb.feature_dim == 6
        assert bb.input_spec == {"shape": [16, 16, 3], "dtype": "float32"}
        np.testing.assert_allclose(
            bb.model(bb.preprocessor(_pixels(2))).numpy(), embedding(_pixels(2)).numpy(), atol=1e-6
        )
    assert bb.groups == {
        "conv_a": ["scale", "conv_a"],
        "bn_a": ["bn_a", "relu_a"],
        "conv_b": ["conv_b", "pool"],
        "embedding": ["embedding"],
    }
    whole = tltf.load_backbone(f"file:{keras_file}", preprocess="none")
    assert whole.feature_dim == 5 and list(whole.groups)[-1] == "predictions"
    pooled = tltf.load_backbone(
        f"file:{keras_file}", preprocess="none", cut="relu_a", pooling="max"
    )
    assert pooled.feature_dim == 8


def test_a_saved_keras_application_keeps_its_family_groups(tmp_path):
    path = str(tmp_path / "mobilenet.keras")
    keras.applications.MobileNetV2(
        weights=None, input_shape=(32, 32, 3), classes=3, classifier_activation="softmax"
    ).save(path)
    bb = tltf.load_backbone(f"file:{path}", cut=-1)
    assert list(bb.groups) == ["stem", *[f"stage{i}" for i in range(1, 6)], "top"]
    assert bb.feature_dim == 1280
    assert bb.preprocessor.mode == "tf"  # the family's pixels, [-1, 1]


def test_an_image_network_of_unknown_family_needs_preprocess(keras_file):
    with pytest.raises(SpecError, match="preprocess="):
        tltf.load_backbone(f"file:{keras_file}", cut=-1)


def test_nested_network_is_one_group(tmp_path):
    base = keras.applications.MobileNetV2(weights=None, include_top=False, input_shape=(32, 32, 3))
    network = keras.Sequential(
        [
            keras.Input((32, 32, 3)),
            base,
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(2),
        ]
    )
    path = str(tmp_path / "nested.keras")
    network.save(path)
    bb = tltf.load_backbone(f"file:{path}", cut=-1, preprocess="none")
    assert list(bb.groups) == [base.name] and bb.feature_dim == 1280


def test_bad_cuts_are_spec_errors(keras_file, saved_model_dir):
    with pytest.raises(SpecError, match="no layer 'head'"):
        tltf.load_backbone(f"file:{keras_file}", preprocess="none", cut="head")
    with pytest.raises(SpecError, match="cut="):
        tltf.load_backbone(f"file:{keras_file}", preprocess="none", cut=3)
    with pytest.raises(SpecError, match="cut= works on .keras"):
        tltf.load_backbone(f"file:{saved_model_dir}", cut=-1)
    with pytest.raises(SpecError, match="neither"):
        tltf.load_backbone("file:/no/such/model.keras")


def test_safe_mode(tmp_path):
    inputs = keras.Input((4,))
    outputs = keras.layers.Lambda(lambda t: t * 2.0, name="double")(inputs)
    path = str(tmp_path / "lambda.keras")
    keras.Model(inputs, keras.layers.Dense(2, name="d")(outputs)).save(path)
    with pytest.raises(SpecError, match="safe_mode=False"):
        tltf.load_backbone(f"file:{path}")
    with pytest.raises(SpecError, match="images"):  # loads, then refuses a non-image input
        tltf.load_backbone(f"file:{path}", safe_mode=False)


def test_sha256_of_a_keras_file(keras_file):
    digest = hashlib.sha256(open(keras_file, "rb").read()).hexdigest()
    assert (
        tltf.load_backbone(
            f"file:{keras_file}", preprocess="none", sha256=digest, cut=-1
        ).feature_dim
        == 6
    )
    with pytest.raises(BackboneUnavailable, match="sha256"):
        tltf.load_backbone(f"file:{keras_file}", preprocess="none", sha256="0" * 64)


def _keras_file_model(keras_file, freeze):
    return tltf.build(
        f"file:{keras_file}", preprocess="none", cut=-1, class_names=["a", "b", "c"], freeze=freeze
    )


def test_keras_file_frozen_fine_tuned_round_trip_and_export(keras_file, tmp_path):
    check_frozen_and_fine_tuned(
        lambda freeze: _keras_file_model(keras_file, freeze), _pixels(), [0, 1, 2] * 4
    )
    model = _keras_file_model(keras_file, "top:2")
    fit_once(model, _pixels(), [0, 1, 2] * 4)
    check_keras_round_trip(model, _pixels(3), tmp_path)
    check_export(model, _pixels(4), tmp_path)


def test_saved_model_folder(saved_model_dir, tmp_path):
    bb = tltf.load_backbone(f"file:{saved_model_dir}")
    assert bb.modality == "image" and bb.feature_dim == 6
    assert list(bb.groups) == ["conv_a", "bn_a", "conv_b", "embedding"]
    digest = hashlib.sha256(
        open(
            os.path.join(saved_model_dir, "variables", "variables.data-00000-of-00001"), "rb"
        ).read()
    ).hexdigest()
    assert tltf.load_backbone(f"file:{saved_model_dir}", sha256=digest).feature_dim == 6

    def build(freeze):
        return tltf.build(f"file:{saved_model_dir}", class_names=["a", "b", "c"], freeze=freeze)

    check_frozen_and_fine_tuned(build, _pixels(), [0, 1, 2] * 4)
    model = build("top:1")
    fit_once(model, _pixels(), [0, 1, 2] * 4)
    check_keras_round_trip(model, _pixels(3), tmp_path)
    check_export(model, _pixels(4), tmp_path)


@pytest.fixture(scope="module")
def task_a_run(tmp_path_factory):
    """A run folder as `tltf train` leaves it: a tltf model in model.keras. Left untrained
    (a full MobileNetV2 train step takes ~40 s to trace): the tests read its structure,
    groups and features, which training does not change."""
    run = tmp_path_factory.mktemp("runs") / "A"
    run.mkdir()
    keras.utils.set_random_seed(0)
    model = tltf.build(
        "keras:MobileNetV2",
        class_names=list("abcd"),
        weights=None,
        input_shape=(32, 32, 3),
        freeze="none",
        augment="light",
    )
    model.save(run / "model.keras")
    return {"run": run, "model": model}


def test_a_tltf_model_gives_back_its_backbone_groups_and_preprocessing(task_a_run, capsys):
    model = task_a_run["model"]
    pixels = np.random.default_rng(2).uniform(0, 255, (3, 32, 32, 3)).astype("float32")
    expected = model.get_layer("backbone")(model.get_layer("image_preprocessing")(pixels))
    for target in (task_a_run["run"], task_a_run["run"] / "model.keras"):
        bb = tltf.load_backbone(f"file:{target}")
        assert "is a tltf model" in capsys.readouterr().out
        assert list(bb.groups) == list(tltf.info(model)["groups"])  # MobileNetV2's stages
        assert bb.feature_dim == 1280 and bb.preprocessor.mode == "tf"
        # the pooled features, not the old 4 logits; no augmentation in between
        np.testing.assert_allclose(bb.model(bb.preprocessor(pixels)), expected, atol=1e-5)


def test_task_b_on_a_tltf_run_folder_freezes_by_group_and_is_advised_real_groups(task_a_run):
    spec = f"file:{task_a_run['run']}"
    model_b = tltf.build(spec, class_names=["x", "y"], freeze="top:2")
    trainable = [g for g, ws in group_variables(model_b).items() if ws[0].trainable]
    assert trainable == ["stage5", "top"]
    rec = tltf.recommend(2 * 300, 2, backbone=model_b)  # medium data: open some groups
    assert rec.freeze.startswith("top:") and int(rec.freeze[4:]) <= len(
        tltf.info(model_b)["groups"]
    )
    with pytest.raises(SpecError, match="is a tltf model"):
        tltf.load_backbone(spec, cut="backbone")
