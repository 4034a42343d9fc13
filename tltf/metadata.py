"""Reading the metadata that tltf stores inside the models it builds."""

from __future__ import annotations

from typing import Any

from tltf.errors import SpecError

INFO_LAYER = "tltf_info"
BACKBONE_LAYER = "backbone"


def info(model: Any) -> dict:
    """The model's tltf metadata: task, class names, backbone spec, groups, freeze policy.

    Example:
        >>> tltf.info(model)["class_names"]
        ['games', 'math', ...]

    The dict is live: tltf updates it when the freeze policy changes, and it is
    saved with the model in `.keras` files.
    """
    try:
        return model.get_layer(INFO_LAYER).info
    except (ValueError, AttributeError):
        raise SpecError(
            f"{getattr(model, 'name', model)!r} was not built by tltf.build (it has no "
            f"'{INFO_LAYER}' layer); build it with tltf.build(spec, task=...)."
        ) from None


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
