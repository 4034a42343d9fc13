"""`tltf export`: export the model of a `tltf train` run folder as a TF Serving version folder.

tltf export runs/topics-20250101-120000 --name topics        # -> export/topics/2
tltf export runs/pets --name pets --tflite --quantize
tltf export runs/topics --serving-version 2.19      # fails unless stock TF Serving 2.19 loads it
"""

from __future__ import annotations

import argparse
import os
from typing import Any

from tltf.errors import TltfError

HELP = "export the trained model of a run folder for TF Serving (export/NAME/VERSION)"

MODEL_FILE = "model.keras"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", metavar="RUN_DIR", help="a run folder written by tltf train")
    p.add_argument("--name", help="export name (default: the run's export name in its config.yaml)")
    p.add_argument("--export-dir", default="export", help="folder that holds exports")
    p.add_argument("--version", type=int, help="version number (default: the next one)")
    p.add_argument(
        "--tflite", action="store_true", help="also write tflite/model.tflite (image models)"
    )
    p.add_argument("--quantize", action="store_true", help="dynamic-range quantized TFLite")
    p.add_argument(
        "--serving-version",
        metavar="X.Y",
        help="refuse to publish unless the stock tensorflow/serving image X.Y has every op "
        "the export uses (tltf.serving_ops)",
    )


def load_run_model(run_dir: str) -> Any:
    """The trained Keras model that `tltf train` saved in `run_dir` (``model.keras``).

    Example:
        >>> model = load_run_model("runs/topics-20250101-120000")
        >>> tltf.info(model)["class_names"]
    """
    path = os.path.join(run_dir, MODEL_FILE)
    if not os.path.isfile(path):
        what = "is not a folder" if not os.path.isdir(run_dir) else f"holds no {MODEL_FILE}"
        raise TltfError(
            f"{run_dir} {what}; give a run folder written by tltf train (it saves {MODEL_FILE} "
            "when training ends)."
        )
    from tltf.builder import load_model

    return load_model(path)


def run_config(run_dir: str) -> dict:
    """The resolved configuration a run folder was trained with ({} if it has none).

    Example:
        >>> run_config("runs/topics-20250101-120000")["export"]
        'topics'
    """
    from tltf import config

    path = os.path.join(run_dir, "config.yaml")
    return config.load(path) if os.path.isfile(path) else {}


def run(args: argparse.Namespace) -> int:
    import tltf

    model = load_run_model(args.run_dir)
    name = args.name or run_config(args.run_dir).get("export")
    name = name or os.path.basename(os.path.normpath(args.run_dir))
    formats = ["saved_model", "tflite"] if args.tflite else ["saved_model"]
    path = tltf.export(
        model,
        os.path.join(args.export_dir, name),
        args.version,
        formats=formats,
        quantize=args.quantize,
        serving=args.serving_version,
    )
    print(f"exported: {path}")
    return 0
