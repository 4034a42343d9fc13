"""Held-out evaluation of classifiers: accuracy, per-class report, confusion matrix."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass
class ClassificationReport:
    """Accuracy, per-class precision / recall / F1 / support, and the confusion matrix.

    ``confusion[i, j]`` counts examples of class i predicted as class j.

    Example:
        >>> report = classification_report([0, 0, 1, 1], [0, 1, 1, 1], ["cat", "dog"])
        >>> report.confusion
        array([[1, 1],
               [0, 2]])
    """

    class_names: list[str]
    confusion: np.ndarray

    @property
    def accuracy(self) -> float:
        """Share of examples predicted right.

        Example:
            >>> report.accuracy
            0.75
        """
        total = self.confusion.sum()
        return float(np.trace(self.confusion) / total) if total else 0.0

    def per_class(self) -> dict[str, dict[str, float]]:
        """``{class: {"precision", "recall", "f1", "support"}}``; 0.0 where undefined.

        Example:
            >>> report.per_class()["cat"]
            {'precision': 1.0, 'recall': 0.5, 'f1': 0.6666666666666666, 'support': 2}
        """
        cm = self.confusion.astype("float64")
        tp = np.diag(cm)
        predicted, actual = cm.sum(axis=0), cm.sum(axis=1)
        precision = np.divide(tp, predicted, out=np.zeros_like(tp), where=predicted > 0)
        recall = np.divide(tp, actual, out=np.zeros_like(tp), where=actual > 0)
        denom = precision + recall
        f1 = np.divide(2 * precision * recall, denom, out=np.zeros_like(tp), where=denom > 0)
        return {
            name: {
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "f1": float(f1[i]),
                "support": int(actual[i]),
            }
            for i, name in enumerate(self.class_names)
        }

    def as_dict(self) -> dict:
        """The whole report as JSON-able values.

        Example:
            >>> json.dumps(report.as_dict())[:30]
            '{"accuracy": 0.75, "per_class"'
        """
        return {
            "accuracy": self.accuracy,
            "per_class": self.per_class(),
            "class_names": self.class_names,
            "confusion": self.confusion.tolist(),
        }

    def format(self) -> str:
        """The report as a text table, one row per class, then the accuracy.

        Example:
            >>> print(report.format())
            class          precision    recall        f1  support
            cat                1.000     0.500     0.667        2
            dog                0.667     1.000     0.800        2
            accuracy                               0.750        4
        """
        width = max(12, *(len(n) for n in self.class_names)) + 2
        lines = [f"{'class':<{width}}{'precision':>10}{'recall':>10}{'f1':>10}{'support':>9}"]
        for name, m in self.per_class().items():
            lines.append(
                f"{name:<{width}}{m['precision']:>10.3f}{m['recall']:>10.3f}"
                f"{m['f1']:>10.3f}{m['support']:>9d}"
            )
        lines.append(f"{'accuracy':<{width}}{self.accuracy:>30.3f}{int(self.confusion.sum()):>9d}")
        return "\n".join(lines)


def classification_report(y_true: Any, y_pred: Any, class_names: list[str]) -> ClassificationReport:
    """Builds the report from integer labels and integer predictions.

    Example:
        >>> classification_report([0, 0, 1, 1], [0, 1, 1, 1], ["cat", "dog"]).accuracy
        0.75
    """
    n = len(class_names)
    confusion = np.zeros((n, n), dtype="int64")
    np.add.at(confusion, (np.asarray(y_true, "int64"), np.asarray(y_pred, "int64")), 1)
    return ClassificationReport(list(class_names), confusion)


def evaluate(model: Any, data: Any, *, batch_size: int = 32) -> ClassificationReport:
    """Evaluates a tltf classifier on held-out data (a tltf Dataset, tf.data or ``(x, y)``).

    Example:
        >>> report = tltf.evaluate(model, test)
        >>> print(report.accuracy); print(report.format())
    """
    from tltf.batches import to_tf_dataset
    from tltf.feature_cache import by_length, compiled_inference
    from tltf.metadata import info

    ds = to_tf_dataset(by_length(data), model, batch_size, training=False)  # texts: less padding
    y_true, y_pred = [], []
    for x, y in ds:
        logits = compiled_inference(model, x)(x)  # traced once, not per batch size
        y_pred.append(np.argmax(np.asarray(logits), axis=-1))
        y_true.append(np.asarray(y))
    return classification_report(
        np.concatenate(y_true), np.concatenate(y_pred), info(model)["class_names"]
    )
