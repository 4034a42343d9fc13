"""Which stock TF Serving releases load an export (tltf.serving_ops), and the core-ops packer
that lets text exports load on the releases that link tensorflow-text 2.12.1 (tltf.packing)."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import tensorflow as tf
from cli_util import run_cli

import tltf
from tltf.errors import ExportError
from tltf.packing import CorePacker, round_robin_trim
from tltf.serving_ops import (
    SERVING_RELEASES,
    check_serving,
    graph_ops,
    known_ops,
    missing_ops,
    serving_versions,
)

RELEASES = list(SERVING_RELEASES)


def test_round_robin_trim_matches_tf_text():
    import tensorflow_text as tf_text

    rng = np.random.default_rng(0)
    for _ in range(60):
        rows = rng.integers(1, 5)
        segments = [
            tf.ragged.constant(
                [list(range(rng.integers(0, 9))) for _ in range(rows)],
                dtype=tf.int32,
                ragged_rank=1,
            )
            for _ in range(rng.integers(1, 4))
        ]
        budget = int(rng.integers(0, 12))
        expected = tf_text.RoundRobinTrimmer(budget).trim(segments)
        got = round_robin_trim(segments, budget)
        assert [g.to_list() for g in got] == [e.to_list() for e in expected], budget


def test_text_models_pack_with_core_ops_like_keras_hub(tiny_bert_dir):
    from keras_hub.layers import MultiSegmentPacker

    model = tltf.build(
        f"keras_hub:{tiny_bert_dir}", task="text_pair", class_names=["a", "b"], sequence_length=8
    )
    pre = model.get_layer("text_preprocessor")
    first = tf.constant(["game play player score level math", "", "math"])
    second = tf.constant(["sound audio music", "play the game now", ""])
    features = pre((first, second))
    packer = pre.preprocessor.packer
    assert type(packer) is CorePacker
    stock = MultiSegmentPacker.from_config(packer.get_config())
    tokens = pre.preprocessor.tokenizer
    ids, segment_ids = stock((tokens(first), tokens(second)))
    width = features["token_ids"].shape[1]
    np.testing.assert_array_equal(features["token_ids"], ids[:, :width])
    np.testing.assert_array_equal(features["segment_ids"], segment_ids[:, :width])


def _old_style_export(folder: str) -> str:
    """A SavedModel that trims with tf-text's RoundRobinTrim op, as tltf exports did before."""
    import tensorflow_text as tf_text

    module = tf.Module()

    @tf.function(input_signature=[tf.RaggedTensorSpec([None, None], tf.int32)])
    def trim(x):
        return tf_text.RoundRobinTrimmer(4).trim([x])[0].to_tensor()

    module.trim = trim
    tf.saved_model.save(module, folder, signatures={"serving_default": trim})
    return folder


def test_an_op_the_release_lacks_is_named_with_the_oldest_release_that_has_it(tmp_path):
    folder = _old_style_export(str(tmp_path / "old"))
    assert "TFText>RoundRobinTrim" in graph_ops(folder)
    assert missing_ops(folder, "2.19") == {
        "TFText>RoundRobinTrim": "not registered (the oldest stock release that has it: 2.20)"
    }
    assert missing_ops(folder, "2.20.0") == {}  # patch releases link the same ops
    assert serving_versions(folder) == ["2.20"]
    with pytest.raises(
        ExportError, match=r"(?s)TF Serving 2\.16 image cannot load .*RoundRobinTrim"
    ):
        check_serving(folder, "2.16")


def test_an_op_attribute_newer_than_the_release_is_named(tmp_path):
    """MatMul's grad_a attribute is newer than TF 2.14; a graph that sets it needs a newer server."""
    introduced = next(v for v in RELEASES if "grad_a" in known_ops(v)["MatMul"])
    assert introduced != RELEASES[0]
    module = tf.Module()

    @tf.function(input_signature=[tf.TensorSpec([2, 2], tf.float32)])
    def f(x):
        return tf.raw_ops.MatMul(a=x, b=x, grad_a=True)

    module.f = f
    tf.saved_model.save(module, str(tmp_path), signatures={"serving_default": f})
    assert missing_ops(str(tmp_path), RELEASES[0]) == {
        "MatMul": f"attribute grad_a is newer than this release's op (the oldest stock release "
        f"that has it: {introduced})"
    }
    assert serving_versions(str(tmp_path)) == RELEASES[RELEASES.index(introduced) :]


def test_unknown_release_is_a_clear_error(tmp_path):
    with pytest.raises(ExportError, match=r"serving='2\.9'.*2\.14, 2\.15.*2\.20"):
        missing_ops(str(tmp_path), "2.9")


def test_export_with_serving_refuses_and_publishes_nothing(tmp_path, tiny_bert_dir, monkeypatch):
    """A text export loads on every known release; an export that needs a newer one is refused."""
    model = tltf.build(f"keras_hub:{tiny_bert_dir}", class_names=["a", "b"], sequence_length=16)
    folder = tltf.export(model, str(tmp_path / "topics"), serving="2.14")
    manifest = json.load(open(os.path.join(folder, "assets.extra", "tltf.json")))
    assert manifest["serving_versions"] == RELEASES

    import tltf.serving_ops as serving_ops

    real = serving_ops._known

    def without_case_fold(release):  # as if CaseFoldUTF8 came with 2.20
        known = dict(real(release))
        if release != "2.20":
            known.pop("CaseFoldUTF8")
        return known

    monkeypatch.setattr(serving_ops, "_known", without_case_fold)
    with pytest.raises(
        ExportError, match=r"(?s)2\.19 image cannot load.*CaseFoldUTF8: not registered"
    ):
        tltf.export(model, str(tmp_path / "topics"), serving="2.19")
    assert sorted(os.listdir(tmp_path / "topics")) == ["1"]


def test_cli_serving_version(tmp_path, tiny_bert_dir):
    import keras

    model = tltf.build(f"keras_hub:{tiny_bert_dir}", class_names=["a", "b"], sequence_length=16)
    run = tmp_path / "run"
    run.mkdir()
    keras.saving.save_model(model, str(run / "model.keras"))
    common = ["export", str(run), "--export-dir", str(tmp_path / "export"), "--name", "t"]
    code, out, err = run_cli([*common, "--serving-version", "2.15"])
    assert code == 0, err
    assert out.strip().endswith(os.path.join("t", "1"))
    code, _, err = run_cli([*common, "--serving-version", "1.15"])
    assert code == 2 and "serving='1.15'" in err and "2.14" in err
    assert sorted(os.listdir(tmp_path / "export" / "t")) == ["1"]


def test_export_loads_in_a_session_like_tf_serving(tmp_path, tiny_bert_dir):
    """TF Serving's C++ loader runs the graph's own variable and restore nodes in a Session;
    with `debug_name` dropped (TF Serving 2.14 refuses it) the scores are the model's."""
    from tensorflow.python.saved_model import fingerprinting_utils

    texts = ["play the game", "algebra number solver"]
    model = tltf.build(f"keras_hub:{tiny_bert_dir}", class_names=["a", "b"], sequence_length=16)
    folder = tltf.export(model, str(tmp_path / "topics"))
    assert not any("debug_name" in attrs for attrs in graph_ops(folder).values())
    assert fingerprinting_utils.singleprint_from_saved_model_proto(
        folder
    ) == fingerprinting_utils.singleprint_from_fingerprint_proto(folder)
    expected = tf.saved_model.load(folder).signatures["serving_default"](text=tf.constant(texts))
    with tf.Graph().as_default(), tf.compat.v1.Session() as session:
        graph = tf.compat.v1.saved_model.load(session, ["serve"], folder)
        signature = graph.signature_def["serving_default"]
        scores = session.run(
            signature.outputs["scores"].name, {signature.inputs["text"].name: texts}
        )
    np.testing.assert_allclose(scores, expected["scores"].numpy(), atol=1e-6)
