"""Cached backbone features: same head as without the cache, reuse, invalidation, atomic writes."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
import zlib

import numpy as np
import pytest

import tltf
from tltf import feature_cache
from tltf.errors import SpecError
from tltf.feature_cache import store

CLASSES = ["games", "math", "sound"]


@pytest.fixture
def extractions(monkeypatch) -> list:
    """Records each backbone pass (`_extract` call): the number of examples it ran."""
    calls: list[int] = []
    real = store._extract

    def counting(model, data, *args, **kwargs):
        calls.append(feature_cache.num_examples(data))
        return real(model, data, *args, **kwargs)

    monkeypatch.setattr(store, "_extract", counting)
    return calls


def text_model(tiny_bert_dir: str, freeze: str = "all"):
    """A seeded tiny BERT classifier without dropout.

    Without the cache a frozen backbone still runs its own dropout in `fit`, while
    cached features are inference-mode ones; and head dropout masks depend on the
    order of examples in a batch, which the two paths draw differently. Without
    dropout both paths compute the same.
    """
    import keras

    keras.utils.set_random_seed(0)
    model = tltf.build(
        f"keras_hub:{tiny_bert_dir}",
        class_names=CLASSES,
        freeze=freeze,
        sequence_length=16,
        head={"dropout": 0.0},
    )
    for layer in tltf.metadata.backbone_model(model)._flatten_layers():
        if isinstance(layer, keras.layers.Dropout):
            layer.rate = 0.0
    return model


def image_model():
    return tltf.build(
        "keras:MobileNetV2", class_names=["a", "b"], weights=None, input_shape=(32, 32, 3)
    )


def test_cached_head_equals_uncached_head(tmp_path, tiny_bert_dir, tiny_text_data, extractions):
    texts, labels = tiny_text_data
    train = tltf.data.from_arrays(texts, labels)
    val = (texts[:9], labels[:9])
    heads, logs = [], []
    for cache in (False, None):
        model = text_model(tiny_bert_dir, freeze="top:1")
        initial = model.get_layer("logits").kernel.numpy()
        history = tltf.fine_tune(
            model,
            train,
            validation_data=val,
            epochs=0,  # only the head-only warm-up of a two-phase run
            freeze_epochs=3,
            batch_size=len(texts),  # full batches: the order of examples cannot matter
            verbose=0,
            cache_features=cache,
            cache_dir=str(tmp_path),
        )
        heads.append([w.numpy() for w in model.get_layer("logits").weights])
        logs.append(history.history)
        assert not np.allclose(initial, heads[-1][0])
        assert history.model is model and history.epoch == [0, 1, 2]
        assert tltf.info(model)["freeze"] == "top:1"
    assert extractions == [36, 9]  # training and validation data, once each
    for uncached, cached in zip(*heads, strict=True):
        np.testing.assert_allclose(cached, uncached, atol=1e-5)
    for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
        np.testing.assert_allclose(logs[1][key], logs[0][key], rtol=1e-4, atol=1e-5)


def test_shards_keep_the_data_order_after_length_sorting(
    tmp_path, tiny_bert_dir, tiny_text_data, monkeypatch
):
    import keras
    import tensorflow as tf

    texts, labels = tiny_text_data
    y = np.array([CLASSES.index(c) for c in labels])
    model = text_model(tiny_bert_dir)
    monkeypatch.setattr(store, "SHARD_BYTES", 16 * 4 * 10)  # 10 rows of 16 floats
    entry = feature_cache.cached_features(
        model, (texts, y), batch_size=5, cache_dir=str(tmp_path), verbose=False
    )
    assert [s["rows"] for s in entry.manifest["shards"]] == [10, 10, 10, 6]
    features, got_y = (np.concatenate(part) for part in zip(*entry.dataset(7), strict=True))
    direct = keras.Model(model.input, model.get_layer("tltf_info").output)
    want = direct.predict_on_batch(tf.constant(texts))  # in order, padded to the longest
    np.testing.assert_array_equal(got_y, y)
    np.testing.assert_allclose(features, want, atol=1e-5)
    for budget in (store.SHUFFLE_BYTES, 16 * 4 * 10):  # all in memory; streamed shards
        monkeypatch.setattr(store, "SHUFFLE_BYTES", budget)
        shuffled = np.concatenate([b.numpy() for _, b in entry.dataset(7, shuffle=True, seed=1)])
        assert sorted(shuffled.tolist()) == sorted(y.tolist()) and shuffled.tolist() != y.tolist()


def test_reuse_and_invalidation(tmp_path, tiny_bert_dir, tiny_text_data, extractions, capsys):
    texts, labels = tiny_text_data
    cache = dict(cache_dir=str(tmp_path), batch_size=8)
    model = text_model(tiny_bert_dir)
    tltf.fine_tune(model, (texts, labels), epochs=1, verbose=0, **cache)
    tltf.fine_tune(model, (texts, labels), epochs=1, verbose=2, **cache)
    assert extractions == [36] and "reused" in capsys.readouterr().out

    def features(model, x, y):
        return feature_cache.cached_features(model, (x, y), verbose=False, **cache).path

    first = features(text_model(tiny_bert_dir), texts, labels)
    assert extractions == [36]  # a new model with the same backbone weights reuses it
    assert features(model, [*texts[:-1], texts[-1] + " game"], labels) != first
    assert features(model, texts, labels[::-1]) != first  # labels are part of the key
    assert extractions == [36, 36, 36]

    backbone = tltf.metadata.backbone_model(model)
    kernel = next(w for w in backbone.weights if w.path.endswith("kernel"))
    kernel.assign(kernel.numpy() + 0.01)  # the backbone changed since build
    tltf.fine_tune(model, (texts, labels), epochs=1, verbose=0, **cache)
    assert extractions == [36, 36, 36, 36]
    assert len(os.listdir(tmp_path)) == 4


def test_image_files_cache_and_key_on_content(tmp_path, extractions, capsys):
    import keras

    from tltf.batches import to_tf_dataset

    folder = tmp_path / "images"
    rng = np.random.default_rng(0)
    for cls in ("a", "b"):
        (folder / cls).mkdir(parents=True)
        for i in range(3):
            pixels = rng.integers(0, 256, (20 + i, 24, 3), dtype=np.uint8)
            keras.utils.save_img(str(folder / cls / f"{i}.png"), pixels)
    data = tltf.data.from_directory(str(folder), verbose=False)
    model = image_model()
    tltf.fine_tune(model, data, epochs=1, batch_size=4, verbose=1, cache_dir=str(tmp_path / "c"))
    assert extractions == [6]
    assert "tltf: features of 6 training examples: 6/6" in capsys.readouterr().out

    entry = feature_cache.cached_features(model, data, cache_dir=str(tmp_path / "c"))
    assert extractions == [6] and entry.rows == 6
    features, y = (np.concatenate(part) for part in zip(*entry.dataset(4), strict=True))
    direct = keras.Model(model.input, model.get_layer("tltf_info").output)
    (x, want_y), *_ = to_tf_dataset(data, model, 6, training=False)
    np.testing.assert_allclose(features, direct.predict_on_batch(x), rtol=1e-4, atol=1e-9)
    np.testing.assert_array_equal(y, want_y)

    key = feature_cache.cache_key(model, data)
    os.utime(data.x[0], ns=(1, 1))
    assert feature_cache.cache_key(model, data) == key  # same content, same entry
    stat = os.stat(data.x[1])
    other = rng.integers(0, 256, (21, 24, 3), dtype=np.uint8)
    keras.utils.save_img(data.x[1], other)  # new pixels ...
    os.truncate(data.x[1], stat.st_size)  # ... at the old size and mtime
    os.utime(data.x[1], ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert feature_cache.cache_key(model, data) != key


def test_a_damaged_shard_is_reported_and_extracted_again(
    tmp_path, tiny_bert_dir, tiny_text_data, extractions, capsys
):
    texts, labels = tiny_text_data
    model = text_model(tiny_bert_dir)
    entry = feature_cache.cached_features(model, (texts, labels), cache_dir=str(tmp_path))
    good, _ = entry.arrays()
    shard = os.path.join(entry.path, entry.manifest["shards"][0]["features"])
    for garbage in (
        np.random.default_rng(0).bytes(os.path.getsize(shard)),  # same size, other bytes
        np.full(good.size, np.nan, good.dtype).tobytes(),  # NaN, checksum made to match
    ):
        with open(shard, "wb") as fh:
            fh.write(garbage)
        if np.isnan(np.frombuffer(garbage, good.dtype)).all():
            manifest = json.load(open(os.path.join(entry.path, "manifest.json")))
            manifest["shards"][0]["features_crc32"] = zlib.crc32(garbage)
            json.dump(manifest, open(os.path.join(entry.path, "manifest.json"), "w"))
        capsys.readouterr()
        entry = feature_cache.cached_features(model, (texts, labels), cache_dir=str(tmp_path))
        said = capsys.readouterr().out
        assert "is damaged" in said and "extracting again" in said
        assert ("checksum differs" in said) != ("NaN" in said)
        np.testing.assert_allclose(entry.arrays()[0], good, rtol=1e-5, atol=1e-6)
    assert extractions == [36, 36, 36]


def test_interrupted_write_is_not_reused(
    tmp_path, tiny_bert_dir, tiny_text_data, extractions, monkeypatch
):
    texts, labels = tiny_text_data
    model = text_model(tiny_bert_dir)
    monkeypatch.setattr(store, "SHARD_BYTES", 16 * 4 * 10)
    real_write = store.write_atomically
    written: list[str] = []

    def failing(path, payload):
        written.append(path)
        if len(written) == 3:  # after the first shard's two files
            raise OSError("disk full")
        real_write(path, payload)

    monkeypatch.setattr(store, "write_atomically", failing)
    with pytest.raises(OSError, match="disk full"):
        feature_cache.cached_features(model, (texts, labels), cache_dir=str(tmp_path))
    assert os.listdir(tmp_path) == []  # the temporary entry is removed

    monkeypatch.setattr(store, "write_atomically", real_write)
    entry = feature_cache.cached_features(model, (texts, labels), cache_dir=str(tmp_path))
    assert extractions == [36, 36] and entry.rows == 36


KILL_SCRIPT = textwrap.dedent(
    """
    import os, signal, sys
    import numpy as np
    import tltf
    from tltf import feature_cache
    from tltf.feature_cache import store

    folder, cache_dir = sys.argv[1], sys.argv[2]
    texts = ["game play score", "algebra number", "sound audio mixer"] * 12
    model = tltf.build(f"keras_hub:{folder}", class_names=["a", "b"], sequence_length=16)
    real_write, count = store.write_atomically, []

    def killing(path, payload):
        real_write(path, payload)
        count.append(path)
        if len(count) == 3:  # the second shard is half written
            os.kill(os.getpid(), signal.SIGKILL)

    store.write_atomically = killing
    store.SHARD_BYTES = 16 * 4 * 10
    print(feature_cache.cache_key(model, (texts, np.arange(36) % 2)), flush=True)
    feature_cache.cached_features(model, (texts, np.arange(36) % 2), cache_dir=cache_dir)
    """
)


def test_killed_write_is_not_reused(tmp_path, tiny_bert_dir, extractions):
    cache_dir = tmp_path / "cache"
    proc = subprocess.run(
        [sys.executable, "-c", KILL_SCRIPT, tiny_bert_dir, str(cache_dir)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == -9, proc.stderr[-2000:]
    key = proc.stdout.split()[0]
    (left,) = os.listdir(cache_dir)
    assert left.startswith(f".tmp-{key}-") and "COMPLETE" not in os.listdir(cache_dir / left)
    assert store._load_entry(str(cache_dir / key)) is None

    model = tltf.build(f"keras_hub:{tiny_bert_dir}", class_names=["a", "b"], sequence_length=16)
    texts = ["game play score", "algebra number", "sound audio mixer"] * 12
    data = (texts, np.arange(36) % 2)
    assert feature_cache.cache_key(model, data) == key
    entry = feature_cache.cached_features(model, data, cache_dir=str(cache_dir), verbose=False)
    assert extractions == [36] and os.listdir(cache_dir) == [key]  # stale temporary removed
    with open(os.path.join(entry.path, "manifest.json")) as fh:
        assert json.load(fh)["rows"] == 36


def test_what_turns_the_cache_off(tmp_path, tiny_bert_dir, tiny_text_data, extractions):
    import keras
    import tensorflow as tf

    texts, labels = tiny_text_data
    model = text_model(tiny_bert_dir)
    why = feature_cache.why_not_cached
    assert why(model, (texts, labels)) == ""

    ds = tf.data.Dataset.from_tensor_slices((texts, [CLASSES.index(c) for c in labels])).batch(8)
    assert "only a tltf.data.Dataset or (x, y) arrays" in why(model, (texts, labels), ds)
    saver = keras.callbacks.ModelCheckpoint(str(tmp_path / "m.keras"))
    assert "ModelCheckpoint" in why(model, (texts, labels), callbacks=[saver])
    assert why(model, (texts, labels), callbacks=[keras.callbacks.EarlyStopping()]) == ""
    scalars = keras.callbacks.TensorBoard(str(tmp_path / "logs"), write_graph=False)
    assert why(model, (texts, labels), callbacks=[scalars]) == ""
    graph = keras.callbacks.TensorBoard(str(tmp_path / "logs"))
    assert "TensorBoard" in why(model, (texts, labels), callbacks=[graph])
    with pytest.raises(SpecError, match="cache_features=True, but .*ModelCheckpoint"):
        tltf.fine_tune(model, (texts, labels), callbacks=[saver], cache_features=True, verbose=0)

    tltf.set_freeze(model, "top:1")
    assert "the backbone trains" in why(model, (texts, labels))
    tltf.set_freeze(model, "all")

    # Augmentation between the inputs and the backbone: random in training.
    image = image_model()
    inputs = keras.Input(shape=(32, 32, 3))
    x = tltf.data.augmentation_layers("light", seed=0)(inputs)
    for name in ("image_preprocessing", "backbone", "tltf_info", "head_dropout", "logits"):
        x = image.get_layer(name)(x)
    augmented = keras.Model(inputs, x)
    pixels = np.zeros((4, 32, 32, 3), "float32")
    reason = why(augmented, (pixels, [0, 1, 0, 1]))  # layer names get a counter suffix
    assert re.search(r"layer 'random_flip(_\d+)?' before the backbone is random", reason)
    assert why(image, (pixels, [0, 1, 0, 1])) == ""
    assert extractions == []
    with pytest.raises(SpecError, match="augmentation"):
        tltf.fine_tune(augmented, (pixels, [0, 1, 0, 1]), cache_features=True, verbose=0)


def test_cached_text_model_exports_and_serves_any_length(tmp_path, tiny_bert_dir, tiny_text_data):
    import tensorflow as tf

    texts, labels = tiny_text_data
    model = text_model(tiny_bert_dir)
    tltf.fine_tune(model, (texts, labels), epochs=2, verbose=0, cache_dir=str(tmp_path / "c"))
    path = tltf.export(model, str(tmp_path / "export" / "topics"))
    served = tf.saved_model.load(path).signatures["serving_default"]
    inputs = ["", "game", " ".join(["music algebra player"] * 400)]  # 1200 words, length 16
    scores = served(tf.constant(inputs))["scores"].numpy()
    want = tf.nn.softmax(model(np.array(inputs))).numpy()
    np.testing.assert_allclose(scores, want, atol=1e-4)


def test_evaluate_sorts_texts_by_length_and_reports_the_same(tiny_bert_dir, tiny_text_data):
    import tensorflow as tf

    from tltf.evaluation import classification_report

    texts, labels = tiny_text_data
    model = text_model(tiny_bert_dir)
    x, y = feature_cache.by_length((texts, labels))
    assert [len(t) for t in x] == sorted(len(t) for t in texts)
    assert sorted(zip(x, y, strict=True)) == sorted(zip(texts, labels, strict=True))
    report = tltf.evaluate(model, (texts, labels), batch_size=8)
    predicted = np.argmax(model.predict_on_batch(tf.constant(texts)), axis=-1)
    truth = np.array([CLASSES.index(c) for c in labels])
    want = classification_report(truth, predicted, CLASSES)
    np.testing.assert_array_equal(report.confusion, want.confusion)
