"""Task heads: the layers on top of the backbone, their loss and metrics, and what they serve.

Each task is one `Task` in `TASKS`:

=======================  ==========================================  ============================
task                     Keras model output                          served (`tltf.export`)
=======================  ==========================================  ============================
``classification``       logits ``[B, C]``                           scores, label, top-k
``text_pair``            logits ``[B, C]`` from two texts            scores, label, top-k
``multilabel``           logits ``[B, C]``                           scores, predicted, labels
``regression``           values ``[B, k]`` in the targets' units     predictions
``token_classification`` logits ``[B, W, C]``, one row per word      words, tags, scores
``embedding``            unit-length vectors ``[B, D]``              embedding
=======================  ==========================================  ============================

A task defines `build` (the head layers), `loss` and `metrics` (defaults that
``tltf.build(loss=..., metrics=...)`` overrides), `prepare` (user arrays to
what the model trains on) and `serve` (the outputs of the exported SavedModel).
Head options (``head=``) are ``hidden``, ``dropout`` and ``activation``, plus
the task's own: ``feature_length`` (classification, text_pair: the length the
features are L2-normalized to, None for raw), ``threshold`` (multilabel), ``normalize``
(regression), ``dim`` (embedding).
"""

from __future__ import annotations

from tltf.errors import SpecError
from tltf.heads.base import BASE_HEAD, HEAD_KEYS, IGNORE, Task
from tltf.heads.classification import Classification, Multilabel, TextPair, set_threshold
from tltf.heads.embedding import Embedding, NeighbourAccuracy, SupervisedContrastiveLoss
from tltf.heads.regression import Regression, TargetScale, adapt_targets
from tltf.heads.tokens import TokenAccuracy, TokenClassification

__all__ = [
    "BASE_HEAD",
    "HEAD_KEYS",
    "IGNORE",
    "TASKS",
    "Classification",
    "Embedding",
    "Multilabel",
    "NeighbourAccuracy",
    "Regression",
    "SupervisedContrastiveLoss",
    "TargetScale",
    "Task",
    "TextPair",
    "TokenAccuracy",
    "TokenClassification",
    "adapt_targets",
    "get_task",
    "set_threshold",
    "head_options",
]


TASKS: dict[str, Task] = {
    t.name: t
    for t in (
        Classification(),
        TextPair(),
        Multilabel(),
        Regression(),
        TokenClassification(),
        Embedding(),
    )
}


def get_task(name: str) -> Task:
    """The `Task` registered under `name` (one of `TASKS`).

    Example:
        >>> get_task("regression").data_hints
        ('regression',)
    """
    if name not in TASKS:
        raise SpecError(f"task={name!r}; known tasks: {', '.join(TASKS)}.")
    return TASKS[name]


def head_options(
    head: dict | list | int | None, task: str = "classification", raw_features: bool = True
) -> dict:
    """Normalizes ``head=``: None, hidden sizes, or a dict of `HEAD_KEYS` and the task's keys.

    Example:
        >>> head_options({"hidden": [256], "threshold": 0.3}, "multilabel")
        {'hidden': [256], 'dropout': 0.1, 'activation': 'relu', 'threshold': 0.3}

    `raw_features` False (a backbone that standardizes its features, or random weights)
    defaults ``feature_length`` to None: unit length was measured on raw pretrained
    features only (`tltf.heads.classification.FEATURE_LENGTH`).
    """
    task_obj = get_task(task)
    defaults = {**BASE_HEAD, **task_obj.options}
    if not raw_features and "feature_length" in defaults:
        defaults["feature_length"] = None
    if head is None:
        return defaults
    if isinstance(head, int):
        head = [head]
    if isinstance(head, (list, tuple)):
        head = {"hidden": list(head)}
    if not isinstance(head, dict):
        raise SpecError(f"head={head!r}; give hidden sizes like [256] or a dict with {HEAD_KEYS}.")
    unknown = set(head) - set(defaults)
    if unknown:
        raise SpecError(
            f"head= has unknown keys {sorted(unknown)}; task {task!r} knows {sorted(defaults)}."
        )
    length = head.get("feature_length")
    if length is not None and (
        isinstance(length, bool) or not isinstance(length, (int, float)) or length <= 0
    ):
        raise SpecError(
            f"head={{'feature_length': {length!r}}}: give a length above 0 (e.g. 3.0), or "
            "None to feed the head raw features."
        )
    return {**defaults, **head}
