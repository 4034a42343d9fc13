"""Token classification: a tag per word of a text (`token_classification`)."""

from __future__ import annotations

from typing import Any

import keras

from tltf.errors import DataError, SpecError
from tltf.heads.base import IGNORE, Task, _hidden, _inputs, _label_indices


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
