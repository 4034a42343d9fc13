"""The modality seam (`tltf.modalities`): a new modality is one `Modality` subclass plus one
source, with no change to tltf; and no tltf module outside `tltf/modalities/` branches on a
modality's name."""

from __future__ import annotations

import os
import re

import keras
import numpy as np
import pytest
import tensorflow as tf

import tltf
from tltf import backbones
from tltf.modalities import Loaded, get_modality, registry

TLTF = os.path.join(os.path.dirname(__file__), "..", "tltf")
DIM = 6


class Vector(tltf.Modality):
    """Float feature vectors ``[DIM]``: a toy modality that exists only in this test."""

    name = "vector"
    file_kind = "a .npy"
    file_types = ".npy"

    def accepts(self, input_spec):
        return input_spec.get("dtype") == "float32" and len(input_spec.get("shape", ())) == 1

    def is_file(self, path):
        return path.endswith(".npy")

    def load_files(self, paths, *, strict, max_pixels):
        return Loaded(
            np.stack([np.load(p) for p in paths]).astype("float32"), np.arange(len(paths))
        )

    def from_array(self, xs, source):
        return xs.astype("float32") if xs.dtype.kind == "f" and xs.ndim == 2 else None


def load_mlp(target, *, spec, seed=0):
    """A tiny MLP "pretrained" on nothing: two groups, 8 features."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((DIM,), name="vectors")
    x = keras.layers.Dense(16, activation="relu", name="block1")(inputs)
    x = keras.layers.Dense(8, activation="relu", name="block2")(x)
    return tltf.Backbone(
        spec=spec,
        modality="vector",
        model=keras.Model(inputs, x, name="mlp"),
        preprocessor=keras.layers.Identity(name="vector_preprocessing"),
        groups={"block1": ["block1"], "block2": ["block2"]},
        feature_dim=8,
        input_spec={"shape": [DIM], "dtype": "float32"},
    )


@pytest.fixture
def vector_modality():
    """Registers the toy modality and its source for one test, then removes both."""
    tltf.register_modality(Vector())
    tltf.register_source("mlp")(load_mlp)
    yield
    registry._REGISTRY.pop("vector")
    backbones._SOURCES.pop("mlp")
    backbones._MODALITIES.pop("mlp")


def _blobs(n, seed):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 3
    return (rng.normal(size=(n, DIM)) + 2.0 * np.eye(3, DIM)[y]).astype("float32"), y


def test_a_new_modality_builds_fine_tunes_caches_and_exports(vector_modality, tmp_path, capsys):
    x, y = _blobs(90, 0)
    train = tltf.data.from_arrays(x, y, class_names=["a", "b", "c"])
    assert train.modality == "vector" and len(train) == 90

    frozen = tltf.build("mlp:tiny", class_names=train.class_names)
    assert tltf.info(frozen)["modality"] == "vector"
    before = frozen.get_layer("backbone").get_weights()
    tltf.fine_tune(frozen, train, cache_dir=str(tmp_path / "cache"), verbose=2)
    assert "features of 90 training examples" in capsys.readouterr().out  # the cache ran
    for a, b in zip(before, frozen.get_layer("backbone").get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)  # frozen: the backbone did not move
    x_test, y_test = _blobs(60, 1)
    logits = frozen.predict(x_test, verbose=0)
    assert np.mean(np.argmax(logits, axis=1) == y_test) > 0.6  # the head learned the blobs

    opened = tltf.build("mlp:tiny", class_names=train.class_names, freeze="top:1")
    top = opened.get_layer("backbone").get_layer("block2").kernel.numpy().copy()
    tltf.fine_tune(opened, train, cache_dir=str(tmp_path / "cache"), verbose=0)
    assert not np.array_equal(top, opened.get_layer("backbone").get_layer("block2").kernel)

    path = tltf.export(frozen, str(tmp_path / "export" / "vectors"))
    served = tf.saved_model.load(path).signatures["serving_default"]
    out = served(inputs=tf.constant(x_test[:5]))
    np.testing.assert_allclose(out["scores"].numpy(), tf.nn.softmax(logits[:5]), atol=1e-5)
    assert [s.decode() for s in out["label"].numpy()] == [
        train.class_names[i] for i in np.argmax(logits[:5], axis=1)
    ]


def test_a_new_modality_loads_class_folders(vector_modality, tmp_path):
    for c in ("a", "b"):
        os.makedirs(tmp_path / c)
        for i in range(3):
            np.save(tmp_path / c / f"{i}.npy", np.full(DIM, i, dtype="float32"))
    (tmp_path / "a" / "notes.txt").write_text("not a vector")
    data = tltf.data.from_directory(str(tmp_path), modality="vector")
    assert data.modality == "vector" and data.x.shape == (6, DIM)
    assert data.skipped == [(str(tmp_path / "a" / "notes.txt"), "not a .npy file")]

    # a CSV column of paths, through the loader's <modality>_column= option
    (tmp_path / "rows.csv").write_text("path,label\na/0.npy,a\nb/2.npy,b\nb/1.npy,b\n")
    rows = tltf.data.from_csv(str(tmp_path / "rows.csv"), vector_column="path")
    assert rows.modality == "vector" and rows.class_names == ["a", "b"]
    np.testing.assert_array_equal(rows.x[:, 0], [0, 2, 1])
    with pytest.raises(tltf.DataError, match=r"unknown option\(s\) \['vektor_column'\]"):
        tltf.data.from_csv(str(tmp_path / "rows.csv"), vektor_column="path")
    with pytest.raises(tltf.DataError, match="give one of"):
        tltf.data.from_csv(str(tmp_path / "rows.csv"), vector_column="path", text_column="path")


def test_options_of_other_modalities_are_refused_by_name(vector_modality):
    with pytest.raises(
        tltf.SpecError, match="augment= is for image or audio backbones; mlp:tiny is vector"
    ):
        tltf.build("mlp:tiny", num_classes=2, augment="light")
    with pytest.raises(tltf.SpecError, match="modality 'sound'"):
        get_modality("sound")


def test_the_builtin_modalities_recognise_their_inputs():
    image, text = get_modality("image"), get_modality("text")
    assert image.accepts({"shape": [32, 32, 3], "dtype": "float32"})
    assert not image.accepts({"shape": [], "dtype": "string"})
    assert text.accepts({"shape": [], "dtype": "string", "sequence_length": 16})
    assert not text.accepts({"shape": [DIM], "dtype": "float32"})
    assert text.xla_blocker and not image.xla_blocker
    assert text.tflite_blocker and not image.tflite_blocker


NAMES = "|".join(("image", "text"))
BRANCH = re.compile(
    rf"""(==|!=)\s*["']({NAMES})["']|["']({NAMES})["']\s*(==|!=)|modality\s*(==|!=|in\s*[(\[{{])"""
)


def test_no_module_outside_modalities_branches_on_a_modality_name():
    found = []
    for here, _, files in os.walk(TLTF):
        if os.path.basename(here) == "modalities":
            continue
        for name in (f for f in files if f.endswith(".py")):
            path = os.path.join(here, name)
            with open(path, encoding="utf-8") as fh:
                for number, line in enumerate(fh, 1):
                    if BRANCH.search(line.split("#")[0]):
                        found.append(f"{os.path.relpath(path, TLTF)}:{number}: {line.strip()}")
    assert not found, "modality branches outside tltf/modalities/:\n" + "\n".join(found)
