"""Keras 3 `fit` under tf.distribute: the workarounds its versions need (keras #20585)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from types import MethodType
from typing import Any

from tltf.distribute.strategy import _multi_worker

# Keras versions [first, end) whose `fit` needs `patch_keras_fit` (keras #20585).
KERAS_FIT_BUG_VERSIONS = ((3, 0), (3, 16))


def _keras_version() -> tuple[int, int]:
    import keras

    major, minor = keras.__version__.split(".")[:2]
    return int(major), int(minor)


def _local_value(value: Any) -> Any:
    import tensorflow as tf

    if isinstance(value, tf.distribute.DistributedValues):
        return value.values[0]
    return value


def _symbolic_build_from_local_batch(
    self: Any, iterator: Any = None, data_batch: Any = None
) -> None:
    """`TensorFlowTrainer._maybe_symbolic_build`, building from one replica's first batch.

    Keras reduces the first distributed batch with ``strategy.reduce("MEAN")`` only
    to learn its structure and shapes; that fails on string batches (text models)
    and under MultiWorkerMirroredStrategy. One replica's batch has both.
    """
    from keras import tree

    if self._distribute_strategy is None:
        return
    if iterator is not None:
        for _, _, it in iterator:
            data_batch = tree.map_structure(_local_value, next(it))
            break
    with self.distribute_strategy.scope():
        self._symbolic_build(data_batch=data_batch)


def _reduce_scalar_logs(original: Callable) -> Callable:
    """Wraps Keras' `reduce_per_replica`: MEAN over replicas without ``axis=0`` under MWMS.

    Keras reduces the per-replica scalar logs (loss, metrics) with
    ``strategy.reduce("MEAN", v, axis=0)``, which fails on scalars ("Invalid
    reduction dimension 0"). An element-wise mean over replicas is what is meant.
    """

    @functools.wraps(original)
    def reduce_per_replica(values: Any, strategy: Any, reduction: Any) -> Any:
        if _multi_worker(strategy) and reduction in ("auto", "mean"):
            from keras import tree

            def mean(value: Any) -> Any:
                if getattr(value, "shape", None) is not None and len(value.shape) == 0:
                    return strategy.reduce("MEAN", value, axis=None)
                return original(value, strategy, reduction)

            return tree.map_structure(mean, values)
        return original(values, strategy, reduction)

    reduce_per_replica.tltf_original = original
    return reduce_per_replica


def patch_keras_fit(model: Any) -> list[str]:
    """Applies the workarounds `model.fit` needs on its strategy; returns their names.

    Keras 3.0-3.15 (`KERAS_FIT_BUG_VERSIONS`) fails in `fit` under tf.distribute
    (keras #20585): ``"first_batch"`` (with several replicas: the first batch is
    reduced to learn its shapes; fails for strings and under MWMS) is fixed on
    this model only; ``"scalar_logs"`` (MWMS: scalar logs reduced over axis 0)
    wraps Keras' module-level reducer, changing only multi-worker reductions.
    Other Keras versions get nothing. Idempotent; `tltf.compile_model` calls it.

    Example:
        >>> patch_keras_fit(model)          # under MirroredStrategy with two GPUs, Keras 3.15
        ['first_batch']
    """
    first, end = KERAS_FIT_BUG_VERSIONS
    if not first <= _keras_version() < end:
        return []
    from keras.src.backend.tensorflow import trainer as tf_trainer

    strategy = model.distribute_strategy
    applied = []
    if strategy.num_replicas_in_sync > 1 or _multi_worker(strategy):
        object.__setattr__(
            model, "_maybe_symbolic_build", MethodType(_symbolic_build_from_local_batch, model)
        )
        applied.append("first_batch")
    if _multi_worker(strategy):
        if not hasattr(tf_trainer.reduce_per_replica, "tltf_original"):
            tf_trainer.reduce_per_replica = _reduce_scalar_logs(tf_trainer.reduce_per_replica)
        applied.append("scalar_logs")
    return applied
