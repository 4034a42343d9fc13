"""Labels from rows and arrays: class indices and names, 0/1 flags, label lists, numbers.

Each error names the row (`where`) and the fix; the loaders in `tltf.data.tabular`
call these for CSV, JSON Lines and arrays alike.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from tltf.errors import DataError

_TRUE = {"1", "1.0", "true", "yes", "y", "t"}
_FALSE = {"0", "0.0", "false", "no", "n", "f", ""}


def int_or_named_labels(
    ys: np.ndarray, class_names: Sequence[str] | None, where: Callable[[int], str], source: str
) -> tuple[np.ndarray, list[str]]:
    """Integer labels index `class_names` (default "0".."K-1"); other labels are names."""
    if ys.dtype.kind == "f" and np.all(np.mod(ys, 1) == 0):
        ys = ys.astype(np.int64)
    if ys.dtype.kind in "iu":
        k = len(class_names) if class_names is not None else int(ys.max()) + 1 if len(ys) else 0
        bad = np.flatnonzero((ys < 0) | (ys >= k))
        if len(bad):
            raise DataError(
                f"{where(bad[0])}: label {ys[bad[0]]} is not an index into the {k} class_names."
            )
        names = list(class_names) if class_names is not None else [str(i) for i in range(k)]
        need_two_classes(names, source)
        return ys, names
    return labels_from_values([str(v) for v in ys], class_names, where, source, "y")


def labels_from_values(
    values: Sequence[str],
    class_names: Sequence[str] | None,
    where: Callable[[int], str],
    source: str,
    column: str,
) -> tuple[np.ndarray, list[str]]:
    """Label strings -> (indices, class names); default names are the sorted labels.

    Labels are stripped of surrounding whitespace (``"cats "`` is ``"cats"``), with a
    warning naming the first such row; labels that differ only in case are warned about.
    """
    for i, v in enumerate(values):
        if not v.strip():
            raise DataError(f"{where(i)}: empty label in {column!r}; fill it in or delete the row.")
    padded = [i for i, v in enumerate(values) if v != v.strip()]
    if padded:
        warnings.warn(
            f"{where(padded[0])}: label {values[padded[0]]!r} has surrounding whitespace; "
            f"{len(padded)} label(s) in {column!r} were stripped (it is {values[padded[0]].strip()!r}).",
            stacklevel=4,
        )
        values = [v.strip() for v in values]
    _warn_case_twins(values, source, column)
    if class_names is None:
        names = sorted(set(values))
        need_two_classes(names, source)
    else:
        names = [str(c) for c in class_names]
    index = {c: i for i, c in enumerate(names)}
    for i, v in enumerate(values):
        if v not in index:
            raise DataError(
                f"{where(i)}: label {v!r} is not in class_names {names}. Add it to "
                "class_names, or drop the rows that carry it."
            )
    return np.array([index[v] for v in values], dtype=np.int64), names


def _warn_case_twins(values: Sequence[str], source: str, column: str) -> None:
    """Warns about labels that differ only in case ("Cats" and "cats"): two classes."""
    spellings: dict[str, set[str]] = {}
    for v in values:
        spellings.setdefault(v.casefold(), set()).add(v)
    twins = [sorted(group) for group in spellings.values() if len(group) > 1]
    if twins:
        warnings.warn(
            f"{source}: labels in {column!r} that differ only in case are separate classes: "
            + "; ".join(" and ".join(repr(v) for v in group) for group in twins[:3])
            + ". Spell each class one way if they are the same.",
            stacklevel=4,
        )


def need_two_classes(names: Sequence[str], source: str) -> None:
    if len(names) < 2:
        raise DataError(
            f"{source}: only one class ({', '.join(names) or 'none'}); classification needs "
            "at least 2. Add examples of other classes, or pass class_names=[...] to "
            "evaluate against a model's classes."
        )


def numbers(rows: list[dict], names: Sequence[str], where: Callable[[int], str]) -> np.ndarray:
    out = np.zeros((len(rows), len(names)), dtype=np.float64)
    for i, r in enumerate(rows):
        for j, n in enumerate(names):
            try:
                value = float(r.get(n))
            except (TypeError, ValueError):
                raise DataError(
                    f"{where(i)}: {r.get(n)!r} in column {n!r} is not a number; "
                    "regression targets must be numeric."
                ) from None
            if not math.isfinite(value):
                raise DataError(
                    f"{where(i)}: target {value} in column {n!r} is NaN or infinite; "
                    "fix or drop that row."
                )
            out[i, j] = value
    return out


def flag(value: Any, where: str, column: str) -> float:
    text = str(value if value is not None else "").strip().lower()
    if text in _TRUE:
        return 1.0
    if text in _FALSE:
        return 0.0
    raise DataError(f"{where}: {value!r} in label column {column!r}; use 0/1 (or true/false).")


def multi_hot(
    values: list, class_names: Sequence[str] | None, where: Callable[[int], str], path: str
) -> dict:
    lists = [[str(v) for v in (value if isinstance(value, list) else [value])] for value in values]
    names = (
        [str(c) for c in class_names]
        if class_names is not None
        else sorted({v for vs in lists for v in vs})
    )
    index = {c: i for i, c in enumerate(names)}
    targets = np.zeros((len(lists), len(names)), dtype=np.float32)
    for i, vs in enumerate(lists):
        for v in vs:
            if v not in index:
                raise DataError(
                    f"{where(i)}: label {v!r} is not in class_names {names}. Add it to "
                    "class_names, or drop it from that row."
                )
            targets[i, index[v]] = 1.0
    return {"targets": targets, "class_names": names}
