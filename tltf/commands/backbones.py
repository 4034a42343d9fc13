"""`tltf backbones`: which pretrained networks tltf loads, and how to name them.

tltf backbones                      # sources, Keras Applications families, naming
tltf backbones --presets            # also the KerasHub preset names this install knows
tltf backbones keras:ResNet50 --option weights=null --option input_shape=[64,64,3]
                                    # build one and print its groups
"""

from __future__ import annotations

import argparse
import re

import yaml

from tltf.errors import SpecError

HELP = "list the backbone sources and Keras Applications families; show one backbone's groups"

SOURCES = [
    ("keras:NAME", "a keras.applications image network, e.g. keras:EfficientNetV2B0"),
    ("hub:HANDLE", "a TF-Hub TF2 SavedModel: URL, TF-Hub handle or local folder"),
    ("keras_hub:PRESET", "a KerasHub preset name or local preset/Hugging Face folder"),
    ("keras_nlp:PRESET", "alias of keras_hub:"),
    ("hf:ORG/NAME", "a Hugging Face model, converted through KerasHub"),
    ("file:PATH", "your own network: a .keras file or a SavedModel folder"),
    ("speech:openwakeword", "audio: openWakeWord's pretrained speech embedding (16 kHz clips)"),
]

NAMING = """\
Naming hub and KerasHub models:
  hub:https://tfhub.dev/google/imagenet/efficientnet_v2_imagenet1k_b0/feature_vector/2
  hub:/models/efficientnet_b0          a downloaded, unpacked TF-Hub module (saved_model.pb inside)
  hub:/models/bert_encoder  with  preprocessor="hub:/models/bert_preprocess"   (text encoders)
  keras_hub:bert_tiny_en_uncased       a KerasHub preset (tltf backbones --presets lists them)
  keras_hub:/models/all-MiniLM-L6-v2   a local folder: KerasHub preset or Hugging Face
                                       (config.json + model.safetensors)
  hf:sentence-transformers/all-MiniLM-L6-v2
  file:model.keras  with  cut=-1       your network without its last layer
Offline: give local folders; downloads are cached under KERAS_HOME, TFHUB_CACHE_DIR,
KAGGLEHUB_CACHE and HF_HOME. See docs/backbones.md."""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("spec", nargs="?", help="a backbone spec to load, print its groups")
    p.add_argument(
        "--option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="an option for the source (YAML value), e.g. weights=null or input_shape=[96,96,3]",
    )
    p.add_argument("--presets", action="store_true", help="list KerasHub preset names")


def families_table() -> str:
    """One row per Keras Applications family: constructors, default size, preprocessing, groups."""
    from tltf.backbones.keras_apps import FAMILIES, constructor_names, default_size, group_names

    names = constructor_names()
    rows = ["Keras Applications (keras:NAME; raw 0-255 RGB pixels in, preprocessing inside):"]
    for fam_name, fam in FAMILIES.items():
        members = [n for n in names if re.search(fam.constructors, n)]
        if not members:
            continue
        sizes = sorted({default_size(n) for n in members})
        size = f"{sizes[0]}" if len(sizes) == 1 else f"{sizes[0]}-{sizes[-1]}"
        inside = "in the model" if fam.preprocess == "none" else f"'{fam.preprocess}' mode"
        grouped = _short(group_names(members[0]))
        more = [n for n in members if group_names(n) != group_names(members[0])]
        if more:
            grouped += f" ({', '.join(more)}: {_short(group_names(more[0]))})"
        rows.append(f"  {fam_name}: {', '.join(members)}")
        rows.append(
            f"      size {size} (min {fam.min_size}); normalization {inside}; groups {grouped}"
        )
    return "\n".join(rows)


def _short(groups: list[str]) -> str:
    """``stem, stage1..stage7, top`` for the list of group names."""
    stages = [g for g in groups if g.startswith("stage")]
    return ", ".join(["stem", f"{stages[0]}..{stages[-1]}", *groups[len(stages) + 1 :]])


def presets() -> str:
    """The KerasHub preset names this installation knows, by task (no network)."""
    import keras_hub

    lines = []
    for title, cls in (
        ("text", keras_hub.models.TextClassifier),
        ("image", keras_hub.models.ImageClassifier),
    ):
        lines.append(f"KerasHub {title} presets (keras_hub:NAME):")
        lines.append("  " + ", ".join(sorted(cls.presets)))
    return "\n".join(lines)


def parse_options(pairs: list[str]) -> dict:
    """``KEY=VALUE`` strings -> ``{key: YAML value}`` (``--option weights=null``).

    Example:
        >>> parse_options(["weights=null", "input_shape=[64,64,3]"])
        {'weights': None, 'input_shape': [64, 64, 3]}
    """
    options = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise SpecError(f"--option {pair!r}: write KEY=VALUE, e.g. weights=null.")
        options[key] = yaml.safe_load(value)
    return options


def run(args: argparse.Namespace) -> int:
    from tltf.backbones import load_backbone

    if args.spec:
        load_backbone(args.spec, **parse_options(args.option)).summary()
        return 0
    print("Backbone specs are SOURCE:NAME. Sources:")
    width = max(len(syntax) for syntax, _ in SOURCES) + 2
    for syntax, what in SOURCES:
        print(f"  {syntax:<{width}}{what}")
    print()
    print(families_table())
    print()
    print(NAMING)
    if args.presets:
        print()
        print(presets())
    return 0
