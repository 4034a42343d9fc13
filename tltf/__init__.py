"""tltf: transfer learning for TensorFlow and Keras 3.

    >>> import tltf
    >>> model = tltf.build("keras_hub:/path/to/minilm", class_names=names, freeze="top:2")
    >>> train, val = tltf.data.from_csv("train.csv", text_column="text",
    ...                                 label_column="label", validation_split=0.1)
    >>> tltf.fine_tune(model, train, validation_data=val, epochs=3)
    >>> tltf.export(model, "export/topics")          # -> "export/topics/1"

Names resolve lazily, so `import tltf` stays fast and does not start TensorFlow.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# public name -> module that defines it
_EXPORTS = {
    "Backbone": "tltf.backbone",
    "load_backbone": "tltf.backbones",
    "sources": "tltf.backbones",
    "register_source": "tltf.backbones",
    "Modality": "tltf.modalities",
    "register_modality": "tltf.modalities",
    "build": "tltf.builder",
    "compile_model": "tltf.compiling",
    "load_model": "tltf.builder",
    "set_freeze": "tltf.freezing",
    "describe": "tltf.freezing",
    "info": "tltf.metadata",
    "ModelCard": "tltf.card",
    "set_lr_decay": "tltf.rates",
    "set_threshold": "tltf.heads",
    "fine_tune": "tltf.training",
    "lr_find": "tltf.lr_finder",
    "LRFindResult": "tltf.lr_finder",
    "recommend": "tltf.advisor",
    "rank": "tltf.ranking",
    "extend": "tltf.extending",
    "save_adapters": "tltf.adapters",
    "load_adapters": "tltf.adapters",
    "Ranking": "tltf.ranking",
    "Recommendation": "tltf.advisor",
    "evaluate": "tltf.evaluation",
    "detect": "tltf.detection",
    "export": "tltf.serving",
    "TltfError": "tltf.errors",
    "SpecError": "tltf.errors",
    "DataError": "tltf.errors",
    "BackboneUnavailable": "tltf.errors",
    "ExportError": "tltf.errors",
}
_SUBMODULES = (
    "data",
    "distribute",
    "layers",
    "heads",
    "lora",
    "modalities",
    "serving",
    "serving_ops",
    "tflite",
    "training",
)

__all__ = sorted([*_EXPORTS, *_SUBMODULES])


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
    elif name in _SUBMODULES:
        value = importlib.import_module(f"tltf.{name}")
    else:
        raise AttributeError(f"module 'tltf' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
