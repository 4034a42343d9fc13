"""Turns what users have (CSV, JSONL, folders, TFDS, arrays) into datasets a tltf model trains on.

    >>> train, val = tltf.data.from_csv("train.csv", text_column="text", validation_split=0.1)
    train.csv: 1800 text examples, 3 classes (games 600, math 600, sound 600); split train 1620, validation 180
    >>> ds = train.as_tf_dataset(32, training=True, input_spec=tltf.info(model)["input_spec"])

Every loader returns a `Dataset` (or a tuple of them, one per split) that records
its class names, counts per class, modality and source. Bad input gives a
`tltf.DataError` naming the file and row, or, for unreadable image files, a
counted skip shown in the one-line load report. TensorFlow is imported only when
a pipeline is built. See docs/data.md.
"""

from tltf.data.dataset import Dataset, split_dataset
from tltf.data.folders import from_directory
from tltf.data.tabular import from_arrays, from_csv, from_jsonl
from tltf.data.tfds_source import from_tfds
from tltf.modalities.image_files import (
    AUGMENTATION_PRESETS,
    IMAGE_EXTENSIONS,
    MAX_PIXELS,
    augmentation_layers,
    load_image,
)

__all__ = [
    "AUGMENTATION_PRESETS",
    "IMAGE_EXTENSIONS",
    "MAX_PIXELS",
    "Dataset",
    "augmentation_layers",
    "from_arrays",
    "from_csv",
    "from_directory",
    "from_jsonl",
    "from_tfds",
    "load_image",
    "split_dataset",
]
