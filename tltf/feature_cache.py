"""Cached backbone features: a frozen backbone runs once, the head trains on features on disk.

When a `tltf.fine_tune` phase trains only the head (``freeze="all"``, or the
head-only warm-up before the backbone opens) and nothing before the backbone
is random in training (no augmentation), every epoch would push the same
examples through the same frozen network. `fit_head` instead runs the
preprocessor and backbone once, in inference mode, writes the features to
disk, and trains the head layers (the same objects as in the model, so the
model, its `.keras` file and its export have the trained head) on them.

    >>> tltf.fine_tune(model, train, validation_data=val, epochs=10)   # freeze="all"
    tltf: features of 1,000 training examples: 1000/1000 (410/s), 2.4 s -> ~/.cache/tltf/features/3f9a...
    >>> tltf.fine_tune(model, train, validation_data=val, epochs=10)   # same data: no backbone pass
    tltf: features of 1,000 training examples: reused ~/.cache/tltf/features/3f9a...

An entry is keyed by the backbone (spec and a hash of the current weights, so
training the backbone invalidates it), the preprocessing (input spec, layers)
and the data (texts, pixels or file paths with sizes and mtimes, and labels).
Layout of ``CACHE_DIR/<key>/``::

    manifest.json         rows, shapes, dtypes, the shards, what was extracted
    features-00000.bin    raw C-order rows (read with tf.io.decode_raw), ~64 MiB each
    labels-00000.bin
    COMPLETE              written last

An entry is written under ``.tmp-<key>-<pid>-<random>`` and renamed into place
after COMPLETE, so a killed run never leaves an entry that looks complete.
See docs/speed.md.
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
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from tltf.backbone import weights_fingerprint
from tltf.errors import SpecError
from tltf.io import remove_stale, temporary_path, write_atomically
from tltf.metadata import BACKBONE_LAYER, features_tensor, head_model, info, preprocessing_layers
from tltf.modalities import get_modality

FORMAT_VERSION = 1
SHARD_BYTES = 64 << 20  # features per shard file
SHUFFLE_BYTES = 256 << 20  # shuffle buffer of the head's training pipeline
# Head steps per compiled call: a head step takes microseconds, Keras' per-call work
# about a millisecond. Batch-level callbacks then run once per 32 steps.
HEAD_STEPS_PER_EXECUTION = 32
COMPLETE = "COMPLETE"
_EXTRACTORS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # model -> features model
_COMPILED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # Keras model -> tf.function
MANIFEST = "manifest.json"
# Callbacks that only read logs or the optimizer: they work on the head model alone.
# Others (ModelCheckpoint, BackupAndRestore, ...) need the whole model, so they turn caching off.
HEAD_SAFE_CALLBACKS = (
    "EarlyStopping",
    "ReduceLROnPlateau",
    "TerminateOnNaN",
    "CSVLogger",
    "LearningRateScheduler",
    "History",
    "ProgbarLogger",
)


def default_cache_dir() -> str:
    """Where cached features go: ``$TLTF_CACHE_DIR``, else ``~/.cache/tltf/features``.

    Example:
        >>> default_cache_dir()
        '/home/me/.cache/tltf/features'
    """
    return os.environ.get("TLTF_CACHE_DIR") or os.path.join(
        os.path.expanduser("~"), ".cache", "tltf", "features"
    )


def fit_head(
    model: Any,
    train: Any,
    validation_data: Any = None,
    *,
    cache_features: bool | None = None,
    cache_dir: str | None = None,
    batch_size: int = 32,
    seed: int = 0,
    callbacks: list | None = None,
    verbose: Any = "auto",
    fit: Callable[..., Any] | None = None,
    min_steps_per_epoch: int = 1,
    clean: bool = False,
    **fit_kwargs: Any,
) -> Any:
    """Trains the head of a compiled, frozen tltf model on cached features; None when not applicable.

    What `tltf.fine_tune` does in a head-only phase.

    Example:
        >>> history = fit_head(model, train, val, epochs=5) or model.fit(...)

    Args:
        model: a tltf model, compiled for this phase: the head trains with its
            optimizer and loss, and copies of its metrics.
        train / validation_data: a `tltf.data.Dataset` or ``(x, y)`` arrays.
        cache_features: None: cache when applicable; True: cache or raise `SpecError`
            saying why not; False: return None. A phase that trains backbone weights
            returns None whatever this says.
        cache_dir: default `default_cache_dir()`.
        fit: runs the training as ``fit(head, data, **kwargs)`` (e.g. a resumable
            `tltf.runs.Run.fit`); default ``head.fit(data, **kwargs)``.
        min_steps_per_epoch: an epoch passes over the features as often as it takes
            to reach this many steps (Keras spends ~30 ms per epoch, a head step
            microseconds: a long head phase on little data is otherwise all overhead).
        clean: train on un-augmented features even when the model augments: the
            extraction runs in inference mode, where augmentation layers pass pixels
            through (`tltf.fine_tune`'s warm-up before the backbone opens).
        **fit_kwargs: passed to the head's `fit` (``epochs=``, ``initial_epoch=``, ...).

    Returns:
        The Keras `History`, or None when the phase must train the whole model.
    """
    import keras

    if cache_features is False or not head_only(model):
        return None
    reason = why_not_cached(model, train, validation_data, callbacks, clean=clean)
    if reason:
        if cache_features:
            raise SpecError(f"cache_features=True, but {reason}. Pass cache_features=False.")
        return None
    folder = cache_dir or default_cache_dir()
    show = verbose != 0
    train_cache = cached_features(
        model, train, batch_size=batch_size, cache_dir=folder, name="training", verbose=show
    )
    val_ds = None
    if validation_data is not None:
        val_ds = cached_features(
            model,
            validation_data,
            batch_size=batch_size,
            cache_dir=folder,
            name="validation",
            verbose=show,
        ).dataset(batch_size)
    head = head_model(model)
    config = model.get_compile_config()
    head.compile(
        optimizer=model.optimizer,  # the phase's own, with its per-group rates (tltf.rates)
        loss=model.loss,
        metrics=keras.saving.deserialize_keras_object(config["metrics"]),
        jit_compile=config["jit_compile"],
        steps_per_execution=HEAD_STEPS_PER_EXECUTION,
    )
    passes = train_cache.passes(batch_size, min_steps_per_epoch)
    history = (fit or type(head).fit)(
        head,
        train_cache.dataset(batch_size, shuffle=True, seed=seed, passes=passes),
        validation_data=val_ds,
        callbacks=callbacks,
        verbose=verbose,
        shuffle=False,  # the cached dataset shuffles itself
        **fit_kwargs,
    )
    history.set_model(model)
    return history


def why_not_cached(
    model: Any,
    train: Any,
    validation_data: Any = None,
    callbacks: Any = None,
    *,
    clean: bool = False,
) -> str:
    """Why a head-only phase cannot train on cached features ("" when it can).

    ``clean=True`` accepts augmentation before the backbone (see `fit_head`).

    Example:
        >>> why_not_cached(model, train)
        "layer 'random_flip' before the backbone is random in training (augmentation)"
    """
    import keras

    for name, data in (("the training data", train), ("validation_data", validation_data)):
        if data is not None and not _fingerprintable(data):
            return (
                f"{name} is a {type(data).__name__}; only a tltf.data.Dataset or (x, y) "
                "arrays can be fingerprinted"
            )
        if data is not None and not num_examples(data):
            return f"{name} has no examples"
    if not head_only(model):
        return "the backbone trains in this phase"
    replicas = model.distribute_strategy.num_replicas_in_sync
    if replicas > 1:
        return f"the model trains on {replicas} replicas (tf.distribute)"
    shape = features_tensor(model).shape[1:]
    if None in shape:
        return f"the backbone's features have a variable shape {shape}"
    for layer in [] if clean else preprocessing_layers(model):
        for sub in layer._flatten_layers(include_self=True):
            if _random_in_training(sub):
                return (
                    f"layer {sub.name!r} before the backbone is random in training (augmentation)"
                )
    safe = tuple(getattr(keras.callbacks, name) for name in HEAD_SAFE_CALLBACKS)
    for cb in callbacks or []:
        if isinstance(cb, keras.callbacks.TensorBoard) and not (
            cb.write_graph or cb.histogram_freq or cb.write_images
        ):
            continue  # epoch scalars only: it never reads the model
        if not isinstance(cb, safe):
            return f"callback {type(cb).__name__} may read or save the whole model"
    return ""


def head_only(model: Any) -> bool:
    """Whether only the head has trainable weights (the backbone and preprocessing are frozen).

    Example:
        >>> head_only(tltf.build("keras:MobileNetV2", num_classes=3, freeze="all"))
        True
    """
    pre = [*preprocessing_layers(model), model.get_layer(BACKBONE_LAYER)]
    return not any(layer.trainable_weights for layer in pre)


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
        "class_names": meta["class_names"],
    }
    digest.update(json.dumps(parts, sort_keys=True).encode())
    _hash_data(data, digest)
    return digest.hexdigest()[:32]


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
    if found is not None:
        if verbose:
            print(f"{what}: reused {path}", flush=True)
        return found
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


def by_length(data: Any) -> Any:
    """Text examples in order of length (pairs: both texts), so batches pad little; else `data`.

    Example:
        >>> ds = to_tf_dataset(by_length(test), model, 32, training=False)
    """
    lengths = _example_lengths(data)
    return data if lengths is None else subset(data, np.argsort(lengths, kind="stable"))


def _extract(model: Any, data: Any, folder: str, batch_size: int, progress: Any) -> dict:
    """Runs preprocessing + backbone over `data` (a compiled `tf.function`), writing shards."""

    from tltf.batches import to_tf_dataset

    features = features_tensor(model)
    row_bytes = 4 * math.prod(d or 1 for d in features.shape[1:])
    per_shard = max(batch_size, SHARD_BYTES // row_bytes // batch_size * batch_size)
    n = num_examples(data)
    lengths = _example_lengths(data)
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
        write_atomically(os.path.join(folder, shard["features"]), x.tobytes())
        write_atomically(os.path.join(folder, shard["labels"]), y.tobytes())
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


def _fingerprintable(data: Any) -> bool:
    return hasattr(data, "as_tf_dataset") or (isinstance(data, tuple) and len(data) == 2)


def _random_in_training(layer: Any) -> bool:
    """Whether `layer` may act differently in training: it takes ``training`` and either draws
    random numbers (Keras' Random*, Dropout and noise layers own a SeedGenerator) or is not a
    Keras / KerasHub layer (which take ``training`` without using it, like Resizing)."""
    if not getattr(layer, "_call_has_training_arg", False):
        return False
    if type(layer).__module__.split(".")[0] not in ("keras", "keras_hub"):
        return True
    return bool(getattr(layer, "_seed_generators", ()))


def num_examples(data: Any) -> int:
    """Examples in a `tltf.data.Dataset` or ``(x, y)`` arrays.

    Example:
        >>> num_examples((texts, labels)) == len(labels)
        True
    """
    return len(data) if hasattr(data, "as_tf_dataset") else len(data[1])


def _as_array(values: Any) -> np.ndarray:
    """`values` as an array: numbers as they are; texts and ragged lists as objects (a
    fixed-width str array would take 4 bytes times the longest text per example)."""
    if isinstance(values, np.ndarray):
        return values
    values = list(values)
    if values and not isinstance(values[0], (str, bytes)):
        try:
            return np.asarray(values)
        except ValueError:  # lists of different lengths
            pass
    out = np.empty(len(values), dtype=object)
    for i, value in enumerate(values):
        out[i] = value
    return out


def _is_pair(x: Any) -> bool:
    """Whether `x` is ``(texts, second_texts)`` of a text-pair model."""
    return isinstance(x, tuple) and len(x) == 2 and not isinstance(x[0], (str, bytes))


def _parts(data: Any) -> list:
    """The per-example sequences of ``(x, y)`` arrays: x (both texts of pairs), then y."""
    x, y = data
    return [*(x if _is_pair(x) else [x]), y]


def subset(data: Any, idx: np.ndarray) -> Any:
    """The examples `idx` of a `tltf.data.Dataset` or of ``(x, y)`` arrays, in that order.

    Example:
        >>> texts, labels = subset((texts, labels), np.array([2, 0]))
    """
    if hasattr(data, "as_tf_dataset"):
        return data.subset(idx)
    pick = [_as_array(part)[idx] for part in _parts(data)]
    return (tuple(pick[:2]) if _is_pair(data[0]) else pick[0]), pick[-1]


def _example_lengths(data: Any) -> np.ndarray | None:
    """A size per example to sort the extraction by (texts: characters), or None."""
    if hasattr(data, "as_tf_dataset"):
        return get_modality(data.modality).example_lengths(data)
    if not _fingerprintable(data):
        return None
    texts = [_as_array(part) for part in _parts(data)[:-1]]
    if any(t.ndim != 1 or t.dtype.kind not in "UO" for t in texts):
        return None
    return np.sum([[len(str(t)) for t in part] for part in texts], axis=0)


def _hash_data(data: Any, digest: Any) -> None:
    """Feeds the examples and labels into `digest`: texts, pixels, or image files' path, size, mtime."""

    def items(values: Any, files: bool = False) -> None:
        a = _as_array(values)
        digest.update(f"{a.dtype.str}{a.shape}".encode())
        if a.dtype != object:
            digest.update(np.ascontiguousarray(a).tobytes())
            return
        for item in a.tolist():
            if files:
                st = os.stat(item)
                item = f"{item}\0{st.st_size}\0{st.st_mtime_ns}"
            blob = item if isinstance(item, bytes) else str(item).encode()
            digest.update(len(blob).to_bytes(8, "little") + blob)

    if not hasattr(data, "as_tf_dataset"):
        for part in _parts(data):
            items(part)
        return
    digest.update(json.dumps([data.modality, data.task_hint, data.class_names]).encode())
    items(data.y)
    get_modality(data.modality).fingerprint(data, items)
