"""Task heads: the layers on top of the backbone, their loss and metrics, and what they serve.

Each task is one `Task` in `TASKS`:

=======================  ==========================================  ============================
task                     Keras model output                          served (`tltf.export`)
=======================  ==========================================  ============================
``classification``       logits ``[B, C]``                           scores, label, top-k
``text_pair``            logits ``[B, C]`` from two texts            scores, label, top-k
``multilabel``           logits ``[B, C]``                           scores, predicted, labels
``regression``           values ``[B, k]`` in the targets' units     predictions
``token_classification`` logits ``[B, W, C]``, one row per word      words, tags, scores
``embedding``            unit-length vectors ``[B, D]``              embedding
=======================  ==========================================  ============================

A task defines `build` (the head layers), `loss` and `metrics` (defaults that
``tltf.build(loss=..., metrics=...)`` overrides), `prepare` (user arrays to
what the model trains on) and `serve` (the outputs of the exported SavedModel).
Head options (``head=``) are ``hidden``, ``dropout`` and ``activation``, plus
the task's own: ``threshold`` (multilabel), ``normalize`` (regression), ``dim``
(embedding).
"""

from __future__ import annotations

import math
from typing import Any

import keras
import numpy as np

from tltf.errors import DataError, SpecError
from tltf.modalities import get_modality

HEAD_KEYS = ("hidden", "dropout", "activation")
BASE_HEAD = {"hidden": [], "dropout": 0.1, "activation": "relu"}
IGNORE = -1  # label of words that carry no tag (padding); the loss skips them


def head_options(head: dict | list | int | None, task: str = "classification") -> dict:
    """Normalizes ``head=``: None, hidden sizes, or a dict of `HEAD_KEYS` and the task's keys.

    Example:
        >>> head_options({"hidden": [256], "threshold": 0.3}, "multilabel")
        {'hidden': [256], 'dropout': 0.1, 'activation': 'relu', 'threshold': 0.3}
    """
    task_obj = get_task(task)
    defaults = {**BASE_HEAD, **task_obj.options}
    if head is None:
        return defaults
    if isinstance(head, int):
        head = [head]
    if isinstance(head, (list, tuple)):
        head = {"hidden": list(head)}
    if not isinstance(head, dict):
        raise SpecError(f"head={head!r}; give hidden sizes like [256] or a dict with {HEAD_KEYS}.")
    unknown = set(head) - set(defaults)
    if unknown:
        raise SpecError(
            f"head= has unknown keys {sorted(unknown)}; task {task!r} knows {sorted(defaults)}."
        )
    return {**defaults, **head}


def _hidden(features: Any, opts: dict) -> Any:
    x = features
    for i, units in enumerate(opts["hidden"]):
        x = keras.layers.Dense(units, activation=opts["activation"], name=f"head_dense_{i}")(x)
    if opts["dropout"]:
        x = keras.layers.Dropout(opts["dropout"], name="head_dropout")(x)
    return x


def _label_indices(y: Any, class_names: list[str], what: str = "Label") -> np.ndarray:
    """Class indices from labels given as indices or as class names."""
    y = np.asarray(y)
    if y.dtype.kind in "iu":
        bad = np.flatnonzero((y < 0) | (y >= len(class_names)))
        if bad.size:
            raise DataError(
                f"{what} {y[bad[0]]} at position {bad[0]} is outside 0..{len(class_names) - 1} "
                f"(the model's classes: {class_names})."
            )
        return y.astype("int64")
    index = {name: i for i, name in enumerate(class_names)}
    out = np.empty(len(y), dtype="int64")
    for i, label in enumerate(y.astype(str).tolist()):
        if label not in index:
            raise DataError(
                f"{what} {label!r} at position {i} was not seen in training; the model's "
                f"classes are {class_names}. Fix the label or rebuild with class_names=..."
            )
        out[i] = index[label]
    return out


class Task:
    """A head: how to build it, train it (loss, metrics, targets) and serve it.

    Example:
        >>> task = tltf.heads.get_task("multilabel")
        >>> task.name, task.options
        ('multilabel', {'threshold': 0.5})
    """

    name = ""
    options: dict = {}  # head= keys of this task, with their defaults
    backbone_options: dict = {}  # source options the task needs (per-word features)
    text_inputs: tuple[str, ...] = ("text",)  # names of the string inputs of a text model
    data_hints: tuple[str, ...] = ("classification",)  # tltf.data task_hint it trains on
    min_names = 2
    default_names: list[str] | None = None  # when build() gets no class_names

    def check_names(self, class_names: list[str]) -> None:
        """Refuses fewer class names than the task needs (`min_names`).

        Example:
            >>> get_task("classification").check_names(["cat"])
            SpecError: task='classification' needs at least 2 classes, got ['cat'].
        """
        if len(class_names) < self.min_names:
            need = f"{self.min_names} classes" if self.min_names > 1 else "one name"
            raise SpecError(f"task={self.name!r} needs at least {need}, got {class_names}.")

    def build(self, features: Any, class_names: list[str], opts: dict) -> Any:
        raise NotImplementedError

    def loss(self, meta: dict) -> Any:
        """The default loss (``tltf.build(loss=...)`` replaces it); `meta` is `tltf.info`.

        Example:
            >>> get_task("classification").loss(tltf.info(model)).name
            'sparse_categorical_crossentropy'
        """
        raise NotImplementedError

    def metrics(self, meta: dict) -> list:
        """The default metrics (``tltf.build(metrics=...)`` replaces them).

        Example:
            >>> [m.name for m in get_task("regression").metrics(tltf.info(model))]
            ['mae', 'rmse']
        """
        return []

    def prepare(self, x: Any, y: Any, meta: dict) -> tuple[Any, Any]:
        """User arrays -> ``(x, y)`` for ``tf.data.Dataset.from_tensor_slices``.

        Example:
            >>> meta = {"modality": "text", "input_spec": {"shape": [], "dtype": "string"},
            ...         "class_names": ["a", "b"]}
            >>> get_task("classification").prepare(["first text", "second"], ["b", "a"], meta)
            (['first text', 'second'], array([1, 0]))
        """
        return _inputs(x, meta, self), self.targets(y, meta)

    def targets(self, y: Any, meta: dict) -> np.ndarray:
        """The training targets for labels `y` (class names or indices).

        Example:
            >>> get_task("classification").targets(["dog", "cat"], {"class_names": ["cat", "dog"]})
            array([1, 0])
        """
        return _label_indices(y, meta["class_names"])

    def serve(self, model: Any, inputs: Any, meta: dict) -> dict:
        """The named outputs of the exported SavedModel for a batch of raw `inputs`.

        Example:
            >>> task, meta = get_task("classification"), tltf.info(model)
            >>> sorted(task.serve(model, tf.constant(["a goal"]), meta))
            ['label', 'scores', 'top_k_labels', 'top_k_scores']
        """
        raise NotImplementedError


def _inputs(x: Any, meta: dict, task: Task) -> Any:
    """In-memory examples as the model takes them (`tltf.modalities.Modality.model_inputs`)."""
    return get_modality(meta["modality"]).model_inputs(x, meta, task)


class Classification(Task):
    """Single-label classification: logits in the model, softmax probabilities when served.

    Example:
        >>> model = tltf.build(spec, task="classification", class_names=["cat", "dog"])
    """

    name = "classification"

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
        return {
            "scores": scores,
            "label": tf.gather(names, tf.argmax(scores, axis=-1)),
            "top_k_labels": tf.gather(names, top.indices),
            "top_k_scores": top.values,
        }


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
    model; change it after training with ``tltf.info(model)["head"]["threshold"] = t``.

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


def _thresholds(threshold: Any, class_names: list[str]) -> list[float]:
    values = [threshold] * len(class_names) if np.isscalar(threshold) else list(threshold)
    if len(values) != len(class_names) or not all(0 < float(t) < 1 for t in values):
        raise SpecError(
            f"threshold={threshold!r}: give one number in (0, 1), or one per label "
            f"({len(class_names)})."
        )
    return [float(t) for t in values]


@keras.saving.register_keras_serializable(package="tltf")
class TargetScale(keras.layers.Layer):
    """``z * std + mean``: the regression head predicts standardized values `z`, and the
    model outputs the targets' own units. `mean` and `std` are weights of the model,
    set from the training targets by `adapt_targets` (`tltf.fine_tune` does it).

    Example:
        >>> layer = model.get_layer("target_scale")      # in a regression model
        >>> layer.mean.numpy(), layer.std.numpy()
        (array([3.9], dtype=float32), array([0.8], dtype=float32))
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)

    def build(self, input_shape: Any) -> None:
        k = int(input_shape[-1])
        self.mean = self.add_weight(shape=(k,), initializer="zeros", trainable=False, name="mean")
        self.std = self.add_weight(shape=(k,), initializer="ones", trainable=False, name="std")

    def call(self, z):
        return z * keras.ops.cast(self.std, z.dtype) + keras.ops.cast(self.mean, z.dtype)

    def compute_output_shape(self, input_shape):
        return input_shape


class Regression(Task):
    """One or more real-valued targets (``class_names`` are the target names).

    With ``head={"normalize": True}`` (the default) the head predicts standardized
    targets and a `TargetScale` layer maps them back, so predictions come out in the
    original units; the statistics are stored in the model. The loss is the mean
    squared error, in the original units (Adam, tltf's optimizer, is invariant to
    that scale).

    Example:
        >>> model = tltf.build(spec, task="regression", class_names=["stars"])
        >>> tltf.fine_tune(model, (texts, stars))        # stars: numbers
    """

    name = "regression"
    options = {"normalize": True}
    data_hints = ("regression",)
    min_names = 1
    default_names = ["target"]

    def build(self, features: Any, class_names: list[str], opts: dict) -> Any:
        x = _hidden(features, opts)
        x = keras.layers.Dense(len(class_names), dtype="float32", name="values")(x)
        return TargetScale(name="target_scale", dtype="float32")(x) if opts["normalize"] else x

    def loss(self, meta: dict) -> Any:
        return keras.losses.MeanSquaredError()

    def metrics(self, meta: dict) -> list:
        return [
            keras.metrics.MeanAbsoluteError(name="mae"),
            keras.metrics.RootMeanSquaredError(name="rmse"),
        ]

    def targets(self, y: Any, meta: dict) -> np.ndarray:
        k = len(meta["class_names"])
        y = np.asarray(y, dtype="float32")
        y = y.reshape(-1, 1) if y.ndim == 1 else y
        if y.ndim != 2 or y.shape[1] != k:
            raise DataError(
                f"regression targets of shape {y.shape}: the model predicts {k} target(s) "
                f"{meta['class_names']}; give [N] or [N, {k}] numbers."
            )
        bad = np.flatnonzero(~np.isfinite(y).all(axis=1))
        if bad.size:
            raise DataError(f"regression target at position {bad[0]} is {y[bad[0]]}: not finite.")
        return y

    def serve(self, model: Any, inputs: Any, meta: dict) -> dict:
        """``predictions`` ``[B, k]``, in the targets' units (labels.txt names the columns).

        Example:
            >>> task, meta = get_task("regression"), tltf.info(model)
            >>> task.serve(model, tf.constant(["great", "meh"]), meta)["predictions"].numpy()
            array([[4.6],
                   [2.9]], dtype=float32)
        """
        import tensorflow as tf

        return {"predictions": tf.cast(model(inputs, training=False), tf.float32)}


def adapt_targets(model: Any, targets: Any) -> dict | None:
    """Stores the mean and std of regression `targets` in the model (its `TargetScale`).

    Example:
        >>> tltf.heads.adapt_targets(model, train.targets)
        {'mean': [3.9], 'std': [0.8]}

    Returns the statistics (also in ``tltf.info(model)["target_stats"]``), or None
    when the model does not normalize its targets.
    """
    from tltf.metadata import info

    meta = info(model)
    if meta["task"] != "regression" or not meta["head"].get("normalize"):
        return None
    y = get_task("regression").targets(targets, meta)
    std = y.std(axis=0)
    stats = {"mean": y.mean(axis=0).tolist(), "std": np.where(std > 0, std, 1.0).tolist()}
    layer = model.get_layer("target_scale")
    layer.mean.assign(np.asarray(stats["mean"], "float32"))
    layer.std.assign(np.asarray(stats["std"], "float32"))
    meta["target_stats"] = stats
    return stats


def _tag_correct(y_true, y_pred):
    predicted = keras.ops.cast(keras.ops.argmax(y_pred, axis=-1), "int32")
    return keras.ops.cast(keras.ops.equal(predicted, keras.ops.cast(y_true, "int32")), "float32")


@keras.saving.register_keras_serializable(package="tltf")
class TokenAccuracy(keras.metrics.MeanMetricWrapper):
    """Share of words whose tag is right; padding (-1) and untagged words do not count.

    Example:
        >>> metric = TokenAccuracy()
        >>> metric.update_state([[1, -1]], [[[0.2, 0.8], [0.9, 0.1]]])    # -1: padding
        >>> float(metric.result())
        1.0
    """

    def __init__(self, name: str = "accuracy", dtype: Any = None) -> None:
        super().__init__(fn=_tag_correct, name=name, dtype=dtype)

    def update_state(self, y_true, y_pred, sample_weight=None):
        tagged = keras.ops.cast(keras.ops.not_equal(y_true, IGNORE), "float32")
        if sample_weight is not None:
            tagged = tagged * keras.ops.cast(sample_weight, "float32")
        return super().update_state(y_true, y_pred, sample_weight=tagged)

    def get_config(self) -> dict:
        return {"name": self.name, "dtype": self.dtype}


class TokenClassification(Task):
    """A tag per word (NER, POS) on text backbones.

    Words are the whitespace-separated parts of the text. Each word's tag is
    predicted from the features of its first word piece (the backbone is loaded
    with ``features="words"``), so labels are per word, not per word piece: train on
    ``(texts, tags)`` where ``tags[i]`` has one tag (name or index) per word of
    ``texts[i]``. Words past the backbone's sequence length get no tag.

    Example:
        >>> model = tltf.build("keras_hub:/models/bert", task="token_classification",
        ...                    class_names=["O", "PER", "LOC"])
        >>> tltf.fine_tune(model, (["Ada lives in Paris"], [["PER", "O", "O", "LOC"]]))
    """

    name = "token_classification"
    backbone_options = {"features": "words"}

    def build(self, features: Any, class_names: list[str], opts: dict) -> Any:
        if len(features.shape) != 3:
            raise SpecError(
                "task='token_classification' needs per-word features: use a text backbone "
                "(keras_hub: or hf:) loaded with features='words'."
            )
        x = _hidden(features, opts)
        return keras.layers.Dense(len(class_names), dtype="float32", name="logits")(x)

    def loss(self, meta: dict) -> Any:
        return keras.losses.SparseCategoricalCrossentropy(from_logits=True, ignore_class=IGNORE)

    def metrics(self, meta: dict) -> list:
        return [TokenAccuracy()]

    def prepare(self, x: Any, y: Any, meta: dict) -> tuple[Any, Any]:
        """Texts, and the tags padded with -1 per batch (a ragged tensor).

        Example:
            >>> texts, tags = get_task("token_classification").prepare(
            ...     ["Ada wrote"], [["PER", "O"]], tltf.info(model))    # classes ["O", "PER"]
            >>> tags.to_list()
            [[1, 0]]
        """
        import tensorflow as tf

        texts = _inputs(x, meta, self)
        counts = tf.strings.split(tf.constant(texts, tf.string)).row_lengths().numpy()
        if len(y) != len(texts):
            raise DataError(f"{len(texts)} texts but {len(y)} tag lists.")
        rows = []
        for i, (tags, n) in enumerate(zip(y, counts, strict=True)):
            if isinstance(tags, str) or len(tags) != n:
                raise DataError(
                    f"Example {i}: {n} words (split on whitespace) but "
                    f"{1 if isinstance(tags, str) else len(tags)} tags: {texts[i][:80]!r}."
                )
            rows.append(_label_indices(list(tags), meta["class_names"], what=f"Example {i}: tag"))
        return texts, tf.ragged.constant(rows, dtype=tf.int64, ragged_rank=1)

    def serve(self, model: Any, inputs: Any, meta: dict) -> dict:
        """``words`` ``[B, W]`` (the whitespace-separated words, "" padded), ``tags``
        ``[B, W]`` ("" for padding and for words past the sequence length), ``scores``
        ``[B, W, C]`` softmax per word.

        Example:
            >>> task = get_task("token_classification")
            >>> out = task.serve(model, tf.constant(["Ada wrote"]), tltf.info(model))
            >>> out["words"].numpy().tolist(), out["tags"].numpy().tolist()
            ([[b'Ada', b'wrote']], [[b'PER', b'O']])
        """
        import tensorflow as tf

        scores = tf.nn.softmax(tf.cast(model(inputs, training=False), tf.float32), axis=-1)
        tagged = model.get_layer("text_preprocessor")(inputs)["word_starts"] >= 0
        names = tf.constant(list(meta["class_names"]))
        tags = tf.where(tagged, tf.gather(names, tf.argmax(scores, axis=-1)), "")
        return {"words": tf.strings.split(inputs).to_tensor(""), "tags": tags, "scores": scores}


@keras.saving.register_keras_serializable(package="tltf")
class SupervisedContrastiveLoss(keras.losses.Loss):
    """In-batch supervised contrastive loss (Khosla et al. 2020) on unit-length embeddings:
    each example is pulled towards the other examples of its class in the batch and
    pushed from the rest; examples with no same-class partner in the batch add 0.

    Example:
        >>> loss = SupervisedContrastiveLoss(temperature=0.1)
        >>> float(loss([0, 0, 1], np.array([[1, 0], [1, 0], [0, 1]], "float32")))  # near 0
        3.0517578125e-05
    """

    def __init__(self, temperature: float = 0.1, name: str = "supervised_contrastive", **kwargs):
        super().__init__(name=name, **kwargs)
        self.temperature = float(temperature)

    def call(self, y_true, y_pred):
        ops = keras.ops
        labels = ops.reshape(ops.cast(y_true, "int32"), (-1,))
        emb = ops.cast(y_pred, "float32")
        n = ops.shape(emb)[0]
        eye = ops.eye(n, dtype="float32")
        logits = ops.matmul(emb, ops.transpose(emb)) / self.temperature - 1e9 * eye
        log_prob = logits - ops.logsumexp(logits, axis=1, keepdims=True)
        positive = ops.cast(ops.equal(labels[:, None], labels[None, :]), "float32") * (1 - eye)
        count = ops.sum(positive, axis=1)
        return -ops.sum(positive * log_prob, axis=1) / ops.maximum(count, 1.0)

    def get_config(self) -> dict:
        return {**super().get_config(), "temperature": self.temperature}


@keras.saving.register_keras_serializable(package="tltf")
class NeighbourAccuracy(keras.metrics.Mean):
    """Share of examples whose nearest other example in the batch has the same class.

    Example:
        >>> metric = NeighbourAccuracy()
        >>> metric.update_state([0, 0, 1], np.array([[1, 0], [0.8, 0.6], [0, 1]], "float32"))
        >>> float(metric.result())          # the third one's nearest is of class 0
        0.6666666865348816
    """

    def __init__(self, name: str = "neighbour_accuracy", **kwargs: Any) -> None:
        super().__init__(name=name, **kwargs)

    def update_state(self, y_true, y_pred, sample_weight=None):
        ops = keras.ops
        labels = ops.reshape(ops.cast(y_true, "int32"), (-1,))
        emb = ops.cast(y_pred, "float32")
        sim = ops.matmul(emb, ops.transpose(emb)) - 3.0 * ops.eye(ops.shape(emb)[0])
        nearest = ops.take(labels, ops.argmax(sim, axis=1))
        return super().update_state(ops.cast(ops.equal(nearest, labels), "float32"), sample_weight)

    def get_config(self) -> dict:
        return {"name": self.name, "dtype": self.dtype}


class Embedding(Task):
    """A unit-length projection for search and ranking (``head={"dim": 128}``).

    Trained on class labels with an in-batch supervised contrastive loss, so that
    texts or images of one class lie close together; cosine similarity is then a
    dot product. Served as ``embedding`` ``[B, dim]``.

    Example:
        >>> model = tltf.build(spec, task="embedding", class_names=names, head={"dim": 64})
        >>> vectors = model(tf.constant(["a cat", "a dog"]))      # [2, 64], unit length
    """

    name = "embedding"
    options = {"dim": 128, "temperature": 0.1}

    def build(self, features: Any, class_names: list[str], opts: dict) -> Any:
        x = _hidden(features, opts)
        x = keras.layers.Dense(int(opts["dim"]), dtype="float32", name="projection")(x)
        return keras.layers.UnitNormalization(axis=-1, dtype="float32", name="embedding")(x)

    def loss(self, meta: dict) -> Any:
        return SupervisedContrastiveLoss(temperature=meta["head"]["temperature"])

    def metrics(self, meta: dict) -> list:
        return [NeighbourAccuracy()]

    def serve(self, model: Any, inputs: Any, meta: dict) -> dict:
        """``embedding`` ``[B, dim]``: unit length, compare with a dot product.

        Example:
            >>> task, meta = get_task("embedding"), tltf.info(model)
            >>> task.serve(model, tf.constant(["a", "b"]), meta)["embedding"].shape   # dim 128
            TensorShape([2, 128])
        """
        import tensorflow as tf

        return {"embedding": tf.cast(model(inputs, training=False), tf.float32)}


TASKS: dict[str, Task] = {
    t.name: t
    for t in (
        Classification(),
        TextPair(),
        Multilabel(),
        Regression(),
        TokenClassification(),
        Embedding(),
    )
}


def get_task(name: str) -> Task:
    """The `Task` registered under `name` (one of `TASKS`).

    Example:
        >>> get_task("regression").data_hints
        ('regression',)
    """
    if name not in TASKS:
        raise SpecError(f"task={name!r}; known tasks: {', '.join(TASKS)}.")
    return TASKS[name]
