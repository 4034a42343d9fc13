"""The contract every pretrained network meets: a `Backbone` and its layer groups.

Sources (`tltf.backbones`) turn a spec string into a `Backbone`; freezing,
learning rates, feature caching and export are written once, against it.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tltf.errors import SpecError


@dataclass
class Backbone:
    """A pretrained network, ready to put under a task head.

    Attributes:
        spec: the spec string it was loaded from.
        modality: the name of its `tltf.modalities` entry ("image", "text", ...).
        model: Keras model from preprocessed inputs to pooled features ``[batch, feature_dim]``.
        preprocessor: Keras layer from raw inputs (0-255 pixels, strings) to `model`'s inputs.
        groups: ordered ``{group: [layer names in model]}``, input side first. Every
            layer of `model` that holds weights belongs to exactly one group. An entry
            with "/" is a variable path instead (see `group_members`), for networks
            held by one layer, like TF-Hub modules.
        feature_dim: width of the pooled features.
        input_spec: JSON-able description of the raw input, e.g.
            ``{"shape": [224, 224, 3], "dtype": "float32"}`` or
            ``{"shape": [], "dtype": "string", "sequence_length": 128}``.
        default_lr: a fine-tuning learning rate that suits this kind of network.
        pretrained: False for random weights (``weights=None``): `tltf.build` then
            trains BatchNorm statistics, and `tltf.fine_tune` skips the head-only phase
            and trains at `tltf.recipe.SCRATCH_LR`.
        standardize_features: the head standardizes the features (`tltf.layers.FeatureNorm`,
            mean and std per feature from the training set), for networks whose features
            are large and unnormalized, where the head's Adam steps overshoot on raw
            ones (the speech embedding: +4 to +8 points, `benchmarks/README.md`).

    Example:
        >>> bb = tltf.load_backbone("keras:MobileNetV2", weights=None, input_shape=(96, 96, 3))
        >>> bb.modality, bb.feature_dim, list(bb.groups)
        ('image', 1280, ['stem', 'stage1', 'stage2', 'stage3', 'stage4', 'stage5', 'top'])
    """

    spec: str
    modality: str
    model: Any
    preprocessor: Any
    groups: dict[str, list[str]]
    feature_dim: int
    input_spec: dict
    default_lr: float = 1e-4
    pretrained: bool = True
    standardize_features: bool = False
    _fingerprint: str | None = field(default=None, repr=False)

    @property
    def fingerprint(self) -> str:
        """sha256 of the spec and every weight value: keys caches, written into exports.

        Example:
            >>> bb.fingerprint          # 16 hex digits; changes when any weight does
            'a3e448a1716a82bd'
        """
        if self._fingerprint is None:
            self._fingerprint = weights_fingerprint(self.spec, self.model.weights)
        return self._fingerprint

    def summary(self, print_fn: Callable[[str], None] = print) -> None:
        """Prints each group with its parameter count and trainable state.

        Example:
            >>> bb.summary()
            Backbone keras:MobileNetV2  (image, features 1280)
            group            members       params  trainable
            stem                   3          992  yes
            ...
        """
        print_fn(f"Backbone {self.spec}  ({self.modality}, features {self.feature_dim})")
        print_fn(group_table(self.model, self.groups))


def group_members(model: Any, groups: dict[str, list[str]]) -> dict[str, list]:
    """``{group: [layers and variables]}``: resolves the names in `Backbone.groups`.

    An entry is a layer name of `model`, or, when it contains "/", the path of one
    variable (Keras layer names cannot contain "/"). Variable entries let a single
    layer that holds a whole network (a TF-Hub module) be split into groups.

    Example:
        >>> members = group_members(bb.model, bb.groups)
        >>> [layer.name for layer in members["stem"]]
        ['Conv1', 'bn_Conv1', 'Conv1_relu']
    """
    by_path = {w.path: w for w in model.weights}
    members: dict[str, list] = {}
    for group, names in groups.items():
        try:
            members[group] = [by_path[n] if "/" in n else model.get_layer(n) for n in names]
        except (KeyError, ValueError) as exc:
            raise SpecError(f"group {group!r} names {exc} which {model.name!r} lacks.") from None
    return members


def member_weights(member: Any) -> list:
    """The weights of a group member: a layer's weights, or the variable itself.

    Example:
        >>> [w.path for w in member_weights(bb.model.get_layer("Conv1"))]
        ['Conv1/kernel']
    """
    return list(member.weights) if hasattr(member, "weights") else [member]


def group_table(model: Any, groups: dict[str, list[str]]) -> str:
    """A text table of groups, parameter counts and trainable state, input side first.

    The state is ``yes``, ``partly``, ``no``, or ``lora`` where only LoRA adapters train.

    Example:
        >>> print(group_table(bb.model, bb.groups).splitlines()[0])
        group            members       params  trainable
    """
    trainable_ids = {id(w) for w in model.trainable_weights}
    rows = [f"{'group':<16}{'members':>8}{'params':>13}  trainable"]
    for name, members in group_members(model, groups).items():
        weights = [member_weights(m) for m in members]
        params = sum(math.prod(w.shape) for ws in weights for w in ws)
        trainable = [any(id(w) in trainable_ids for w in ws) for ws in weights if ws]
        state = "yes" if trainable and all(trainable) else "partly" if any(trainable) else "no"
        opened = [w for ws in weights for w in ws if id(w) in trainable_ids]
        if opened and all(w.name.startswith("lora_") for w in opened):
            state = "lora"  # only Keras' LoRA adapters train (`tltf.lora`)
        rows.append(f"{name:<16}{len(members):>8}{params:>13,}  {state}")
    return "\n".join(rows)


def weights_fingerprint(spec: str, weights: list) -> str:
    """The first 16 hex digits of the sha256 of `spec` and each weight's path and values.

    Example:
        >>> weights_fingerprint(bb.spec, bb.model.weights) == bb.fingerprint
        True
    """
    digest = hashlib.sha256(spec.encode())
    for w in weights:
        digest.update(w.path.encode() if hasattr(w, "path") else b"")
        digest.update(memoryview(w.numpy()).tobytes())
    return digest.hexdigest()[:16]
