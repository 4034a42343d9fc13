"""`tltf evaluate`: accuracy, per-class precision/recall and the confusion matrix on labelled data.

It takes a run folder (its ``model.keras``, with the run's column names), an
export (the SavedModel's ``serving_default`` signature, as TF Serving runs it), or
an export's TFLite file (decoded and resized as the export does, then quantized
as the file's input asks)::

    tltf evaluate runs/topics-20250101-120000 --data test.csv
    tltf evaluate export/topics --data test.csv --json
    tltf evaluate export/pets/3 --data photos/test --plot confusion.png
    tltf evaluate export/pets/3/tflite/model.tflite --data photos/test
"""

from __future__ import annotations

import argparse
import json
import os
from typing import Any

import numpy as np

from tltf import config
from tltf.commands.run_folder import MODEL_FILE, load_run_model, run_config
from tltf.errors import TltfError
from tltf.modalities import get_modality

HELP = "evaluate a run folder or an export on labelled data: accuracy, per-class report, confusion"

DATA_OPTIONS = ("text_column", "image_column", "label_column", "batch_size")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "target",
        metavar="EXPORT_OR_RUN",
        help="a run folder (with model.keras), an export (export/NAME or export/NAME/VERSION), "
        "or an export's .tflite file",
    )
    p.add_argument(
        "--data",
        required=True,
        help="labelled data: a CSV or JSONL file, a folder of class folders (its test/ split "
        "where it has one), or tfds:NAME[:SPLIT]",
    )
    config.add_flags(p, DATA_OPTIONS)  # default: the run's, else the option's
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--plot", metavar="PNG", help="also write the confusion matrix to this PNG")


def evaluate_export(export_dir: str, data: Any, batch_size: int = 32) -> Any:
    """Runs an export's ``serving_default`` on labelled data; a `ClassificationReport`.

    Example:
        >>> test = tltf.data.from_csv("test.csv", class_names=export_class_names("export/topics"))
        >>> print(evaluate_export("export/topics", test).format())
    """
    from tltf.commands.predict import predict
    from tltf.evaluation import classification_report

    modality = _export_manifest(export_dir).get("modality")
    if modality:
        _check_kind(export_dir, modality, data)
    rows = predict(export_dir, get_modality(data.modality).cli_inputs(data), batch_size=batch_size)
    index = {name: i for i, name in enumerate(data.class_names)}
    predicted = [index[row["label"]] for row in rows]
    return classification_report(data.labels, predicted, data.class_names)


def evaluate_tflite(path: str, data: Any, batch_size: int = 32) -> Any:
    """Runs a tltf TFLite file on labelled data; a `ClassificationReport`.

    The file's export (``../assets.extra/tltf.json``) says how its inputs are decoded
    and resized; its ``labels.txt`` names the classes (Model Maker's ``evaluate_tflite``).

    Example:
        >>> report = evaluate_tflite("export/pets/3/tflite/model.tflite", test)
        >>> report.accuracy
    """
    from tltf.evaluation import classification_report
    from tltf.tflite import TFLiteModel, tensor_inputs

    meta = tflite_meta(path)
    _check_kind(path, meta["modality"], data)
    lite = TFLiteModel(path)
    scores = lite.scores(tensor_inputs(data, meta), batch_size=batch_size)
    index = {name: i for i, name in enumerate(data.class_names)}
    served = meta["class_names"]
    predicted = [index[served[i]] for i in scores.argmax(-1)]
    return classification_report(data.labels, predicted, data.class_names)


def tflite_meta(path: str) -> dict:
    """What a tltf TFLite file was exported with: its export's ``tltf.json``, class names
    from the ``labels.txt`` beside the file.

    Example:
        >>> tflite_meta("export/pets/3/tflite/model.tflite")["input_spec"]["shape"]
        [224, 224, 3]
    """
    folder = os.path.dirname(os.path.abspath(path))
    manifest = os.path.join(folder, "..", "assets.extra", "tltf.json")
    labels = os.path.join(folder, "labels.txt")
    if not os.path.isfile(path) or not os.path.isfile(manifest) or not os.path.isfile(labels):
        raise TltfError(
            f"{path}: not a TFLite file of a tltf export (it lives in EXPORT/VERSION/tflite/, "
            "beside labels.txt, with the export's assets.extra/tltf.json)."
        )
    with open(manifest, encoding="utf-8") as fh:
        meta = json.load(fh)
    with open(labels, encoding="utf-8") as fh:
        meta["class_names"] = [line.rstrip("\n") for line in fh if line.strip()]
    return meta


def export_class_names(export_dir: str) -> list[str]:
    """The class names an export serves, from its ``assets.extra/labels.txt``.

    Example:
        >>> export_class_names("export/topics")       # the latest version
        ['database', 'editors', ...]
    """
    from tltf.io import latest_version

    path = os.path.join(latest_version(export_dir), "assets.extra", "labels.txt")
    if not os.path.isfile(path):
        raise TltfError(f"{export_dir} has no assets.extra/labels.txt; is it a tltf export?")
    with open(path, encoding="utf-8") as fh:
        return [line.rstrip("\n") for line in fh if line.strip()]


def _export_task(export_dir: str) -> str:
    """The task in an export's ``assets.extra/tltf.json`` (classification if it has none)."""
    return _export_manifest(export_dir).get("task", "classification")


def _export_manifest(export_dir: str) -> dict:
    """The latest version's ``assets.extra/tltf.json`` ({} for an export without one)."""
    from tltf.io import latest_version

    path = os.path.join(latest_version(export_dir), "assets.extra", "tltf.json")
    if not os.path.isfile(path):
        return {}
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


def _check_kind(model_path: str, modality: str, data: Any) -> None:
    """A model evaluates only data of its modality (text models would read image paths)."""
    if get_modality(data.modality) is not get_modality(modality):
        raise TltfError(
            f"{model_path} is a {modality} model, and {data.source} holds {data.modality} "
            "examples; give it data of its kind."
        )


def format_confusion(report: Any) -> str:
    """The confusion matrix as text: a row per true class, a column per predicted class.

    Example:
        >>> print(format_confusion(tltf.evaluate(model, test)))
        true \\ predicted   games   math  sound
        games                 3      0      0
        ...
    """
    names = report.class_names
    counts = np.asarray(report.confusion)
    corner = "true \\ predicted"
    width = max(5, *(len(str(c)) for c in counts.ravel())) + 1
    label_width = max(len(corner), *(len(n) for n in names)) + 2
    short = [n[: width - 1] for n in names]
    lines = [f"{corner:<{label_width}}" + "".join(f"{s:>{width}}" for s in short)]
    for name, row in zip(names, counts, strict=True):
        lines.append(f"{name:<{label_width}}" + "".join(f"{c:>{width}}" for c in row))
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    import tltf
    from tltf.commands.train import load_data

    is_run = os.path.isfile(os.path.join(args.target, MODEL_FILE))
    is_tflite = args.target.endswith(".tflite")
    cfg = config.defaults()
    if is_run:
        cfg.update({k: v for k, v in run_config(args.target).items() if k in DATA_OPTIONS})
    cfg.update(config.check(config.given_flags(args), "command line"))
    if is_run:
        model = load_run_model(args.target)
        task, class_names = tltf.info(model)["task"], tltf.info(model)["class_names"]
    elif is_tflite:
        meta = tflite_meta(args.target)
        task, class_names = meta.get("task", "classification"), meta["class_names"]
    else:
        task, class_names = _export_task(args.target), export_class_names(args.target)
    if task != "classification":
        raise TltfError(
            f"{args.target} is a {task} model; tltf evaluate reports classifiers "
            "(its held-out metrics are in the run's metrics.json)."
        )
    parts = load_data(args.data, cfg, class_names=class_names, verbose=not args.json)
    data = parts.get("test", parts["train"])
    if is_run:
        report = tltf.evaluate(model, data, batch_size=cfg["batch_size"])
    elif is_tflite:
        report = evaluate_tflite(args.target, data, batch_size=cfg["batch_size"])
    else:
        report = evaluate_export(args.target, data, batch_size=cfg["batch_size"])
    if args.plot:
        from tltf import plots

        plots.confusion_matrix(report, args.plot, title=f"{args.target} on {data.source}")
    if args.json:
        print(
            json.dumps({"target": args.target, "data": data.source, **report.as_dict()}, indent=1)
        )
        return 0
    print(f"{args.target} on {data.source}: accuracy {report.accuracy:.3f} ({len(data)} examples)")
    print(report.format())
    print()
    print(format_confusion(report))
    if args.plot:
        print(f"confusion matrix: {args.plot}")
    return 0
