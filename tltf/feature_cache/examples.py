"""The examples of a `tltf.data.Dataset` or of ``(x, y)`` arrays, as the feature cache sees them.

Counting them, taking subsets, ordering texts by length (so that batches pad
little), and hashing their content into a cache key (`tltf.feature_cache.store`).
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from tltf.modalities import get_modality


def num_examples(data: Any) -> int:
    """Examples in a `tltf.data.Dataset` or ``(x, y)`` arrays.

    Example:
        >>> num_examples((texts, labels)) == len(labels)
        True
    """
    return len(data) if hasattr(data, "as_tf_dataset") else len(data[1])


def subset(data: Any, idx: np.ndarray) -> Any:
    """The examples `idx` of a `tltf.data.Dataset` or of ``(x, y)`` arrays, in that order.

    Example:
        >>> texts, labels = subset((texts, labels), np.array([2, 0]))
    """
    if hasattr(data, "as_tf_dataset"):
        return data.subset(idx)
    pick = [_as_array(part)[idx] for part in _parts(data)]
    return (tuple(pick[:2]) if _is_pair(data[0]) else pick[0]), pick[-1]


def by_length(data: Any) -> Any:
    """Text examples in order of length (pairs: both texts), so batches pad little; else `data`.

    Example:
        >>> ds = to_tf_dataset(by_length(test), model, 32, training=False)
    """
    lengths = example_lengths(data)
    return data if lengths is None else subset(data, np.argsort(lengths, kind="stable"))


def fingerprintable(data: Any) -> bool:
    return hasattr(data, "as_tf_dataset") or (isinstance(data, tuple) and len(data) == 2)


def _as_array(values: Any) -> np.ndarray:
    """`values` as an array: numbers as they are; texts and ragged lists as objects (a
    fixed-width str array would take 4 bytes times the longest text per example)."""
    if isinstance(values, np.ndarray):
        return values
    values = list(values)
    if values and not isinstance(values[0], (str, bytes)):
        try:
            return np.asarray(values)
        except ValueError:  # lists of different lengths
            pass
    out = np.empty(len(values), dtype=object)
    for i, value in enumerate(values):
        out[i] = value
    return out


def _is_pair(x: Any) -> bool:
    """Whether `x` is ``(texts, second_texts)`` of a text-pair model."""
    return isinstance(x, tuple) and len(x) == 2 and not isinstance(x[0], (str, bytes))


def _parts(data: Any) -> list:
    """The per-example sequences of ``(x, y)`` arrays: x (both texts of pairs), then y."""
    x, y = data
    return [*(x if _is_pair(x) else [x]), y]


def example_lengths(data: Any) -> np.ndarray | None:
    """A size per example to sort the extraction by (texts: characters), or None."""
    if hasattr(data, "as_tf_dataset"):
        return get_modality(data.modality).example_lengths(data)
    if not fingerprintable(data):
        return None
    texts = [_as_array(part) for part in _parts(data)[:-1]]
    if any(t.ndim != 1 or t.dtype.kind not in "UO" for t in texts):
        return None
    return np.sum([[len(str(t)) for t in part] for part in texts], axis=0)


def hash_data(data: Any, digest: Any) -> None:
    """Feeds the examples and labels into `digest`: texts, pixels, or files' paths and contents.

    Files are keyed by what they hold, not by size and mtime: an image rewritten in place
    with the same size and mtime is a new entry (reading them costs far less than decoding).
    """

    def items(values: Any, files: bool = False) -> None:
        a = _as_array(values)
        digest.update(f"{a.dtype.str}{a.shape}".encode())
        if a.dtype != object:
            digest.update(np.ascontiguousarray(a).tobytes())
            return
        for item in a.tolist():
            blob = item if isinstance(item, bytes) else str(item).encode()
            digest.update(len(blob).to_bytes(8, "little") + blob)
            if files:
                with open(item, "rb") as fh:
                    content = fh.read()
                digest.update(len(content).to_bytes(8, "little") + content)

    if not hasattr(data, "as_tf_dataset"):
        for part in _parts(data):
            items(part)
        return
    digest.update(json.dumps([data.modality, data.task_hint, data.class_names]).encode())
    items(data.y)
    get_modality(data.modality).fingerprint(data, items)
