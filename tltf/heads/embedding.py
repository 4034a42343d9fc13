"""Embeddings trained by pairs or classes (`embedding`): a contrastive loss on unit vectors."""

from __future__ import annotations

from typing import Any

import keras

from tltf.heads.base import Task, _hidden


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
