"""Packing text segments with core TensorFlow ops, so that text exports load on older servers.

KerasHub's `MultiSegmentPacker` trims segments with tf-text's `RoundRobinTrimmer`,
whose ``TFText>RoundRobinTrim`` op tensorflow-text 2.12.1 does not have. The stock
TF Serving images 2.14-2.19 link tensorflow-text 2.12.1 and refuse a SavedModel
that uses it (``Op type not registered 'TFText>RoundRobinTrim'``,
tensorflow/serving#2267). `CorePacker` trims the same way with core ops, and
`TextPreprocessor` puts it in place of KerasHub's packer on its first call, so
training, evaluation and the export all pack alike (tests compare it with KerasHub's on random segments).
"""

from __future__ import annotations

from typing import Any

import keras
import tensorflow as tf
from keras_hub.layers import MultiSegmentPacker


def round_robin_trim(segments: list[tf.RaggedTensor], budget: Any) -> list[tf.RaggedTensor]:
    """Trims ragged ``[B, (T)]`` segments to `budget` tokens per row, one token from each in turn.

    The result of tf-text's ``RoundRobinTrimmer(budget).trim(segments)``, in core ops:
    token ``j`` of segment ``i`` is the ``sum_s min(len_s, j) + #{s < i: len_s > j}``-th
    token taken, and is kept when that rank is below the budget.

    Example:
        >>> round_robin_trim([tf.ragged.constant([[1, 2, 3]]), tf.ragged.constant([[4, 5]])], 3)
        [<tf.RaggedTensor [[1, 2]]>, <tf.RaggedTensor [[4]]>]
    """
    lengths = [s.row_lengths() for s in segments]
    trimmed = []
    for i, segment in enumerate(segments):
        position = tf.ragged.range(lengths[i]).flat_values  # j, per token
        row = segment.value_rowids()
        rank = tf.zeros_like(position)
        for s, length in enumerate(lengths):
            per_token = tf.gather(length, row)
            rank += tf.minimum(per_token, position)
            if s < i:
                rank += tf.cast(per_token > position, position.dtype)
        keep = segment.with_flat_values(rank < tf.cast(budget, rank.dtype))
        trimmed.append(tf.ragged.boolean_mask(segment, keep))
    return trimmed


@keras.saving.register_keras_serializable(package="tltf")
class CorePacker(MultiSegmentPacker):
    """KerasHub's `MultiSegmentPacker` whose round-robin trim runs on core TensorFlow ops.

    Example:
        >>> packer = CorePacker(sequence_length=8, start_value=2, end_value=3)
        >>> packer((tf.ragged.constant([[5, 6, 7, 8, 9]]), tf.ragged.constant([[10, 11]])))
    """

    def _trim_inputs_tf(
        self, inputs, sequence_length=None, add_start_value=True, add_end_value=True
    ):
        if self.truncate != "round_robin":
            return super()._trim_inputs_tf(inputs, sequence_length, add_start_value, add_end_value)
        sequence_length = sequence_length or self.sequence_length
        special = (
            (len(self.start_value) if add_start_value else 0)
            + (len(inputs) - 1) * len(self.sep_value)
            + (len(self.end_value) if add_end_value else 0)
        )
        return round_robin_trim(list(inputs), sequence_length - special)


def use_core_packer(preprocessor: Any) -> None:
    """Builds a KerasHub text preprocessor and swaps its packer for a `CorePacker`.

    Preprocessors without a `MultiSegmentPacker` (or with a subclass of it) keep theirs.

    Example:
        >>> use_core_packer(keras_hub.models.TextClassifierPreprocessor.from_preset(folder))
    """
    if getattr(preprocessor, "packer", None) is None and hasattr(preprocessor, "build"):
        preprocessor.build(None)
    packer = getattr(preprocessor, "packer", None)
    if type(packer) is not MultiSegmentPacker:
        return
    tracker = getattr(preprocessor, "_tracker", None)  # Keras locks a built layer's state
    locked = bool(getattr(tracker, "locked", False))
    if locked:
        tracker.unlock()
    try:
        preprocessor.packer = CorePacker.from_config(packer.get_config())  # no weights
    finally:
        if locked:
            tracker.lock()
