"""The contract every pretrained network meets, and the registry of sources.

A spec string such as ``keras:MobileNetV3Small`` or ``keras_hub:/path/to/folder``
names a *source* (the part before the first colon) and a *target*. Each source is
a function registered with `register_source` that returns a `Backbone`. Freezing,
learning rates, feature caching and export are written once, against `Backbone`.
"""

from __future__ import annotations

import hashlib
import math
import os
import textwrap
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tltf.errors import BackboneUnavailable, SpecError

_SOURCES: dict[str, Callable[..., Backbone]] = {}
_ALIASES: dict[str, str] = {}
_MODALITIES: dict[str, str | None] = {}  # what a source's backbones take, where it is one


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

    def group_of(self) -> dict[str, str]:
        """``{layer name or variable path: group}`` for every group member.

        Example:
            >>> bb.group_of()["Conv1"]
            'stem'
        """
        return {layer: g for g, layers in self.groups.items() for layer in layers}

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


def register_source(name: str, *aliases: str, modality: str | None = None) -> Callable:
    """Decorator: registers ``fn(target, **options) -> Backbone`` for specs ``name:target``.

    `fn` also gets ``spec=`` (the whole spec string); `aliases` are other source names.
    `modality`: what every backbone of this source takes, when that is one modality
    (`tltf.recommend` then knows it from a spec string without loading it).

    Example:
        >>> @register_source("mine")
        ... def load_mine(target, *, spec, **options):
        ...     return Backbone(spec, "image", model, preprocessor, groups, 1280, input_spec)
        >>> bb = tltf.load_backbone("mine:v2")       # calls load_mine("v2", spec="mine:v2")
    """

    def decorate(fn: Callable[..., Backbone]) -> Callable[..., Backbone]:
        _SOURCES[name] = fn
        _MODALITIES[name] = modality
        for alias in aliases:
            _ALIASES[alias] = name
        return fn

    return decorate


def sources() -> list[str]:
    """Names of the registered spec sources.

    Example:
        >>> tltf.sources()
        ['file', 'hf', 'hub', 'keras', 'keras_hub']
    """
    _import_sources()
    return sorted(_SOURCES)


def source_modality(spec: str) -> str | None:
    """The modality a spec's source declares for all its backbones, else None.

    Example:
        >>> source_modality("keras:ResNet50"), source_modality("keras_hub:/models/x")
        ('image', None)
    """
    return _MODALITIES.get(_parse_spec(spec)[0])


def _parse_spec(spec: str) -> tuple[str, str]:
    """Splits ``"source:target"``; raises `SpecError` naming the valid sources."""
    _import_sources()
    if not isinstance(spec, str) or ":" not in spec:
        raise SpecError(
            f"Backbone spec {spec!r} has no source prefix. Write it as SOURCE:NAME, "
            f"e.g. 'keras:MobileNetV3Small' or 'keras_hub:/path/to/folder'. "
            f"Sources: {', '.join(sorted(_SOURCES))}."
        )
    source, target = spec.split(":", 1)
    source = _ALIASES.get(source, source)
    if source not in _SOURCES:
        raise SpecError(
            f"Backbone spec {spec!r}: unknown source {source!r}. "
            f"Known sources: {', '.join(sorted(_SOURCES))}."
        )
    if not target:
        raise SpecError(f"Backbone spec {spec!r} names no model after {source!r}.")
    return source, target


def load_backbone(spec: str | Backbone, **options: Any) -> Backbone:
    """Loads a pretrained backbone from a spec string.

    Example:
        >>> bb = tltf.load_backbone("keras:MobileNetV2", weights=None, input_shape=(96, 96, 3))
        >>> bb.summary()

    Options are passed to the source (``weights=``, ``input_shape=``,
    ``sequence_length=``, ``sha256=`` ...). An option the source does not know is an error.
    """
    if isinstance(spec, Backbone):
        if options:
            raise SpecError(
                f"load_backbone got a loaded Backbone and options {sorted(options)}; "
                "pass options only with a spec string."
            )
        return spec
    source, target = _parse_spec(spec)
    return _SOURCES[source](target, spec=spec, **options)


def check_sha256(path: str, expected: str | None) -> None:
    """Refuses a weights file whose sha256 differs from `expected` (when given).

    Example:
        >>> check_sha256("/models/resnet50_notop.h5", "4d473c1d...")   # BackboneUnavailable if not
        >>> check_sha256("/models/resnet50_notop.h5", None)            # no hash: nothing checked
    """
    if not expected:
        return
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    if digest.hexdigest() != expected.lower():
        raise BackboneUnavailable(
            f"Weights file {path} has sha256 {digest.hexdigest()}, expected {expected}. "
            "The file is corrupt or not the model you meant; re-download or re-install it."
        )


_SAVED_MODEL_WEIGHTS = os.path.join("variables", "variables.data-00000-of-00001")


def find_weights_file(folder: str) -> str:
    """The main weights file of a preset, Hugging Face or SavedModel folder (what sha256= checks).

    Example:
        >>> find_weights_file("/models/minilm")
        '/models/minilm/model.weights.h5'
    """
    names = ("model.safetensors", "model.weights.h5", "pytorch_model.bin", _SAVED_MODEL_WEIGHTS)
    for name in names:
        path = os.path.join(folder, name)
        if os.path.exists(path):
            return path
    raise BackboneUnavailable(
        f"No weights file ({', '.join(names)}) in {folder}; is it a KerasHub preset, "
        "a Hugging Face model folder or a single-shard SavedModel?"
    )


def is_download_error(exc: BaseException) -> bool:
    """Whether `exc` (or an error it was raised from) is a failed fetch over the network.

    Example:
        >>> is_download_error(ConnectionError("timed out")), is_download_error(KeyError("x"))
        (True, False)
    """
    seen = 0
    while exc is not None and seen < 10:
        text = f"{type(exc).__name__} {exc}".lower()
        if isinstance(exc, (OSError, ConnectionError, TimeoutError)) or any(
            s in text for s in ("url", "http", "connection", "download", "fetch", "resolve")
        ):
            return True
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return False


CACHE_FOLDERS = (
    "KERAS_HOME (Keras Applications weights, default ~/.keras)",
    "TFHUB_CACHE_DIR (TF-Hub modules)",
    "KAGGLEHUB_CACHE (KerasHub presets, default ~/.cache/kagglehub)",
    "HF_HOME (Hugging Face models, default ~/.cache/huggingface)",
)


def download_failed(
    spec: str, fetched: str, exc: BaseException, cache: str, local: str
) -> Exception:
    """A `BackboneUnavailable` for a fetch that failed, saying how to work offline.

    Raise it ``from None`` so that no urllib / requests traceback reaches the user.

    Example:
        >>> try:
        ...     keras.applications.ResNet50(include_top=False)
        ... except OSError as exc:
        ...     raise download_failed("keras:ResNet50", "the ImageNet weights", exc,
        ...                           cache="~/.keras", local="weights='/path/to.h5'") from None
    """
    root = exc  # the innermost error says why (Keras wraps urllib's in its own)
    while (root.__cause__ or root.__context__) is not None:
        root = root.__cause__ or root.__context__
    lines = str(root).strip().splitlines()
    first = textwrap.shorten(lines[0], 200, placeholder=" ...") if lines else ""
    reason = f"{type(root).__name__}: {first}" if first else type(root).__name__
    return BackboneUnavailable(
        f"{spec}: could not download {fetched} ({reason}). To work offline, fill the cache "
        f"on a machine that is online and copy it here: {cache}. The caches are set by "
        f"{'; '.join(CACHE_FOLDERS)}. Or use a local copy: {local}."
    )


def _import_sources() -> None:
    """Imports the built-in sources, which register themselves."""
    from tltf.sources import keras_apps, keras_hub, tf_hub, user_file  # noqa: F401
