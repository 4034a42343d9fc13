"""Regression: values in the targets' units, through a `TargetScale` layer."""

from __future__ import annotations

from typing import Any

import keras
import numpy as np

from tltf.errors import DataError
from tltf.heads.base import Task, _hidden


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

    def example_api(self, meta: dict) -> str | None:
        # TF Serving's Regress returns one value per example: one target only
        return "regress" if len(meta["class_names"]) == 1 else None

    def example_outputs(self, outputs: dict, meta: dict) -> dict:
        return {"outputs": outputs["predictions"][:, 0]}


def adapt_targets(model: Any, targets: Any) -> dict | None:
    """Stores the mean and std of regression `targets` in the model (its `TargetScale`).

    Example:
        >>> tltf.heads.adapt_targets(model, train.targets)
        {'mean': [3.9], 'std': [0.8]}

    Returns the statistics (also in ``tltf.info(model).target_stats``), or None
    when the model does not normalize its targets.
    """
    from tltf.metadata import info, update_info

    meta = info(model)
    if meta["task"] != "regression" or not meta["head"].get("normalize"):
        return None
    y = Regression().targets(targets, meta)
    std = y.std(axis=0)
    stats = {"mean": y.mean(axis=0).tolist(), "std": np.where(std > 0, std, 1.0).tolist()}
    layer = model.get_layer("target_scale")
    layer.mean.assign(np.asarray(stats["mean"], "float32"))
    layer.std.assign(np.asarray(stats["std"], "float32"))
    update_info(model, target_stats=stats)
    return stats
