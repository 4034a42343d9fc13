"""tltf.distribute in one process: strategy choice, precision, pre-flight, chief, resume state."""

from __future__ import annotations

import json
import os
from types import SimpleNamespace

import numpy as np
import pytest
import tensorflow as tf

import tltf
from tltf import distribute, runs
from tltf.distribute import Environment, choose, keras_compat, precision_policy
from tltf.errors import DataError, SpecError

TWO_WORKERS = {
    "cluster": {"worker": ["127.0.0.1:1", "127.0.0.1:2"]},
    "task": {"type": "worker", "index": 0},
}


class FakeTPU(tf.distribute.TPUStrategy):
    """A TPUStrategy as preflight sees it, without a TPU: its master address and core count."""

    def __init__(self, master: str = "grpc://10.0.0.2:8470", replicas: int = 8) -> None:
        self._master, self._replicas = master, replicas

    @property
    def num_replicas_in_sync(self) -> int:
        return self._replicas

    @property
    def cluster_resolver(self):
        return SimpleNamespace(master=lambda: self._master)


def fake_strategy(*devices: str):
    return SimpleNamespace(extended=SimpleNamespace(worker_devices=devices))


@pytest.mark.parametrize(
    "env, expected",
    [
        (Environment(), "default"),
        (Environment(gpus=((8, 0),)), "default"),
        (Environment(gpus=((8, 0), (8, 0))), "mirrored"),
        (Environment(tf_config=TWO_WORKERS, gpus=((8, 0), (8, 0))), "multi_worker"),
        (Environment(tf_config={**TWO_WORKERS, "cluster": {"worker": ["a:1"]}}), "default"),
        (Environment(tpu="local", tf_config=TWO_WORKERS, gpus=((8, 0),) * 2), "tpu"),
        (Environment(tpu="grpc://10.0.0.2:8470"), "tpu"),
    ],
)
def test_auto_picks_tpu_then_workers_then_gpus(env, expected):
    assert choose("auto", env) == expected


def test_explicit_strategy_names_and_their_errors():
    assert choose("mirrored", Environment()) == "mirrored"
    assert choose("cpu", Environment(gpus=((8, 0),))) == "cpu"
    with pytest.raises(SpecError, match="no TPU was found"):
        choose("tpu", Environment())
    with pytest.raises(SpecError, match="no GPU"):
        choose("gpu", Environment())
    with pytest.raises(SpecError, match="strategy='parallel'"):
        choose("parallel", Environment())


def test_detect_reads_tpu_variables_and_tf_config(monkeypatch):
    monkeypatch.delenv("TPU_NAME", raising=False)
    monkeypatch.setenv("COLAB_TPU_ADDR", "10.0.0.2:8470")
    monkeypatch.setenv("TF_CONFIG", json.dumps(TWO_WORKERS))
    env = Environment.detect()
    assert env.tpu == "grpc://10.0.0.2:8470" and env.workers == 2 and env.gpus == ()
    monkeypatch.setenv("TPU_NAME", "my-tpu")
    assert Environment.detect().tpu == "my-tpu"
    assert Environment.detect(tpu="local").tpu == "local"
    monkeypatch.setenv("TF_CONFIG", "{not json")
    with pytest.raises(SpecError, match="TF_CONFIG is not valid JSON"):
        Environment.detect()


def test_resolve_on_this_cpu():
    default = tf.distribute.get_strategy()
    assert distribute.resolve("auto", env=Environment()) is default
    one = distribute.resolve("cpu", env=Environment())
    assert isinstance(one, tf.distribute.OneDeviceStrategy)
    assert distribute.resolve("cpu", env=Environment()) is one  # created once
    with one.scope():
        assert distribute.resolve("auto") is one
    assert distribute.resolve(one) is one


@pytest.mark.parametrize(
    "strategy, env, expected",
    [
        (FakeTPU(), Environment(), "mixed_bfloat16"),
        (fake_strategy("/gpu:0", "/gpu:1"), Environment(gpus=((7, 0), (8, 6))), "mixed_float16"),
        (fake_strategy("/gpu:0", "/gpu:1"), Environment(gpus=((7, 0), (6, 1))), "float32"),
        (fake_strategy("/job:worker/task:0/device:CPU:0"), Environment(), "float32"),
        (tf.distribute.get_strategy(), Environment(gpus=((9, 0),)), "mixed_float16"),
        (tf.distribute.get_strategy(), Environment(), "float32"),
    ],
)
def test_auto_precision(strategy, env, expected):
    assert precision_policy("auto", strategy, env) == expected


def test_precision_names():
    assert precision_policy("bf16", env=Environment()) == "mixed_bfloat16"
    assert precision_policy("float16", env=Environment()) == "mixed_float16"
    with pytest.raises(SpecError, match="precision='half'"):
        precision_policy("half")


@pytest.mark.parametrize(
    "config, chief",
    [
        (None, True),
        (TWO_WORKERS, True),
        ({**TWO_WORKERS, "task": {"type": "worker", "index": 1}}, False),
        (
            {
                "cluster": {"chief": ["a:1"], "worker": ["b:1"]},
                "task": {"type": "worker", "index": 0},
            },
            False,
        ),
        (
            {
                "cluster": {"chief": ["a:1"], "worker": ["b:1"]},
                "task": {"type": "chief", "index": 0},
            },
            True,
        ),
        ({**TWO_WORKERS, "task": {"type": "evaluator", "index": 0}}, False),
    ],
)
def test_is_chief(config, chief, monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    if config is not None:
        monkeypatch.setenv("TF_CONFIG", json.dumps(config))
    assert distribute.is_chief() is chief


def test_non_chief_writes_to_a_removed_temporary_folder(tmp_path, monkeypatch):
    seen = []

    @distribute.chief_only
    def writer(model, path):
        os.makedirs(path)
        seen.append(path)
        return path

    monkeypatch.setenv(
        "TF_CONFIG", json.dumps({**TWO_WORKERS, "task": {"type": "worker", "index": 1}})
    )
    assert writer(None, str(tmp_path / "out")) is None
    assert not (tmp_path / "out").exists() and not os.path.exists(seen[-1])
    monkeypatch.setenv("TF_CONFIG", json.dumps(TWO_WORKERS))
    assert writer(None, str(tmp_path / "out")) == str(tmp_path / "out")
    assert (tmp_path / "out").is_dir()


def _records(tmp_path, name="a.tfrecord"):
    path = str(tmp_path / name)
    with tf.io.TFRecordWriter(path) as writer:
        writer.write(b"x")
    return path


def test_preflight_refuses_local_files_on_a_tpu_node(tmp_path):
    node = FakeTPU()
    ds = tf.data.TFRecordDataset([_records(tmp_path)]).batch(8)
    with pytest.raises(DataError, match=r"local files .*a\.tfrecord.*GCS bucket"):
        distribute.preflight(ds, node)
    images = tf.data.Dataset.from_tensor_slices([str(tmp_path / "cat.png")]).map(tf.io.read_file)
    with pytest.raises(DataError, match="cat.png"):
        distribute.preflight(images.batch(8), node)
    assert distribute.preflight(tf.data.TFRecordDataset(["gs://b/a.tfrecord"]).batch(8), node) == []
    assert distribute.preflight(ds, FakeTPU(master="")) == []  # a TPU VM reads its own disk


def test_preflight_refuses_python_in_the_pipeline_on_a_tpu_node():
    def gen():
        yield np.zeros(2, "float32")

    generated = tf.data.Dataset.from_generator(
        gen, output_signature=tf.TensorSpec([2], tf.float32)
    ).batch(8)
    with pytest.raises(DataError, match=r"Dataset.from_generator.*remote input host"):
        distribute.preflight(generated, FakeTPU())
    mapped = tf.data.Dataset.range(16).map(lambda x: tf.py_function(lambda v: v, [x], tf.int64))
    with pytest.raises(DataError, match=r"tf.py_function"):
        distribute.preflight(mapped.batch(8), FakeTPU())
    (warning,) = distribute.preflight(mapped.batch(8), FakeTPU(master="local"))
    assert "GIL" in warning


def test_preflight_checks_the_batch_divides_among_tpu_cores():
    ds = tf.data.Dataset.from_tensor_slices(np.zeros((40, 2), "float32"))
    with pytest.raises(DataError, match=r"batch size 10 .* 8 TPU cores.*batch_size=8"):
        distribute.preflight(ds.batch(10).prefetch(2), FakeTPU())
    assert distribute.preflight(ds.batch(16).map(lambda x: x * 2), FakeTPU()) == []
    with pytest.raises(DataError, match="batch size 12"):
        distribute.preflight(ds, FakeTPU(replicas=8), batch_size=12)
    assert distribute.preflight(ds.batch(10), fake_strategy("/cpu:0")) == []  # not a TPU


def test_shard_policy_follows_the_data_source(tmp_path):
    policy = tf.data.experimental.AutoShardPolicy

    def shard_policy(ds):
        return distribute.shard(ds).options().experimental_distribute.auto_shard_policy

    assert shard_policy(tf.data.Dataset.from_tensor_slices(np.zeros(8)).batch(2)) == policy.DATA
    assert shard_policy(tf.data.TFRecordDataset([_records(tmp_path)]).batch(2)) == policy.AUTO
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = policy.OFF
    explicit = tf.data.Dataset.range(4).with_options(options)
    assert shard_policy(explicit) == policy.OFF


def test_global_batch_size():
    assert distribute.global_batch_size(32, SimpleNamespace(num_replicas_in_sync=8)) == 256


def _image_model(**kwargs):
    return tltf.build(
        "keras:MobileNetV2",
        class_names=["a", "b"],
        weights=None,
        input_shape=(32, 32, 3),
        freeze="top:1",
        **kwargs,
    )


def test_build_records_precision_and_compiles_without_xla_on_cpu():
    import keras

    model = _image_model()
    meta = tltf.info(model)
    assert meta["precision"] == "float32" and meta["jit_compile"] == "auto"
    assert model.jit_compile is False
    assert distribute.compile_options(model) == {"jit_compile": False, "steps_per_execution": 1}
    assert distribute.patch_keras_fit(model) == []  # one replica: Keras' own fit works
    assert model.distribute_strategy is tf.distribute.get_strategy()
    assert keras.config.dtype_policy().name == "float32"


def test_mixed_float16_scales_the_loss_and_keeps_logits_float32():
    import keras

    model = _image_model(precision="mixed_float16")
    assert keras.config.dtype_policy().name == "float32"  # the global policy is restored
    backbone = tltf.metadata.backbone_model(model)
    assert backbone.layers[-1].compute_dtype == "float16"
    assert model.get_layer("logits").compute_dtype == "float32"
    assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    tltf.compile_model(model, lr=1e-3)  # fine_tune's recompiles keep the loss scaling
    assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    assert model.predict(np.zeros((2, 32, 32, 3), "float32"), verbose=0).dtype == np.float32


def test_mixed_bfloat16_trains_and_exports_float32(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (16, 32, 32, 3)).astype("float32")
    model = _image_model(precision="bf16")
    history = tltf.fine_tune(
        model, tf.data.Dataset.from_tensor_slices((x, np.arange(16) % 2)).batch(8),
        epochs=1, freeze_epochs=0, verbose=0,
    )  # fmt: skip
    assert np.isfinite(history.history["loss"]).all()
    path = tltf.export(model, str(tmp_path / "bf16"))
    loaded = tf.saved_model.load(path)
    scores = loaded.signatures["serving_tensor"](images=tf.constant(x[:2]))["scores"]
    assert scores.dtype == tf.float32 and np.allclose(scores.numpy().sum(axis=1), 1, atol=1e-3)


def test_text_models_refuse_xla(tiny_bert_dir):
    with pytest.raises(SpecError, match="tokenizer's string ops cannot be XLA-compiled"):
        tltf.build(
            f"keras_hub:{tiny_bert_dir}",
            class_names=["a", "b"],
            sequence_length=16,
            jit_compile=True,
        )
    with pytest.raises(SpecError, match="jit_compile='yes'"):
        _image_model(jit_compile="yes")


def test_fit_workaround_is_version_guarded(monkeypatch):
    strategy = SimpleNamespace(num_replicas_in_sync=2)
    model = SimpleNamespace(distribute_strategy=strategy)
    monkeypatch.setattr(keras_compat, "KERAS_FIT_BUG_VERSIONS", ((3, 0), (3, 16)))
    assert distribute.patch_keras_fit(model) == ["first_batch"]
    assert model._maybe_symbolic_build.__func__ is keras_compat._symbolic_build_from_local_batch
    monkeypatch.setattr(keras_compat, "KERAS_FIT_BUG_VERSIONS", ((3, 0), (3, 15)))
    assert distribute.patch_keras_fit(SimpleNamespace(distribute_strategy=strategy)) == []


def test_run_dir_of_another_model_is_refused(tmp_path):
    model = _image_model()
    state = {"model": {"backbone": "keras:ResNet50", "class_names": ["x"]}, "phases": []}
    (tmp_path / runs.STATE_FILE).write_text(json.dumps(state))
    with pytest.raises(SpecError, match="holds a run of another model.*ResNet50"):
        runs.Run(str(tmp_path), model)


def test_shard_only_where_workers_split_the_input():
    ds = tf.data.Dataset.range(4)
    assert distribute.shard(ds, tf.distribute.get_strategy()) is ds
    policy = distribute.shard(ds, FakeTPU()).options().experimental_distribute.auto_shard_policy
    assert policy == tf.data.experimental.AutoShardPolicy.DATA


def test_run_dir_with_other_phases_is_refused(tmp_path):
    model = _image_model()
    run = runs.Run(str(tmp_path), model)
    run.state.update(phases=["0-1"], weights="0-1")
    run.write_state()
    again = runs.Run(str(tmp_path), model)
    data = tf.data.Dataset.from_tensor_slices((np.zeros((2, 32, 32, 3)), [0, 1])).batch(2)
    with pytest.raises(SpecError, match=r"phases \['0-1'\] do not lead to epochs 0-3"):
        again.fit(model, data, initial_epoch=0, epochs=3)
