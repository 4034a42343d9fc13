"""Modalities: one object per kind of raw input (image, text, audio), behind one contract.

    >>> from tltf.modalities import get_modality
    >>> get_modality("text").accepts({"shape": [], "dtype": "string"})
    True

See `tltf.modalities.base` for the contract and docs/architecture.md for what a
new modality provides.
"""

from tltf.modalities.base import Loaded, Modality
from tltf.modalities.registry import (
    get_modality,
    import_layer_modules,
    modalities,
    modality_names,
    register_modality,
)

__all__ = [
    "Loaded",
    "Modality",
    "get_modality",
    "import_layer_modules",
    "modalities",
    "modality_names",
    "register_modality",
]
