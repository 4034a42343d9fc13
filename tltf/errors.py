"""Errors tltf raises for things a user can fix.

Each message names the offending argument, file or row, and says what to do.
"""


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
