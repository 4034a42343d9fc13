"""`tltf export`: export the model of a `tltf train` run folder as a TF Serving version folder.

tltf export runs/topics-20250101-120000 --name topics        # -> export/topics/2
tltf export runs/pets --name pets --tflite int8          # full-integer, calibrated on the run's data
tltf export runs/topics --serving-version 2.19      # fails unless stock TF Serving 2.19 loads it
"""

from __future__ import annotations

import argparse
import os
from typing import Any

from tltf.commands.run_folder import load_run_model, run_config
from tltf.errors import TltfError
from tltf.tflite import INT8_IO, MODES, REPRESENTATIVE

HELP = "export the trained model of a run folder for TF Serving (export/NAME/VERSION)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", metavar="RUN_DIR", help="a run folder written by tltf train")
    p.add_argument("--name", help="export name (default: the run's export name in its config.yaml)")
    p.add_argument("--export-dir", default="export", help="folder that holds exports")
    p.add_argument("--version", type=int, help="version number (default: the next one)")
    p.add_argument(
        "--tflite",
        nargs="?",
        const="float",
        choices=MODES,
        metavar="MODE",
        help="also write tflite/model.tflite (image and audio models): float (the default), "
        "dynamic, float16 or int8 (full integer, calibrated on --representative-data)",
    )
    p.add_argument("--quantize", action="store_true", help="the same as --tflite dynamic")
    p.add_argument(
        "--representative-data",
        metavar="DATA",
        help="calibration data for --tflite int8 (a folder, CSV or JSONL; default: the run's "
        f"training data); {REPRESENTATIVE} examples are drawn",
    )
    p.add_argument(
        "--tflite-io",
        choices=INT8_IO,
        default="uint8",
        help="input and output type of an int8 TFLite file (default uint8: pixels 0-255)",
    )
    p.add_argument(
        "--serving-version",
        metavar="X.Y",
        help="refuse to publish unless the stock tensorflow/serving image X.Y has every op "
        "the export uses (tltf.serving_ops)",
    )


def _representative(args: argparse.Namespace, model: Any) -> Any:
    """The data an int8 file calibrates on: --representative-data, else the run's training data."""
    from tltf import config
    from tltf.commands.train import load_data

    cfg = {**config.defaults(), **run_config(args.run_dir)}
    source = args.representative_data or cfg.get("data")
    if not source:
        raise TltfError(
            f"--tflite int8 calibrates on representative data, and {args.run_dir} names no "
            "training data; pass --representative-data DATA."
        )
    import tltf

    names = tltf.info(model)["class_names"]
    return load_data(source, cfg, class_names=names, verbose=False)["train"]


def run(args: argparse.Namespace) -> int:
    import tltf

    model = load_run_model(args.run_dir)
    name = args.name or run_config(args.run_dir).get("export")
    name = name or os.path.basename(os.path.normpath(args.run_dir))
    mode = "dynamic" if args.quantize and args.tflite in (None, "float") else args.tflite
    formats = ["saved_model", "tflite"] if mode else ["saved_model"]
    path = tltf.export(
        model,
        os.path.join(args.export_dir, name),
        args.version,
        formats=formats,
        quantize=mode or False,
        representative_data=_representative(args, model) if mode == "int8" else None,
        tflite_io=args.tflite_io,
        serving=args.serving_version,
    )
    print(f"exported: {path}")
    return 0
