"""`to_tf_dataset`: what users train on (a tltf Dataset, arrays, tf.data) -> batches for a model.

The model's task says what ``y`` holds (`tltf.heads`), its modality how examples
become tensors (`tltf.modalities`). Training, evaluation, the LR finder and the
feature cache all batch through here.
"""

from __future__ import annotations

from typing import Any

from tltf.errors import DataError
from tltf.heads import get_task
from tltf.metadata import info


def to_tf_dataset(data: Any, model: Any, batch_size: int, *, training: bool, seed: int = 0) -> Any:
    """Turns what `fine_tune` accepts into a batched ``tf.data.Dataset`` of ``(x, y)``.

    Example:
        >>> ds = to_tf_dataset((texts, labels), model, 32, training=True)

    What ``y`` holds depends on the model's task (`tltf.heads`): class names or
    indices; a multi-hot array or label lists (multilabel); numbers (regression);
    one tag list per text (token_classification, padded with -1 per batch). Text
    pairs are ``((texts, second_texts), y)``, or a `tltf.data.Dataset` with ``x2``.
    """
    import tensorflow as tf

    meta = info(model)
    task = get_task(meta["task"])
    if isinstance(data, tf.data.Dataset):
        return data
    if hasattr(data, "as_tf_dataset"):
        _check_dataset(data, task)
        data = data.with_class_names(meta["class_names"])
        return data.as_tf_dataset(
            batch_size, training=training, input_spec=meta["input_spec"], seed=seed
        )
    if isinstance(data, tuple) and len(data) == 2:
        x, y = task.prepare(*data, meta)
        parts = (*(x if isinstance(x, tuple) else (x,)), y)  # a text pair is (texts, seconds)
        sizes = {len(a) for a in parts if hasattr(a, "__len__")}
        if len(sizes) > 1:
            raise DataError(
                f"(x, y) arrays of different lengths ({sorted(sizes)}): give one label per example."
            )
        ds = tf.data.Dataset.from_tensor_slices((x, y))
        if training:
            ds = ds.shuffle(ds.cardinality(), seed=seed, reshuffle_each_iteration=True)
        if isinstance(y, tf.RaggedTensor):  # tags per word: pad each batch to its longest
            ds = ds.ragged_batch(batch_size).map(lambda x, y: (x, y.to_tensor(-1)))
        else:
            ds = ds.batch(batch_size)
        return ds.prefetch(tf.data.AUTOTUNE)
    raise DataError(
        f"Cannot train on {type(data).__name__}: pass a tltf.data.Dataset, a batched "
        "tf.data.Dataset of (x, y), or an (x, y) tuple of arrays."
    )


def _check_dataset(data: Any, task: Any) -> None:
    """A `tltf.data.Dataset` whose kind of labels (and text pairs) fit the model's task."""
    if data.task_hint not in task.data_hints:
        raise DataError(
            f"{data.source} holds {data.task_hint} data, but the model's task is "
            f"{task.name!r}, which trains on {' or '.join(task.data_hints)} data. "
            "Build the model with the matching task= or load the matching labels."
        )
    if (data.x2 is not None) != (len(task.text_inputs) == 2):
        raise DataError(
            f"{data.source}: task={task.name!r} "
            + (
                "needs text pairs (text_pair_column=...)."
                if data.x2 is None
                else "takes one text per example, but the data has text pairs; use task='text_pair'."
            )
        )
