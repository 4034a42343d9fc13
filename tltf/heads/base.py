"""The `Task` contract, the shared head layers and label handling."""

from __future__ import annotations

from typing import Any

import keras
import numpy as np

from tltf.errors import DataError, SpecError
from tltf.layers import UnitLength
from tltf.modalities import get_modality

HEAD_KEYS = ("hidden", "dropout", "activation")
BASE_HEAD = {"hidden": [], "dropout": 0.1, "activation": "relu"}
IGNORE = -1  # label of words that carry no tag (padding); the loss skips them


def _hidden(features: Any, opts: dict) -> Any:
    x = features
    if opts.get("feature_length"):  # a classifier's features, L2-normalized to this length
        x = UnitLength(opts["feature_length"], name="head_unit_length")(x)
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

    def example_api(self, meta: dict) -> str | None:
        """The TF Serving API that takes serialized `tf.Example`s for this model: ``"classify"``,
        ``"regress"``, or None (Predict only); `example_outputs` gives its outputs.

        Example:
            >>> get_task("classification").example_api(tltf.info(model))
            'classify'
        """
        return None

    def example_outputs(self, outputs: dict, meta: dict) -> dict:
        """`serve`'s outputs in the layout of `example_api`: ``classes`` ``[B, C]`` strings and
        ``scores`` ``[B, C]`` (classify), or ``outputs`` ``[B]`` (regress).

        Example:
            >>> sorted(get_task("classification").example_outputs(outputs, meta))
            ['classes', 'scores']
        """
        raise NotImplementedError


def _inputs(x: Any, meta: dict, task: Task) -> Any:
    """In-memory examples as the model takes them (`tltf.modalities.Modality.model_inputs`)."""
    return get_modality(meta["modality"]).model_inputs(x, meta, task)
