"""`extend`: new classes for a trained classifier, keeping what it knows of the old ones.

The old classes keep their rows of the output layer, so for any input their logits
are exactly what they were. Each new class gets a zero row with the old biases' mean,
a constant logit that the following `fine_tune` on old and new data moves at once.
With `examples`, a new row is instead "imprinted" from the mean of its examples' head
inputs (Qi et al., CVPR 2018: that mean's direction, at the old rows' average length,
its bias tying it with the old head's best logit on its examples). Measured, that did
not pay: the mean of ReLU features is positive everywhere, so the row scores high for
everything (benchmarks/README.md).

    >>> grown = tltf.extend(model, ["tools", "plants"])
    >>> tltf.fine_tune(grown, old_and_new)           # the head trains on cached features
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from tltf.errors import DataError, SpecError

TASKS = ("classification", "multilabel")


def extend(
    model: Any,
    new_class_names: Sequence[str],
    examples: Any = None,
    *,
    batch_size: int = 32,
    cache_dir: str | None = None,
    verbose: bool = True,
) -> Any:
    """Returns `model` with `new_class_names` appended after its classes.

    Example:
        >>> grown = tltf.extend(model, ["tools", "plants"])
        >>> tltf.info(grown).class_names[-2:]
        ('tools', 'plants')

    Args:
        model: a classifier from `tltf.build` (``classification`` or ``multilabel``).
        new_class_names: the classes to add, none of them an existing one.
        examples: None (advised): the new rows start at zero, with the old biases' mean,
            so each new logit is the same constant for every input until training. A
            `tltf.data.Dataset` labelled with (at least) the new classes: the new rows
            are imprinted from their examples' features instead (measured worse for
            the old classes after fine-tuning: benchmarks/README.md).
        batch_size / cache_dir / verbose: of the feature extraction.

    Returns:
        A new compiled model whose backbone and hidden head layers are `model`'s own
        (shared, not copied); its card lists the old classes, then the new ones, and
        records what it grew from (``extended_from``).
    """
    import keras

    from tltf.compiling import compile_model
    from tltf.freezing import set_freeze
    from tltf.layers import TltfInfo
    from tltf.metadata import INFO_LAYER, head_model, info

    meta = info(model)
    if meta.task not in TASKS:
        raise SpecError(f"extend adds classes to {' or '.join(TASKS)} models; this is {meta.task}.")
    old = list(meta.class_names)
    new = [str(c).strip() for c in new_class_names]
    clash = sorted({c for c in new if c in old} | {c for c in new if new.count(c) > 1})
    if not new or clash or not all(new):
        raise SpecError(
            f"extend(new_class_names={list(new_class_names)}): give new, distinct, non-empty "
            f"names" + (f"; {clash} " + "already exist or repeat" if clash else "") + "."
        )
    chain = head_model(model).layers[1:]  # after the features' input
    logits = model.get_layer("logits")
    if chain[-1] is not logits:
        raise SpecError("extend needs the head that tltf.build makes (a chain ending in 'logits').")
    kernel, bias = (np.asarray(w) for w in logits.get_weights())
    card = meta.replace(
        class_names=tuple(old + new),
        extended_from={"class_names": old, "fingerprint": meta.fingerprint},
    )
    x = TltfInfo(card, name=INFO_LAYER)(model.get_layer(INFO_LAYER).input)
    for layer in chain[:-1]:
        x = layer(x)
    grown = keras.layers.Dense(len(old) + len(new), dtype="float32", name="logits")
    outputs = grown(x)
    # a zero row each, at the old biases' mean: a constant logit that fine_tune moves at once
    # (measured: 4 points better on the new classes than a bias far below the old ones)
    zeros = np.zeros((kernel.shape[0], len(new)), kernel.dtype)
    level = np.full(len(new), bias.mean(), bias.dtype)
    grown.set_weights([np.concatenate([kernel, zeros], 1), np.concatenate([bias, level])])
    result = keras.Model(model.inputs, outputs, name=model.name)
    if examples is not None:  # features through the grown model, whose classes label them
        rows, row_bias = _imprinted(
            result, chain[:-1], kernel, bias, new, examples, batch_size, cache_dir, verbose
        )
        grown.set_weights([np.concatenate([kernel, rows], 1), np.concatenate([bias, row_bias])])
    set_freeze(result, meta.freeze, meta.bn)
    compile_model(result)
    return result


def _imprinted(model, hidden, kernel, bias, new, examples, batch_size, cache_dir, verbose):
    """``(kernel columns [H, K], biases [K])`` for the new classes, from their examples."""
    from tltf.feature_cache import cached_features

    names = list(examples.class_names)
    missing = [c for c in new if c not in names]
    if missing:
        raise DataError(f"{examples.source}: no examples of the new classes {missing}.")
    # the backbone's features of the examples, cached where fine_tune will look for them
    features, labels = cached_features(
        model,
        examples,
        batch_size=batch_size,
        cache_dir=cache_dir,
        name="training",
        verbose=verbose,
    ).arrays()
    for layer in hidden:  # up to the logits layer's input
        features = np.asarray(layer(features, training=False))
    scale = float(np.mean(np.linalg.norm(kernel, axis=0)))
    top_old = (features @ kernel + bias).max(axis=1)  # the old head's best logit per example
    rows, biases = [], []
    for name in new:
        mine = labels == names.index(name)
        if not mine.any():
            raise DataError(f"{examples.source}: no examples of the new class {name!r}.")
        mean = features[mine].mean(axis=0)
        row = scale * mean / max(float(np.linalg.norm(mean)), 1e-12)
        rows.append(row)
        # on its own examples the new logit ties, on average, with the old head's best
        biases.append(float(np.mean(top_old[mine]) - features[mine].mean(axis=0) @ row))
    return np.stack(rows, 1).astype(kernel.dtype), np.asarray(biases, bias.dtype)
