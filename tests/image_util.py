"""Noisy single-colour PNGs in class folders: image data whose classes any backbone can tell."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

COLOURS = {"red": (200, 30, 30), "green": (30, 200, 30), "blue": (30, 30, 200)}


def write_colours(
    root: Path, per_class: int, shape: tuple[int, int] = (32, 32), seed: int = 0, **folders
) -> Path:
    """``root/COLOUR/i.png``, `per_class` each, pixel noise of SD 25; `folders` maps a colour
    to another parent (``blue="new"`` writes ``root/new/blue/``). Returns `root`."""
    rng = np.random.default_rng(seed)
    for name, colour in COLOURS.items():
        folder = root / folders.get(name, "") / name
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            pixels = np.clip(np.array(colour) + rng.normal(0, 25, (*shape, 3)), 0, 255)
            Image.fromarray(pixels.astype("uint8")).save(folder / f"{i}.png")
    return root


def save_tiny_cnn(path: Path, size: int = 32) -> str:
    """A small random CNN (conv-BN-ReLU twice, pooled, a dense layer) saved to `path`:
    a ``file:`` backbone that traces in a fraction of MobileNetV2's time, for tests
    where the architecture is not the point. Load it with ``preprocess="none"``."""
    import keras

    keras.utils.set_random_seed(0)
    inputs = keras.Input((size, size, 3))
    x = keras.layers.Rescaling(1 / 255, name="scale")(inputs)
    for i, filters in enumerate((8, 16)):
        x = keras.layers.Conv2D(filters, 3, strides=2, name=f"conv_{i}")(x)
        x = keras.layers.BatchNormalization(name=f"bn_{i}")(x)
        x = keras.layers.ReLU(name=f"relu_{i}")(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    outputs = keras.layers.Dense(16, activation="relu", name="embedding")(x)
    keras.Model(inputs, outputs, name="tiny_cnn").save(str(path))
    return str(path)
