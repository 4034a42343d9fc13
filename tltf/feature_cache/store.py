"""The disk store of cached features: keys, extraction, entries, and reading them back.

Layout of ``CACHE_DIR/<key>/``::

    manifest.json         rows, shapes, dtypes, the shards, what was extracted
    features-00000.bin    raw C-order rows (read with tf.io.decode_raw), ~64 MiB each
    labels-00000.bin
    COMPLETE              written last

An entry is written under ``.tmp-<key>-<pid>-<random>`` and renamed into place
after COMPLETE, so a killed run never leaves an entry that looks complete.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import sys
import time
import weakref
import zlib
from dataclasses import dataclass
from typing import Any

import numpy as np

from tltf.backbone import weights_fingerprint
from tltf.feature_cache.examples import example_lengths, hash_data, num_examples, subset
from tltf.io import remove_stale, temporary_path, write_atomically
from tltf.metadata import BACKBONE_LAYER, features_tensor, info, preprocessing_layers

FORMAT_VERSION = 1
SHARD_BYTES = 64 << 20  # features per shard file
SHUFFLE_BYTES = 256 << 20  # shuffle buffer of the head's training pipeline
COMPLETE = "COMPLETE"
MANIFEST = "manifest.json"
_EXTRACTORS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # model -> features model
_COMPILED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # Keras model -> tf.function


def default_cache_dir() -> str:
    """Where cached features go: ``$TLTF_CACHE_DIR``, else ``~/.cache/tltf/features``.

    Example:
        >>> default_cache_dir()
        '/home/me/.cache/tltf/features'
    """
    return os.environ.get("TLTF_CACHE_DIR") or os.path.join(
        os.path.expanduser("~"), ".cache", "tltf", "features"
    )


def cache_key(model: Any, data: Any) -> str:
    """Hex key of the features of `data` under `model`'s current backbone and preprocessing.

    Any change to the backbone's weights, the preprocessing, the class names or the
    data gives another key, so a stale cache is never read.

    Example:
        >>> cache_key(model, train)
        '3f9a0c1e...'
    """
    meta = info(model)
    pre = preprocessing_layers(model) + [model.get_layer(BACKBONE_LAYER)]
    digest = hashlib.sha256()
    parts = {
        "format": FORMAT_VERSION,
        "weights": weights_fingerprint(
            meta["backbone"], [w for layer in pre for w in layer.weights]
        ),
        "input_spec": meta["input_spec"],
        "layers": [type(layer).__name__ for layer in pre],
        # the backbone's architecture too: options such as a pooling change the features,
        # not the weights (its layers, one level down: fixed when the network was built)
        "configs": hashlib.sha256(
            json.dumps(
                [_config(layer) for layer in getattr(pre[-1], "layers", [])],
                sort_keys=True,
                default=str,
            ).encode()
        ).hexdigest(),
        "class_names": meta["class_names"],
    }
    digest.update(json.dumps(parts, sort_keys=True).encode())
    hash_data(data, digest)
    return digest.hexdigest()[:32]


_UNHASHED = ("name", "trainable")  # per-process counters; the freeze policy of the moment


def _config(layer: Any) -> Any:
    """A layer's own config, less `_UNHASHED`; a nested model: its type."""
    import keras

    if isinstance(layer, keras.Model):
        return type(layer).__name__  # its layers are hashed one by one
    try:
        config = layer.get_config()
    except (NotImplementedError, TypeError, ValueError):
        return type(layer).__name__
    if not isinstance(config, dict):
        return [type(layer).__name__, config]
    return [type(layer).__name__, {k: v for k, v in config.items() if k not in _UNHASHED}]


@dataclass
class CachedFeatures:
    """One complete cache entry: `path` and its manifest; `dataset` reads it.

    Example:
        >>> entry = cached_features(model, train)
        >>> entry.rows, entry.path
        (1000, '/home/me/.cache/tltf/features/3f9a...')
    """

    path: str
    manifest: dict

    @property
    def rows(self) -> int:
        """Examples in the entry.

        Example:
            >>> cached_features(model, train).rows == len(train)
            True
        """
        return int(self.manifest["rows"])

    def passes(self, batch_size: int, min_steps: int) -> int:
        """Passes over the entry that make at least `min_steps` batches.

        Example:
            >>> entry.rows, entry.passes(32, min_steps=32)
            (80, 13)
        """
        return max(1, math.ceil(min_steps * batch_size / max(1, self.rows)))

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """All the entry's ``(features, labels)`` as numpy arrays, in the data's order.

        Example:
            >>> features, labels = cached_features(model, train).arrays()
            >>> features.shape
            (1000, 1280)
        """
        parts = [(x.numpy(), y.numpy()) for x, y in self.dataset(4096)]
        return tuple(np.concatenate(column) for column in zip(*parts, strict=True))

    def dataset(
        self, batch_size: int, *, shuffle: bool = False, seed: int = 0, passes: int = 1
    ) -> Any:
        """A batched ``tf.data.Dataset`` of ``(features, labels)``, read shard by shard.

        Example:
            >>> features, labels = next(iter(entry.dataset(32, shuffle=True)))

        `passes` > 1 repeats the examples, each pass in a new order, within one
        iteration (an epoch of training).

        Up to `SHUFFLE_BYTES` of features stay in memory after the first epoch and are
        shuffled whole; a larger cache streams its shards in random order through a
        shuffle buffer of that size.
        """
        import tensorflow as tf

        m = self.manifest
        feature_type, label_type = tf.as_dtype(m["feature_dtype"]), tf.as_dtype(m["label_dtype"])
        files = [
            (os.path.join(self.path, s["features"]), os.path.join(self.path, s["labels"]))
            for s in m["shards"]
        ]

        def load(features_file, labels_file):
            x = tf.io.decode_raw(tf.io.read_file(features_file), feature_type)
            y = tf.io.decode_raw(tf.io.read_file(labels_file), label_type)
            return tf.data.Dataset.from_tensor_slices(
                (tf.reshape(x, [-1, *m["feature_shape"]]), tf.reshape(y, [-1, *m["label_shape"]]))
            )

        row_bytes = max(1, m["shards"][0]["bytes_per_row"])
        in_memory = self.rows * row_bytes <= SHUFFLE_BYTES  # kept after the first epoch
        mix = shuffle and not in_memory  # shards in random order, four at a time
        ds = tf.data.Dataset.from_tensor_slices(tuple(map(list, zip(*files, strict=True))))
        if mix:
            ds = ds.shuffle(len(files), seed=seed, reshuffle_each_iteration=True)
        ds = ds.interleave(
            load, cycle_length=min(4, len(files)) if mix else 1, num_parallel_calls=tf.data.AUTOTUNE
        )
        if in_memory:
            ds = ds.cache()
        if shuffle:
            buffer = max(1, min(self.rows, SHUFFLE_BYTES // row_bytes))
            ds = ds.shuffle(buffer, seed=seed, reshuffle_each_iteration=True)
        if passes > 1:
            ds = ds.repeat(passes)
        batches = -(-self.rows * passes // batch_size)
        return (
            ds.batch(batch_size)
            .apply(tf.data.experimental.assert_cardinality(batches))
            .prefetch(tf.data.AUTOTUNE)
        )


def cached_features(
    model: Any,
    data: Any,
    *,
    batch_size: int = 32,
    cache_dir: str | None = None,
    name: str = "",
    verbose: bool = True,
) -> CachedFeatures:
    """The cache entry of `data`'s backbone features, extracting and writing it if missing.

    Example:
        >>> entry = cached_features(model, train, cache_dir="/tmp/features")
        >>> for features, labels in entry.dataset(32): ...

    `data` is a `tltf.data.Dataset` or ``(x, y)`` arrays. Text is run through the
    backbone sorted by length (in shard-sized chunks, stored in the original order),
    so each batch pads little.
    """
    folder = cache_dir or default_cache_dir()
    key = cache_key(model, data)
    path = os.path.join(folder, key)
    what = f"tltf: features of {num_examples(data):,} {name + ' ' if name else ''}examples"
    found = _load_entry(path)
    problem = found and _damage(found)
    if found is not None and problem is None:
        if verbose:
            print(f"{what}: reused {path}", flush=True)
        return found
    if problem:  # said even when quiet: a changed file on disk is news
        print(f"tltf: cache entry {path} is damaged ({problem}); extracting again", flush=True)
        shutil.rmtree(path, ignore_errors=True)
    os.makedirs(folder, exist_ok=True)
    remove_stale(folder)
    tmp = temporary_path(folder, key)
    os.makedirs(tmp)
    try:
        started = time.perf_counter()
        manifest = _extract(model, data, tmp, batch_size, _Progress(what, verbose))
        manifest["seconds"] = round(time.perf_counter() - started, 3)
        with open(os.path.join(tmp, MANIFEST), "w") as fh:
            json.dump(manifest, fh, indent=1)
        write_atomically(os.path.join(tmp, COMPLETE), b"")
        _publish(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # gone after a rename, or a failed write
    if verbose:
        print(f" {manifest['seconds']:.1f} s -> {path}", flush=True)
    return CachedFeatures(path, manifest)


def _extract(model: Any, data: Any, folder: str, batch_size: int, progress: Any) -> dict:
    """Runs preprocessing + backbone over `data` (a compiled `tf.function`), writing shards."""

    from tltf.batches import to_tf_dataset

    features = features_tensor(model)
    row_bytes = 4 * math.prod(d or 1 for d in features.shape[1:])
    per_shard = max(batch_size, SHARD_BYTES // row_bytes // batch_size * batch_size)
    n = num_examples(data)
    lengths = example_lengths(data)
    shards: list[dict] = []
    progress.start(n)
    for start in range(0, n, per_shard):
        idx = np.arange(start, min(n, start + per_shard))
        if lengths is not None:
            idx = idx[np.argsort(lengths[idx], kind="stable")]
        xs, ys = [], []
        for x, y in to_tf_dataset(subset(data, idx), model, batch_size, training=False):
            xs.append(compiled_inference(_extractor(model), x)(x).numpy())
            ys.append(np.asarray(y))
            progress.update(len(xs[-1]))
        restore = np.argsort(idx, kind="stable")  # back to the data's order
        x, y = np.concatenate(xs)[restore], np.concatenate(ys)[restore]
        i = len(shards)
        shard = {
            "rows": len(x),
            "bytes_per_row": x[0].nbytes,
            "features": f"features-{i:05d}.bin",
            "labels": f"labels-{i:05d}.bin",
        }
        for part, values in (("features", x), ("labels", y)):
            payload = np.ascontiguousarray(values).tobytes()
            shard[f"{part}_crc32"] = zlib.crc32(payload)
            write_atomically(os.path.join(folder, shard[part]), payload)
        shards.append(shard)
    progress.done()
    return {
        "format": FORMAT_VERSION,
        "backbone": info(model)["backbone"],
        "rows": n,
        "feature_shape": list(x.shape[1:]),
        "feature_dtype": x.dtype.name,
        "label_shape": list(y.shape[1:]),
        "label_dtype": y.dtype.name,
        "shards": shards,
    }


def compiled_inference(model: Any, x: Any) -> Any:
    """``model(x, training=False)`` as a `tf.function` traced once for any batch size.

    Keras' ``predict_on_batch`` traces again for a batch of a new size (the last one);
    for a transformer that is seconds. `x` is a sample batch, for the input structure.

    Example:
        >>> run = compiled_inference(model, x)
        >>> logits = run(x).numpy()
    """
    import tensorflow as tf

    if model not in _COMPILED:
        ref = weakref.ref(model)  # the cache must not keep the model alive
        spec = tf.nest.map_structure(lambda t: tf.TensorSpec([None, *t.shape[1:]], t.dtype), x)

        def infer(inputs: Any) -> Any:
            return ref()(inputs, training=False)

        # Keras models need no AutoGraph conversion; converting only warns.
        _COMPILED[model] = tf.function(
            tf.autograph.experimental.do_not_convert(infer), input_signature=[spec]
        )
    return _COMPILED[model]


def _extractor(model: Any) -> Any:
    """The Keras model from `model`'s inputs to its backbone features (one per model)."""
    import keras

    if model not in _EXTRACTORS:
        _EXTRACTORS[model] = keras.Model(model.input, features_tensor(model), name="tltf_features")
    return _EXTRACTORS[model]


def _load_entry(path: str) -> CachedFeatures | None:
    """The entry at `path` if it is complete and its shard files have their sizes, else None."""
    if not os.path.exists(os.path.join(path, COMPLETE)):
        return None
    try:
        with open(os.path.join(path, MANIFEST)) as fh:
            manifest = json.load(fh)
        label_bytes = np.dtype(manifest["label_dtype"]).itemsize * math.prod(
            manifest["label_shape"]
        )
        for s in manifest["shards"]:
            want = (s["rows"] * s["bytes_per_row"], s["rows"] * label_bytes)
            got = tuple(os.path.getsize(os.path.join(path, s[k])) for k in ("features", "labels"))
            if got != want:
                return None
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return CachedFeatures(path, manifest)


def _damage(entry: CachedFeatures) -> str | None:
    """What is wrong with a complete entry's shards: a checksum that differs from the one
    written, or features that are not finite; None if nothing is."""
    for s in entry.manifest["shards"]:
        for part in ("features", "labels"):
            with open(os.path.join(entry.path, s[part]), "rb") as fh:
                payload = fh.read()
            if f"{part}_crc32" in s and zlib.crc32(payload) != s[f"{part}_crc32"]:
                return f"{s[part]}: its checksum differs from the one written"
            if part == "features":
                values = np.frombuffer(payload, entry.manifest["feature_dtype"])
                if not np.isfinite(values).all():
                    return f"{s[part]}: holds NaN or infinite features"
    return None


def _publish(tmp: str, path: str) -> None:
    """Renames the finished `tmp` folder to `path`; a complete entry already there wins."""
    try:
        os.rename(tmp, path)
    except OSError:
        if _load_entry(path) is not None:  # another process wrote the same entry
            return
        shutil.rmtree(path, ignore_errors=True)
        os.rename(tmp, path)


class _Progress:
    """One progress line for feature extraction: redrawn on a terminal, else printed at the end."""

    def __init__(self, what: str, verbose: bool) -> None:
        self.what, self.verbose = what, verbose
        self.tty = verbose and sys.stdout.isatty()

    def start(self, total: int) -> None:
        self.total, self.count, self.t0, self.shown = total, 0, time.perf_counter(), 0.0

    def update(self, rows: int) -> None:
        self.count += rows
        now = time.perf_counter()
        if self.tty and now - self.shown > 0.5:
            self.shown = now
            print(f"\r{self.line()}", end="", flush=True)

    def line(self) -> str:
        rate = self.count / max(time.perf_counter() - self.t0, 1e-9)
        return f"{self.what}: {self.count}/{self.total} ({rate:.0f}/s),"

    def done(self) -> None:
        if self.verbose:
            print(f"\r{self.line()}" if self.tty else self.line(), end="", flush=True)
