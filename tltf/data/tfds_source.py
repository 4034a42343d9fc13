"""`from_tfds`: a TensorFlow Datasets builder's split(s) as tltf Datasets."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from tltf.data.dataset import Dataset, finish
from tltf.errors import DataError
from tltf.modalities import get_modality, modalities
from tltf.modalities.image_files import MAX_PIXELS


def _how_to_get_data(name: str, data_dir: str | None) -> str:
    return (
        f"Either prepare it once where there is network, "
        f"`tfds.builder({name!r}, data_dir=DIR).download_and_prepare()`, and pass "
        "data_dir=DIR; or build a dataset from your own files, e.g. "
        "from_tfds(tfds.folder_dataset.ImageFolder('ROOT'), split='train') for "
        "ROOT/SPLIT/CLASS/image.jpg (tfds.folder_dataset.TranslateFolder for text), "
        f"or use tltf.data.from_directory. (data_dir was {data_dir or 'the TFDS default'}.)"
    )


def from_tfds(
    name: Any,
    *,
    split: str | Sequence[str] = "train",
    data_dir: str | os.PathLike | None = None,
    download: bool = False,
    input_key: str | None = None,
    label_key: str | None = None,
    validation_split: float | None = None,
    test_split: float | None = None,
    seed: int = 0,
    strict: bool = False,
    max_pixels: int = MAX_PIXELS,
    verbose: bool = True,
) -> Dataset | tuple[Dataset, ...]:
    """Loads a TensorFlow Datasets split: images (kept encoded) or texts, with ClassLabel labels.

    `name` is a TFDS name ("beans", "imdb_reviews") or a builder object such as
    ``tfds.folder_dataset.ImageFolder(root)``. The input and label features default
    to the builder's ``supervised_keys``. A list of splits gives a tuple of Datasets.
    Nothing is downloaded unless ``download=True``.

    Example:
        >>> builder = tfds.folder_dataset.ImageFolder("photos")   # photos/train/cat/1.jpg ...
        >>> train, test = tltf.data.from_tfds(builder, split=["train", "test"])
    """
    import tensorflow_datasets as tfds

    data_dir = None if data_dir is None else os.fspath(data_dir)
    builder = _builder(tfds, name, data_dir, download) if isinstance(name, str) else name
    title = f"tfds:{builder.name}"
    keys = builder.info.supervised_keys
    if (input_key is None or label_key is None) and not (
        isinstance(keys, tuple) and len(keys) == 2 and all(isinstance(k, str) for k in keys)
    ):
        raise DataError(
            f"{title} has no (input, label) supervised_keys; pass input_key= and label_key=."
        )
    input_key = input_key or keys[0]
    label_key = label_key or keys[1]
    features = builder.info.features
    for key in (input_key, label_key):
        if key not in features:
            raise DataError(f"{title}: no feature {key!r}; the features are {list(features)}.")
    labels_feature = features[label_key]
    if not isinstance(labels_feature, tfds.features.ClassLabel):
        raise DataError(f"{title}: feature {label_key!r} is {labels_feature}, not a ClassLabel.")
    mod = next((m for m in modalities() if m.claims_tfds_feature(features[input_key])), None)
    if mod is None:
        kinds = ", ".join(m.name for m in modalities())
        raise DataError(
            f"{title}: feature {input_key!r} is {features[input_key]}, not one of the kinds "
            f"tltf loads ({kinds})."
        )
    names = list(labels_feature.names)
    splits = [split] if isinstance(split, str) else list(split)
    parts = []
    for s in splits:
        try:
            ds = builder.as_dataset(
                split=s,
                decoders=(None if (dec := mod.tfds_decoder(tfds)) is None else {input_key: dec}),
                shuffle_files=False,
            )
        except (ValueError, KeyError) as e:
            raise DataError(f"{title}: cannot read split {s!r} ({e}).") from None
        part = _to_dataset(
            tfds.as_numpy(ds),
            modality=mod.name,
            input_key=input_key,
            label_key=label_key,
            names=names,
            where=f"{title}[{s}]",
            strict=strict,
            max_pixels=max_pixels,
        )
        part.split = s
        parts.append(part)
    if len(parts) == 1:
        return finish(
            parts[0],
            validation_split=validation_split,
            test_split=test_split,
            seed=seed,
            verbose=verbose,
        )
    if validation_split or test_split:
        raise DataError(f"{title}: give several splits or validation_split/test_split, not both.")
    if verbose:
        print(" | ".join(p.report() for p in parts))
    return tuple(parts)


def _builder(tfds: Any, name: str, data_dir: str | None, download: bool) -> Any:
    try:
        builder = tfds.builder(name, data_dir=data_dir)
    except tfds.core.registered.DatasetNotFoundError:
        raise DataError(
            f"TFDS has no dataset named {name!r}; see https://www.tensorflow.org/datasets/catalog. "
            + _how_to_get_data(name, data_dir)
        ) from None
    if builder.is_prepared():
        return builder
    if not download:
        raise DataError(
            f"TFDS dataset {name!r} is not prepared in data_dir and download=False. "
            + _how_to_get_data(name, data_dir)
        )
    try:
        builder.download_and_prepare()
    except Exception as e:  # network, checksum or disk errors all end the same way
        raise DataError(
            f"TFDS could not download {name!r} ({type(e).__name__}: {e}). "
            + _how_to_get_data(name, data_dir)
        ) from e
    return builder


def _to_dataset(
    examples: Any,
    *,
    modality: str,
    input_key: str,
    label_key: str,
    names: list[str],
    where: str,
    strict: bool,
    max_pixels: int,
) -> Dataset:
    items, labels, files = [], [], []
    for i, ex in enumerate(examples):
        items.append(ex[input_key])
        labels.append(int(ex[label_key]))
        filename = ex.get("image/filename")
        files.append(filename.decode() if filename else f"{where} example {i}")
    if not items:
        raise DataError(f"{where} is empty.")
    loaded = get_modality(modality).load_records(items, files, strict=strict, max_pixels=max_pixels)
    labels = np.array(labels, dtype=np.int64)[loaded.keep]
    files = [files[i] for i in loaded.keep]
    return Dataset(
        loaded.x,
        labels,
        class_names=names,
        modality=modality,
        source=where.split("[")[0],
        locations=files,
        skipped=loaded.skipped,
        **loaded.extras,
    )
