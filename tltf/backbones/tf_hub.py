"""``hub:<handle | URL | folder>``: TF-Hub TF2 SavedModels inside Keras 3 models.

The module runs in a `tltf.layers.HubModule` layer (``hub.KerasLayer`` is a
Keras 2 layer, tensorflow/hub #903). What it is follows from its inputs:

- float images ``[batch, H, W, 3]``: an image feature vector (or feature map,
  average-pooled); raw 0-255 pixels are scaled to [0, 1] (``preprocess="unit"``,
  the TF-Hub convention) unless told otherwise;
- strings: a text embedding that tokenizes inside (e.g. NNLM, Universal Sentence Encoder);
- a dict of token ids: a text encoder (BERT style), which needs its preprocessing
  SavedModel: ``preprocessor="hub:PREPROCESSOR"``;
- float waveforms ``[batch, samples]`` (TRILL style) or one waveform ``[samples]``
  (YAMNet style, called once per clip): an audio embedding of 16 kHz clips of
  ``clip_seconds``; frame embeddings ``[frames, dim]`` are averaged. Of a module that
  returns a tuple, the second of three (YAMNet's ``scores, embeddings, spectrogram``)
  or the first is taken; ``output_key="2"`` picks another.

Groups come from the module's variable names (through `tltf.backbones.grouping`,
like every source's): the first path component that
carries a number (``layer_3``, ``block2``, ``stage_1``) and takes at least two
values in the module makes one group per value, in numeric order; variables
before them form ``stem`` (``embeddings`` for text), those after them ``top``
(``pooler`` for text). A module without such names is one group, ``module``.
``group_pattern=`` (a regex whose first group is the number) overrides the rule.
"""

from __future__ import annotations

import os
import re
from typing import Any

from tltf.backbone import Backbone
from tltf.backbones import register_source
from tltf.backbones.fetch import check_sha256, download_failed, find_weights_file
from tltf.backbones.grouping import fill, grouped
from tltf.errors import SpecError
from tltf.modalities import get_modality

POOLINGS = ("pooled", "mean")
_NUMBERED = re.compile(r"^([A-Za-z][A-Za-z_]*?)_?(\d+)$")


def variable_groups(
    names: list[str], paths: list[str], modality: str, pattern: str | None = None
) -> dict[str, list[str]]:
    """Ordered ``{group: [variable paths]}`` from the module's own variable names.

    Example:
        >>> variable_groups(["emb/w", "layer_0/k", "layer_1/k", "pool/k"], paths, "text")
        {'embeddings': [...], 'layer_0': [...], 'layer_1': [...], 'pooler': [...]}
    """
    units = [_units(name, pattern) for name in names]
    if pattern is None:  # numbered components whose prefix takes at least two numbers
        values: dict[str, set[int]] = {}
        for prefix, number, _ in (u for found in units for u in found):
            values.setdefault(prefix, set()).add(number)
        units = [[u for u in found if len(values[u[0]]) > 1] for found in units]
    unit = [found[0] if found else None for found in units]
    if not any(unit):
        return {"module": list(paths)}
    first, last = get_modality(modality).end_groups
    members = grouped(paths, fill([u[2] if u else None for u in unit], before=first, after=last))
    # A module's variables need not come in block order (``layer_10`` before ``layer_2``):
    # the groups are ordered by their numbers, the unnumbered ends first and last.
    prefixes = list(dict.fromkeys(u[0] for u in unit if u))
    rank = {u[2]: (1, prefixes.index(u[0]), u[1]) for u in unit if u}
    ends = {first: (0,), last: (2,)}
    return {g: members[g] for g in sorted(members, key=lambda g: rank.get(g) or ends[g])}


def _units(name: str, pattern: str | None) -> list[tuple[str, int, str]]:
    """``(prefix, number, group name)`` of each numbered part of a variable name, outermost first.

    With `pattern`, its match (first regex group: the number); else each path
    component like ``layer_3`` or ``block2``.
    """
    if pattern:
        match = re.search(pattern, name)
        return [("", int(match[1]), match[0].strip("/").replace("/", "_"))] if match else []
    parts = [_NUMBERED.match(part) for part in name.split("/")[:-1]]
    return [(m[1], int(m[2]), m[0]) for m in parts if m]


def _local(handle: str) -> bool:
    return os.path.isdir(os.path.expanduser(handle))


def _resolve(spec: str, handle: str, sha256: str | None) -> str:
    """Local folder of `handle` (downloads it into the TF-Hub cache), checked against sha256."""
    import tensorflow_hub as hub

    if _local(handle):
        folder = os.path.abspath(os.path.expanduser(handle))
    elif handle.startswith(("/", ".", "~")):
        raise SpecError(f"{spec}: no folder {handle!r}; give a SavedModel folder or a handle URL.")
    else:
        try:
            folder = hub.resolve(handle)
        except Exception as exc:
            raise download_failed(
                spec,
                f"the TF-Hub module {handle!r}",
                exc,
                cache="$TFHUB_CACHE_DIR (default: the system temp folder's tfhub_modules)",
                local="'hub:/path/to/module' (the folder that holds saved_model.pb)",
            ) from None
    if not os.path.exists(os.path.join(folder, "saved_model.pb")):
        raise SpecError(f"{spec}: {folder} holds no saved_model.pb; is it a TF2 SavedModel?")
    if sha256:
        check_sha256(find_weights_file(folder), sha256)
    return os.path.abspath(os.path.expanduser(handle)) if _local(handle) else handle


def _input_spec(layer: Any) -> Any:
    """The first input spec of the module's endpoint: a TensorSpec or a dict of them."""
    fn = layer._fn
    if hasattr(fn, "concrete_functions"):
        args, kwargs = fn.concrete_functions[0].structured_input_signature
        return args[0] if args else next(iter(kwargs.values()))
    (spec,) = fn.structured_input_signature[1].values()
    return spec


@register_source("hub")
def load(
    handle: str,
    *,
    spec: str,
    preprocessor: str | None = None,
    input_shape: tuple[int, int, int] | None = None,
    preprocess: str = "unit",
    sequence_length: int = 128,
    pooling: str = "pooled",
    output_key: str | None = None,
    endpoint: str | None = None,
    group_pattern: str | None = None,
    sha256: str | None = None,
    clip_seconds: float = 2.0,
) -> Backbone:
    """Loads a TF-Hub TF2 SavedModel as a backbone, frozen or fine-tunable.

    Example:
        >>> bb = load_backbone("hub:/models/bert_en_uncased_L-2_H-128_A-2",
        ...                    preprocessor="hub:/models/bert_en_uncased_preprocess")

    Options: ``preprocessor`` (text encoders), ``input_shape`` (images, default
    the module's own or 224x224), ``preprocess`` (`ImagePreprocessing` mode for
    0-255 pixels), ``sequence_length``, ``pooling`` ("pooled" output or "mean" of
    the token outputs), ``output_key`` (which output of a dict), ``endpoint``
    (default ``__call__``), ``group_pattern``, ``sha256`` (of
    ``variables/variables.data-00000-of-00001``), ``clip_seconds`` (audio, default 2).
    """
    import keras

    from tltf.layers import HubModule, HubTextPreprocessor, ImagePreprocessing

    if pooling not in POOLINGS:
        raise SpecError(f"pooling={pooling!r}; use one of {POOLINGS}.")
    folder = _resolve(spec, handle, sha256)
    layer = HubModule(folder, endpoint=endpoint, output_key=output_key, name="hub_module")
    first = _input_spec(layer)
    if isinstance(first, dict):
        if not preprocessor:
            raise SpecError(
                f"{spec} takes token ids {sorted(first)}; give its preprocessing SavedModel "
                "with preprocessor='hub:PREPROCESSOR'."
            )
        pre_handle = preprocessor.removeprefix("hub:")
        pre = HubTextPreprocessor(
            _resolve(f"hub:{pre_handle}", pre_handle, None),
            sequence_length=sequence_length,
            name="text_preprocessor",
        )
        inputs = {k: keras.Input((None,), dtype="int32", name=k) for k in pre.FEATURES}
        features = _text_features(spec, layer(inputs), inputs["input_mask"], pooling, output_key)
        modality, raw = "text", {"shape": [], "dtype": "string", "sequence_length": sequence_length}
    elif first.dtype.name == "string":
        inputs = keras.Input((), dtype="string", name="text")
        features = _pick(spec, layer(inputs), output_key, ("default", "outputs"))
        pre = keras.layers.Identity(name="text_preprocessor")
        modality, raw = "text", {"shape": [], "dtype": "string"}
    elif first.shape.rank == 4:
        module_shape = tuple(first.shape[1:])
        if input_shape is None:
            input_shape = module_shape if None not in module_shape else (224, 224, 3)
        inputs = keras.Input(tuple(input_shape), name="images")
        features = _pick(spec, layer(inputs), output_key, ("default", "feature_vector"))
        if len(features.shape) == 4:
            features = keras.layers.GlobalAveragePooling2D(name="avg_pool")(features)
        pre = ImagePreprocessing(preprocess, name="image_preprocessing")
        modality, raw = "image", {"shape": list(input_shape), "dtype": "float32"}
    elif first.dtype.is_floating and first.shape.rank in (1, 2):
        samples = int(round(clip_seconds * 16000))
        layer.per_example = first.shape.rank == 1  # one waveform per call: map over the batch
        inputs = keras.Input((samples,), name="waveforms")
        outputs = layer(inputs)
        if isinstance(outputs, (tuple, list)):
            outputs = outputs[int(output_key) if output_key else (1 if len(outputs) == 3 else 0)]
        features = _pick(spec, outputs, output_key, ("embedding", "default"))
        if len(features.shape) == 3:
            features = keras.layers.GlobalAveragePooling1D(name="mean_pool")(features)
        pre = keras.layers.Identity(name="audio_preprocessing")
        modality = "audio"
        raw = {"shape": [samples], "dtype": "float32", "sample_rate": 16000}
    else:
        raise SpecError(
            f"{spec}: the module takes {first.dtype.name} {list(first.shape)}; tltf takes "
            "TF-Hub modules of images [batch, H, W, 3], strings, BERT token ids or 16 kHz "
            "waveforms."
        )
    if len(features.shape) != 2:
        raise SpecError(f"{spec}: features of shape {features.shape}; expected [batch, dim].")
    model = keras.Model(inputs, features, name="hub_backbone")
    paths = [v.path for v in layer.module_variables]
    return Backbone(
        spec=spec,
        modality=modality,
        model=model,
        preprocessor=pre,
        groups=variable_groups(list(layer.variable_names), paths, modality, group_pattern),
        feature_dim=int(features.shape[-1]),
        input_spec=raw,
        default_lr=get_modality(modality).default_lr,
    )


def _pick(spec: str, outputs: Any, key: str | None, defaults: tuple[str, ...]) -> Any:
    """One output of a module that returns a dict: `key`, else a conventional name."""
    if not isinstance(outputs, dict):
        return outputs
    for name in ([key] if key else []) + list(defaults):
        if name in outputs:
            return outputs[name]
    raise SpecError(f"{spec} returns {sorted(outputs)}; choose one with output_key=.")


def _text_features(spec: str, outputs: Any, mask: Any, pooling: str, key: str | None) -> Any:
    import keras

    if pooling == "pooled":
        return _pick(spec, outputs, key, ("pooled_output", "default"))
    tokens = _pick(spec, outputs, key, ("sequence_output",))
    return keras.layers.GlobalAveragePooling1D(name="mean_pool")(
        tokens, mask=keras.ops.cast(mask, "bool")
    )
