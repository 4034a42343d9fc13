"""The `tltf train` configuration: one schema for YAML files, command-line flags and the docs.

Every key is one `Option` in `OPTIONS`, with its type, default and help. The same
list makes the ``tltf train`` flags (``batch_size`` -> ``--batch-size``), checks
YAML files (an unknown key is an error that names its nearest valid spelling),
and writes the table in docs/cli.md (`markdown_table`).

Example:
    >>> from tltf import config
    >>> cfg = config.resolve("run.yaml", {"epochs": 5})   # defaults < file < overrides
    >>> print(config.to_yaml(cfg))

Precedence: defaults, then the YAML file, then flags given on the command line.

Over 400 lines for a reason: a third of it is the `OPTIONS` table, the one schema
(each option's type, default and help text) that the flags, the YAML check and
the docs are made from.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from tltf import recipe
from tltf.distribute import PRECISIONS, STRATEGIES
from tltf.errors import SpecError, TltfError, suggest


class ConfigError(TltfError, ValueError):
    """A configuration file or value that tltf cannot use (unknown key, wrong type).

    Example:
        >>> config.check({"epoch": 3}, "run.yaml")
        ConfigError: run.yaml: unknown key 'epoch'; did you mean 'epochs'?
    """


@dataclass(frozen=True)
class Option:
    """One configuration key.

    Example:
        >>> config.BY_NAME["batch_size"].flag, config.BY_NAME["batch_size"].default
        ('--batch-size', 32)

    Attributes:
        name: the YAML key; the flag is ``--`` + name with ``-`` for ``_``.
        type: ``str``, ``int``, ``float``, ``bool``, ``list`` (of strings, or one
            comma-separated string) or ``dict`` (YAML only, no flag).
        default: the value when neither the file nor a flag sets it; None means
            "not set" (the help says what happens then).
        help: one line for ``--help`` and the docs table.
        section: the group it is listed under.
        choices: the allowed values, when there is a fixed set.
    """

    name: str
    type: type
    default: Any
    help: str
    section: str
    choices: tuple = ()

    @property
    def flag(self) -> str:
        """The command-line flag: ``batch_size`` -> ``--batch-size``."""
        return "--" + self.name.replace("_", "-")


_MODEL, _DATA, _TRAIN, _OUT = "model", "data", "training", "output"

OPTIONS: tuple[Option, ...] = (
    Option(
        "backbone",
        str,
        None,
        "backbone spec: keras:EfficientNetV2B0, keras_hub:PRESET_OR_FOLDER, hf:ORG/NAME, "
        "hub:HANDLE (default: the packaged all-MiniLM-L6-v2)",
        _MODEL,
    ),
    Option(
        "task",
        str,
        "classification",
        "the task head: classification, or multilabel (labels as lists in JSONL, or 0/1 "
        "columns); tltf train reports and plots classification in full",
        _MODEL,
    ),
    Option(
        "freeze",
        list,
        None,
        "trainable backbone groups: all (head only), none (everything), top:N, g1,g2, or "
        "lora:RANK (adapters on the attention projections, the rest frozen) "
        "(default: top:2; none with --weights random)",
        _MODEL,
    ),
    Option(
        "bn",
        str,
        "auto",
        "BatchNorm statistics: frozen, train, or auto (frozen for pretrained weights, "
        "trained for random ones)",
        _MODEL,
        ("auto", "frozen", "train"),
    ),
    Option(
        "weights",
        str,
        None,
        "image backbones: imagenet, random, or a local weights file (default: the source's)",
        _MODEL,
    ),
    Option(
        "image_size",
        int,
        None,
        "image backbones: input height = width in pixels (default: the family's)",
        _MODEL,
    ),
    Option("sequence_length", int, 128, "text backbones: the most tokens per text", _MODEL),
    Option("sha256", str, None, "expected sha256 of the backbone's local weights file", _MODEL),
    Option(
        "from_run",
        str,
        None,
        "continue training a tltf train run folder's model.keras (classes in the data that it "
        "lacks are appended with tltf.extend); the export goes beside the run's "
        "(--backbone and its options are then the run's)",
        _MODEL,
    ),
    Option(
        "backbone_options",
        dict,
        None,
        "YAML only: more options for the backbone source, e.g. {pooling: max}",
        _MODEL,
    ),
    Option(
        "data",
        str,
        None,
        "training data: a CSV or JSONL file, a folder of class folders, or tfds:NAME[:SPLIT] "
        "(default: the bundled debian_topics sample)",
        _DATA,
    ),
    Option(
        "test_data",
        str,
        None,
        "held-out data for the final report, same kinds as data "
        "(default: the data's test split, else the validation split)",
        _DATA,
    ),
    Option("text_column", str, None, "CSV/JSONL column with the text (default: text)", _DATA),
    Option("image_column", str, None, "CSV/JSONL column with image file paths", _DATA),
    Option(
        "label_column",
        list,
        "label",
        "CSV/JSONL column with the class label; for multilabel, one 0/1 column per class (a,b,c)",
        _DATA,
    ),
    Option(
        "validation_split",
        float,
        0.1,
        "fraction of the training data held out for validation (0: none)",
        _DATA,
    ),
    Option(
        "epochs",
        int,
        None,
        "epochs after the head phase (default: sized by the data, stopping early)",
        _TRAIN,
    ),
    Option(
        "freeze_epochs",
        int,
        None,
        "head-only epochs before the backbone opens (default: until the head converges; 0: none)",
        _TRAIN,
    ),
    Option("batch_size", int, 32, "examples per batch", _TRAIN),
    Option(
        "lr",
        float,
        None,
        "fine-tuning learning rate (default: the backbone's, 5e-5 text, 1e-4 image; 2e-3 "
        "for lora:RANK)",
        _TRAIN,
    ),
    Option("head_lr", float, recipe.HEAD_LR, "learning rate while only the head trains", _TRAIN),
    Option(
        "strategy",
        str,
        "auto",
        "tf.distribute strategy: auto (a TPU, else TF_CONFIG's workers, else several GPUs, "
        "else one device) or a kind",
        _TRAIN,
        STRATEGIES,
    ),
    Option(
        "precision",
        str,
        "auto",
        "auto (bfloat16 on TPU, float16 on recent GPUs, float32 on CPU), float32, "
        "mixed_float16 or mixed_bfloat16",
        _TRAIN,
        PRECISIONS,
    ),
    Option("seed", int, 0, "seed for splits, shuffling and initialization", _TRAIN),
    Option(
        "run_dir",
        str,
        None,
        "run folder: config, TensorBoard logs, checkpoints, model, metrics, plots "
        "(default: runs/NAME-TIMESTAMP); rerunning with the same folder resumes",
        _OUT,
    ),
    Option(
        "export",
        str,
        None,
        "export name: the SavedModel goes to EXPORT_DIR/NAME/VERSION "
        "(default: the data's name, e.g. debian_topics)",
        _OUT,
    ),
    Option("export_dir", str, "export", "folder that holds exports", _OUT),
)

BY_NAME = {o.name: o for o in OPTIONS}


def defaults() -> dict[str, Any]:
    """Every key with its default value.

    Example:
        >>> config.defaults()["batch_size"]
        32
    """
    return {o.name: o.default for o in OPTIONS}


def check(values: dict, source: str) -> dict[str, Any]:
    """Checks keys and types; returns the values converted to each option's type.

    Example:
        >>> config.check({"epochs": 3, "lr": "1e-4"}, "run.yaml")
        {'epochs': 3, 'lr': 0.0001}
        >>> config.check({"epoch": 3}, "run.yaml")
        ConfigError: run.yaml: unknown key 'epoch'; did you mean 'epochs'?
    """
    if not isinstance(values, dict):
        raise ConfigError(f"{source}: expected a mapping of keys to values, got {_kind(values)}.")
    out = {}
    for key, value in values.items():
        if key not in BY_NAME:
            raise ConfigError(
                f"{source}: unknown key {key!r}; {suggest(str(key), BY_NAME, 'valid keys')}"
            )
        out[key] = _convert(BY_NAME[key], value, source)
    return out


def load(path: str) -> dict[str, Any]:
    """Reads and checks a YAML config file (only the keys it sets).

    Example:
        >>> config.load("run.yaml")
        {'backbone': 'keras:EfficientNetV2B0', 'data': 'photos/', 'epochs': 5}
    """
    import yaml

    try:
        with open(path, encoding="utf-8") as fh:
            values = yaml.safe_load(fh)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the config file ({exc.strerror}).") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{path}{where}: not valid YAML ({problem}).") from None
    return check({} if values is None else values, path)


def resolve(path: str | None = None, overrides: dict | None = None) -> dict[str, Any]:
    """The full configuration: defaults, then the file at `path`, then `overrides`.

    Example:
        >>> cfg = config.resolve("run.yaml", {"batch_size": 64})
        >>> cfg["batch_size"], cfg["freeze"]
        (64, 'top:2')
    """
    cfg = defaults()
    if path:
        cfg.update(load(path))
    cfg.update(check(dict(overrides or {}), "command line"))
    return cfg


def to_yaml(cfg: dict[str, Any]) -> str:
    """The configuration as YAML, one commented section per group, in schema order.

    Example:
        >>> print(config.to_yaml(config.defaults()))
        # model
        backbone: null
        ...
    """
    import yaml

    lines = []
    for section in dict.fromkeys(o.section for o in OPTIONS):
        lines.append(f"# {section}")
        for o in (o for o in OPTIONS if o.section == section):
            text = yaml.safe_dump({o.name: cfg.get(o.name)}, default_flow_style=True, width=10**6)
            lines.append(text.strip()[1:-1].strip())  # "{key: value}" -> "key: value"
    return "\n".join(lines) + "\n"


def add_flags(parser: argparse.ArgumentParser, names: Sequence[str] | None = None) -> None:
    """Adds one flag per option that a command line can set (all but ``dict`` options),
    or per option in `names` (commands that take a few, such as ``tltf evaluate``).

    Flags default to "not given" (absent from the namespace), so that a config
    file's values stand unless a flag overrides them; see `given_flags`.

    Example:
        >>> parser = argparse.ArgumentParser()
        >>> config.add_flags(parser)
        >>> config.given_flags(parser.parse_args(["--batch-size", "64"]))
        {'batch_size': '64'}
    """
    for section in dict.fromkeys(o.section for o in OPTIONS):
        chosen = [o for o in OPTIONS if o.section == section and o.type is not dict]
        chosen = [o for o in chosen if names is None or o.name in names]
        if not chosen:
            continue
        group = parser.add_argument_group(f"{section} options")
        for o in chosen:
            default = "" if o.default is None else f" [default: {_show(o.default)}]"
            kwargs: dict[str, Any] = dict(default=argparse.SUPPRESS, help=o.help + default)
            if o.type is bool:
                kwargs["action"] = argparse.BooleanOptionalAction
            else:
                kwargs["metavar"] = o.name.upper()
                if o.choices:
                    kwargs["choices"] = o.choices
                    kwargs["metavar"] = "{" + ",".join(o.choices) + "}"
            group.add_argument(o.flag, dest=o.name, **kwargs)


def given_flags(args: argparse.Namespace) -> dict[str, Any]:
    """The options set by flags on this command line (see `add_flags`), as given (strings).

    Example:
        >>> config.resolve("run.yaml", config.given_flags(args))   # flags override the file
    """
    return {name: value for name, value in vars(args).items() if name in BY_NAME}


def markdown_table() -> str:
    """The docs table of every key: flag, type, default and meaning (docs/cli.md holds it).

    Example:
        >>> print(config.markdown_table().splitlines()[0])
        | key | flag | type | default | meaning |
    """
    rows = ["| key | flag | type | default | meaning |", "|---|---|---|---|---|"]
    for o in OPTIONS:
        flag = "(YAML only)" if o.type is dict else f"`{o.flag}`"
        kind = "list or a,b" if o.type is list else o.type.__name__
        if o.choices:
            kind = " \\| ".join(o.choices)
        default = "" if o.default is None else f"`{_show(o.default)}`"
        rows.append(f"| `{o.name}` | {flag} | {kind} | {default} | {o.help} |")
    return "\n".join(rows)


def _convert(o: Option, value: Any, source: str) -> Any:
    """`value` as `o.type`, or `ConfigError` naming the key; None is always allowed."""
    if value is None:
        return None
    bad = ConfigError(f"{source}: {o.name} must be {_expected(o)}, got {_kind(value)} {value!r}.")
    if o.type is bool:
        if not isinstance(value, bool):
            raise bad
    elif o.type is int:
        if isinstance(value, bool) or not isinstance(value, (int, str)):
            raise bad
        try:
            value = int(value)
        except ValueError:
            raise bad from None
    elif o.type is float:
        # YAML 1.1 reads 1e-4 (no dot) as a string; accept it as the number it means.
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise bad
        try:
            value = float(value)
        except ValueError:
            raise bad from None
    elif o.type is list:
        if isinstance(value, str):
            value = value.split(",") if "," in value else value
        elif not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise bad
    elif o.type is dict:
        if not isinstance(value, dict):
            raise bad
    elif not isinstance(value, str):
        raise bad
    if o.choices and value not in o.choices:
        raise ConfigError(f"{source}: {o.name}={value!r}; use one of {', '.join(o.choices)}.")
    try:
        recipe.check_arguments(**{o.name: value} if o.name in recipe.BOUNDED else {})
    except SpecError as exc:
        raise ConfigError(f"{source}: {exc}") from None
    return value


def _expected(o: Option) -> str:
    if o.type is list:
        return "a string or a list of strings"
    if o.type is dict:
        return "a mapping"
    return {bool: "true or false", int: "an integer", float: "a number"}.get(o.type, "a string")


def _kind(value: Any) -> str:
    return {
        bool: "a boolean",
        int: "an integer",
        float: "a number",
        str: "a string",
        list: "a list",
        dict: "a mapping",
    }.get(type(value), type(value).__name__)


def _show(value: Any) -> str:
    return ",".join(value) if isinstance(value, list) else str(value)
