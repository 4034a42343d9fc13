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
