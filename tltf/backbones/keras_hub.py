"""``keras_hub:<preset | folder>`` (alias ``keras_nlp:``) and ``hf:<org/name>``: KerasHub backbones.

A local Hugging Face folder (``config.json`` + ``model.safetensors``) converts
through KerasHub's Transformers loaders. Groups are ``embeddings``, then one
``layer_<i>`` per transformer block; the features are the masked mean of the
token features (``pooling="mean"``) or the backbone's pooled output (``"pooled"``);
with ``features="words"``, one feature vector per whitespace word (`tltf.words`).
The pooler (BERT's ``pooled_dense``), when the features use it, is the last group.

Image backbones (ResNet, EfficientNet, ViT, ... presets) take raw 0-255 pixels
through the preset's `ImageConverter` (resize and rescale); their feature map is
averaged. Groups: ``stem``, then ``stage1``..``stageN`` from numbered stage names
(``stack0_...``, ``stage_1_...``), else one group per top-level layer with weights.

A failed download raises `tltf.BackboneUnavailable`, naming the preset, the
cache folders and the local-folder alternative.
"""

from __future__ import annotations

import functools
import os
import re
from typing import Any

from tltf.backbone import Backbone
from tltf.backbones import register_source
from tltf.backbones.fetch import (
    check_sha256,
    download_failed,
    find_weights_file,
    is_download_error,
)
from tltf.backbones.grouping import fill, grouped
from tltf.errors import SpecError

_LAYER_RE = re.compile(r"(?:^|_)layers?_(\d+)$")
_STAGE_RE = re.compile(r"^(?:stack|stage|block)_?(\d+)_")
POOLINGS = ("mean", "pooled")
FEATURES = ("pooled", "words")


def text_groups(model: Any) -> dict[str, list[str]]:
    """``embeddings``, ``layer_0``..``layer_N``, ``pooler``: from the blocks' stable names."""
    names = [layer.name for layer in model.layers if layer.weights]
    blocks = [(m := _LAYER_RE.search(name)) and f"layer_{int(m[1])}" for name in names]
    return grouped(names, fill(blocks, before="embeddings", after="pooler"))


@register_source("keras_hub", "keras_nlp")
def load(
    preset: str,
    *,
    spec: str,
    sequence_length: int = 128,
    pooling: str = "mean",
    features: str = "pooled",
    sha256: str | None = None,
) -> Backbone:
    """Loads a KerasHub backbone and its tokenizer or image converter from a preset or folder.

    Example:
        >>> bb = load_backbone("keras_hub:bert_tiny_en_uncased", sequence_length=64)
        >>> bb = load_backbone("keras_hub:/models/resnet_18_imagenet")   # an image preset

    Options: ``sequence_length``, ``pooling`` ("mean" of the token features or the
    "pooled" output), ``features`` (text), ``sha256`` (of a local folder's weights file).
    """
    import keras
    import keras_hub

    from tltf.layers import TextPreprocessor

    if pooling not in POOLINGS:
        raise SpecError(f"pooling={pooling!r}; use one of {POOLINGS}.")
    if features not in FEATURES:
        raise SpecError(f"features={features!r}; use one of {FEATURES}.")
    if int(sequence_length) < 2:
        raise SpecError(f"sequence_length={sequence_length}: must be at least 2.")
    local = os.path.isdir(os.path.expanduser(preset))
    if local:
        preset = os.path.abspath(os.path.expanduser(preset))
        check_sha256(find_weights_file(preset), sha256)
    elif sha256:
        raise SpecError(f"{spec}: sha256= checks local weights; {preset!r} is not a folder.")
    elif "/" in preset and not preset.startswith(("hf://", "kaggle://")):
        raise SpecError(
            f"{spec}: no folder {preset!r}. Give an existing folder, a KerasHub preset name "
            "(e.g. 'bert_tiny_en_uncased'), or 'hf:org/name'."
        )
    try:
        backbone = keras_hub.models.Backbone.from_preset(preset)
        images = _takes_images(backbone, spec)
        if images:
            converter = keras_hub.layers.ImageConverter.from_preset(preset)
        else:
            preprocessor = keras_hub.models.TextClassifierPreprocessor.from_preset(
                preset, sequence_length=int(sequence_length)
            )
    except Exception as exc:  # a failed download surfaces as many error types
        if not local and is_download_error(exc):
            raise _download_failed(spec, preset, exc) from None
        if isinstance(exc, (ValueError, OSError)):
            raise SpecError(f"{spec}: KerasHub could not load {preset!r}: {exc}") from None
        raise
    if images:
        return _image_backbone(spec, backbone, converter)
    limit = getattr(backbone, "max_sequence_length", None)
    if limit and sequence_length > limit:
        raise SpecError(f"sequence_length={sequence_length} exceeds this model's limit {limit}.")

    outputs = backbone.output
    inputs, pre_layer = backbone.input, TextPreprocessor
    if features == "words":
        from tltf.words import WordFeatures, WordPreprocessor

        tokens = outputs["sequence_output"] if isinstance(outputs, dict) else outputs
        starts = keras.Input(shape=(None,), dtype="int32", name="word_starts")
        inputs, pre_layer = {**inputs, "word_starts": starts}, WordPreprocessor
        feats = WordFeatures(name="word_features")([tokens, starts])
    elif pooling == "pooled":
        if not isinstance(outputs, dict) or "pooled_output" not in outputs:
            raise SpecError(f"{spec} has no pooled output; use pooling='mean'.")
        feats = outputs["pooled_output"]
    else:
        tokens = outputs["sequence_output"] if isinstance(outputs, dict) else outputs
        feats = keras.layers.GlobalAveragePooling1D(name="mean_pool")(
            tokens, mask=backbone.input["padding_mask"]
        )
    model = keras.Model(inputs, feats, name="text_backbone")
    return Backbone(
        spec=spec,
        modality="text",
        model=model,
        preprocessor=pre_layer(
            preprocessor, feature_names=sorted(backbone.input), name="text_preprocessor"
        ),
        groups=text_groups(model),
        feature_dim=int(feats.shape[-1]),
        input_spec={"shape": [], "dtype": "string", "sequence_length": int(sequence_length)},
        default_lr=5e-5,
    )


@register_source("hf", modality="text")
@functools.wraps(load, assigned=())  # its options are keras_hub's (`source_options`)
def load_hf(name: str, *, spec: str, **options: Any) -> Backbone:
    """``hf:org/name``: a Hugging Face model, converted through KerasHub."""
    return load(name if name.startswith("hf://") else f"hf://{name}", spec=spec, **options)


def _takes_images(backbone: Any, spec: str) -> bool:
    """True for pixels ``[B, H, W, C]``, False for token ids; any other input is refused."""
    inputs = backbone.input
    if not isinstance(inputs, dict) and len(inputs.shape) == 4:
        return True
    if isinstance(inputs, dict) and "token_ids" in inputs:
        return False
    shown = {k: v.shape for k, v in inputs.items()} if isinstance(inputs, dict) else inputs.shape
    raise SpecError(
        f"{spec}: a KerasHub backbone with input {shown}; tltf takes image backbones "
        "(pixels [batch, H, W, C]) and text backbones (token_ids) from KerasHub."
    )


def _image_backbone(spec: str, backbone: Any, converter: Any) -> Backbone:
    """Image features: the backbone's output, average-pooled; pixels through `converter`."""
    import keras

    features = backbone.output
    if len(features.shape) == 4:
        features = keras.layers.GlobalAveragePooling2D(name="avg_pool")(features)
    elif len(features.shape) == 3:  # ViT-style tokens
        features = keras.layers.GlobalAveragePooling1D(name="avg_pool")(features)
    model = keras.Model(backbone.input, features, name="image_backbone")
    size = getattr(converter, "image_size", None) or backbone.input.shape[1:3]
    if None in tuple(size):
        size = (224, 224)
    return Backbone(
        spec=spec,
        modality="image",
        model=model,
        preprocessor=converter,
        groups=image_groups(model),
        feature_dim=int(features.shape[-1]),
        input_spec={"shape": [*size, 3], "dtype": "float32"},
        default_lr=1e-4,
    )


def image_groups(model: Any) -> dict[str, list[str]]:
    """``stem``, ``stage1``..: numbered stage names, in order; else one group per weighted layer."""
    import keras

    from tltf.backbones.user_file import layer_groups

    layers = [lyr for lyr in model.layers if not isinstance(lyr, keras.layers.InputLayer)]
    numbers = sorted({int(m[1]) for lyr in layers if (m := _STAGE_RE.match(lyr.name))})
    if len(numbers) < 2:
        return layer_groups(model)
    names = [layer.name for layer in layers]
    stages = [(m := _STAGE_RE.match(n)) and f"stage{numbers.index(int(m[1])) + 1}" for n in names]
    return grouped(names, fill(stages, before="stem"))


def _download_failed(spec: str, preset: str, exc: BaseException) -> Exception:
    if preset.startswith("hf://"):
        what = f"the Hugging Face model {preset[5:]!r} (config.json and weights)"
        cache = "$HF_HOME/hub (default ~/.cache/huggingface/hub)"
    else:
        what = f"the KerasHub preset {preset!r} from Kaggle"
        cache = "$KAGGLEHUB_CACHE (default ~/.cache/kagglehub)"
    return download_failed(
        spec,
        what,
        exc,
        cache=cache,
        local="'keras_hub:/path/to/folder', a folder with config.json and the weights "
        "(a KerasHub preset saved with save_to_preset, or a Hugging Face model folder)",
    )
