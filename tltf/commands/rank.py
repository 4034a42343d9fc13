"""`tltf rank`: which backbone to use, scored on your data before training (`tltf.rank`, LogME).

tltf rank --data photos/ --backbone keras:MobileNet --backbone keras:EfficientNetV2B0
tltf rank --data train.csv --backbone keras_hub:/models/minilm --backbone keras_hub:/models/bert \\
    --sequence-length 128 --png rank.png --json
"""

from __future__ import annotations

import argparse
import json

from tltf import config

HELP = "score candidate backbones on your data without training (LogME, k-NN); best first"

DATA_OPTIONS = ("text_column", "image_column", "label_column", "batch_size", "image_size")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", required=True, help="labelled data, as for tltf train")
    p.add_argument(
        "--backbone",
        dest="candidates",
        action="append",
        required=True,
        metavar="SPEC",
        help="a candidate backbone spec; repeat for each",
    )
    config.add_flags(p, (*DATA_OPTIONS, "sequence_length", "seed"))
    p.add_argument(
        "--option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="an option for every candidate (YAML value), e.g. weights=/path/notop.h5",
    )
    p.add_argument("--png", metavar="PNG", help="also draw the scores as a bar chart")
    p.add_argument("--json", action="store_true", help="print the results as JSON")


def run(args: argparse.Namespace) -> int:
    import tltf
    from tltf.commands.backbones import parse_options
    from tltf.commands.train import load_data
    from tltf.modalities import get_modality

    cfg = {**config.defaults(), **config.check(config.given_flags(args), "command line")}
    train = load_data(args.data, cfg, verbose=not args.json)["train"]
    implied = get_modality(train.modality).backbone_options(cfg)  # --image-size, ...
    options = {**{k: v for k, v in implied.items() if v is not None}, **parse_options(args.option)}
    result = tltf.rank(
        args.candidates,
        train,
        batch_size=cfg["batch_size"],
        png=args.png,
        seed=cfg["seed"],
        verbose=not args.json,
        **options,
    )
    if args.json:
        print(json.dumps(result.as_dict(), indent=1))
    elif args.png:
        print(f"chart: {args.png}")
    return 0
