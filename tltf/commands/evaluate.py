"""`tltf evaluate`: accuracy, per-class precision/recall and the confusion matrix on labelled data.

It takes a run folder (its ``model.keras``, with the run's column names) or an
export (the SavedModel's ``serving_default`` signature, as TF Serving runs it)::

    tltf evaluate runs/topics-20250101-120000 --data test.csv
    tltf evaluate export/topics --data test.csv --json
    tltf evaluate export/pets/3 --data photos/test --plot confusion.png
"""

from __future__ import annotations

import argparse
import json
import os
from typing import Any

import numpy as np

from tltf import config
from tltf.commands.export import MODEL_FILE, load_run_model, run_config
from tltf.errors import TltfError
from tltf.modalities import get_modality

HELP = "evaluate a run folder or an export on labelled data: accuracy, per-class report, confusion"

DATA_OPTIONS = ("text_column", "image_column", "label_column", "batch_size")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "target",
        metavar="EXPORT_OR_RUN",
        help="a run folder (with model.keras), or an export (export/NAME or export/NAME/VERSION)",
    )
    p.add_argument(
        "--data",
        required=True,
        help="labelled data: a CSV or JSONL file, a folder of class folders (its test/ split "
        "where it has one), or tfds:NAME[:SPLIT]",
    )
    for name in DATA_OPTIONS:
        option = config.BY_NAME[name]
        p.add_argument(
            option.flag,
            dest=name,
            default=argparse.SUPPRESS,
            metavar=name.upper(),
            help=f"{option.help} (default: the run's, else {option.default})",
        )
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

    rows = predict(export_dir, get_modality(data.modality).cli_inputs(data), batch_size=batch_size)
    index = {name: i for i, name in enumerate(data.class_names)}
    predicted = [index[row["label"]] for row in rows]
    return classification_report(data.labels, predicted, data.class_names)


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
    from tltf.io import latest_version

    path = os.path.join(latest_version(export_dir), "assets.extra", "tltf.json")
    if not os.path.isfile(path):
        return "classification"
    with open(path, encoding="utf-8") as fh:
        return json.load(fh).get("task", "classification")


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
    cfg = config.defaults()
    if is_run:
        cfg.update({k: v for k, v in run_config(args.target).items() if k in DATA_OPTIONS})
    cfg.update(config.check(config.given_flags(args), "command line"))
    if is_run:
        model = load_run_model(args.target)
        task, class_names = tltf.info(model)["task"], tltf.info(model)["class_names"]
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
