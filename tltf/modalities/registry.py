"""The registry of modalities: register one, find one by name, list them.

The built-in modalities (image, text, audio) are imported on first use, so that
``import tltf`` stays fast.
"""

from __future__ import annotations

import importlib

from tltf.errors import SpecError
from tltf.modalities.base import Modality

_REGISTRY: dict[str, Modality] = {}
_BUILTIN = ("tltf.modalities.image", "tltf.modalities.text", "tltf.modalities.audio")


def register_modality(modality: Modality) -> Modality:
    """Registers a `Modality` under its `name` (a later one replaces an earlier).

    Example:
        >>> class Vector(tltf.modalities.Modality):
        ...     name = "vector"
        >>> tltf.modalities.register_modality(Vector())
    """
    if not modality.name:
        raise SpecError(f"{type(modality).__name__} has no name; set its `name` attribute.")
    _REGISTRY[modality.name] = modality
    return modality


def get_modality(name: str) -> Modality:
    """The registered `Modality` called `name`.

    Example:
        >>> get_modality("text").xla_blocker
        "its tokenizer's string ops cannot be XLA-compiled"
    """
    _import_builtin()
    if name not in _REGISTRY:
        raise SpecError(f"modality {name!r}; the registered ones are {modality_names()}.")
    return _REGISTRY[name]


def modality_names() -> list[str]:
    """Names of the registered modalities, built-in ones first.

    Example:
        >>> modality_names()
        ['image', 'text']
    """
    _import_builtin()
    return list(_REGISTRY)


def modalities() -> list[Modality]:
    """The registered modalities, in registration order."""
    _import_builtin()
    return list(_REGISTRY.values())


def import_layer_modules() -> None:
    """Imports every modality's `layer_modules`, so that `.keras` files holding them load."""
    for modality in modalities():
        for module in modality.layer_modules:
            importlib.import_module(module)


def _import_builtin() -> None:
    for module in _BUILTIN:
        importlib.import_module(module)
