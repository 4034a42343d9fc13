"""Classification heads: one label (`classification`, `text_pair`) or several (`multilabel`)."""

from __future__ import annotations

import math
from typing import Any

import keras
import numpy as np

from tltf.errors import DataError, SpecError
from tltf.heads.base import Task, _hidden, _label_indices

# A classifier's features are L2-normalized and scaled to this length before its first
# layer: under the head phase's L2 penalty of 1 / (2 N) (`tltf.recipe.head_penalty`, a
# logistic regression's C = 1) that is C = 10 on unit vectors. Measured with
# benchmarks/bench_accuracy.py (3 seeds, k = 8 / 32 / 128 / all per class), `freeze="all"`
# against raw features: EfficientNet-Lite0 +0.7 / +2.3 / +1.1 / +2.3 points, MobileNet v1
# +1.2 / -0.4 / +1.3 / 0.0, MiniLM +0.6 / -0.1 / +0.2 / +0.3; lengths 1 and 10 did worse.
FEATURE_LENGTH = 10**0.5


class Classification(Task):
    """Single-label classification: logits in the model, softmax probabilities when served.

    Example:
        >>> model = tltf.build(spec, task="classification", class_names=["cat", "dog"])
    """

    name = "classification"
    options = {"feature_length": FEATURE_LENGTH}

    def build(self, features: Any, class_names: list[str], opts: dict) -> Any:
        x = _hidden(features, opts)
        return keras.layers.Dense(len(class_names), dtype="float32", name="logits")(x)

    def loss(self, meta: dict) -> Any:
        return keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    def metrics(self, meta: dict) -> list:
        return [keras.metrics.SparseCategoricalAccuracy(name="accuracy")]

    def serve(self, model: Any, inputs: Any, meta: dict) -> dict:
        """``scores``, ``label``, ``top_k_labels``, ``top_k_scores``.

        Example:
            >>> task, meta = get_task("classification"), tltf.info(model)
            >>> task.serve(model, tf.constant(["level up"]), meta)["label"].numpy()
            array([b'games'], dtype=object)
        """
        import tensorflow as tf

        class_names = list(meta["class_names"])
        scores = tf.nn.softmax(tf.cast(model(inputs, training=False), tf.float32), axis=-1)
        names = tf.constant(class_names)
        top = tf.math.top_k(scores, k=min(5, len(class_names)))
        thresholds = (meta.get("head") or {}).get("threshold") or {}  # {class: t}: set_threshold
        floor = tf.constant([thresholds.get(c, 0.0) for c in class_names], tf.float32)
        eligible = tf.where(scores >= floor, scores, -1.0)  # a class under its threshold loses
        return {
            "scores": scores,
            "label": tf.gather(names, tf.argmax(eligible, axis=-1)),
            "top_k_labels": tf.gather(names, top.indices),
            "top_k_scores": top.values,
        }

    def example_api(self, meta: dict) -> str:
        return "classify"

    def example_outputs(self, outputs: dict, meta: dict) -> dict:
        return _classes_and_scores(outputs["scores"], meta)  # every class with its score


class TextPair(Classification):
    """Sentence-pair classification (entailment, duplicates): both texts go through the
    backbone's pair input (``[CLS] a [SEP] b [SEP]`` with segment ids). Inputs are
    ``(texts, second_texts)``; the export takes ``text`` and ``text_pair``.

    Example:
        >>> model = tltf.build(spec, task="text_pair", class_names=["different", "same"])
        >>> tltf.fine_tune(model, ((questions, other_questions), labels))
    """

    name = "text_pair"
    text_inputs = ("text", "text_pair")


class Multilabel(Task):
    """Independent labels: one sigmoid per label; served with a decision threshold.

    ``head={"threshold": 0.5}`` (one number, or one per label) is stored in the
    model; change it after training with ``tltf.set_threshold(model, t)``.

    Example:
        >>> model = tltf.build(spec, task="multilabel", class_names=["sky", "tree", "water"],
        ...                    head={"threshold": 0.4})
    """

    name = "multilabel"
    options = {"threshold": 0.5}
    data_hints = ("multi_label",)
    min_names = 1

    def build(self, features: Any, class_names: list[str], opts: dict) -> Any:
        _thresholds(opts["threshold"], class_names)
        x = _hidden(features, opts)
        return keras.layers.Dense(len(class_names), dtype="float32", name="logits")(x)

    def loss(self, meta: dict) -> Any:
        return keras.losses.BinaryCrossentropy(from_logits=True)

    def metrics(self, meta: dict) -> list:
        t = float(np.mean(_thresholds(meta["head"]["threshold"], meta["class_names"])))
        return [
            keras.metrics.BinaryAccuracy(name="accuracy", threshold=math.log(t / (1 - t))),
            keras.metrics.AUC(name="auc", multi_label=True, from_logits=True),
        ]

    def targets(self, y: Any, meta: dict) -> np.ndarray:
        """A numeric 2-D 0/1 array ``[N, C]`` (multi-hot), or per example a list of labels.

        Example:
            >>> get_task("multilabel").targets([["b"], [], ["a", "b"]], {"class_names": ["a", "b"]})
            array([[0., 1.],
                   [0., 0.],
                   [1., 1.]], dtype=float32)
        """
        names = meta["class_names"]
        if isinstance(y, np.ndarray) and y.ndim == 2 and y.dtype.kind in "biuf":
            if y.shape[1] != len(names) or not np.isin(y, (0, 1)).all():
                raise DataError(
                    f"multilabel targets of shape {y.shape}: need 0/1 values of shape "
                    f"[N, {len(names)}] for labels {names}."
                )
            return y.astype("float32")
        out = np.zeros((len(y), len(names)), dtype="float32")
        for i, labels in enumerate(y):
            labels = [labels] if isinstance(labels, (str, int, np.integer)) else list(labels)
            if labels:
                out[i, _label_indices(labels, names, what=f"Example {i}: label")] = 1.0
        return out

    def serve(self, model: Any, inputs: Any, meta: dict) -> dict:
        """``scores`` ``[B, C]``; ``predicted`` 0/1 per label; ``labels``: the names at or
        above the threshold, highest score first, then "" (``[B, C]``).

        Example:
            >>> out = get_task("multilabel").serve(model, images, tltf.info(model))
            >>> out["labels"].numpy()[0]
            array([b'sky', b'tree', b''], dtype=object)
        """
        import tensorflow as tf

        names = list(meta["class_names"])
        scores = tf.sigmoid(tf.cast(model(inputs, training=False), tf.float32))
        threshold = tf.constant(_thresholds(meta["head"]["threshold"], names), tf.float32)
        predicted = scores >= threshold
        order = tf.argsort(tf.where(predicted, scores, -1.0), axis=-1, direction="DESCENDING")
        labels = tf.where(
            tf.gather(predicted, order, batch_dims=1), tf.gather(tf.constant(names), order), ""
        )
        return {"scores": scores, "predicted": tf.cast(predicted, tf.int32), "labels": labels}

    def example_api(self, meta: dict) -> str:
        return "classify"

    def example_outputs(self, outputs: dict, meta: dict) -> dict:
        return _classes_and_scores(outputs["scores"], meta)  # sigmoid scores, every label


def _classes_and_scores(scores: Any, meta: dict) -> dict:
    """``classes`` ``[B, C]`` (the class names on every row) beside ``scores`` ``[B, C]``."""
    import tensorflow as tf

    names = tf.constant(list(meta["class_names"]))
    return {"classes": tf.tile(names[None], [tf.shape(scores)[0], 1]), "scores": scores}


def set_threshold(model: Any, threshold: float | list[float] | dict[str, float]) -> Any:
    """Sets the decision thresholds that the export's labels use.

    Multilabel models: one number in (0, 1), or one per label. Classification
    models: ``{class: threshold}``; the served ``label`` is then the best class
    among those at or above their threshold (classes not named always qualify),
    e.g. a wake word that is only reported at 0.9.

    Example:
        >>> tltf.set_threshold(model, [0.3, 0.5, 0.9])          # multilabel: sky, tree, water
        [0.3, 0.5, 0.9]
        >>> tltf.set_threshold(model, {"hey_tiltef": 0.9})       # classification
        {'hey_tiltef': 0.9}

    The served ``predicted`` and ``labels`` (``label``) of exports made afterwards
    use it; returns the threshold per label (per named class).
    """
    from tltf.metadata import info, update_info

    meta = info(model)
    if meta.task in (Classification.name, TextPair.name):
        names = list(meta.class_names)
        if not isinstance(threshold, dict) or not threshold:
            raise SpecError(
                f"threshold={threshold!r}: a {meta.task} model takes {{class: threshold}}, "
                f"e.g. {{{names[0]!r}: 0.9}}."
            )
        unknown = [c for c in threshold if c not in names]
        if unknown:
            raise SpecError(f"threshold names {unknown[0]!r}, not one of the classes {names}.")
        values = {c: float(t) for c, t in threshold.items()}
        _thresholds(list(values.values()), list(values))
        update_info(model, head={**meta.head, "threshold": values})
        return values
    if meta.task != Multilabel.name:
        raise SpecError(
            f"set_threshold is for classification and multilabel models; this one is {meta.task}."
        )
    values = _thresholds(threshold, list(meta.class_names))
    keep = threshold if np.isscalar(threshold) else values
    update_info(model, head={**meta.head, "threshold": float(keep) if np.isscalar(keep) else keep})
    return values


def _thresholds(threshold: Any, class_names: list[str]) -> list[float]:
    values = [threshold] * len(class_names) if np.isscalar(threshold) else list(threshold)
    if len(values) != len(class_names) or not all(0 < float(t) < 1 for t in values):
        raise SpecError(
            f"threshold={threshold!r}: give one number in (0, 1), or one per label "
            f"({len(class_names)})."
        )
    return [float(t) for t in values]
