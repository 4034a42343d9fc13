"""LoRA adapters as a freeze policy: ``freeze="lora:RANK[:N[:TARGETS]]"``.

LoRA (Hu et al., ICLR 2022) keeps every pretrained weight frozen and trains, for
chosen projections ``W``, a low-rank update ``(alpha / rank) * A @ B`` beside it.
tltf uses Keras 3's own adapters (``enable_lora`` of `Dense`, `EinsumDense` and
`Embedding`), on the layers named in TARGETS (default ``query`` and ``value``, the
attention projections of KerasHub's transformers) inside the N groups nearest the
output (default: every group). Everything else stays frozen, BatchNorm included;
the head trains as with any policy.

    >>> model = tltf.build("keras_hub:/models/minilm", class_names=names, freeze="lora:8")
    >>> tltf.fine_tune(model, train)            # head phase, then the adapters
    >>> tltf.export(model, "export/topics")      # the deltas merged into the kernels
    >>> tltf.save_adapters(model, "topics.lora.npz")    # adapters and head alone

Policies: ``lora:8`` (rank 8, every group), ``lora:8:2`` (the top 2 groups),
``lora:8:all:query+key+value`` (other target layer names, joined by "+").

Keras' ``.keras`` files store each kernel with its delta merged in, and bring the
adapters back as zeros; `tltf.load_model` then re-draws ``A`` (``B`` stays zero, so
the model computes the same function) so that training can go on.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator
from typing import Any

import numpy as np

from tltf.errors import SpecError

PREFIX = "lora:"
DEFAULT_TARGETS = ("query", "value")
_ADAPTERS = {
    "_kernel": ("lora_kernel_a", "lora_kernel_b"),
    "_embeddings": (
        "lora_embeddings_a",
        "lora_embeddings_b",
    ),
}


@dataclasses.dataclass(frozen=True)
class LoraPolicy:
    """A parsed ``lora:`` freeze policy: rank, how many top groups, target layer names.

    Example:
        >>> parse("lora:8:2")
        LoraPolicy(rank=8, top=2, targets=('query', 'value'))
        >>> str(parse("lora:8:all:query+key"))
        'lora:8:all:query+key'
    """

    rank: int
    top: int | None = None  # None: every group
    targets: tuple[str, ...] = DEFAULT_TARGETS

    def __str__(self) -> str:
        text = f"{PREFIX}{self.rank}"
        if self.top is not None or self.targets != DEFAULT_TARGETS:
            text += f":{'all' if self.top is None else self.top}"
        if self.targets != DEFAULT_TARGETS:
            text += ":" + "+".join(self.targets)
        return text

    def groups(self, groups: list[str]) -> list[str]:
        """The groups whose target layers get adapters, input side first."""
        if self.top is None:
            return list(groups)
        if self.top > len(groups):
            raise SpecError(
                f"freeze={str(self)!r}: N must be at most {len(groups)} (this backbone's "
                f"groups: {groups})."
            )
        return list(groups[len(groups) - self.top :]) if self.top else []

    def with_top(self, top: int) -> str:
        """The same policy on the top `top` groups (a stage of gradual unfreezing)."""
        return str(dataclasses.replace(self, top=top))


def is_lora(freeze: Any) -> bool:
    """True for a ``lora:`` freeze policy."""
    return isinstance(freeze, str) and freeze.startswith(PREFIX)


def parse(freeze: str) -> LoraPolicy:
    """The `LoraPolicy` of ``lora:RANK[:N|all[:TARGET+TARGET...]]``; `SpecError` if malformed."""
    parts = freeze[len(PREFIX) :].split(":")
    usage = (
        f"freeze={freeze!r}: write lora:RANK (e.g. lora:8), lora:RANK:N for the top N "
        "groups, or lora:RANK:all:query+value to name the target layers."
    )
    if not 1 <= len(parts) <= 3 or not parts[0].isdigit() or int(parts[0]) < 1:
        raise SpecError(usage)
    top = None
    if len(parts) > 1 and parts[1] != "all":
        if not parts[1].isdigit():
            raise SpecError(usage)
        top = int(parts[1])
    targets = DEFAULT_TARGETS
    if len(parts) == 3:
        targets = tuple(t for t in parts[2].split("+") if t)
        if not targets:
            raise SpecError(usage)
    return LoraPolicy(int(parts[0]), top, targets)


def targets_in(members: list, targets: tuple[str, ...]) -> list:
    """The layers among `members` (and their sublayers) named in `targets` that take LoRA."""
    found = []
    for member in members:
        if not hasattr(member, "_flatten_layers"):  # a variable entry: no layers inside
            continue
        for layer in member._flatten_layers(include_self=True):
            if layer.name in targets and hasattr(layer, "enable_lora") and layer not in found:
                found.append(layer)
    return found


def open_adapters(model: Any, layers: list, rank: int) -> None:
    """Enables LoRA of `rank` on `layers` (once) and makes only the adapters trainable.

    Variables are created in the model's `tf.distribute` scope. A layer whose adapters
    are both zero (as `.keras` loading leaves them) gets a fresh ``A``, so gradients flow.
    """
    import keras

    with model.distribute_strategy.scope():
        for layer in layers:
            if not layer.lora_enabled:
                layer.enable_lora(rank)
            elif layer.lora_rank != rank:
                raise SpecError(
                    f"layer {layer.path!r} already has rank-{layer.lora_rank} adapters; "
                    f"use lora:{layer.lora_rank}, or build the model again for rank {rank}."
                )
            a, b = adapter_variables(layer)
            if not np.any(a.numpy()) and not np.any(b.numpy()):
                a.assign(keras.initializers.HeUniform()(a.shape))
    for layer in layers:
        keras.layers.Layer.trainable.fset(layer, True)
        keep = {id(v) for v in adapter_variables(layer)}
        for variable in layer.weights:
            variable.trainable = id(variable) in keep


def adapter_variables(layer: Any) -> tuple[Any, Any]:
    """A LoRA-enabled layer's ``(A, B)`` variables."""
    return tuple(getattr(layer, name) for name in _ADAPTERS[_base_name(layer)])


def adapted_layers(model: Any) -> list:
    """The LoRA-enabled layers of a tltf model's backbone."""
    from tltf.metadata import backbone_model

    backbone = backbone_model(model)
    return [
        layer
        for layer in backbone._flatten_layers(include_self=False)
        if getattr(layer, "lora_enabled", False)
    ]


@contextlib.contextmanager
def merged(model: Any) -> Iterator[None]:
    """Inside, each adapted layer runs as a plain one with ``W + (alpha / rank) A @ B``.

    Example:
        >>> with merged(model):
        ...     tf.saved_model.save(module, path)   # what `tltf.export` does

    A graph traced inside has no adapter arithmetic, so the export is as fast as a
    model without LoRA. The kernels are put back on exit.
    """
    saved = []
    try:
        for layer in adapted_layers(model):
            base = getattr(layer, _base_name(layer))
            saved.append((layer, base, base.numpy()))
            base.assign(_merged_value(layer))
            layer.lora_enabled = False
        yield
    finally:
        for layer, base, value in saved:
            base.assign(value)
            layer.lora_enabled = True


def adapter_count(model: Any) -> int:
    """The number of adapter parameters in a tltf model (0 without LoRA)."""
    return sum(int(np.prod(v.shape)) for v in adapters_of(model))


def adapters_of(model: Any) -> list:
    """Every adapter variable of a tltf model's backbone, layer by layer."""
    return [v for layer in adapted_layers(model) for v in adapter_variables(layer)]


def _base_name(layer: Any) -> str:
    return "_kernel" if hasattr(layer, "_kernel") else "_embeddings"


def _merged_value(layer: Any) -> Any:
    """``W + (alpha / rank) * A @ B`` in the base variable's shape and dtype."""
    base = getattr(layer, _base_name(layer))
    a, b = (v.numpy() for v in adapter_variables(layer))
    delta = (layer.lora_alpha / layer.lora_rank) * np.tensordot(a, b, axes=1)
    return (base.numpy() + delta).astype(base.dtype)
