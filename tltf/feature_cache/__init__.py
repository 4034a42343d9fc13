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
training the backbone invalidates it), the preprocessing (input spec, layers),
every layer's config (a pooling option changes the features, not the weights)
and the data (texts, pixels, or file paths with their contents, and labels). Each
shard's checksum is stored and checked on reuse, with its features' finiteness; a
damaged entry is reported and extracted again.
Here: whether a phase can train on cached features, and training the head on
them. ``store`` holds the disk entries (keys, extraction, layout), ``examples``
what the cache needs of the data (counts, subsets, length order, content hash).
See docs/speed.md.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tltf.errors import SpecError
from tltf.feature_cache.examples import by_length, fingerprintable, num_examples, subset
from tltf.feature_cache.store import (
    CachedFeatures,
    cache_key,
    cached_features,
    compiled_inference,
    default_cache_dir,
)
from tltf.metadata import BACKBONE_LAYER, features_tensor, head_model, preprocessing_layers

__all__ = [
    "CachedFeatures",
    "by_length",
    "cache_key",
    "cached_features",
    "compiled_inference",
    "default_cache_dir",
    "fit_head",
    "head_only",
    "num_examples",
    "subset",
    "why_not_cached",
]

# Head steps per compiled call: a head step takes microseconds, Keras' per-call work
# about a millisecond. Batch-level callbacks then run once per 32 steps.
HEAD_STEPS_PER_EXECUTION = 32
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


def adapt_feature_norm(
    model: Any,
    data: Any,
    *,
    batch_size: int = 32,
    cache_dir: str | None = None,
    cache_features: bool | None = None,
    verbose: bool = True,
) -> bool:
    """Sets the head's `FeatureNorm` mean and std from `data`'s backbone features, once.

    Example:
        >>> adapt_feature_norm(model, train)        # tltf.fine_tune calls it
        True

    Only models whose backbone asks for it (`tltf.Backbone.standardize_features`) have
    the layer; the features come from the cache (the head phase then reuses them), or
    from one pass over `data` with ``cache_features=False`` or a `tf.data` input.
    Returns whether it set them (False: no layer, or set before).
    """
    import keras
    import numpy as np

    from tltf.metadata import FEATURE_NORM_LAYER, info, update_info

    if info(model).get("feature_norm") != "pending":
        return False
    if cache_features is not False and fingerprintable(data):
        entry = cached_features(
            model,
            data,
            batch_size=batch_size,
            cache_dir=cache_dir,
            name="training",
            verbose=verbose,
        )
        batches = (x for x, _ in entry.dataset(4096))
    else:
        from tltf.batches import to_tf_dataset

        extract = keras.Model(model.inputs, features_tensor(model))
        ds = to_tf_dataset(data, model, batch_size, training=False)
        batches = (extract(x, training=False) for x, _ in ds)
    n, total, squares = 0, 0.0, 0.0
    for x in batches:
        x = np.asarray(x, dtype="float64")
        n, total, squares = n + len(x), total + x.sum(axis=0), squares + (x**2).sum(axis=0)
    if not n:
        return False
    mean = total / n
    std = np.sqrt(np.maximum(squares / n - mean**2, 0.0))
    layer = model.get_layer(FEATURE_NORM_LAYER)
    layer.mean.assign(mean.astype("float32"))
    layer.std.assign(np.where(std > 1e-6, std, 1.0).astype("float32"))
    update_info(model, feature_norm="adapted")
    return True


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
        if data is not None and not fingerprintable(data):
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


def _random_in_training(layer: Any) -> bool:
    """Whether `layer` may act differently in training: it takes ``training`` and either draws
    random numbers (Keras' Random*, Dropout and noise layers own a SeedGenerator) or is not a
    Keras / KerasHub layer (which take ``training`` without using it, like Resizing)."""
    if not getattr(layer, "_call_has_training_arg", False):
        return False
    if type(layer).__module__.split(".")[0] not in ("keras", "keras_hub"):
        return True
    return bool(getattr(layer, "_seed_generators", ()))
