"""``file:<model.keras | SavedModel folder>``: the user's own pretrained network.

``cut=`` drops the old head: ``cut="avg_pool"`` keeps everything up to and
including that layer, ``cut=-1`` drops the last layer (``-2`` the last two, ...).
Image features of rank 4 are average-pooled (``pooling="max"`` for max), token
features of rank 3 are averaged.

Groups, input side first:

- a network whose layer names follow a keras.applications family (a fine-tuned
  ResNet50 saved whole) gets that family's ``stem``/``stageN``/``top`` groups;
- otherwise, one group per top-level layer that holds weights, named after it;
  layers without weights join the group before them. A model that nests a whole
  network as one layer (``Sequential([base, Dense])``) thus has one group for it.

A SavedModel folder runs in a `tltf.layers.HubModule` (its ``serve`` endpoint or
``serving_default`` signature for Keras exports, ``__call__`` for TF-Hub style
ones) and gets the ``hub:`` source's groups; when its variable names show no
numbered blocks, one group per layer name (the first part of a variable name).

A model that `tltf.build` made (a ``tltf train`` run's ``model.keras``, or the
run folder itself) gives back the backbone it was built on: its pooled features,
its family's groups and its preprocessing, without the old head (task A -> task B).

``.keras`` files load with ``safe_mode=True``: a file with Python lambdas is
refused unless you pass ``safe_mode=False`` (only for files you trust).
For an image network, ``preprocess`` is the `ImagePreprocessing` mode it was
trained with; it defaults to its family's when the layer names follow a
keras.applications family, and must be given otherwise (``"none"`` passes raw
0-255 pixels). SavedModels take raw pixels unless told.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

from tltf.backbone import Backbone
from tltf.backbones import check_options, keras_apps, register_source, tf_hub
from tltf.backbones.fetch import check_sha256
from tltf.backbones.grouping import fill, grouped
from tltf.errors import SpecError
from tltf.io import load_keras
from tltf.metadata import BACKBONE_LAYER, INFO_LAYER, info, preprocessing_layers
from tltf.modalities.audio_files import MIN_SAMPLES, SAMPLE_RATE

POOLINGS = ("avg", "max")
RUN_MODEL = "model.keras"  # what `tltf train` writes into its run folder


def _is_run_folder(path: str) -> bool:
    """A `tltf train` run folder: its model.keras, and no SavedModel."""
    return os.path.isfile(os.path.join(path, RUN_MODEL)) and not os.path.isfile(
        os.path.join(path, "saved_model.pb")
    )


@register_source("file")
def load(
    path: str,
    *,
    spec: str,
    cut: str | int | None = None,
    safe_mode: bool = True,
    preprocess: str | None = None,
    pooling: str = "avg",
    sha256: str | None = None,
    **saved_model_options: Any,
) -> Backbone:
    """Loads the user's ``.keras`` file or SavedModel folder as a backbone.

    Example:
        >>> bb = load_backbone("file:my_classifier.keras", cut=-1)   # drop the softmax layer
        >>> model = tltf.build("file:/models/encoder", class_names=names, freeze="top:2")

    `path` may also be a ``tltf train`` run folder (its model.keras).

    Options: ``cut`` (layer name, or -N to drop the last N layers; .keras only),
    ``safe_mode``, ``preprocess`` (`ImagePreprocessing` mode for 0-255 pixels),
    ``pooling``, ``sha256`` (of the .keras file, or of a SavedModel's
    ``variables/variables.data-00000-of-00001``); for SavedModels also the
    ``hub:`` options (``endpoint``, ``output_key``, ``input_shape``, ``group_pattern``).
    """
    path = os.path.abspath(os.path.expanduser(path))
    if _is_run_folder(path):
        path = os.path.join(path, RUN_MODEL)
    if pooling not in POOLINGS:
        raise SpecError(f"pooling={pooling!r}; use one of {POOLINGS}.")
    if os.path.isdir(path):
        if cut is not None:
            raise SpecError(
                f"{spec}: cut= works on .keras files; a SavedModel is one function. Use "
                "output_key= to pick an output, or export the network without its head."
            )
        check_options(spec, tf_hub.load, saved_model_options)
        bb = tf_hub.load(
            path, spec=spec, preprocess=preprocess or "none", sha256=sha256, **saved_model_options
        )
        if list(bb.groups) == ["module"]:
            layer = bb.model.get_layer("hub_module")
            bb = dataclasses.replace(bb, groups=_groups_by_layer_name(layer))
        return bb
    if saved_model_options:
        raise SpecError(
            f"{spec}: options {sorted(saved_model_options)} are for SavedModel folders."
        )
    if not path.endswith(".keras") or not os.path.isfile(path):
        raise SpecError(f"{spec}: {path} is neither a .keras file nor a SavedModel folder.")
    check_sha256(path, sha256)
    return _from_keras_file(path, spec, cut, safe_mode, preprocess, pooling)


def _from_keras_file(
    path: str,
    spec: str,
    cut: str | int | None,
    safe_mode: bool,
    preprocess: str | None,
    pooling: str,
) -> Backbone:
    import keras

    from tltf.layers import ImagePreprocessing
    from tltf.modalities import import_layer_modules

    import_layer_modules()  # a tltf model of any modality (task A) may hold its layers
    network = load_keras(path, safe_mode=safe_mode)
    if INFO_LAYER in {layer.name for layer in network.layers}:
        if cut is not None or preprocess is not None:
            raise SpecError(
                f"{spec} is a tltf model: tltf takes its backbone and preprocessing as they "
                "were trained; drop cut= and preprocess=."
            )
        return _from_tltf_model(network, spec)
    inputs = getattr(network, "inputs", None)
    if not inputs or len(inputs) != 1:
        raise SpecError(
            f"{spec}: tltf needs a functional or Sequential model with one input; "
            f"this one has {len(inputs or [])}."
        )
    features = _cut(network, cut, spec)
    if len(features.shape) == 4:
        pool = (
            keras.layers.GlobalMaxPooling2D
            if pooling == "max"
            else keras.layers.GlobalAveragePooling2D
        )
        features = pool(name="features_pool")(features)
    elif len(features.shape) == 3:
        features = keras.layers.GlobalAveragePooling1D(name="features_pool")(features)
    if len(features.shape) != 2:
        raise SpecError(f"{spec}: features of shape {features.shape}; expected [batch, dim].")
    model = keras.Model(inputs, features, name="user_backbone")
    (raw,) = inputs
    rate: dict = {}  # the input spec's sample rate, for waveforms
    if raw.dtype == "string":
        modality = "text"
        preprocessor = keras.layers.Identity(name="text_preprocessor")
    elif len(raw.shape) == 4:
        modality = "image"
        preprocess = preprocess or _family_preprocessing(model, spec)
        preprocessor = ImagePreprocessing(preprocess, name="image_preprocessing")
    elif (
        len(raw.shape) == 2
        and str(raw.dtype).startswith("float")
        and (raw.shape[1] or 0) >= MIN_SAMPLES
    ):
        modality = "audio"  # 16 kHz waveforms [batch, samples], as tltf's audio models take
        rate = {"sample_rate": SAMPLE_RATE}
        preprocessor = keras.layers.Identity(name="audio_preprocessing")
    else:
        raise SpecError(
            f"{spec}: input of shape {raw.shape} and dtype {raw.dtype}; tltf takes images "
            "[batch, H, W, C], strings, or 16 kHz waveforms [batch, samples] of a fixed length "
            f"(at least {MIN_SAMPLES} samples)."
        )
    return Backbone(
        spec=spec,
        modality=modality,
        model=model,
        preprocessor=preprocessor,
        groups=layer_groups(model),
        feature_dim=int(features.shape[-1]),
        input_spec={"shape": list(raw.shape[1:]), "dtype": raw.dtype, **rate},
        default_lr=1e-4,
    )


def _from_tltf_model(network: Any, spec: str) -> Backbone:
    """The backbone inside a model that `tltf.build` made (task A), without its head.

    Its pooled features, groups and preprocessing are those it was trained with;
    augmentation layers are left behind.
    """
    import keras

    meta = info(network)
    inner = network.get_layer(BACKBONE_LAYER)
    steps = [
        layer
        for layer in preprocessing_layers(network)
        if not layer.name.startswith("augmentation_")
    ]
    preprocessor = (
        steps[0]
        if len(steps) == 1
        else keras.Sequential(steps or [keras.layers.Identity()], name="preprocessing")
    )
    lr = {"default_lr": meta["default_lr"]} if meta.get("pretrained", True) else {}
    print(
        f"tltf: {spec} is a tltf model ({meta['task']} on {meta['backbone']}, "
        f"{len(meta['class_names'])} classes): its backbone, {len(meta['groups'])} groups and "
        "preprocessing, without its head",
        flush=True,
    )
    return Backbone(
        spec=spec,
        modality=meta["modality"],
        model=inner,
        preprocessor=preprocessor,
        groups=dict(meta["groups"]),
        feature_dim=int(inner.output.shape[-1]),
        input_spec=dict(meta["input_spec"]),
        standardize_features=meta.get("feature_norm") is not None,  # as task A's head did
        **lr,
    )


def _family_preprocessing(model: Any, spec: str) -> str:
    """The preprocessing of the keras.applications family the layer names follow, or an error."""
    family = keras_apps.detect_family([layer.name for layer in model.layers if layer.weights])
    if family:
        return family[1].preprocess
    raise SpecError(
        f"{spec}: tltf cannot tell how this image network expects its pixels. Pass "
        "preprocess= with the mode it was trained with: 'tf' ([-1, 1]), 'torch' (ImageNet "
        "mean/std), 'caffe', 'unit' ([0, 1]), or 'none' (raw 0-255, e.g. a network that "
        "rescales its own input)."
    )


def _cut(network: Any, cut: str | int | None, spec: str) -> Any:
    """The tensor that becomes the features: the output, a named layer's, or -N layers back."""
    if cut is None:
        return network.output
    if isinstance(cut, str):
        try:
            return network.get_layer(cut).output
        except ValueError:
            names = [layer.name for layer in network.layers][-8:]
            raise SpecError(f"{spec}: no layer {cut!r}; the last layers are {names}.") from None
    if isinstance(cut, int) and not isinstance(cut, bool) and -len(network.layers) < cut < 0:
        return network.layers[cut - 1].output
    raise SpecError(f"cut={cut!r}: give a layer name, or -N to drop the last N layers.")


def layer_groups(model: Any) -> dict[str, list[str]]:
    """A keras.applications family's groups if the names follow one, else one per weighted layer."""
    import keras

    layers = [lyr for lyr in model.layers if not isinstance(lyr, keras.layers.InputLayer)]
    family = keras_apps.detect_family([lyr.name for lyr in layers if lyr.weights])
    if family:
        return keras_apps.layer_groups(model, family[1])
    names = [layer.name for layer in layers]
    own = [layer.name if layer.weights else None for layer in layers]  # weightless join one
    return grouped(names, fill(own))


def _groups_by_layer_name(layer: Any) -> dict[str, list[str]]:
    """One group per layer of a Keras-exported SavedModel: variable names start with it."""
    groups: dict[str, list[str]] = {}
    for name, variable in zip(layer.variable_names, layer.module_variables, strict=True):
        groups.setdefault(name.split("/")[0], []).append(variable.path)
    return groups
