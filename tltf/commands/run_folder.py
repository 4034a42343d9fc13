"""What a `tltf train` run folder holds, for the commands that read one (export, evaluate, train).

runs/NAME/model.keras     the trained model (saved when training ends)
runs/NAME/config.yaml     the resolved configuration it was trained with
"""

from __future__ import annotations

import os
from typing import Any

from tltf.errors import TltfError

MODEL_FILE = "model.keras"


def load_run_model(run_dir: str) -> Any:
    """The trained Keras model that `tltf train` saved in `run_dir` (``model.keras``).

    Example:
        >>> model = load_run_model("runs/topics-20250101-120000")
        >>> tltf.info(model)["class_names"]
    """
    path = os.path.join(run_dir, MODEL_FILE)
    if not os.path.isfile(path):
        what = "is not a folder" if not os.path.isdir(run_dir) else f"holds no {MODEL_FILE}"
        raise TltfError(
            f"{run_dir} {what}; give a run folder written by tltf train (it saves {MODEL_FILE} "
            "when training ends)."
        )
    from tltf.builder import load_model

    return load_model(path)


def run_config(run_dir: str) -> dict:
    """The resolved configuration a run folder was trained with ({} if it has none).

    Example:
        >>> run_config("runs/topics-20250101-120000")["export"]
        'topics'
    """
    from tltf import config

    path = os.path.join(run_dir, "config.yaml")
    return config.load(path) if os.path.isfile(path) else {}
