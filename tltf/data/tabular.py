"""Row sources: CSV and JSON Lines files, and in-memory arrays (numpy, lists, pandas)."""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from tltf.data.dataset import Dataset, finish
from tltf.data.labels import flag, int_or_named_labels, labels_from_values, multi_hot, numbers
from tltf.errors import DataError
from tltf.modalities import get_modality, modalities
from tltf.modalities.image_files import MAX_PIXELS
from tltf.modalities.text_files import check_texts, decode_utf8

Columns = str | Sequence[str] | None


def from_csv(
    path: str | os.PathLike,
    *,
    text_column: str | None = None,
    image_column: str | None = None,
    label_column: str | Sequence[str] = "label",
    text_pair_column: str | None = None,
    target_column: str | Sequence[str] | None = None,
    validation_split: float | None = None,
    test_split: float | None = None,
    seed: int = 0,
    class_names: Sequence[str] | None = None,
    strict: bool = False,
    max_pixels: int = MAX_PIXELS,
    verbose: bool = True,
    **input_columns: str,
) -> Dataset | tuple[Dataset, ...]:
    """Loads a CSV file with a header row: one example per row.

    Example:
        >>> train, val = tltf.data.from_csv("train.csv", text_column="text",
        ...                                 label_column="label", validation_split=0.1)

    Args:
        text_column / image_column: the input column; with neither, a column named
            "text". Image paths are relative to the CSV file's folder.
        **input_columns: ``<modality>_column=`` for the input column of any other
            registered modality (`tltf.modalities`), like the two above.
        label_column: the class label column, or a list of 0/1 columns for multi-label
            (their names become the class names).
        text_pair_column: a second text column, for text-pair tasks (stored as ``x2``).
        target_column: numeric column(s) for regression, instead of labels.
        validation_split / test_split: fractions held out, stratified by class, seeded.
        class_names: the label set and its order; default the sorted labels found.
        strict: raise on a corrupt or missing image file instead of skipping it.
        max_pixels: larger images are refused (decompression-bomb guard).
        verbose: print the one-line load report.

    Returns:
        A `Dataset`, or ``(train, val)``, ``(train, test)``, ``(train, val, test)`` when splits are asked.
    """
    args = {k: v for k, v in locals().items() if k != "input_columns"}
    return _load_table(_csv_rows, **args, **input_columns)


def from_jsonl(
    path: str | os.PathLike,
    *,
    text_column: str | None = None,
    image_column: str | None = None,
    label_column: str | Sequence[str] = "label",
    text_pair_column: str | None = None,
    target_column: str | Sequence[str] | None = None,
    validation_split: float | None = None,
    test_split: float | None = None,
    seed: int = 0,
    class_names: Sequence[str] | None = None,
    strict: bool = False,
    max_pixels: int = MAX_PIXELS,
    verbose: bool = True,
    **input_columns: str,
) -> Dataset | tuple[Dataset, ...]:
    """Loads a JSON Lines file: one JSON object per line, keys as in `from_csv`.

    A label that is a list (``{"text": "...", "label": ["a", "b"]}``) makes the
    data multi-label.

    Example:
        >>> train = tltf.data.from_jsonl("reviews.jsonl", text_column="review", label_column="stars")
    """
    args = {k: v for k, v in locals().items() if k != "input_columns"}
    return _load_table(_jsonl_rows, **args, **input_columns)


def _load_table(
    read: Callable[[str], tuple[list[dict], list[int], list[str]]],
    path: str | os.PathLike,
    *,
    validation_split: float | None,
    test_split: float | None,
    seed: int,
    verbose: bool,
    **columns: Any,
) -> Dataset | tuple[Dataset, ...]:
    """The shared body of `from_csv` and `from_jsonl`: `read` gives the rows, their line
    numbers and the column names; `columns` are the loaders' column options."""
    path = os.fspath(path)
    rows, lines, header = read(path)
    data = _from_records(rows, lines, header, path, **columns)
    return finish(
        data, validation_split=validation_split, test_split=test_split, seed=seed, verbose=verbose
    )


def _csv_rows(path: str) -> tuple[list[dict], list[int], list[str]]:
    rows, lines, header = [], [], None
    reader = csv.reader(io.StringIO(_read_utf8(path), newline=""))
    previous = 0
    for row in reader:
        start, previous = previous + 1, reader.line_num
        if not row or all(not cell.strip() for cell in row):
            continue
        if header is None:
            header = [h.strip() for h in row]
            continue
        if len(row) > len(header):
            raise DataError(
                f"{path} line {start}: {len(row)} fields, header has {len(header)} (quote "
                'texts that contain commas: "a, b").'
            )
        rows.append(dict(zip(header, row, strict=False)))
        lines.append(start)
    if header is None:
        raise DataError(f"{path} is empty; it needs a header row and one row per example.")
    return rows, lines, header


def _jsonl_rows(path: str) -> tuple[list[dict], list[int], list[str]]:
    rows, lines, keys = [], [], {}
    for number, line in enumerate(_read_utf8(path).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(
                f"{path} line {number}: not valid JSON ({e.msg}, column {e.colno}). "
                "Each line must hold one JSON object; fix or delete that line."
            ) from None
        if not isinstance(row, dict):
            raise DataError(
                f"{path} line {number}: a JSON {type(row).__name__}, not an object like "
                '{"text": "...", "label": "..."}.'
            )
        keys.update(dict.fromkeys(row))
        rows.append(row)
        lines.append(number)
    if not rows:
        raise DataError(f"{path} holds no JSON objects; it needs one object per line.")
    return rows, lines, list(keys)


def from_arrays(
    x: Any,
    y: Any = None,
    *,
    class_names: Sequence[str] | None = None,
    targets: Any = None,
    x2: Any = None,
    validation_split: float | None = None,
    test_split: float | None = None,
    seed: int = 0,
    source: str = "arrays",
    verbose: bool = False,
) -> Dataset | tuple[Dataset, ...]:
    """Wraps in-memory examples: numpy arrays, lists or pandas Series.

    x: strings (text), or an image array ``[N, H, W]`` / ``[N, H, W, 1|3|4]`` of 0-255
    pixels. y: class labels (strings, or ints that index `class_names`), or a 2-D
    0/1 array ``[N, C]`` for multi-label. `targets` instead of y: regression values.
    x2: second texts for text pairs.

    Example:
        >>> data = tltf.data.from_arrays(df["review"], df["label"], validation_split=0.2)
    """
    xs = _to_numpy(x, "x")
    claimed = ((m.name, m.from_array(xs, source)) for m in modalities())
    modality, xs = next(((name, v) for name, v in claimed if v is not None), (None, xs))
    if modality is None:
        raise DataError(
            f"{source}: x of shape {xs.shape} and dtype {xs.dtype}; give a list of strings, "
            "an image array [N, H, W, C] or 16 kHz waveforms [N, samples] (images of different "
            "sizes: save them to a folder and use from_directory)."
        )

    def where(i: int) -> str:
        return f"{source} example {i}"

    second = None
    if x2 is not None:
        second = [str(v) for v in _to_numpy(x2, "x2")]
        check_texts(second, lambda i: f"{source}: x2[{i}]")
    if (y is None) == (targets is None):
        raise DataError(
            f"{source}: give either labels y=... or regression targets=..., exactly one."
        )
    labels = None
    if targets is not None:
        task, values = "regression", _to_numpy(targets, "targets").astype(np.float64)
        bad = np.flatnonzero(~np.isfinite(values).reshape(len(values), -1).all(axis=1))
        if len(bad):
            raise DataError(f"{where(bad[0])}: regression target is NaN or infinite; fix it.")
        width = 1 if values.ndim == 1 else values.shape[1]
        names = class_names or (["target"] if width == 1 else [f"target_{i}" for i in range(width)])
    elif np.ndim(ys := _to_numpy(y, "y")) == 2:
        task, values = "multi_label", ys
        names = class_names or [str(i) for i in range(ys.shape[1])]
    else:
        task, values = "classification", None
        labels, names = int_or_named_labels(ys, class_names, where, source)
    data = Dataset(
        xs,
        labels,
        targets=values,
        class_names=names,
        modality=modality,
        source=source,
        x2=second,
        task_hint=task,
    )
    if len(data) == 0:
        raise DataError(f"{source}: no examples.")
    return finish(
        data, validation_split=validation_split, test_split=test_split, seed=seed, verbose=verbose
    )


def _to_numpy(values: Any, name: str) -> np.ndarray:
    if hasattr(values, "columns"):
        raise DataError(f"{name} is a DataFrame; pass one column, e.g. df['text'].")
    if hasattr(values, "to_numpy"):
        values = values.to_numpy()
    if isinstance(values, (list, tuple)) and values and isinstance(values[0], str):
        return np.array(values, dtype=object)
    if isinstance(values, (list, tuple)) and len({np.shape(v) for v in values}) > 1:
        ragged = np.empty(len(values), dtype=object)  # e.g. waveforms of different lengths
        ragged[:] = list(values)
        return ragged
    return np.asarray(values)


def _read_utf8(path: str) -> str:
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        raise DataError(f"{path}: no such file. Check the path (cwd is {os.getcwd()}).") from None
    except IsADirectoryError:
        raise DataError(f"{path} is a folder; give a file, or use from_directory.") from None
    return decode_utf8(raw, path)


def _input_column(header: Sequence[str], path: str, given: dict) -> tuple[str, str]:
    """``(modality, column)`` from the loader's ``<modality>_column=`` options."""
    options = {f"{m.name}_column": m.name for m in modalities()}
    unknown = sorted(set(given) - set(options))
    if unknown:
        raise DataError(
            f"{path}: unknown option(s) {unknown}; the input column options are "
            f"{sorted(options)} (one per modality)."
        )
    chosen = {k: v for k, v in given.items() if v}
    if len(chosen) > 1:
        raise DataError(f"{path}: give one of {sorted(chosen)}, not several.")
    if chosen:
        ((option, name),) = chosen.items()
        return options[option], _column(header, name, path, option)
    for m in modalities():
        if m.default_column and m.default_column in header:
            return m.name, m.default_column
    defaults = [m.default_column for m in modalities() if m.default_column]
    raise DataError(
        f"{path}: no column named {' or '.join(map(repr, defaults))}; the columns are "
        f"{list(header)}. Pass {' or '.join(sorted(options))}=..."
    )


def _column(header: Sequence[str], name: str, path: str, role: str) -> str:
    if name not in header:
        raise DataError(
            f"{path}: no column {name!r} (for {role}); the columns are {list(header)}. "
            f"Pass {role}=<one of them>."
        )
    return name


def _from_records(
    rows: list[dict],
    lines: list[int],
    header: Sequence[str],
    path: str,
    *,
    label_column: str | Sequence[str],
    text_pair_column: str | None,
    target_column: Columns,
    class_names: Sequence[str] | None,
    strict: bool,
    max_pixels: int,
    **input_columns: str | None,
) -> Dataset:
    """The shared core of from_csv and from_jsonl: checked columns -> Dataset."""
    if not rows:
        raise DataError(f"{path} has a header but no rows; add one row per example.")
    modality, column = _input_column(header, path, input_columns)
    where = lambda i: f"{path} line {lines[i]}"  # noqa: E731

    def cells(name: str) -> list[str]:
        return ["" if r.get(name) is None else str(r[name]) for r in rows]

    x = cells(column)
    x2 = None
    if text_pair_column:
        x2 = cells(_column(header, text_pair_column, path, "text_pair_column"))
        check_texts(x2, where, text_pair_column)
    locations = [where(i) for i in range(len(rows))]

    kwargs: dict[str, Any] = {}
    if target_column is not None:
        names = [target_column] if isinstance(target_column, str) else list(target_column)
        for n in names:
            _column(header, n, path, "target_column")
        kwargs["targets"] = numbers(rows, names, where)
        if isinstance(target_column, str):
            kwargs["targets"] = kwargs["targets"][:, 0]
        kwargs.update(task_hint="regression", class_names=names)
    elif not isinstance(label_column, str):
        names = [_column(header, n, path, "label_column") for n in label_column]
        kwargs["targets"] = np.array(
            [[flag(r.get(n), where(i), n) for n in names] for i, r in enumerate(rows)],
            dtype=np.float32,
        )
        kwargs.update(task_hint="multi_label", class_names=names)
    else:
        _column(header, label_column, path, "label_column")
        values = [r.get(label_column) for r in rows]
        if any(isinstance(v, list) for v in values):
            kwargs.update(task_hint="multi_label", **multi_hot(values, class_names, where, path))
        else:
            labels, names = labels_from_values(
                cells(label_column), class_names, where, path, label_column
            )
            kwargs.update(class_names=names)
            kwargs["labels"] = labels

    folder = os.path.dirname(os.path.abspath(path))
    loaded = get_modality(modality).load_cells(
        x, where, column, folder, strict=strict, max_pixels=max_pixels
    )
    keep = loaded.keep
    x2 = None if x2 is None else [x2[i] for i in keep]
    locations = [locations[i] for i in keep]
    for key in ("labels", "targets"):
        if key in kwargs:
            kwargs[key] = np.asarray(kwargs[key])[keep]
    return Dataset(
        loaded.x,
        kwargs.pop("labels", None),
        modality=modality,
        source=path,
        x2=x2,
        locations=locations,
        skipped=loaded.skipped,
        **loaded.extras,
        **kwargs,
    )
