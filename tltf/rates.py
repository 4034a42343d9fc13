"""Per-group learning rates (discriminative fine-tuning) for any Keras 3 optimizer.

Groups near the input hold general features and should move less than groups
near the output (ULMFiT). Keras 3 optimizers have one learning rate (keras
#21741), so tltf hooks the one method every Keras optimizer implements,
``update_step(gradient, variable, learning_rate)``, and passes it
``learning_rate * multiplier`` of the variable's group. That is an exact
per-group rate for SGD, Adam and every other optimizer (scaling gradients
instead would cancel out in Adam's normalization), and it works under
tf.distribute, which calls ``update_step`` per variable on each replica.
Decoupled weight decay (AdamW's ``weight_decay``) still uses the base rate.

``lr_decay=0.5`` gives the head the full rate, the top backbone group half of
it, the one below a quarter, and so on; ``lr_decay={"layer_0": 0.1, "head": 1}``
sets multipliers by name (unnamed groups keep 1).
"""

from __future__ import annotations

from typing import Any

from tltf.backbone import group_members, member_weights
from tltf.errors import SpecError
from tltf.metadata import backbone_model, info, update_info

HEAD = "head"


def group_multipliers(lr_decay: float | dict | None, groups: list[str]) -> dict[str, float]:
    """``{group: multiplier}`` for the backbone `groups` (input side first) and ``"head"``.

    Example:
        >>> group_multipliers(0.5, ["embeddings", "layer_0", "layer_1"])
        {'embeddings': 0.125, 'layer_0': 0.25, 'layer_1': 0.5, 'head': 1.0}
    """
    if lr_decay is None:
        return {g: 1.0 for g in [*groups, HEAD]}
    if isinstance(lr_decay, dict):
        unknown = sorted(set(lr_decay) - {*groups, HEAD})
        if unknown:
            raise SpecError(
                f"lr_decay names unknown groups {unknown}; groups are {[*groups, HEAD]}."
            )
        rates = {g: float(lr_decay.get(g, 1.0)) for g in [*groups, HEAD]}
        if any(r < 0 for r in rates.values()):
            raise SpecError(f"lr_decay multipliers must be >= 0, got {lr_decay}.")
        return rates
    if isinstance(lr_decay, (int, float)) and not isinstance(lr_decay, bool) and 0 < lr_decay <= 1:
        n = len(groups)
        return {**{g: float(lr_decay) ** (n - i) for i, g in enumerate(groups)}, HEAD: 1.0}
    raise SpecError(
        f"lr_decay={lr_decay!r}: give a factor in (0, 1] (each group down from the top "
        "gets that share of the rate above it) or {group: multiplier}."
    )


def check_lr_decay(lr_decay: float | dict | None, groups: list[str]) -> float | dict | None:
    """Validates `lr_decay` for `groups`; returns it in the JSON form stored in `tltf.info`.

    Example:
        >>> check_lr_decay({"layer_0": 0.1}, ["embeddings", "layer_0", "layer_1"])
        {'layer_0': 0.1}
        >>> check_lr_decay({"layer_9": 0.1}, ["embeddings", "layer_0", "layer_1"])
        SpecError: lr_decay names unknown groups ['layer_9']; groups are ['embeddings', ...].
    """
    group_multipliers(lr_decay, groups)
    return dict(lr_decay) if isinstance(lr_decay, dict) else lr_decay


def set_lr_decay(model: Any, lr_decay: float | dict | None) -> Any:
    """Sets a tltf model's per-group learning rates (`group_multipliers`); returns its card.

    Example:
        >>> tltf.set_lr_decay(model, 0.5)          # each group down gets half the rate above
        >>> tltf.set_lr_decay(model, None)         # one rate for all

    They take effect when the model is next compiled (`tltf.fine_tune` compiles
    each phase; else `tltf.compile_model`), and are saved with the model.
    """
    meta = info(model)
    return update_info(model, lr_decay=check_lr_decay(lr_decay, list(meta.groups)))


def group_variables(model: Any) -> dict[str, list]:
    """``{group: [variables]}`` of a tltf model's backbone, input side first.

    Example:
        >>> [v.path for v in group_variables(model)["stem"]][:2]     # keras:MobileNetV2
        ['Conv1/kernel', 'bn_Conv1/gamma']
    """
    members = group_members(backbone_model(model), info(model)["groups"])
    return {g: [w for m in ms for w in member_weights(m)] for g, ms in members.items()}


def apply_group_rates(optimizer: Any, model: Any) -> Any:
    """Makes `optimizer` train each group of `model` at its multiple of the rate.

    Example:
        >>> tltf.set_lr_decay(model, 0.5)
        >>> opt = apply_group_rates(keras.optimizers.SGD(0.1), model)
        >>> model.compile(optimizer=opt, ...)     # tltf.compile_model does both

    The multipliers come from ``tltf.info(model).lr_decay``. Applying again
    replaces the previous multipliers. Returns `optimizer`.
    """
    meta = info(model)
    rates = group_multipliers(meta.lr_decay, list(meta.groups))
    target = getattr(optimizer, "inner_optimizer", optimizer)  # LossScaleOptimizer
    if "update_step" in vars(target):
        del target.update_step  # multipliers of an earlier call
    if all(r == 1.0 for r in rates.values()):
        return optimizer
    by_variable = {id(w): rates[g] for g, ws in group_variables(model).items() for w in ws}
    head = rates[HEAD]
    base_step = type(target).update_step

    def update_step(gradient: Any, variable: Any, learning_rate: Any) -> Any:
        # `variable` may be a tf.Variable or a replica's component: find the Keras one.
        known = target._trainable_variables[target._get_variable_index(variable)]
        rate = by_variable.get(id(known), head)
        return base_step(target, gradient, variable, learning_rate * rate)

    target.update_step = update_step
    return optimizer
