"""`build`: backbone + task head -> a plain, compiled `keras.Model` that takes raw inputs."""

from __future__ import annotations

from typing import Any

from tltf import recipe
from tltf.backbone import Backbone
from tltf.backbones import load_backbone, source_options
from tltf.card import ModelCard
from tltf.compiling import compile_model
from tltf.distribute import builds_in_scope
from tltf.errors import SpecError
from tltf.freezing import BN_POLICIES, set_freeze
from tltf.heads import get_task, head_options
from tltf.io import load_keras
from tltf.metadata import BACKBONE_LAYER, FEATURE_NORM_LAYER, INFO_LAYER
from tltf.modalities import get_modality, import_layer_modules, modalities
from tltf.rates import check_lr_decay


@builds_in_scope
def build(
    backbone: str | Backbone,
    task: str = "classification",
    *,
    num_classes: int | None = None,
    class_names: list[str] | None = None,
    freeze: str | list[str] = "all",
    bn: str = "auto",
    head: dict | list | int | None = None,
    lr: float | None = None,
    lr_decay: float | dict[str, float] | None = None,
    loss: Any = None,
    metrics: list | None = None,
    strategy: Any = "auto",
    precision: str = "auto",
    jit_compile: bool | str = "auto",
    tpu: str | None = None,
    augment: str | dict = "none",
    background: float | tuple[float, float, float] | None = None,
    noise: Any = None,
    **backbone_options: Any,
) -> Any:
    """Builds a transfer-learning model: pretrained backbone, chosen groups trainable, new head.

    Example:
        >>> model = tltf.build("keras:MobileNetV2", class_names=["cat", "dog"],
        ...                    weights=None, input_shape=(96, 96, 3), freeze="top:1")
        >>> model.predict(np.zeros((1, 96, 96, 3)))      # raw 0-255 pixels in, logits out

    Args:
        backbone: a spec string (``keras:EfficientNetV2B0``, ``keras_hub:/folder``, ...)
            or a `tltf.Backbone` from `tltf.load_backbone`.
        task: the head: ``classification``, ``text_pair``, ``multilabel``, ``regression``,
            ``token_classification`` or ``embedding`` (see `tltf.heads`).
        num_classes / class_names: the label set (tags, target names for regression);
            names are served by the export.
        freeze: ``"all"``, ``"none"``, ``"top:N"``, a list of group names, or
            ``"lora:RANK[:N]"`` (LoRA adapters, the rest frozen: `tltf.lora`).
        bn: ``"frozen"`` keeps BatchNorm statistics fixed, ``"train"`` lets them adapt;
            ``"auto"``: frozen for pretrained weights, trained for random ones
            (`tltf.recipe`: random weights train from scratch).
        head: hidden sizes, or ``{"hidden": [...], "dropout": .., "activation": ..}``
            plus the task's options (``threshold``, ``normalize``, ``dim``).
        lr: learning rate for the compile; default the backbone's fine-tuning rate
            (or 1e-3 when only the head trains).
        augment: ``"none"``, ``"light"`` or ``"strong"``: for images flips, rotation, zoom,
            contrast (`tltf.data.augmentation_layers`); for audio gain, time shift and
            noise at an SNR (`tltf.modalities.audio_layers.AudioAugment`; a dict such as
            ``{"shift_seconds": 0.5}`` changes the "light" preset's settings). Placed right
            after the raw input; active only in training, so exports do not run it. Any
            augmentation turns feature caching off after the head's warm-up, since the
            frozen backbone then sees new inputs each epoch.
        background: image models: the colour (0-255 grey, or ``(r, g, b)``) that
            transparent pixels are flattened onto, in training and in the export's
            ``image_bytes`` decode alike; default white.
        noise: audio models with `augment`: recorded background noise to mix in at the
            preset's SNR instead of white noise (a folder of WAV files, a WAV file, a
            list of them, or a 16 kHz waveform); kept in the model as a fixed weight.
        lr_decay: per-group learning rates: a factor (each group down from the top
            trains at that share of the rate above it; the head at the full rate) or
            ``{group: multiplier}``; stored in `tltf.info` (see `tltf.rates`).
        loss / metrics: override the task's loss and metrics.
        strategy: where it trains: ``"auto"`` (a TPU, else TF_CONFIG's workers, else
            several GPUs, else one device), a name from `tltf.distribute.STRATEGIES`
            or a `tf.distribute.Strategy`; the model is built and compiled in its
            scope and keeps it (``model.distribute_strategy``). ``tpu=``: a TPU name.
        precision: ``"auto"`` (bfloat16 on TPU, float16 on GPUs of compute
            capability 7.0+, else float32), ``"float32"``, ``"mixed_float16"`` or
            ``"mixed_bfloat16"``; the logits stay float32.
        jit_compile: XLA; ``"auto"`` turns it on for image models on GPU only
            (never for text models: tokenizer ops have no XLA kernels).
        **backbone_options: passed to the source (``weights=``, ``input_shape=``,
            ``sequence_length=``, ``sha256=`` ...).

    Returns:
        A compiled `keras.Model` from raw inputs (0-255 pixels, or strings) to the
        task's outputs (logits for classification). Its metadata is in `tltf.info(model)`.
    """
    import keras

    recipe.check_arguments(sequence_length=backbone_options.get("sequence_length"))
    task_obj = get_task(task)
    class_names = _class_names(num_classes, class_names, task_obj.default_names)
    task_obj.check_names(class_names)
    if bn not in (*BN_POLICIES, "auto"):
        raise SpecError(f"bn={bn!r}; use one of {('auto', *BN_POLICIES)}.")
    needs = task_obj.backbone_options if isinstance(backbone, str) else {}
    accepted = source_options(backbone) if needs else None
    if accepted is not None and not set(needs) <= set(accepted):
        raise SpecError(
            f"task={task!r} needs a backbone that takes {needs}; {backbone!r} does not "
            "(docs/finetuning.md says which backbones each task takes)."
        )
    bb = load_backbone(backbone, **{**needs, **backbone_options})

    opts = head_options(head, task, raw_features=bb.pretrained and not bb.standardize_features)
    bn = _bn_policy(bb, bn)
    mod = get_modality(bb.modality)
    if not mod.accepts(bb.input_spec):
        raise SpecError(
            f"{bb.spec} declares modality {bb.modality!r}, but its input {bb.input_spec} is "
            f"not {bb.modality} input; fix the source's Backbone(modality=..., input_spec=...)."
        )
    inputs = mod.inputs(bb.input_spec, task_obj)
    options = {"augment": augment, "background": background, "noise": noise}
    for option, value in options.items():
        unset = value is None or (isinstance(value, str) and value == "none")
        if not unset and option not in mod.build_options:
            owners = [m.name for m in modalities() if option in m.build_options]
            raise SpecError(
                f"{option}= is for {' or '.join(owners)} backbones; {bb.spec} is {bb.modality}."
            )
    x, extra_spec = mod.input_layers(
        inputs, bb.spec, {k: v for k, v in options.items() if k in mod.build_options}
    )
    input_spec = {**bb.input_spec, **extra_spec}
    x = bb.preprocessor(x)
    bb.model.name = BACKBONE_LAYER
    features = bb.model(x)
    card = ModelCard(
        task=task,
        class_names=class_names,
        backbone=bb.spec,
        modality=bb.modality,
        input_spec=input_spec,
        groups=bb.groups,
        fingerprint=bb.fingerprint,
        head=opts,
        default_lr=bb.default_lr if bb.pretrained else recipe.SCRATCH_LR,
        pretrained=bb.pretrained,
        freeze=freeze,
        bn=bn,
        precision=precision,
        jit_compile=jit_compile,
        lr_decay=check_lr_decay(lr_decay, list(bb.groups)),
        augment=augment,
        feature_norm="pending" if bb.standardize_features else None,
    )
    from tltf.layers import TltfInfo

    features = TltfInfo(card, name=INFO_LAYER)(features)
    if bb.standardize_features:
        from tltf.layers import FeatureNorm

        features = FeatureNorm(name=FEATURE_NORM_LAYER)(features)
    outputs = task_obj.build(features, class_names, opts)
    model = keras.Model(inputs, outputs, name=f"tltf_{task}")
    set_freeze(model, freeze, bn)
    compile_model(model, lr=lr, loss=loss, metrics=metrics)
    return model


def _bn_policy(bb: Backbone, bn: str) -> str:
    """`bn` resolved for this backbone; a random one gets BatchNorm that can learn."""
    import warnings

    import keras

    if bb.pretrained:
        return "frozen" if bn == "auto" else bn
    for layer in bb.model._flatten_layers(include_self=False):
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = min(layer.momentum, recipe.SCRATCH_BN_MOMENTUM)
    if bn == "frozen":
        warnings.warn(
            f"{bb.spec} has random weights and bn='frozen': its BatchNorm layers keep their "
            "initial statistics (mean 0, variance 1) and normalize nothing, so the network "
            "may not learn at all. Use bn='auto' or bn='train'.",
            stacklevel=4,  # the caller of tltf.build (through its strategy wrapper)
        )
        return bn
    return "train"


def _class_names(
    num_classes: int | None, class_names: list[str] | None, default: list[str] | None = None
) -> list[str]:
    if class_names is not None:
        names = [str(c) for c in class_names]
        if len(set(names)) != len(names):
            raise SpecError(f"class_names has duplicates: {names}.")
        if num_classes is not None and num_classes != len(names):
            raise SpecError(f"num_classes={num_classes} but class_names has {len(names)} names.")
        return names
    if num_classes is None:
        if default:
            return list(default)
        raise SpecError("build() needs class_names=[...] or num_classes=N.")
    return [str(i) for i in range(int(num_classes))]


def load_model(path: str, *, safe_mode: bool = True) -> Any:
    """Loads a tltf model saved with ``model.save("x.keras")``, with its freeze policy in force.

    Example:
        >>> model = tltf.load_model("runs/topics/model.keras")
        >>> tltf.fine_tune(model, more_data, epochs=1)

    `keras.models.load_model` alone brings frozen KerasHub blocks back with
    trainable sublayers, so a plain `fit` would train layers the policy froze;
    this re-applies ``tltf.info(model)``'s freeze and BN policies and compiles.
    """

    import tltf.layers  # noqa: F401  registers tltf's layers for deserialization
    from tltf.metadata import info

    import_layer_modules()
    try:
        import keras_hub  # noqa: F401  registers the KerasHub layers text models hold
    except ImportError:
        pass
    model = load_keras(path, safe_mode=safe_mode)
    meta = info(model)
    set_freeze(model, meta["freeze"], meta["bn"])
    compile_model(model)
    return model
