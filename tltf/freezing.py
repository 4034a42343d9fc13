"""Which backbone layer groups train: freeze policies and the BatchNorm policy.

Policies: ``"all"`` (feature extraction: only the head trains), ``"none"`` (full
fine-tuning), ``"top:N"`` (the N groups nearest the output train), a list of
group names, or ``"lora:RANK[:N]"`` (low-rank adapters on the attention
projections of the top N groups, the rest frozen: `tltf.lora`). With ``bn="frozen"`` BatchNormalization layers keep
``trainable=False`` even inside trainable groups: Keras 3 then runs them in
inference mode, so their moving statistics never change (a plain
``base(x, training=False)`` does not achieve that under ``fit``, keras #20285).

A group lists layers, or variables (paths with "/") of a layer that holds a
whole network, like `tltf.layers.HubModule`: those variables are switched one
by one, and a TF-Hub module follows the BatchNorm policy through the
``training`` flag it is called with.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from tltf.backbone import group_members
from tltf.compiling import compile_model
from tltf.errors import SpecError
from tltf.lora import is_lora, open_adapters, parse, targets_in
from tltf.metadata import backbone_model, info, update_info

BN_POLICIES = ("frozen", "train")  # "auto" (tltf.build): frozen for pretrained weights


def trainable_groups(freeze: str | list[str], groups: list[str]) -> list[str]:
    """The groups that train under `freeze`, in input-to-output order.

    Example:
        >>> trainable_groups("top:2", ["embeddings", "layer_0", "layer_1"])
        ['layer_0', 'layer_1']
        >>> trainable_groups("lora:8:1", ["embeddings", "layer_0", "layer_1"])   # adapted
        ['layer_1']
    """
    if is_lora(freeze):
        return parse(freeze).groups(groups)
    if isinstance(freeze, (list, tuple)):
        unknown = [g for g in freeze if g not in groups]
        if unknown:
            raise SpecError(f"freeze= names unknown groups {unknown}; groups are {groups}.")
        return [g for g in groups if g in freeze]
    if freeze == "all":
        return []
    if freeze == "none":
        return list(groups)
    if isinstance(freeze, str) and freeze.startswith("top:"):
        try:
            n = int(freeze[4:])
        except ValueError:
            n = -1
        if not 0 <= n <= len(groups):
            raise SpecError(
                f"freeze={freeze!r}: N must be an integer from 0 to {len(groups)} "
                f"(this backbone's groups: {groups})."
            )
        return list(groups[len(groups) - n :]) if n else []
    raise SpecError(
        f"freeze={freeze!r}; use 'all', 'none', 'top:N', 'lora:RANK' or a list of group names "
        f"from {groups}."
    )


@dataclasses.dataclass(frozen=True)
class TrainingPlan:
    """What trains in a phase: the freeze policy and the BatchNorm policy.

    `fine_tune` makes one per phase (`plan`) and applies it (`apply_plan`)
    before compiling that phase once; applying a plan never compiles.

    Example:
        >>> plan(model, "top:2")
        TrainingPlan(freeze='top:2', bn='frozen')
    """

    freeze: Any
    bn: str

    def groups(self, groups: list[str]) -> list[str]:
        """The groups that train under this plan (`trainable_groups`).

        Example:
            >>> TrainingPlan("top:1", "frozen").groups(["embeddings", "layer_0", "layer_1"])
            ['layer_1']
        """
        return trainable_groups(self.freeze, groups)


def plan(model: Any, freeze: str | list[str], bn: str | None = None) -> TrainingPlan:
    """A checked `TrainingPlan` for `model`; `bn` defaults to the model's BN policy.

    Example:
        >>> plan(model, ["layer_1"])
        TrainingPlan(freeze=('layer_1',), bn='frozen')
    """
    meta = info(model)
    bn = bn or meta.bn
    if bn not in BN_POLICIES:
        raise SpecError(f"bn={bn!r}; use one of {BN_POLICIES}.")
    freeze = tuple(freeze) if isinstance(freeze, (list, tuple)) else freeze
    trainable_groups(freeze, list(meta.groups))
    return TrainingPlan(freeze, bn)


def apply_plan(model: Any, training_plan: TrainingPlan) -> list[str]:
    """Sets the trainable flags of `model` to `training_plan` and records it in the card.

    It does not compile: Keras fixes the trainable weights at compile time, so
    compile after applying (`fine_tune` does, once per phase). Returns the
    trainable groups (under a ``lora:`` policy, those whose adapters train).

    Example:
        >>> apply_plan(model, plan(model, "top:1"))
        ['layer_1']
        >>> tltf.compile_model(model, lr=1e-4)
    """
    import keras

    freeze, bn = training_plan.freeze, training_plan.bn
    backbone = backbone_model(model)
    groups = group_members(backbone, info(model).groups)
    train = set(training_plan.groups(list(groups)))
    lora = parse(freeze) if is_lora(freeze) else None
    _set_trainable(backbone, True)  # recurses into sublayers and their variables
    for group, members in groups.items():
        opened = group in train and lora is None
        for member in members:
            if isinstance(member, keras.layers.Layer):
                is_bn = isinstance(member, keras.layers.BatchNormalization)
                _set_trainable(member, opened and not (is_bn and bn == "frozen"))
            elif not opened:
                member.trainable = False  # a variable; trainable ones were reset above
    if lora is not None:
        layers = targets_in([m for g in groups if g in train for m in groups[g]], lora.targets)
        if train and not layers:
            raise SpecError(
                f"freeze={freeze!r}: groups {sorted(train)} have no layer named "
                f"{' or '.join(lora.targets)} that takes LoRA (Dense, EinsumDense, Embedding); "
                "name the target layers: lora:RANK:all:NAME+NAME."
            )
        open_adapters(model, layers, lora.rank)
        train = {g for g in train if targets_in(groups[g], lora.targets)}  # those with adapters
    for layer in backbone._flatten_layers(include_self=False):
        if isinstance(layer, keras.layers.BatchNormalization) and bn == "frozen":
            _set_trainable(layer, False)
        if getattr(layer, "follows_bn_policy", False):  # a whole network in one layer
            layer.bn = bn
    update_info(model, freeze=freeze, bn=bn)
    return [g for g in groups if g in train]


def set_freeze(model: Any, freeze: str | list[str], bn: str | None = None) -> list[str]:
    """Sets which backbone groups of a tltf model train; returns the trainable groups.

    Example:
        >>> tltf.set_freeze(model, "top:2")
        ['layer_4', 'layer_5']

    The head always trains. A compiled model is compiled again (Keras fixes the
    trainable weights at compile time): same optimizer type and settings, with
    fresh optimizer state, same loss and metrics.
    """
    opened = apply_plan(model, plan(model, freeze, bn))
    if getattr(model, "compiled", False) and model.optimizer is not None:
        with model.distribute_strategy.scope():  # optimizers belong to the model's strategy
            optimizer = type(model.optimizer).from_config(model.optimizer.get_config())
        compile_model(model, optimizer=optimizer)
    return opened


def _set_trainable(layer: Any, value: bool) -> None:
    """``layer.trainable = value``, always reaching its sublayers and variables.

    On the TensorFlow backend an assignment of the value a flag already has skips
    the setter, yet a frozen layer loaded from ``.keras`` can hold sublayers built
    after loading, whose variables are trainable (KerasHub's TransformerEncoder).
    """
    import keras

    keras.layers.Layer.trainable.fset(layer, value)


class Description(str):
    """The text of `describe`; shown as the table itself in a notebook or the REPL.

    Example:
        >>> tltf.describe(model)               # a notebook cell: the table, not a quoted string
        tltf model 'tltf_classification': task=classification, ...
    """

    def __repr__(self) -> str:
        return str(self)


def describe(model: Any, print_fn: Any = None) -> Description:
    """Each group's parameter count and trainable state, then the head, as a table.

    Example:
        >>> print(tltf.describe(model))        # a notebook shows it without print
        tltf model 'tltf_classification': task=classification, ..., freeze='top:1', bn='frozen'
        group            members       params  trainable
        embeddings             4      896,512  no
        ...
    With per-group learning rates, a last line gives each group's multiplier.
    ``print_fn`` (e.g. ``logging.info``) also receives the text.
    """
    from tltf.backbone import group_table
    from tltf.rates import group_multipliers

    meta = info(model)
    backbone = backbone_model(model)
    head_params = sum(
        int(layer.count_params())
        for layer in model.layers
        if layer.weights and layer is not backbone
    )
    text = (
        f"tltf model {model.name!r}: task={meta['task']}, backbone={meta['backbone']}, "
        f"freeze={meta['freeze']!r}, bn={meta['bn']!r}\n"
        f"{group_table(backbone, meta['groups'])}\n"
        f"{'head':<16}{'':>8}{head_params:>13,}  yes"
    )
    if meta.get("lr_decay") is not None:
        rates = group_multipliers(meta["lr_decay"], list(meta["groups"]))
        text += "\nlearning-rate multipliers: " + ", ".join(f"{g} x{r:g}" for g, r in rates.items())
    if print_fn is not None:
        print_fn(text)
    return Description(text)
