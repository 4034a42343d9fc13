"""Texts: strings in (one per example, or a pair for `text_pair`), tokenized in the model.

The tokenizer is part of the backbone's preprocessor, so a model and its export
take raw strings. Training batches texts of similar length together, since
tltf's text models pad each batch to its longest text.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from tltf.errors import DataError, ExportError
from tltf.modalities.base import Loaded, Modality
from tltf.modalities.registry import register_modality
from tltf.modalities.text_files import TEXT_EXTENSIONS, check_texts, read_text_file

# Training batches: sort pools of this many batches by length, so a batch holds similar lengths.
POOL_BATCHES = 32


class Text(Modality):
    name = "text"
    file_kind = "a .txt"
    default_column = "text"
    file_types = " ".join(TEXT_EXTENSIONS)
    default_lr = 5e-5
    # MiniLM, debian-topics, 3 seeds: top:2 beat the frozen head on every seed, by 3.3
    # points at 8 rows per class and 2.5 at 32 (benchmarks/README.md, unit-length features)
    small_data_open = 2
    end_groups = ("embeddings", "pooler")
    xla_blocker = "its tokenizer's string ops cannot be XLA-compiled"
    tflite_blocker = "TFLite has no kernels for the tf-text tokenizer ops"
    serving_imports = (("tensorflow_text", "tensorflow-text"),)  # the tokenizer's ops

    def accepts(self, input_spec: dict) -> bool:
        return input_spec.get("dtype") == "string"

    def inputs(self, input_spec: dict, task: Any) -> Any:
        """One string input per `task.text_inputs` (``text``; ``text``, ``text_pair``)."""
        import keras

        inputs = tuple(keras.Input(shape=(), dtype="string", name=n) for n in task.text_inputs)
        return inputs[0] if len(inputs) == 1 else inputs

    def model_inputs(self, x: Any, meta: dict, task: Any) -> Any:
        """Lists of str (a tuple of two lists for pairs)."""
        pair = len(task.text_inputs) == 2
        if pair != (isinstance(x, tuple) and len(x) == 2):
            raise DataError(
                f"task={task.name!r} takes "
                + ("x=(texts, second_texts)." if pair else "x as one list of texts.")
            )
        parts = x if pair else (x,)
        texts = tuple(np.asarray(p, dtype=object).astype(str).tolist() for p in parts)
        return texts if pair else texts[0]

    # -- data -------------------------------------------------------------------
    def is_file(self, path: str) -> bool:
        return path.lower().endswith(TEXT_EXTENSIONS)

    def load_files(self, paths: Sequence[str], *, strict: bool, max_pixels: int) -> Loaded:
        return Loaded([read_text_file(p) for p in paths], np.arange(len(paths)))

    def load_cells(self, cells, where, column, folder, *, strict, max_pixels) -> Loaded:
        check_texts(cells, where, column)
        return Loaded(list(cells), np.arange(len(cells)))

    def load_records(self, items, names, *, strict, max_pixels) -> Loaded:
        texts = []
        for raw, name in zip(items, names, strict=True):
            try:
                text = raw.decode("utf-8") if isinstance(raw, bytes) else str(raw)
            except UnicodeDecodeError:
                raise DataError(f"{name}: text is not valid UTF-8.") from None
            if not text.strip():
                raise DataError(f"{name}: empty text; filter it out of the dataset.")
            texts.append(text)
        return Loaded(texts, np.arange(len(texts)))

    def from_array(self, xs: np.ndarray, source: str) -> Any:
        if xs.ndim != 1 or not all(isinstance(v, str) for v in xs):
            return None
        texts = list(xs)
        check_texts(texts, lambda i: f"{source}: x[{i}]")
        return texts

    def claims_tfds_feature(self, feature: Any) -> bool:
        return np.dtype(getattr(feature, "np_dtype", None)).kind in "OSU"

    def batches(self, data, y, batch_size, *, training, seed, input_spec, cache) -> Any:
        """tf.string ``[B]`` (a pair for text pairs); in training, shuffled (seeded, new each
        epoch) with texts of similar length in a batch."""
        import tensorflow as tf

        texts = tf.constant(list(data.x), dtype=tf.string)
        x = texts if data.x2 is None else (texts, tf.constant(data.x2, dtype=tf.string))
        if not training:
            return tf.data.Dataset.from_tensor_slices((x, y)).batch(batch_size)
        n = len(data)
        lengths = tf.constant(self.example_lengths(data), dtype=tf.int32)
        y = tf.constant(y)

        def sort_pool(idx):
            return tf.gather(idx, tf.argsort(tf.gather(lengths, idx), stable=True))

        @tf.autograph.experimental.do_not_convert  # plain ops; AutoGraph only warns on the lambda
        def gather(idx):
            return tf.nest.map_structure(lambda t: tf.gather(t, idx), x), tf.gather(y, idx)

        return (
            tf.data.Dataset.range(n)
            .shuffle(max(n, 1), seed=seed, reshuffle_each_iteration=True)
            .batch(batch_size * POOL_BATCHES)
            .map(sort_pool)
            .unbatch()
            .batch(batch_size)
            .shuffle(4 * POOL_BATCHES, seed=seed + 1, reshuffle_each_iteration=True)
            .map(gather)
        )

    # -- the feature cache --------------------------------------------------------
    def example_lengths(self, data: Any) -> np.ndarray:
        """Characters per example (both texts of a pair)."""
        pairs = data.x2 or [""] * len(data)
        return np.array(
            [len(a) + len(b) for a, b in zip(data.x, pairs, strict=True)], dtype=np.int64
        )

    def fingerprint(self, data: Any, items: Any) -> None:
        if data.x2 is not None:
            items(data.x2)
        items(data.x)

    # -- export ---------------------------------------------------------------------
    def signatures(self, module: Any, meta: dict, serve: Any, task: Any) -> dict:
        """``serving_default`` takes strings ``[N]``, one input per `task.text_inputs`."""
        import tensorflow as tf

        specs = [tf.TensorSpec([None], tf.string, name=name) for name in task.text_inputs]

        @tf.function(input_signature=specs)
        def serve_text(*texts):
            # ensure_shape checks at run time: a scalar or [N, 1] string is refused
            return serve([tf.ensure_shape(t, [None]) for t in texts])

        module.serve_text = serve_text
        return {"serving_default": serve_text}

    def samples(self, meta: dict, parity_inputs: Any, task: Any) -> dict:
        names = task.text_inputs
        if parity_inputs is None:
            texts = ["", "hello", "A longer example sentence, with punctuation! " * 20]
            parity_inputs = (texts, texts[::-1]) if len(names) == 2 else texts
        columns = parity_inputs if len(names) == 2 else (parity_inputs,)
        if not _text_columns(columns, len(names)):
            raise ExportError(
                "parity_inputs for a text model: a non-empty list of strings"
                + (", as (texts, second_texts) of equal length." if len(names) == 2 else ".")
            )
        batches = zip(names, columns, strict=True)
        return {"serving_default": {name: np.array(list(c), dtype=object) for name, c in batches}}

    def serving_example(self, x: Any) -> tuple[dict, str]:
        import tensorflow as tf

        return {"text": tf.constant([x])}, x

    # -- the CLI ----------------------------------------------------------------------
    def backbone_options(self, cfg: dict) -> dict:
        return {"sequence_length": cfg.get("sequence_length")}


def _text_columns(columns: Any, count: int) -> bool:
    """Whether `columns` are `count` equally long, non-empty lists of strings."""
    if not isinstance(columns, (list, tuple)) or len(columns) != count:
        return False
    lists = [list(c) for c in columns if isinstance(c, (list, tuple, np.ndarray))]
    return (
        len(lists) == count
        and all(isinstance(t, str) for c in lists for t in c)
        and len({len(c) for c in lists}) == 1
        and len(lists[0]) > 0
    )


TEXT = register_modality(Text())
