"""``keras:`` source: every keras.applications family, its groups and its preprocessing.

Each family is built once, by its smallest member at the smallest input it
accepts, with random weights. Set ``TLTF_ALL_BACKBONES=1`` to also check the
group coverage of every constructor (a few minutes).
"""

from __future__ import annotations

import inspect
import os
import traceback
import urllib.error

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
from tltf.backbones import keras_apps
from tltf.errors import BackboneUnavailable, SpecError

SMALLEST = {
    "resnet": "ResNet50",
    "resnet_v2": "ResNet50V2",
    "vgg16": "VGG16",
    "vgg19": "VGG19",
    "xception": "Xception",
    "inception_v3": "InceptionV3",
    "inception_resnet_v2": "InceptionResNetV2",
    "mobilenet": "MobileNet",
    "mobilenet_v2": "MobileNetV2",
    "mobilenet_v3_small": "MobileNetV3Small",
    "mobilenet_v3_large": "MobileNetV3Large",
    "efficientnet": "EfficientNetB0",
    "efficientnet_v2": "EfficientNetV2B0",
    "convnext": "ConvNeXtTiny",
    "densenet": "DenseNet121",
    "nasnet_mobile": "NASNetMobile",
    "nasnet_large": "NASNetLarge",
}
# A member whose layers differ from the smallest one (no Normalization layer);
# the other members share their family's layer names, with more blocks.
REPRESENTATIVES = ["EfficientNetV2S"]


def _load(name: str) -> tltf.Backbone:
    side = keras_apps.family_of(name)[1].min_size
    return tltf.load_backbone(f"keras:{name}", weights=None, input_shape=(side, side, 3))


def _check_groups(bb: tltf.Backbone) -> None:
    model = bb.model
    layers = [lyr for lyr in model.layers if not isinstance(lyr, keras.layers.InputLayer)]
    flat = [name for names in bb.groups.values() for name in names]
    # every layer in exactly one group, and groups ordered input -> output
    assert flat == [lyr.name for lyr in layers]
    assert list(bb.groups) == keras_apps.group_names(bb.spec.split(":")[1])
    for group, members in bb.groups.items():
        assert any(model.get_layer(n).weights for n in members), f"{group} holds no weights"


def test_every_keras_application_has_a_family():
    names = sorted(n for n in dir(keras.applications) if n[:1].isupper())
    assert sorted(keras_apps.constructor_names()) == names
    assert {keras_apps.family_of(n)[0] for n in names} == set(SMALLEST)
    assert keras_apps.default_size("EfficientNetB7") == 600
    assert keras_apps.default_size("InceptionV3") == 299
    assert keras_apps.default_size("NASNetLarge") == 331
    assert keras_apps.default_size("ResNet50") == 224


@pytest.mark.parametrize("family", list(SMALLEST))
def test_family_groups_and_preprocessing(family):
    name = SMALLEST[family]
    bb = _load(name)
    _check_groups(bb)
    fam = keras_apps.FAMILIES[family]
    assert bb.input_spec["shape"] == [fam.min_size, fam.min_size, 3]
    assert bb.feature_dim == bb.model.output.shape[-1]

    # tltf's preprocessing + the network == keras' documented pipeline:
    # Constructor() with its defaults, called on preprocess_input(raw pixels).
    constructor = getattr(keras.applications, name)
    reference = bb.model
    if "include_preprocessing" in inspect.signature(constructor).parameters:
        reference = constructor(
            weights=None, include_top=False, input_shape=bb.model.input.shape[1:], pooling="avg"
        )
        reference.set_weights(bb.model.get_weights())
    pixels = np.random.default_rng(1).uniform(0, 255, (2, *bb.input_spec["shape"]))
    pixels = pixels.astype("float32")
    module = getattr(keras.applications, fam.module)
    expected = keras.ops.convert_to_numpy(reference(module.preprocess_input(pixels.copy())))
    got = keras.ops.convert_to_numpy(bb.model(bb.preprocessor(pixels)))
    scale = float(np.abs(expected).max())
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5 * scale)


_ALL = os.environ.get("TLTF_ALL_BACKBONES") == "1"


@pytest.mark.parametrize(
    "name",
    keras_apps.constructor_names() if _ALL else REPRESENTATIVES,
)
def test_group_coverage_of_larger_members(name):
    if name in SMALLEST.values():
        pytest.skip("checked with its preprocessing above")
    _check_groups(_load(name))


def test_groups_do_not_depend_on_auto_generated_names():
    # The second build in a process gets other counters (conv2d_94 instead of conv2d).
    first, second = _load("InceptionV3"), _load("InceptionV3")
    assert first.model.layers[1].name != second.model.layers[1].name
    assert {g: len(v) for g, v in first.groups.items()} == {
        g: len(v) for g, v in second.groups.items()
    }


def test_image_preprocessing_modes_match_keras():
    pixels = np.random.default_rng(2).uniform(0, 255, (2, 4, 4, 3)).astype("float32")
    for mode, module in (("caffe", "resnet"), ("tf", "mobilenet_v2"), ("torch", "densenet")):
        expected = getattr(keras.applications, module).preprocess_input(pixels.copy())
        got = tltf.layers.ImagePreprocessing(mode)(pixels)
        np.testing.assert_allclose(keras.ops.convert_to_numpy(got), expected, rtol=1e-5, atol=1e-4)


def test_bad_options_are_spec_errors():
    with pytest.raises(SpecError, match="at least 75x75"):
        tltf.load_backbone("keras:InceptionV3", weights=None, input_shape=(32, 32, 3))
    with pytest.raises(SpecError, match="pooling"):
        tltf.load_backbone("keras:MobileNetV2", weights=None, pooling="none")
    with pytest.raises(SpecError, match="Supported: .*ResNet50,"):
        tltf.load_backbone("keras:AlexNet", weights=None)
    with pytest.raises(SpecError, match="local weights file"):
        tltf.load_backbone("keras:MobileNetV2", sha256="0" * 64)


def test_local_weights_file_with_sha256(tmp_path):
    import hashlib

    bb = tltf.load_backbone("keras:MobileNetV2", weights=None, input_shape=(32, 32, 3))
    path = str(tmp_path / "mobilenet_v2.weights.h5")
    bb.model.save_weights(path)
    digest = hashlib.sha256(open(path, "rb").read()).hexdigest()
    again = tltf.load_backbone(
        "keras:MobileNetV2", weights=path, sha256=digest, input_shape=(32, 32, 3)
    )
    assert (
        again.fingerprint
        == tltf.load_backbone(
            "keras:MobileNetV2", weights=path, input_shape=(32, 32, 3)
        ).fingerprint
    )
    np.testing.assert_array_equal(again.model.weights[0].numpy(), bb.model.weights[0].numpy())
    with pytest.raises(BackboneUnavailable, match="sha256"):
        tltf.load_backbone("keras:MobileNetV2", weights=path, sha256="0" * 64)


def test_failed_download_is_backbone_unavailable(monkeypatch, tmp_path, capsys):
    from keras.src.backend import config
    from keras.src.utils import file_utils

    def offline(*args, **kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(file_utils, "urlretrieve", offline)
    monkeypatch.setattr(config, "_KERAS_DIR", str(tmp_path))
    with pytest.raises(BackboneUnavailable) as info:
        tltf.load_backbone("keras:MobileNetV2", input_shape=(96, 96, 3))
    message = str(info.value)
    assert "ImageNet weights of MobileNetV2" in message
    assert "KERAS_HOME" in message and "weights='/path/to/" in message
    assert "--weights /path/to/mobilenetv2_notop.h5 with tltf train" in message  # CLI form too
    assert "Downloading data from" not in capsys.readouterr().out  # Keras' chatter stays out
    assert message.count("Temporary failure in name resolution") == 1  # whole words
    shown = "".join(traceback.format_exception(info.value))
    assert "During handling" not in shown and "urllib" not in shown


def _pixels(n: int = 12) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (n, 32, 32, 3)).astype("float32")


def _model(freeze: str = "all", name: str = "ResNet50") -> keras.Model:
    """Random weights standing in for pretrained ones: BatchNorm frozen, as for those."""
    keras.utils.set_random_seed(0)
    with pytest.warns(UserWarning, match="random weights and bn='frozen'"):
        return tltf.build(
            f"keras:{name}",
            class_names=["a", "b", "c"],
            weights=None,
            input_shape=(32, 32, 3),
            freeze=freeze,
            bn="frozen",
        )


def test_frozen_and_fine_tuned():
    # ResNet: with random weights, MobileNets' features are too small for every kernel to move
    check_frozen_and_fine_tuned(_model, _pixels(), [0, 1, 2] * 4)


def test_keras_round_trip_and_export(tmp_path):
    # VGG: no BatchNorm, so random weights give features of a sane scale
    model = _model("top:2", name="VGG16")
    fit_once(model, _pixels(), [0, 1, 2] * 4)
    loaded = check_keras_round_trip(model, _pixels(3), tmp_path)
    assert tltf.set_freeze(loaded, "top:1") == ["stage4"]
    scores = keras.ops.softmax(model(_pixels(4)))
    assert float(keras.ops.std(scores[:, 0])) > 2e-4, "scores depend on the image"
    check_export(model, _pixels(4), tmp_path)
