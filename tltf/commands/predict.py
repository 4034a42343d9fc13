"""`tltf predict`: run an exported SavedModel on image files, texts, or a CSV column.

It needs only TensorFlow (plus tensorflow-text for text models) and the export
itself; no tltf model code is imported, so it checks what a server would serve::

    tltf predict export/topics "a game with levels" "solve this equation"
    tltf predict export/pets/3 cat.jpg dog.png --json
    tltf predict export/pets photos.csv --column path
    tltf predict export/duplicates "how do I sort ||| sorting a list"   # text pairs
    tltf predict export/duplicates pairs.csv --column question --column answer
    tltf predict export/wake kitchen.wav --detect hey_tiltef     # times in a long recording
"""

from __future__ import annotations

import argparse
import csv
import importlib
import io
import json
import os
import warnings
from typing import Any

from tltf.errors import TltfError
from tltf.io import latest_version
from tltf.modalities.text_files import decode_utf8

HELP = "run an exported SavedModel on image files, texts or a CSV column; print top labels"
SEPARATOR = "|||"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("export_dir", help="a version folder (export/NAME/3) or model folder (latest)")
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="image files, texts, or CSV files")
    p.add_argument(
        "--column",
        action="append",
        help="read the inputs from this column of the CSV file(s) given; "
        "give it twice for a text-pair export (first text, second text)",
    )
    p.add_argument(
        "--separator",
        default=SEPARATOR,
        help=f"splits each INPUT into two texts for a text-pair export (default {SEPARATOR!r})",
    )
    p.add_argument("--json", action="store_true", help="print the outputs as a JSON list")
    p.add_argument("--signature", default="serving_default", help="the signature to run")
    p.add_argument("--batch-size", type=int, default=32, help="inputs per call")
    p.add_argument(
        "--detect",
        metavar="LABEL",
        help="audio exports: find LABEL in each (long) WAV file by sliding windows; "
        "print each detection's start and end (tltf.detect)",
    )
    p.add_argument("--hop", type=float, default=0.25, help="--detect: seconds between windows")
    p.add_argument(
        "--threshold",
        type=float,
        default=0.5,
        help="--detect: the smoothed score a detection needs",
    )


def predict(
    export_dir: str,
    inputs: list[str] | list[tuple[str, str]],
    signature: str = "serving_default",
    batch_size: int = 32,
    separator: str = SEPARATOR,
) -> list[dict]:
    """Runs an export on texts, text pairs or image file paths: one dict of outputs per input.

    A text-pair export (two string inputs, ``text`` and ``text_pair``) takes each input as
    a ``(first, second)`` tuple, or as one string split once on `separator`.

    Example:
        >>> predict("export/topics", ["a game with levels"])[0]["label"]
        'games'
        >>> predict("export/duplicates", [("how do I sort", "sorting a list")])[0]["label"]
        'same'
    """
    import tensorflow as tf

    folder = latest_version(export_dir)
    manifest_file = os.path.join(folder, "assets.extra", "tltf.json")
    if os.path.isfile(manifest_file):
        with open(manifest_file) as fh:
            _import_requirements(json.load(fh).get("requires", {}))
    loaded = tf.saved_model.load(folder)
    if signature not in loaded.signatures:
        raise TltfError(
            f"{folder} has no signature {signature!r}; it has {sorted(loaded.signatures)}."
        )
    fn = loaded.signatures[signature]
    specs = fn.structured_input_signature[1]
    names = sorted(specs)  # a pair export's inputs sort as text, text_pair
    if len(names) > 2 or (len(names) == 2 and any(specs[n].dtype != tf.string for n in names)):
        raise TltfError(
            f"Signature {signature!r} takes {names}; tltf predict feeds one input or a text pair."
        )
    if len(names) == 1 and any(not isinstance(x, str) for x in inputs):
        raise TltfError(f"{folder} takes one input each, not pairs: give texts or file paths.")
    columns = _pair_columns(inputs, separator) if len(names) == 2 else [list(inputs)]
    files = names[0].endswith("_bytes")  # image or audio files; else texts
    paths = [x for x in inputs if not files and isinstance(x, str) and os.path.isfile(x)]
    if paths:
        warnings.warn(
            f"{paths[0]} is a file, and {folder} takes texts: tltf predict classifies the "
            "path as a string. To classify a CSV's texts, give the file with --column NAME.",
            stacklevel=2,
        )
    rows = []
    for start in range(0, len(inputs), batch_size):
        feed = {}
        for name, column in zip(names, columns, strict=True):
            batch = column[start : start + batch_size]
            values = [_read_file(p, name) for p in batch] if name.endswith("_bytes") else batch
            feed[name] = tf.constant(values, dtype=specs[name].dtype)
        try:
            outputs = fn(**feed)
        except tf.errors.InvalidArgumentError as exc:
            if not files:
                raise
            raise _undecodable(fn, names[0], feed[names[0]], columns[0][start:], exc) from None
        for i in range(len(feed[names[0]])):
            rows.append({key: _plain(value.numpy()[i]) for key, value in sorted(outputs.items())})
    return rows


def _pair_columns(inputs: list, separator: str) -> list[list[str]]:
    """``[firsts, seconds]`` from ``(first, second)`` tuples or ``"first SEP second"`` strings."""
    firsts, seconds = [], []
    for i, item in enumerate(inputs):
        if isinstance(item, str):
            if separator not in item:
                raise TltfError(
                    f"Input {i + 1} ({item[:40]!r}) is one text, but this export takes text "
                    f"pairs: write 'first text {separator} second text', or give a CSV file "
                    "with --column FIRST --column SECOND."
                )
            item = [part.strip() for part in item.split(separator, 1)]
        if len(item) != 2:
            raise TltfError(f"Input {i + 1} has {len(item)} parts; a text pair has two.")
        first, second = item
        firsts.append(first)
        seconds.append(second)
    return [firsts, seconds]


def run(args: argparse.Namespace) -> int:
    if args.detect:
        return _detect(args)
    if args.column and len(args.column) > 2:
        raise TltfError(f"--column was given {len(args.column)} times; give it once, or twice.")
    inputs: list = list(args.inputs)
    if args.column:
        table = _read_columns(inputs, args.column)
        inputs = [row[0] for row in table] if len(args.column) == 1 else table
    rows = predict(args.export_dir, inputs, args.signature, args.batch_size, args.separator)
    if args.json:
        shown = [x if isinstance(x, str) else list(x) for x in inputs]
        print(
            json.dumps([{"input": x, **row} for x, row in zip(shown, rows, strict=True)], indent=1)
        )
        return 0
    shown = [x if isinstance(x, str) else f" {args.separator} ".join(x) for x in inputs]
    width = min(40, max(len("INPUT"), *(len(x) for x in shown)))
    print(f"{'INPUT':<{width}}  OUTPUTS")
    for x, row in zip(shown, rows, strict=True):
        if len(x) > width:  # a path keeps its file name; a text keeps its start
            x = "..." + x[3 - width :] if os.path.exists(x) else x[: width - 3] + "..."
        print(f"{x:<{width}}  {_summary(row)}")
    return 0


def _detect(args: argparse.Namespace) -> int:
    """``--detect``: each input file's detections, one line each (or JSON)."""
    from tltf.detection import detect

    found = {
        path: detect(
            args.export_dir, path, args.detect, hop_seconds=args.hop, threshold=args.threshold
        )
        for path in args.inputs
    }
    if args.json:
        print(
            json.dumps([{"input": p, "detections": d.events} for p, d in found.items()], indent=1)
        )
        return 0
    for path, detections in found.items():
        print(f"{path}: {detections}" if not detections.events else f"{path}:\n{detections}")
    return 0


def _summary(row: dict) -> str:
    """Top labels with scores for classifiers; ``key=value`` for any other output."""
    if "top_k_labels" in row and "top_k_scores" in row:
        pairs = zip(row["top_k_labels"], row["top_k_scores"], strict=True)
        return ", ".join(f"{label} {score:.3f}" for label, score in pairs)
    return "  ".join(f"{key}={value}" for key, value in row.items())


def _plain(value: Any) -> Any:
    """numpy value -> JSON-able: bytes decoded, floats rounded to 6 digits."""
    if hasattr(value, "tolist"):
        value = value.tolist()
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return round(value, 6) if isinstance(value, float) else value


def _read_file(path: str, name: str) -> bytes:
    """The bytes of `path` for the input `name` (``image_bytes``, ``audio_bytes``)."""
    kind = name.removesuffix("_bytes")
    if not os.path.isfile(path):
        raise TltfError(f"{path}: no such {kind} file (this export takes {kind} files).")
    with open(path, "rb") as fh:
        return fh.read()


def _undecodable(fn: Any, name: str, batch: Any, paths: list[str], exc: Exception) -> TltfError:
    """The error naming the first file of `batch` that the export cannot decode.

    The batch failed as a whole; each file is run alone (only on this error path).
    """
    import tensorflow as tf

    for i, path in enumerate(paths[: len(batch)]):
        try:
            fn(**{name: batch[i : i + 1]})
        except tf.errors.InvalidArgumentError as one:
            reason = (one.message or str(one)).strip().splitlines()[0]
            return TltfError(
                f"{path}: the export cannot decode it ({reason}). Is it a complete file of "
                f"the kind the export takes ({name})? Replace or leave out that file."
            )
    return TltfError(f"The export failed on {paths[0]} ...: {exc}")


def _read_columns(files: list[str], columns: list[str]) -> list[tuple[str, ...]]:
    """Each row's values of `columns`, over the CSV files; relative image paths resolve
    against the CSV's folder."""
    values = []
    for file in files:
        try:
            with open(file, "rb") as fh:
                text = decode_utf8(fh.read(), file)
        except OSError as exc:
            raise TltfError(f"{file}: cannot read ({exc.strerror}).") from None
        reader = csv.DictReader(io.StringIO(text, newline=""))
        for column in columns:
            if column not in (reader.fieldnames or []):
                raise TltfError(f"{file}: no column {column!r}; columns: {reader.fieldnames}.")
        rows = [tuple(row[c] for c in columns) for row in reader]
        folder = os.path.dirname(os.path.abspath(file))
        for row in rows:
            values.append(tuple(_beside(folder, value) for value in row))
    return values


def _beside(folder: str, value: str) -> str:
    """`value` as a path in `folder` if such a file exists there, else `value` unchanged."""
    path = os.path.join(folder, value)
    return path if os.path.isfile(path) else value


def _import_requirements(requires: dict[str, str]) -> None:
    """Imports the modules an export's graph needs (e.g. tf-text's tokenizer ops)."""
    for module, package in requires.items():
        try:
            importlib.import_module(module)
        except ImportError:
            raise TltfError(
                f"This export needs the {module} ops to load (pip install {package})."
            ) from None
