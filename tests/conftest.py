"""Shared fixtures: tiny local backbones, so no test touches the network."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import pytest

WORDS = (
    "the a and of to in is game games play player score level "
    "math algebra equation number matrix solver sound audio music mixer "
    "editor text vim emacs mail email server inbox video film player codec"
).split()


@pytest.fixture(scope="session", autouse=True)
def feature_cache_dir(tmp_path_factory) -> str:
    """Cached backbone features (tltf.feature_cache) go to a temporary folder, not ~/.cache."""
    folder = str(tmp_path_factory.mktemp("feature_cache"))
    os.environ["TLTF_CACHE_DIR"] = folder
    return folder


def save_tiny_bert(folder: str, seed: int = 0, **backbone_options) -> str:
    """Saves a 2-layer BERT (hidden 16) with a small vocabulary as a KerasHub preset folder."""
    import keras
    import keras_hub

    keras.utils.set_random_seed(seed)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *dict.fromkeys(WORDS)]
    keras_hub.models.BertBackbone(
        vocabulary_size=len(vocab),
        num_layers=2,
        num_heads=2,
        hidden_dim=16,
        intermediate_dim=32,
        max_sequence_length=32,
        **backbone_options,
    ).save_to_preset(folder)
    keras_hub.models.BertTokenizer(vocabulary=vocab, lowercase=True).save_to_preset(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory) -> str:
    """The tiny BERT of `save_tiny_bert`, shared by the whole session."""
    return save_tiny_bert(str(tmp_path_factory.mktemp("tiny_bert")))


@pytest.fixture(scope="session")
def tiny_text_data() -> tuple[list[str], list[str]]:
    """Short texts in three topics whose words the tiny vocabulary knows."""
    topics = {
        "games": "game games play player score level",
        "math": "math algebra equation number matrix solver",
        "sound": "sound audio music mixer",
    }
    texts, labels = [], []
    for i in range(12):
        for label, words in topics.items():
            w = words.split()
            texts.append(" ".join(w[(i + k) % len(w)] for k in range(3 + i % 4)))
            labels.append(label)
    return texts, labels


@pytest.fixture(scope="session")
def tiny_cnn(tmp_path_factory) -> str:
    """``file:`` spec of a small pretrained-looking CNN on 32x32 pixels (`save_tiny_cnn`):
    for recipe tests where MobileNetV2's size (and seconds of tracing) is not the point."""
    from image_util import save_tiny_cnn

    return "file:" + save_tiny_cnn(tmp_path_factory.mktemp("tiny_cnn") / "tiny.keras")


@pytest.fixture(scope="session")
def mobilenet_v2_32_weights(tmp_path_factory) -> str:
    """Random MobileNetV2 (32x32) weights in a file: a stand-in for pretrained ones.

    A backbone loaded from a weights file counts as pretrained (`Backbone.pretrained`),
    so tests of the pretrained recipe (head phase, frozen BatchNorm) use this.
    """
    import keras

    keras.utils.set_random_seed(0)
    path = str(tmp_path_factory.mktemp("weights") / "mobilenet_v2_32.weights.h5")
    keras.applications.MobileNetV2(
        include_top=False, weights=None, input_shape=(32, 32, 3), pooling="avg"
    ).save_weights(path)
    return path
