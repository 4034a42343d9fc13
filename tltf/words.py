"""Per-word features for text backbones: what ``task="token_classification"`` trains on.

A word is a whitespace-separated part of the text. `WordPreprocessor` tokenizes
each word into word pieces, packs them like the backbone's own preprocessor
(``[CLS] pieces [SEP]``), and adds ``word_starts``: the position of each word's
first piece, -1 for padding words and for words cut off by the sequence length.
`WordFeatures` gathers the backbone's token features at those positions, so a
head sees one feature vector per word, and its mask leaves out the words with no
position (the loss and metrics skip them).

Tokenizing word by word gives the same pieces as tokenizing the text for
WordPiece and SentencePiece vocabularies (BERT, MiniLM, ALBERT, DeBERTa); for
byte-level BPE (RoBERTa, GPT-2) a word then lacks its leading-space marker.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from tltf.layers import TextPreprocessor
from tltf.packing import use_core_packer


@keras.saving.register_keras_serializable(package="tltf")
class WordPreprocessor(TextPreprocessor):
    """Raw strings in; the backbone's inputs plus ``word_starts`` ``[B, W]`` out.

    Example:
        >>> pre = WordPreprocessor(keras_hub_preprocessor, feature_names=("padding_mask",
        ...                        "segment_ids", "token_ids"))
        >>> pre(tf.constant(["Ada Lovelace wrote"]))["word_starts"]   # [[1, 2, 4]]
    """

    def call(self, inputs):
        pre = self.preprocessor
        use_core_packer(pre)  # builds it (see TextPreprocessor.call)
        words = tf.strings.split(inputs)
        pieces = pre.tokenizer(words.flat_values)
        if not isinstance(pieces, tf.RaggedTensor):  # KerasHub's Python path (eager calls)
            pieces = tf.RaggedTensor.from_row_lengths(
                tf.constant([t for p in pieces for t in p], tf.int32), [len(p) for p in pieces]
            )
        n = pieces.row_lengths()
        tokens = tf.RaggedTensor.from_nested_row_lengths(
            pieces.flat_values, [words.row_lengths(), n]
        ).merge_dims(1, 2)
        first_of_text = tf.cumsum(tokens.row_lengths(), exclusive=True)
        starts = tf.cumsum(n, exclusive=True) - tf.gather(first_of_text, words.value_rowids()) + 1
        kept = (n > 0) & (starts < pre.packer.sequence_length - 1)  # [CLS] ... [SEP]
        word_starts = words.with_flat_values(tf.where(kept, starts, -1)).to_tensor(-1)
        token_ids, segment_ids = pre.packer(tokens)
        x = {
            "token_ids": token_ids,
            "segment_ids": segment_ids,
            "padding_mask": token_ids != pre.tokenizer.pad_token_id,
        }
        longest = tf.maximum(
            tf.reduce_max(tf.reduce_sum(tf.cast(x["padding_mask"], "int32"), 1)), 1
        )
        out = {key: x[key][:, :longest] for key in self.feature_names}
        out["word_starts"] = tf.cast(word_starts, "int32")
        return out

    def compute_output_spec(self, inputs):
        spec = super().compute_output_spec(inputs)
        spec["word_starts"] = keras.KerasTensor((inputs.shape[0], None), dtype="int32")
        return spec


@keras.saving.register_keras_serializable(package="tltf")
class WordFeatures(keras.layers.Layer):
    """Token features ``[B, T, H]`` and ``word_starts`` ``[B, W]`` -> word features ``[B, W, H]``.

    A word with no position (-1) gets zeros and is masked out.
    """

    def call(self, inputs):
        tokens, starts = inputs
        kept = starts >= 0
        gathered = tf.gather(tokens, tf.maximum(starts, 0), batch_dims=1)
        return gathered * tf.cast(kept, gathered.dtype)[..., None]

    def compute_mask(self, inputs, mask=None):
        return inputs[1] >= 0

    def compute_output_shape(self, input_shape):
        tokens, starts = input_shape
        return (*starts, tokens[-1])
