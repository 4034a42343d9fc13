"""LoRA adapters as a freeze policy (`tltf.lora`): what trains, export merging, files."""

from __future__ import annotations

import collections
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import tltf
from tltf.freezing import trainable_groups
from tltf.lora import LoraPolicy, adapted_layers, adapter_count, parse

CLASSES = ["games", "math", "sound"]
ADAPTER_NAMES = ("lora_kernel_a", "lora_kernel_b")


def _build(tiny_bert_dir, freeze="lora:4", **kwargs):
    import keras

    keras.utils.set_random_seed(0)
    return tltf.build(
        f"keras_hub:{tiny_bert_dir}",
        class_names=CLASSES,
        freeze=freeze,
        sequence_length=16,
        **kwargs,
    )


def _values(model):
    return {w.path: w.numpy().copy() for w in model.weights}


def _scores(model, texts):
    import tensorflow as tf

    return model.predict(tf.constant(texts), verbose=0)


@pytest.mark.parametrize(
    "text, policy",
    [
        ("lora:8", LoraPolicy(8)),
        ("lora:8:2", LoraPolicy(8, 2)),
        ("lora:4:all:query+key+value", LoraPolicy(4, None, ("query", "key", "value"))),
        ("lora:4:1:dense", LoraPolicy(4, 1, ("dense",))),
    ],
)
def test_policies_parse_and_print_back(text, policy):
    assert parse(text) == policy
    assert str(policy) == text
    assert parse(str(policy)) == policy


@pytest.mark.parametrize(
    "bad", ["lora:", "lora:0", "lora:x", "lora:8:two", "lora:8:1:", "lora:1:2:3:4"]
)
def test_malformed_policies_are_refused_with_the_grammar(bad):
    with pytest.raises(tltf.SpecError, match="lora:RANK"):
        parse(bad)


def test_groups_of_a_policy():
    groups = ["embeddings", "layer_0", "layer_1"]
    assert trainable_groups("lora:8", groups) == groups
    assert trainable_groups("lora:8:1", groups) == ["layer_1"]
    with pytest.raises(tltf.SpecError, match="at most 3"):
        trainable_groups("lora:8:4", groups)


def test_only_the_adapters_and_the_head_train(tiny_bert_dir, tiny_text_data):
    model = _build(tiny_bert_dir)
    trainable = [w.path for w in model.trainable_weights]
    assert (
        sorted(p.split("/")[0] for p in trainable if "lora" in p)
        == ["transformer_layer_0"] * 4 + ["transformer_layer_1"] * 4
    )
    assert {p.rsplit("/", 2)[-2] for p in trainable if "lora" in p} == {"query", "value"}
    assert [p for p in trainable if "lora" not in p] == ["logits/kernel", "logits/bias"]
    # rank 4 on query and value (kernels [16, 2 heads, 8]) of 2 blocks: A [16, 2, 4], B [4, 8]
    assert adapter_count(model) == 2 * 2 * (16 * 2 * 4 + 4 * 8)

    before = _values(model)
    tltf.fine_tune(model, tiny_text_data, epochs=2, freeze_epochs=1, lr=1e-2, verbose=0)
    after = _values(model)
    changed = {p for p in before if not np.array_equal(before[p], after[p])}
    adapters = {p for p in before if p.endswith(ADAPTER_NAMES)}
    assert {p for p in adapters if p.endswith("lora_kernel_b")} <= changed  # B starts at 0
    assert changed <= adapters | {"logits/kernel", "logits/bias"}  # every base kernel kept
    assert tltf.info(model).freeze == "lora:4"
    states = {row.split()[0]: row.split()[-1] for row in tltf.describe(model).splitlines()[2:]}
    assert states == {"embeddings": "no", "layer_0": "lora", "layer_1": "lora", "head": "yes"}


def test_top_n_groups_and_other_targets(tiny_bert_dir):
    model = _build(tiny_bert_dir, freeze="lora:2:1:query+key+attention_output")
    paths = sorted(layer.path for layer in adapted_layers(model))
    assert paths == [
        "transformer_layer_1/self_attention_layer/attention_output",
        "transformer_layer_1/self_attention_layer/key",
        "transformer_layer_1/self_attention_layer/query",
    ]


def test_a_backbone_without_the_target_layers_is_refused(tiny_bert_dir):
    with pytest.raises(tltf.SpecError, match="no layer named attn that takes LoRA"):
        _build(tiny_bert_dir, freeze="lora:4:all:attn")


def test_export_merges_the_deltas_into_a_plain_graph(tiny_bert_dir, tiny_text_data, tmp_path):
    import tensorflow as tf

    texts, _ = tiny_text_data
    model = _build(tiny_bert_dir)
    tltf.fine_tune(model, tiny_text_data, epochs=2, freeze_epochs=0, lr=1e-2, verbose=0)
    expected = tf.nn.softmax(_scores(model, texts[:6])).numpy()
    folder = tltf.export(model, str(tmp_path / "lora"), models_root=None)
    served = tf.saved_model.load(folder).signatures["serving_default"](tf.constant(texts[:6]))
    np.testing.assert_allclose(served["scores"].numpy(), expected, atol=1e-5)
    plain = tltf.export(
        _build(tiny_bert_dir, freeze="all"), str(tmp_path / "plain"), models_root=None
    )
    assert _products(folder) == _products(plain)  # no A @ B left in the served graph
    assert tltf.info(model).freeze == "lora:4"  # the model keeps its adapters
    assert all(layer.lora_enabled for layer in adapted_layers(model))
    np.testing.assert_allclose(
        tf.nn.softmax(_scores(model, texts[:6])).numpy(), expected, atol=1e-6
    )


def _products(folder: str) -> collections.Counter:
    """The matrix products among the nodes of a SavedModel's graphs."""
    from tensorflow.core.protobuf import saved_model_pb2

    proto = saved_model_pb2.SavedModel()
    with open(os.path.join(folder, "saved_model.pb"), "rb") as fh:
        proto.ParseFromString(fh.read())
    count: collections.Counter = collections.Counter()
    for graph in proto.meta_graphs:
        nodes = list(graph.graph_def.node)
        for function in graph.graph_def.library.function:
            nodes += list(function.node_def)
        count.update(n.op for n in nodes if n.op in ("MatMul", "BatchMatMulV2", "Einsum"))
    return count


def test_keras_file_round_trip_predicts_the_same_and_trains_on(
    tiny_bert_dir, tiny_text_data, tmp_path
):
    texts, _ = tiny_text_data
    model = _build(tiny_bert_dir)
    tltf.fine_tune(model, tiny_text_data, epochs=1, freeze_epochs=0, lr=1e-2, verbose=0)
    model.save(tmp_path / "m.keras")
    loaded = tltf.load_model(str(tmp_path / "m.keras"))
    np.testing.assert_allclose(_scores(loaded, texts[:6]), _scores(model, texts[:6]), atol=1e-5)
    assert sorted(w.path for w in loaded.trainable_weights) == sorted(
        w.path for w in model.trainable_weights
    )
    # Keras brings the adapters back as zeros (merged into the kernels); A is drawn again
    a = [w for w in loaded.weights if w.path.endswith("lora_kernel_a")]
    assert all(np.any(w.numpy()) for w in a)
    before = _values(loaded)
    tltf.fine_tune(loaded, tiny_text_data, epochs=1, freeze_epochs=0, lr=1e-2, verbose=0)
    after = _values(loaded)
    assert any(
        not np.array_equal(before[p], after[p]) for p in before if p.endswith("lora_kernel_b")
    )


def test_adapters_saved_alone_apply_to_a_fresh_model(tiny_bert_dir, tiny_text_data, tmp_path):
    texts, _ = tiny_text_data
    model = _build(tiny_bert_dir)
    tltf.fine_tune(model, tiny_text_data, epochs=2, freeze_epochs=1, lr=1e-2, verbose=0)
    path = tltf.save_adapters(model, str(tmp_path / "topics.lora.npz"))
    model.save(tmp_path / "m.keras")
    assert os.path.getsize(path) < os.path.getsize(tmp_path / "m.keras") / 5

    fresh = _build(tiny_bert_dir, freeze="all")
    assert not np.allclose(_scores(fresh, texts[:6]), _scores(model, texts[:6]), atol=1e-3)
    tltf.load_adapters(fresh, path)
    np.testing.assert_allclose(_scores(fresh, texts[:6]), _scores(model, texts[:6]), atol=1e-6)
    assert tltf.info(fresh).freeze == "lora:4"

    with pytest.raises(tltf.SpecError, match="class_names"):
        tltf.load_adapters(
            tltf.build(
                f"keras_hub:{tiny_bert_dir}", class_names=["a", "b", "c"], sequence_length=16
            ),
            path,
        )
    reloaded = tltf.load_model(str(tmp_path / "m.keras"))
    with pytest.raises(tltf.SpecError, match="merged into its kernels"):
        tltf.save_adapters(reloaded, str(tmp_path / "again.npz"))
    with pytest.raises(tltf.SpecError, match="lora:RANK policy"):
        tltf.save_adapters(_build(tiny_bert_dir, freeze="top:1"), "x.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(tltf.SpecError, match="junk.npz"):
        tltf.load_adapters(fresh, str(tmp_path / "junk.npz"))


def test_per_group_rates_and_gradual_unfreezing_reach_the_adapters(tiny_bert_dir, tiny_text_data):
    from tltf.training import _stages

    groups = ["embeddings", "layer_0", "layer_1"]
    assert _stages("lora:4", groups, 4, "gradual") == [
        ("lora:4:1", 1),
        ("lora:4:2", 1),
        ("lora:4", 2),
    ]
    model = _build(tiny_bert_dir, lr_decay={"layer_0": 0.0})
    before = _values(model)
    history = tltf.fine_tune(
        model, tiny_text_data, epochs=3, freeze_epochs=0, lr=1e-2, unfreeze="gradual", verbose=0
    )
    assert len(history.epoch) == 3
    after = _values(model)
    moved = {
        p.split("/")[0] for p in before if "lora" in p and not np.array_equal(before[p], after[p])
    }
    assert moved == {"transformer_layer_1"}  # layer_0's adapters at rate x0


def test_a_run_folder_keeps_the_adapters(tiny_bert_dir, tiny_text_data, tmp_path):
    texts, _ = tiny_text_data
    model = _build(tiny_bert_dir)
    run = tmp_path / "run"
    tltf.fine_tune(model, tiny_text_data, epochs=1, freeze_epochs=1, run_dir=str(run), verbose=0)
    assert sorted(os.listdir(run)) == [
        ".lock",  # the run folder's lock, free again
        "adapters.npz",
        "model.keras",
        "tltf_run.json",
        "weights-1-2.npz",
    ]
    fresh = tltf.load_adapters(_build(tiny_bert_dir, freeze="all"), str(run / "adapters.npz"))
    np.testing.assert_allclose(_scores(fresh, texts[:6]), _scores(model, texts[:6]), atol=1e-6)


MIRRORED = textwrap.dedent(
    """
    import json, sys
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import keras, numpy as np
    import tltf

    folder, texts, labels = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3])
    mirrored = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    keras.utils.set_random_seed(0)
    model = tltf.build(f"keras_hub:{folder}", class_names=sorted(set(labels)), freeze="lora:4",
                       sequence_length=16, strategy=mirrored)
    before = {w.path: w.numpy() for w in model.weights}
    tltf.fine_tune(model, (texts, labels), epochs=2, freeze_epochs=0, lr=1e-2, verbose=0)
    changed = sorted(w.path for w in model.weights if not np.array_equal(before[w.path], w.numpy()))
    adapters = [v for v in model.trainable_weights if "lora" in v.path]
    print(json.dumps({"changed": changed,
                      "mirrored": sorted({type(v.value).__name__ for v in adapters}),
                      "replicas": model.distribute_strategy.num_replicas_in_sync}))
    """
)


def test_adapters_train_under_mirrored_strategy(tiny_bert_dir, tiny_text_data):
    texts, labels = tiny_text_data
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.run(
        [sys.executable, "-c", MIRRORED, tiny_bert_dir, json.dumps(texts), json.dumps(labels)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["replicas"] == 2
    assert out["mirrored"] == ["MirroredVariable"]  # made in the strategy's scope
    assert {p for p in out["changed"] if not p.endswith(ADAPTER_NAMES)} == {
        "logits/kernel",
        "logits/bias",
    }
    assert any(p.endswith("lora_kernel_b") for p in out["changed"])
