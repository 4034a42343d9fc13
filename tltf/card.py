"""`ModelCard`: what a tltf model knows about itself, typed and read-only.

`tltf.build` writes the card once; it travels with the model through `.keras`
save and load (as JSON in the `tltf_info` identity layer) and into exports.
Nothing mutates it in place: a change (the freeze policy, per-group rates, a
decision threshold, regression target statistics) makes a new card through
`tltf.metadata.update_info`, the one writer, called by the functions that own
each field (`tltf.set_freeze`, `tltf.set_lr_decay`, `tltf.set_threshold`,
`tltf.adapt_targets`).

Its values are frozen (lists as tuples, dicts as `FrozenDict`) so that reading a
card cannot change a model. ``card["class_names"]`` still reads like the dict
tltf used to return, and gives a plain JSON copy (lists and dicts).
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from tltf.errors import SpecError

__all__ = ["ModelCard"]


class FrozenDict(dict):
    """A dict that refuses changes (JSON-serializable, compares equal to a dict)."""

    def _refuse(self, *args: Any, **kwargs: Any) -> None:
        raise TypeError(
            "a tltf model card is read-only; change it with the function that owns the field "
            "(tltf.set_freeze, tltf.set_lr_decay, tltf.set_threshold, tltf.metadata.update_info)."
        )

    __setitem__ = __delitem__ = _refuse
    clear = pop = popitem = setdefault = update = _refuse  # type: ignore[assignment]

    def __ior__(self, other: Any) -> Any:
        self._refuse()

    def __reduce__(self) -> Any:  # copy / pickle build a dict first
        return (FrozenDict, (dict(self),))

    def __hash__(self) -> int:  # type: ignore[override]
        return hash(json.dumps(thaw(self), sort_keys=True))


def freeze_value(value: Any) -> Any:
    """`value` with its lists as tuples and dicts as `FrozenDict`, recursively."""
    if isinstance(value, dict):
        return FrozenDict({k: freeze_value(v) for k, v in value.items()})
    if isinstance(value, (list, tuple)):
        return tuple(freeze_value(v) for v in value)
    return value


def thaw(value: Any) -> Any:
    """The plain JSON form of a frozen value: lists and dicts, recursively."""
    if isinstance(value, dict):
        return {k: thaw(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [thaw(v) for v in value]
    return value


@dataclasses.dataclass(frozen=True)
class ModelCard:
    """A tltf model's metadata: task, classes, backbone, groups, policies (`tltf.info`).

    Example:
        >>> card = tltf.info(model)
        >>> card.task, card.class_names[:2], list(card.groups)[-1]
        ('classification', ('games', 'math'), 'conv_13')
        >>> card["class_names"]                   # the JSON form, a list
        ['games', 'math', ...]

    Fields:
        task: the task name (`tltf.tasks()`).
        class_names: the output names, in output order.
        backbone: the backbone spec it was built from.
        modality: the kind of raw input (`tltf.modalities()`).
        input_spec: the raw input (``shape``, ``dtype``, and the modality's keys).
        groups: ``{group: (layer or variable names)}``, input side first.
        fingerprint: a hash of the backbone's initial weights.
        head: the head's options (`tltf.heads.head_options`).
        default_lr: the backbone's fine-tuning rate.
        pretrained: False for random weights (``weights=None``).
        freeze / bn: the freeze and BatchNorm policies in force (`tltf.set_freeze`).
        precision / jit_compile: as given to `tltf.build`.
        lr_decay: per-group rate multipliers (`tltf.set_lr_decay`), or None.
        augment: the augmentation built in, or None.
        target_stats: a regression head's target mean and std (`tltf.adapt_targets`).
        feature_norm: None, or "pending" / "adapted" for a head that standardizes its
            features (`tltf.layers.FeatureNorm`).
        extended_from: for a model that `tltf.extend` grew, the classes and backbone
            fingerprint it grew from; else None.
        extra: keys this version of tltf does not know (kept, not lost).
    """

    task: str
    class_names: tuple
    backbone: str
    modality: str
    input_spec: FrozenDict
    groups: FrozenDict
    fingerprint: str = ""
    head: FrozenDict = dataclasses.field(default_factory=FrozenDict)
    default_lr: float = 1e-4
    pretrained: bool = True
    freeze: Any = "all"
    bn: str = "frozen"
    precision: Any = None
    jit_compile: Any = "auto"
    lr_decay: Any = None
    augment: Any = None
    target_stats: Any = None
    feature_norm: Any = None
    extended_from: Any = None
    extra: FrozenDict = dataclasses.field(default_factory=FrozenDict)

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            object.__setattr__(self, f.name, freeze_value(getattr(self, f.name)))
        for name in ("task", "backbone", "modality"):
            if not isinstance(getattr(self, name), str):
                raise SpecError(f"model card: {name}={getattr(self, name)!r} must be a string.")
        if not all(isinstance(c, str) for c in self.class_names):
            raise SpecError(f"model card: class_names={self.class_names!r} must be strings.")

    @classmethod
    def from_dict(cls, values: dict | str) -> ModelCard:
        """A card from its JSON form (a dict or a JSON string); unknown keys go to `extra`.

        Example:
            >>> ModelCard.from_dict(layer.get_config()["info"]).task
            'classification'
        """
        values = dict(json.loads(values) if isinstance(values, str) else values)
        names = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        missing = [n for n in ("task", "class_names", "backbone", "modality") if n not in values]
        if missing:
            raise SpecError(f"model card: missing {missing}; it was not written by tltf.build.")
        known = {k: v for k, v in values.items() if k in names}
        extra = {k: v for k, v in values.items() if k not in names}
        known.setdefault("input_spec", {})
        known.setdefault("groups", {})
        return cls(**known, extra=extra)

    def to_dict(self) -> dict:
        """The plain JSON form: every field, and the `extra` keys beside them, lists and dicts.

        Example:
            >>> tltf.info(model).to_dict()["class_names"]
            ['games', 'math']
        """
        out = {f.name: thaw(getattr(self, f.name)) for f in dataclasses.fields(self)}
        return {**out.pop("extra"), **out}

    def to_json(self) -> str:
        """`to_dict` as a JSON string (what a `.keras` file stores).

        Example:
            >>> json.loads(tltf.info(model).to_json())["task"]
            'classification'
        """
        return json.dumps(self.to_dict())

    def replace(self, **changes: Any) -> ModelCard:
        """A new card with `changes` (field names); unknown names are a `SpecError`.

        Example:
            >>> tltf.info(model).replace(bn="train").bn
            'train'
        """
        names = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(changes) - names)
        if unknown:
            raise SpecError(f"model card has no field(s) {unknown}; fields are {sorted(names)}.")
        return dataclasses.replace(self, **changes)

    # The read-only mapping view, as `tltf.info` returned before the card existed.
    def __getitem__(self, key: str) -> Any:
        if key in {f.name for f in dataclasses.fields(self)}:
            return thaw(getattr(self, key))
        if key in self.extra:
            return thaw(self.extra[key])
        raise KeyError(key)

    def __setitem__(self, key: str, value: Any) -> None:
        FrozenDict._refuse(FrozenDict())

    def __contains__(self, key: object) -> bool:
        try:
            return self[key] is not None  # type: ignore[index]
        except KeyError:
            return False

    def get(self, key: str, default: Any = None) -> Any:
        """``card[key]``, or `default` where the field is None or unknown.

        Example:
            >>> tltf.info(model).get("target_stats", {})
            {}
        """
        return self[key] if key in self else default

    def keys(self) -> list[str]:
        """The field names (and `extra` keys), as a dict's keys.

        Example:
            >>> "class_names" in tltf.info(model).keys()
            True
        """
        return list(self.to_dict())
