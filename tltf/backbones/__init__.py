"""Backbone sources and their registry: a spec string -> a `tltf.Backbone`.

A spec such as ``keras:MobileNetV3Small`` or ``keras_hub:/path/to/folder`` names
a *source* (the part before the first colon) and a *target*. Each source is a
function registered with `register_source`; the built-in ones live in this
package, one module each, and are imported on first use from `BUILTIN` (a table,
like `tltf.cli`'s commands), so the registry imports none of them.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from tltf.backbone import Backbone
from tltf.errors import SpecError, suggest

# spec prefix -> the module that registers it
BUILTIN = {
    "keras": "tltf.backbones.keras_apps",
    "keras_hub": "tltf.backbones.keras_hub",
    "keras_nlp": "tltf.backbones.keras_hub",
    "hf": "tltf.backbones.keras_hub",
    "hub": "tltf.backbones.tf_hub",
    "file": "tltf.backbones.user_file",
    "speech": "tltf.backbones.speech",
}
_SOURCES: dict[str, Callable[..., Backbone]] = {}
_ALIASES: dict[str, str] = {}
_MODALITIES: dict[str, str | None] = {}  # what a source's backbones take, where it is one


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
        ['file', 'hf', 'hub', 'keras', 'keras_hub', 'speech']
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
    check_options(spec, _SOURCES[source], options)
    return _SOURCES[source](target, spec=spec, **options)


def check_options(spec: str, fn: Callable, options: dict) -> None:
    """`SpecError` naming an option that `fn` (a source) does not take, with a suggestion.

    Example:
        >>> check_options("keras:MobileNet", load, {"poolling": "avg"})
        SpecError: keras:MobileNet: unknown option poolling=; did you mean 'pooling'? ...
    """
    accepted = _option_names(fn)
    unknown = [o for o in options if accepted is not None and o not in accepted]
    if unknown:
        raise SpecError(
            f"{spec}: unknown option {unknown[0]}=; {suggest(unknown[0], accepted, 'options')}"
            f" (this backbone takes {', '.join(accepted) or 'no options'})."
        )


def source_options(spec: str) -> list[str] | None:
    """The options a spec's source takes, from its signature; None if it takes any.

    Example:
        >>> source_options("keras:MobileNet")
        ['weights', 'input_shape', 'pooling', 'sha256']
    """
    source, _ = _parse_spec(spec)
    return _option_names(_SOURCES[source])


def _option_names(fn: Callable) -> list[str] | None:
    import inspect

    parameters = list(inspect.signature(fn).parameters.values())[1:]
    if any(p.kind is p.VAR_KEYWORD for p in parameters):
        return None
    return [p.name for p in parameters if p.name != "spec"]


def _import_sources() -> None:
    """Imports the built-in sources, which register themselves."""
    for module in dict.fromkeys(BUILTIN.values()):
        importlib.import_module(module)
