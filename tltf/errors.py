"""Errors tltf raises for things a user can fix.

Each message names the offending argument, file or row, and says what to do.
"""

import difflib
from collections.abc import Iterable


def suggest(word: str, valid: Iterable[str], what: str = "valid") -> str:
    """``did you mean 'X'?`` for the nearest of `valid`, else the list of them.

    Example:
        >>> suggest("poolling", ["weights", "pooling"], "options")
        "did you mean 'pooling'?"
    """
    valid = list(valid)
    close = difflib.get_close_matches(word.replace("-", "_").lower(), valid, n=1, cutoff=0.6)
    if close:
        return f"did you mean {close[0]!r}?"
    return f"{what}: {', '.join(valid)}."


class TltfError(Exception):
    """Base class of every error tltf raises on purpose.

    Example:
        >>> try:
        ...     model = tltf.build(spec, class_names=names)
        ... except tltf.TltfError as exc:      # a bad spec, file, label, export ...
        ...     print(f"cannot build: {exc}")
    """


class SpecError(TltfError, ValueError):
    """A backbone spec, task or option that tltf cannot interpret.

    Example:
        >>> tltf.load_backbone("MobileNetV2")
        SpecError: Backbone spec 'MobileNetV2' has no source prefix. Write it as SOURCE:NAME, ...
    """


class BackboneUnavailable(TltfError, RuntimeError):
    """Pretrained weights could not be fetched or failed their integrity check.

    Example:
        >>> try:
        ...     bb = tltf.load_backbone("keras:ResNet50")     # offline, weights not cached
        ... except tltf.BackboneUnavailable:
        ...     bb = tltf.load_backbone("keras:ResNet50", weights="/models/resnet50_notop.h5")
    """


class DataError(TltfError, ValueError):
    """Input data that cannot be used as given (missing column, unseen label, ...).

    Example:
        >>> tltf.data.from_arrays(["good", "bad"])
        DataError: arrays: give either labels y=... or regression targets=..., exactly one.
    """


class ExportError(TltfError, RuntimeError):
    """An export that would not serve what the Keras model computes.

    Example:
        >>> tltf.export(model, "export/topics", version=1)      # version 1 is there already
        ExportError: export/topics/1 exists; versions are immutable once served. ...
    """


class FolderInUse(TltfError, RuntimeError):
    """A run folder that another live process is writing (it holds the folder's lock).

    Example:
        >>> tltf.fine_tune(model, train, run_dir="runs/topics")    # while tltf train runs there
        FolderInUse: runs/topics is in use by PID 4711; wait for it to end, or use another run folder.
    """
