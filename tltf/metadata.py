"""Reading what tltf stores inside the models it builds: the model card (`tltf.card`), and
the model's parts (preprocessing, backbone, head)."""

from __future__ import annotations

from typing import Any

from tltf.card import ModelCard
from tltf.errors import SpecError

INFO_LAYER = "tltf_info"
BACKBONE_LAYER = "backbone"
FEATURE_NORM_LAYER = "feature_norm"


def info(model: Any) -> ModelCard:
    """The model's card: task, class names, backbone spec, groups, freeze policy (`ModelCard`).

    Example:
        >>> tltf.info(model).class_names
        ('games', 'math', ...)
        >>> tltf.info(model)["class_names"]       # the JSON form, as a dict reads
        ['games', 'math', ...]

    The card is read-only and saved with the model in `.keras` files; the
    functions that own a field change it (`update_info`).
    """
    return _info_layer(model).card


def update_info(model: Any, **changes: Any) -> ModelCard:
    """Replaces the model's card with one that has `changes`; the one writer of the card.

    Example:
        >>> tltf.metadata.update_info(model, freeze="top:2", bn="frozen")

    Prefer the function that owns a field, which checks the value and applies it:
    `tltf.set_freeze`, `tltf.set_lr_decay`, `tltf.set_threshold`, `tltf.adapt_targets`.
    """
    layer = _info_layer(model)
    layer.card = layer.card.replace(**changes)
    return layer.card


def _info_layer(model: Any) -> Any:
    try:
        layer = model.get_layer(INFO_LAYER)
    except (ValueError, AttributeError):
        layer = None
    if not isinstance(getattr(layer, "card", None), ModelCard):
        raise SpecError(
            f"{getattr(model, 'name', model)!r} was not built by tltf.build (it has no "
            f"'{INFO_LAYER}' layer); build it with tltf.build(spec, task=...)."
        )
    return layer


def backbone_model(model: Any) -> Any:
    """The nested backbone network inside a tltf model.

    Example:
        >>> backbone_model(model).name
        'backbone'
    """
    info(model)
    return model.get_layer(BACKBONE_LAYER)


def group_members(model: Any) -> dict[str, list]:
    """Ordered ``{group: [layers or variables]}`` of the backbone inside a tltf model.

    Example:
        >>> [layer.name for layer in group_members(model)["stem"]]     # keras:MobileNetV2
        ['Conv1', 'bn_Conv1', 'Conv1_relu']
    """
    from tltf.backbone import group_members as resolve

    return resolve(backbone_model(model), info(model)["groups"])


def head_model(model: Any) -> Any:
    """A `keras.Model` from backbone features to the outputs, through the model's own head layers.

    Example:
        >>> head = head_model(model)            # Input [feature_dim] -> logits
        >>> head.get_layer("logits") is model.get_layer("logits")
        True
    """
    import keras

    return keras.Model(features_tensor(model), model.output, name="tltf_head")


def preprocessing_layers(model: Any) -> list:
    """The layers between the model's inputs and its backbone (preprocessing, augmentation).

    Example:
        >>> [layer.name for layer in preprocessing_layers(model)]
        ['image_preprocessing']
    """
    import keras

    after = {id(layer) for layer in head_model(model).layers}
    skip = {BACKBONE_LAYER, INFO_LAYER}
    return [
        layer
        for layer in model.layers
        if id(layer) not in after
        and layer.name not in skip
        and not isinstance(layer, keras.layers.InputLayer)
    ]


def features_tensor(model: Any) -> Any:
    """The symbolic backbone features (the `tltf_info` layer's output) in `model`'s own graph.

    Example:
        >>> features_tensor(model).shape          # keras:MobileNetV2
        (None, 1280)

    ``layer.output`` is that of the layer's first call, which belongs to another
    model when the layers were reused to build this one (e.g. with augmentation).
    """
    info_layer = model.get_layer(INFO_LAYER)
    pending, seen = list(model.outputs), set()
    while pending:
        tensor = pending.pop()
        layer, node_index, _ = tensor._keras_history
        if layer is info_layer:
            return tensor
        if id(tensor) not in seen:
            seen.add(id(tensor))
            pending.extend(layer._inbound_nodes[node_index].input_tensors)
    raise SpecError(f"{model.name!r}: its outputs do not come from its {INFO_LAYER!r} layer.")
