"""``hub:`` source: TF-Hub TF2 SavedModels built here in TF-Hub format (no network)."""

from __future__ import annotations

import hashlib
import os
import traceback
import urllib.error

import keras
import numpy as np
import pytest
import tensorflow as tf
from test_sources_util import (
    backbone_weights,
    changed,
    check_export,
    check_frozen_and_fine_tuned,
    check_keras_round_trip,
    fit_once,
)

import tltf
from tltf.errors import BackboneUnavailable, SpecError

VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", *"game play score math algebra sound music".split()]
TEXTS = ["game play", "math algebra", "sound music", "play score game", "algebra", "music"] * 2
TEXT_LABELS = ["games", "math", "sound", "games", "math", "sound"] * 2


class ImageFeatureVector(tf.__internal__.tracking.AutoTrackable):
    """A reusable SavedModel: images [N, 32, 32, 3] in [0, 1] -> features [N, 16].

    stem conv, then two blocks of conv + BatchNorm (moving statistics updated when
    called with training=True), then a dense head; an L2 regularization loss.
    """

    def __init__(self):
        super().__init__()
        rng = tf.random.Generator.from_seed(0)

        def var(name, shape, scale=0.3, trainable=True, value=None):
            init = rng.normal(shape) * scale if value is None else tf.fill(shape, value)
            return tf.Variable(init, trainable=trainable, name=name)

        self.variables = [
            var("stem/conv/kernel", [3, 3, 3, 8]),
            var("stem/conv/bias", [8], value=0.0),
        ]
        for i, (cin, cout) in enumerate([(8, 8), (8, 16)], start=1):
            self.variables += [
                var(f"block_{i}/conv/kernel", [3, 3, cin, cout], scale=0.2),
                var(f"block_{i}/bn/gamma", [cout], value=1.0),
                var(f"block_{i}/bn/beta", [cout], value=0.0),
                var(f"block_{i}/bn/moving_mean", [cout], trainable=False, value=0.0),
                var(f"block_{i}/bn/moving_variance", [cout], trainable=False, value=1.0),
            ]
        self.variables += [
            var("head/dense/kernel", [16, 16]),
            var("head/dense/bias", [16], value=0.0),
        ]
        self.trainable_variables = [v for v in self.variables if v.trainable]
        self.regularization_losses = [self._l2]

    @tf.function(input_signature=[])
    def _l2(self):
        return 1e-4 * tf.reduce_sum(tf.square(self.variables[-2]))

    @tf.function
    def __call__(self, inputs, training=False):
        v = self.variables
        x = tf.nn.relu(tf.nn.conv2d(inputs, v[0], 1, "SAME") + v[1])
        for k in (2, 7):
            x = tf.nn.conv2d(x, v[k], 2, "SAME")
            if training:
                mean, var = tf.nn.moments(x, axes=[0, 1, 2])
                v[k + 3].assign(0.9 * v[k + 3] + 0.1 * mean)
                v[k + 4].assign(0.9 * v[k + 4] + 0.1 * var)
            else:
                mean, var = v[k + 3], v[k + 4]
            x = tf.nn.relu(tf.nn.batch_normalization(x, mean, var, v[k + 2], v[k + 1], 1e-3))
        return tf.matmul(tf.reduce_mean(x, axis=[1, 2]), v[-2]) + v[-1]


class TextEncoder(tf.__internal__.tracking.AutoTrackable):
    """A BERT-style encoder: {input_word_ids, input_mask, input_type_ids} -> pooled/sequence."""

    def __init__(self):
        super().__init__()
        rng = tf.random.Generator.from_seed(1)
        dim = 8

        def var(name, shape):
            return tf.Variable(rng.normal(shape) * 0.5, name=name)

        self.variables = [
            var("embeddings/word_embeddings", [len(VOCAB), dim]),
            var("embeddings/type_embeddings", [2, dim]),
            var("embeddings/position_embeddings", [32, dim]),
        ]
        for i in range(2):
            self.variables += [
                var(f"transformer/layer_{i}/dense/kernel", [dim, dim]),
                var(f"transformer/layer_{i}/dense/bias", [dim]),
            ]
        self.variables += [var("pooler_transform/kernel", [dim, dim])]
        self.trainable_variables = list(self.variables)

    @tf.function
    def __call__(self, inputs, training=False):
        v = self.variables
        ids, mask = inputs["input_word_ids"], tf.cast(inputs["input_mask"], tf.float32)
        x = tf.gather(v[0], ids) + tf.gather(v[1], inputs["input_type_ids"])
        x = x + v[2][: tf.shape(ids)[1]]
        for k in (3, 5):
            x = x + tf.tanh(tf.einsum("btd,de->bte", x, v[k]) + v[k + 1]) * mask[..., None]
        pooled = tf.tanh(tf.matmul(x[:, 0], v[7]))
        return {"pooled_output": pooled, "sequence_output": x, "default": pooled}


class TextPreprocessor(tf.__internal__.tracking.AutoTrackable):
    """strings -> BERT inputs, with ``tokenize`` and ``bert_pack_inputs`` like TF-Hub's."""

    def __init__(self):
        super().__init__()
        self.table = tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(VOCAB, tf.range(len(VOCAB))), default_value=1
        )

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def tokenize(self, text):
        words = tf.strings.split(tf.strings.lower(text))
        return tf.ragged.map_flat_values(self.table.lookup, words)

    @tf.function
    def bert_pack_inputs(self, inputs, seq_length=128):
        ids = inputs[0][:, : seq_length - 2]
        n = tf.shape(ids.row_lengths())[0]
        ids = tf.concat([tf.fill([n, 1], 2), ids, tf.fill([n, 1], 3)], axis=1)
        word_ids = ids.to_tensor(0)
        word_ids = tf.pad(word_ids, [[0, 0], [0, seq_length - tf.shape(word_ids)[1]]])
        return {
            "input_word_ids": word_ids,
            "input_mask": tf.cast(word_ids > 0, tf.int32),
            "input_type_ids": tf.zeros_like(word_ids),
        }

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def __call__(self, text):
        return self.bert_pack_inputs([self.tokenize(text)], seq_length=128)


class SentenceEmbedding(tf.__internal__.tracking.AutoTrackable):
    """NNLM-style: strings in, tokenized inside, the mean of word embeddings out."""

    def __init__(self):
        super().__init__()
        self.embeddings = tf.Variable(
            tf.random.stateless_normal([32, 4], seed=(2, 3)), name="embeddings/table"
        )
        self.variables = [self.embeddings]
        self.trainable_variables = [self.embeddings]

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def __call__(self, text):
        words = tf.strings.split(tf.strings.lower(text))
        ids = tf.strings.to_hash_bucket_fast(words, 32)
        return tf.reduce_mean(tf.gather(self.embeddings, ids), axis=1)


def _save_image_module(folder: str) -> str:
    module = ImageFeatureVector()
    spec = tf.TensorSpec([None, 32, 32, 3], tf.float32)
    for training in (False, True):
        module.__call__.get_concrete_function(spec, training=training)
    tf.saved_model.save(module, folder)
    return folder


def _save_text_modules(folder: str) -> tuple[str, str]:
    encoder, preprocessor = TextEncoder(), TextPreprocessor()
    ids = tf.TensorSpec([None, None], tf.int32)
    specs = {"input_word_ids": ids, "input_mask": ids, "input_type_ids": ids}
    for training in (False, True):
        encoder.__call__.get_concrete_function(specs, training=training)
    preprocessor.bert_pack_inputs.get_concrete_function(
        [tf.RaggedTensorSpec([None, None], tf.int32, 1)], seq_length=tf.TensorSpec([], tf.int32)
    )
    tf.saved_model.save(encoder, os.path.join(folder, "encoder"))
    tf.saved_model.save(preprocessor, os.path.join(folder, "preprocess"))
    return os.path.join(folder, "encoder"), os.path.join(folder, "preprocess")


@pytest.fixture(scope="module")
def image_module(tmp_path_factory) -> str:
    return _save_image_module(str(tmp_path_factory.mktemp("hub_image")))


@pytest.fixture(scope="module")
def text_modules(tmp_path_factory) -> tuple[str, str]:
    return _save_text_modules(str(tmp_path_factory.mktemp("hub_text")))


def _pixels(n: int = 12) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (n, 32, 32, 3)).astype("float32")


def _image_model(image_module, **options):
    return tltf.build(f"hub:{image_module}", class_names=["a", "b", "c"], **options)


def _text_model(text_modules, **options):
    encoder, preprocess = text_modules
    return tltf.build(
        f"hub:{encoder}",
        preprocessor=f"hub:{preprocess}",
        class_names=["games", "math", "sound"],
        sequence_length=16,
        **options,
    )


def test_image_module_groups_from_variable_names(image_module):
    bb = tltf.load_backbone(f"hub:{image_module}")
    assert bb.modality == "image" and bb.feature_dim == 16
    assert bb.input_spec == {"shape": [32, 32, 3], "dtype": "float32"}
    assert list(bb.groups) == ["stem", "block_1", "block_2", "top"]
    paths = [p for members in bb.groups.values() for p in members]
    assert sorted(paths) == sorted(w.path for w in bb.model.weights)  # each in one group
    assert bb.groups["block_1"][0] == "hub_module/block_1_conv_kernel"
    lines = []
    bb.summary(print_fn=lines.append)
    rows = "\n".join(lines).splitlines()[2:]
    assert [r.split()[:3] for r in rows] == [
        ["stem", "2", "224"],
        ["block_1", "5", "608"],
        ["block_2", "5", "1,216"],
        ["top", "2", "272"],
    ]


def test_hub_module_stays_float32_under_mixed_precision(image_module):
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        model = _image_model(image_module)
        layer = tltf.metadata.backbone_model(model).get_layer("hub_module")
        assert layer.compute_dtype == "float32"
        assert model(_pixels(2)).shape == (2, 3)
    finally:
        keras.mixed_precision.set_global_policy("float32")


def test_variable_groups_from_name_layouts():
    from tltf.backbones.tf_hub import variable_groups

    def groups(names, modality="image"):
        found = variable_groups(names, names, modality)
        return {g: len(members) for g, members in found.items()}

    # the outermost numbered part decides; a prefix with one number (resnet50) does not
    resnet = ["resnet50/conv1/w", "resnet50/block1/unit_1/w", "resnet50/block1/unit_2/w"]
    resnet += ["resnet50/block2/unit_1/w", "resnet50/logits/w"]
    assert groups(resnet) == {"stem": 1, "block1": 2, "block2": 1, "top": 1}
    # numeric order, also when the module lists its variables alphabetically
    bert = ["emb/w", "encoder/layer_0/k", "encoder/layer_10/k", "encoder/layer_2/k", "pool/k"]
    assert list(groups(bert, "text")) == ["embeddings", "layer_0", "layer_2", "layer_10", "pooler"]
    assert groups(["conv/kernel", "bn/gamma", "dense/kernel"]) == {"module": 3}


def test_image_module_follows_the_module_and_scales_pixels(image_module):
    bb = tltf.load_backbone(f"hub:{image_module}")
    pixels = _pixels(2)
    module = tf.saved_model.load(image_module)
    expected = module(tf.constant(pixels / 255.0), training=False).numpy()
    got = bb.model(bb.preprocessor(pixels))
    np.testing.assert_allclose(keras.ops.convert_to_numpy(got), expected, rtol=1e-5, atol=1e-6)


def test_image_module_frozen_and_fine_tuned(image_module):
    check_frozen_and_fine_tuned(
        lambda freeze: _image_model(image_module, freeze=freeze), _pixels(), [0, 1, 2] * 4
    )


def test_fine_tuning_only_the_top_groups_of_a_hub_module(image_module):
    model = _image_model(image_module, freeze="top:2")
    groups = tltf.info(model)["groups"]
    before = backbone_weights(model)
    fit_once(model, _pixels(), [0, 1, 2] * 4)
    moved = changed(before, backbone_weights(model))
    trainable = {p for p in groups["block_2"] + groups["top"] if "moving" not in p}
    assert moved == trainable
    assert "partly" in tltf.describe(model, print_fn=lambda text: None)


def test_batchnorm_policy_reaches_the_module(image_module):
    frozen = _image_model(image_module, freeze="none", bn="frozen")
    before = backbone_weights(frozen)
    fit_once(frozen, _pixels(), [0, 1, 2] * 4)
    assert not {p for p in changed(before, backbone_weights(frozen)) if "moving" in p}

    train = _image_model(image_module, freeze="none", bn="train")
    before = backbone_weights(train)
    fit_once(train, _pixels(), [0, 1, 2] * 4)
    assert {p for p in changed(before, backbone_weights(train)) if "moving" in p} == {
        f"hub_module/block_{i}_bn_moving_{s}" for i in (1, 2) for s in ("mean", "variance")
    }
    tltf.set_freeze(train, "all")
    layer = tltf.metadata.backbone_model(train).get_layer("hub_module")
    assert layer.bn == "train" and not layer.trainable_weights


def test_regularization_losses_while_training(image_module):
    model = _image_model(image_module, freeze="none")
    model(_pixels(2), training=True)
    assert len(model.losses) == 1 and float(model.losses[0]) > 0
    frozen = _image_model(image_module, freeze="all")
    frozen(_pixels(2), training=True)
    assert not frozen.losses


def test_image_module_keras_round_trip_keeps_fine_tuned_weights(image_module, tmp_path):
    model = _image_model(image_module, freeze="top:1")
    fit_once(model, _pixels(), [0, 1, 2] * 4)
    loaded = check_keras_round_trip(model, _pixels(3), tmp_path)
    # the fine-tuned values come from the file, not from the module at `handle`
    assert changed(backbone_weights(model), backbone_weights(loaded)) == set()
    assert tltf.set_freeze(loaded, "top:1") == ["top"]


def test_image_module_export(image_module, tmp_path):
    model = _image_model(image_module, freeze="none")
    fit_once(model, _pixels(), [0, 1, 2] * 4)
    check_export(model, _pixels(4), tmp_path)


def test_text_encoder_with_preprocessor(text_modules):
    encoder, preprocess = text_modules
    bb = tltf.load_backbone(f"hub:{encoder}", preprocessor=f"hub:{preprocess}", sequence_length=16)
    assert bb.modality == "text" and bb.feature_dim == 8
    assert list(bb.groups) == ["embeddings", "layer_0", "layer_1", "pooler"]
    features = bb.preprocessor(tf.constant(["game play", "math"]))
    assert features["input_word_ids"].shape == (2, 4)  # [CLS] 2 words [SEP], not 16
    assert features["input_word_ids"].numpy().tolist()[1] == [2, 7, 3, 0]
    expected = tf.saved_model.load(encoder)(features)["pooled_output"]
    np.testing.assert_allclose(bb.model(features).numpy(), expected.numpy(), atol=1e-6)
    mean = tltf.load_backbone(f"hub:{encoder}", preprocessor=f"hub:{preprocess}", pooling="mean")
    assert mean.model(features).shape == (2, 8)


def test_group_pattern_sets_the_groups(text_modules):
    bb = tltf.load_backbone(
        f"hub:{text_modules[0]}",
        preprocessor=f"hub:{text_modules[1]}",
        group_pattern=r"transformer/layer_(\d+)/",
    )
    assert list(bb.groups) == [
        "embeddings",
        "transformer_layer_0",
        "transformer_layer_1",
        "pooler",
    ]


def test_string_module_tokenizes_inside(tmp_path):
    folder = str(tmp_path / "nnlm")
    tf.saved_model.save(SentenceEmbedding(), folder)
    bb = tltf.load_backbone(f"hub:{folder}")
    assert bb.modality == "text" and bb.feature_dim == 4
    assert bb.input_spec == {"shape": [], "dtype": "string"}
    assert list(bb.groups) == ["module"]
    texts, labels = _text_data()
    model = tltf.build(f"hub:{folder}", class_names=["games", "math", "sound"], freeze="none")
    before = backbone_weights(model)
    fit_once(model, texts, labels)
    assert changed(before, backbone_weights(model)) == {"hub_module/embeddings_table"}
    check_export(model, texts[:4], tmp_path)


def test_text_encoder_needs_its_preprocessor(text_modules):
    with pytest.raises(SpecError, match="preprocessor='hub:PREPROCESSOR'"):
        tltf.load_backbone(f"hub:{text_modules[0]}")


def _text_data() -> tuple[np.ndarray, list[int]]:
    return np.array(TEXTS), [["games", "math", "sound"].index(t) for t in TEXT_LABELS]


def test_text_encoder_frozen_fine_tuned_and_round_trip(text_modules, tmp_path):
    texts, labels = _text_data()
    check_frozen_and_fine_tuned(
        lambda freeze: _text_model(text_modules, freeze=freeze), texts, labels
    )
    model = _text_model(text_modules, freeze="top:2")
    fit_once(model, texts, labels)
    check_keras_round_trip(model, texts[:4], tmp_path)


def test_text_encoder_export(text_modules, tmp_path):
    """The preprocessor's vocabulary table (a resource, not a weight) goes into the export."""
    texts, labels = _text_data()
    model = _text_model(text_modules, freeze="top:2")
    fit_once(model, texts, labels)
    check_export(model, texts[:4], tmp_path)


def test_sha256_of_a_hub_module(image_module):
    path = os.path.join(image_module, "variables", "variables.data-00000-of-00001")
    digest = hashlib.sha256(open(path, "rb").read()).hexdigest()
    assert tltf.load_backbone(f"hub:{image_module}", sha256=digest).feature_dim == 16
    with pytest.raises(BackboneUnavailable, match="sha256"):
        tltf.load_backbone(f"hub:{image_module}", sha256="0" * 64)


def test_failed_download_is_backbone_unavailable(monkeypatch):
    import tensorflow_hub as hub

    def offline(handle):
        try:
            raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")
        except urllib.error.URLError as exc:
            raise OSError(f"Could not fetch {handle}") from exc

    monkeypatch.setattr(hub, "resolve", offline)
    handle = "https://tfhub.dev/google/imagenet/mobilenet_v2_100_224/feature_vector/5"
    with pytest.raises(BackboneUnavailable) as info:
        tltf.load_backbone(f"hub:{handle}")
    message = str(info.value)
    assert handle in message and "TFHUB_CACHE_DIR" in message and "KAGGLEHUB_CACHE" in message
    assert "hub:/path/to/module" in message
    assert "urllib" not in "".join(traceback.format_exception(info.value))


def test_tf_text_ops_are_registered_on_demand(tmp_path):
    """A preprocessor with tf-text ops loads in a process that has not imported tensorflow_text."""
    import subprocess
    import sys

    import tensorflow_text as text

    class Tokenizer(tf.Module):
        def __init__(self):
            self.tokenizer = text.WhitespaceTokenizer()

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
        def __call__(self, strings):
            return self.tokenizer.tokenize(strings).to_tensor("")

    folder = str(tmp_path / "tf_text_module")
    tf.saved_model.save(Tokenizer(), folder)
    code = (
        "import sys; from tltf.layers import load_saved_model\n"
        "assert 'tensorflow_text' not in sys.modules\n"
        f"print(load_saved_model({folder!r})(['a b']).numpy().tolist())"
    )
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "[[b'a', b'b']]"


def test_missing_folder_is_a_spec_error(tmp_path):
    with pytest.raises(SpecError, match="no folder"):
        tltf.load_backbone(f"hub:{tmp_path}/nothing")
    with pytest.raises(SpecError, match="saved_model.pb"):
        tltf.load_backbone(f"hub:{tmp_path}")
