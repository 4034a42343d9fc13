"""``keras:<Name>``: the image networks of `keras.applications`.

Each family is one declarative `Family` entry: its constructors, how raw 0-255
pixels are normalized, its default and smallest input size, and which *stable*
layer names map to which group. Auto-generated layer names (``re_lu_3``,
``add_27``) depend on global counters, so they never decide a group: such layers
inherit the group of their neighbour ("prev" fills forwards; "next" fills
backwards, for families whose stable names close a block, like InceptionV3's
``mixedN``). Families without stable names in their stem (Inception) take as
stem every layer up to the first one that feeds several branches.

Groups are ``stem``, ``stage1``..``stageN`` (one per resolution, or the family's
own block numbering for EfficientNet), and ``top`` where the family has a final
1x1 convolution (EfficientNet, MobileNetV3).

Over 400 lines for a reason: a third of it is the `FAMILIES` table, one
declarative entry per family (data, not logic).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tltf.backbone import Backbone
from tltf.backbones import register_source
from tltf.backbones.fetch import check_sha256, download_failed
from tltf.backbones.grouping import fill, grouped
from tltf.errors import SpecError

Rule = tuple[str, Callable[[re.Match], str]]
POOLINGS = ("avg", "max")


@dataclass(frozen=True)
class Family:
    """How one keras.applications family is preprocessed and grouped.

    Attributes:
        constructors: regex over constructor names, e.g. ``^ResNet\\d+$``.
        module: the ``keras.applications`` module with its ``preprocess_input``.
        preprocess: `tltf.layers.ImagePreprocessing` mode for raw 0-255 pixels
            ("none" where the network normalizes inside).
        rules: ``(layer-name regex, match -> group)``, first match wins.
        inherit: "prev" or "next": where unmatched layers take their group from.
        sizes: default square input size per constructor (fallback 224).
        min_size: the smallest input side the constructors accept.
        builtin_preprocessing: pass ``include_preprocessing=True`` to the constructor.
        stem_until_branch: the stem is every layer up to the first one whose
            output feeds several layers (for families whose stem has no stable names).
        stages / top: the groups are stem, stage1..stage<stages>, then top if `top`.
        more_stages: constructors with another number of stages.
    """

    constructors: str
    module: str
    preprocess: str
    rules: list[Rule]
    inherit: str = "prev"
    sizes: dict[str, int] = field(default_factory=dict)
    min_size: int = 32
    builtin_preprocessing: bool = False
    stem_until_branch: bool = False
    stages: int = 4
    top: bool = False
    more_stages: dict[str, int] = field(default_factory=dict)


def _stage_of(bounds: tuple[int, ...], start: int = 1) -> Callable[[re.Match], str]:
    """Block number ``m[1]`` -> ``stage<k>``: each bound opens the next stage."""
    return lambda m: f"stage{start + sum(int(m[1]) >= b for b in bounds)}"


def _fixed(group: str) -> Callable[[re.Match], str]:
    return lambda m: group


_RESNET_RULES: list[Rule] = [
    (r"^(conv1|pool1)_", _fixed("stem")),
    (r"^conv([2-5])_block\d+_", lambda m: f"stage{int(m[1]) - 1}"),
    (r"^(post_bn|post_relu)$", _fixed("stage4")),  # ResNetV2's final BatchNorm
]
_VGG_RULES: list[Rule] = [
    (r"^block1_", _fixed("stem")),
    (r"^block([2-5])_", lambda m: f"stage{int(m[1]) - 1}"),
]
_EFFICIENTNET_RULES: list[Rule] = [
    (r"^(rescaling.*|normalization.*|stem_\w+)$", _fixed("stem")),
    (r"^block(\d)[a-z]+_", lambda m: f"stage{m[1]}"),
    (r"^(top_\w+|avg_pool|max_pool)$", _fixed("top")),
]


def _mobilenet_v3(bounds: tuple[int, ...]) -> list[Rule]:
    return [
        (r"^(rescaling.*|conv|conv_bn)$", _fixed("stem")),
        (r"^expanded_conv_(\d+)_", _stage_of(bounds)),
        (r"^expanded_conv_", _fixed("stage1")),  # block 0 carries no number
        (r"^(conv_1|conv_1_bn|avg_pool|max_pool)$", _fixed("top")),
    ]


def _nasnet(bounds: tuple[int, int]) -> list[Rule]:
    # Cells are named by id: normal cells 0..n-1, reduce_n, n+1..2n, reduce_2n, 2n+1..3n
    # (bounds = (n, 2n)). A reduction cell opens the stage at the next resolution.
    return [
        (r"(^stem_|_stem_\d+$)", _fixed("stem")),
        (r"_reduce_(\d+)$", _stage_of(bounds)),
        (
            r"^(?:normal|adjust|separable_conv_\d+_(?:bn_)?normal)\w*_(\d+)$",
            lambda m: f"stage{1 + sum(int(m[1]) > b for b in bounds)}",
        ),
    ]


FAMILIES: dict[str, Family] = {
    "resnet": Family(r"^ResNet\d+$", "resnet", "caffe", _RESNET_RULES),
    "resnet_v2": Family(r"^ResNet\d+V2$", "resnet_v2", "tf", _RESNET_RULES),
    "vgg16": Family(r"^VGG16$", "vgg16", "caffe", _VGG_RULES),
    "vgg19": Family(r"^VGG19$", "vgg19", "caffe", _VGG_RULES),
    "xception": Family(
        r"^Xception$",
        "xception",
        "tf",
        [
            (r"^block1_", _fixed("stem")),
            (r"^block(\d+)_", _stage_of((3, 4, 13))),  # entry 2|3|4, middle 5-12, exit 13-14
        ],
        sizes={"Xception": 299},
        min_size=71,
    ),
    "inception_v3": Family(
        r"^InceptionV3$",
        "inception_v3",
        "tf",
        [(r"^mixed(\d+)(_\d+)?$", _stage_of((3, 8)))],  # mixed3, mixed8 reduce resolution
        inherit="next",
        sizes={"InceptionV3": 299},
        min_size=75,
        stem_until_branch=True,
        stages=3,
    ),
    "inception_resnet_v2": Family(
        r"^InceptionResNetV2$",
        "inception_resnet_v2",
        "tf",
        [
            (r"^(mixed_5b|block35_\d+_\w+)$", _fixed("stage1")),
            (r"^(mixed_6a|block17_\d+_\w+)$", _fixed("stage2")),
            (r"^(mixed_7a|block8_\d+_\w+|conv_7b\w*)$", _fixed("stage3")),
        ],
        inherit="next",
        sizes={"InceptionResNetV2": 299},
        min_size=75,
        stem_until_branch=True,
        stages=3,
    ),
    "mobilenet": Family(
        r"^MobileNet$",
        "mobilenet",
        "tf",
        [
            (r"^conv1(_bn|_relu)?$", _fixed("stem")),
            (r"^conv_(?:dw|pw|pad)_(\d+)", _stage_of((2, 4, 6, 12))),  # strided blocks open stages
        ],
        stages=5,
    ),
    "mobilenet_v2": Family(
        r"^MobileNetV2$",
        "mobilenet_v2",
        "tf",
        [
            (r"^(Conv1|bn_Conv1|Conv1_relu)$", _fixed("stem")),
            (r"^expanded_conv_", _fixed("stage1")),
            (r"^block_(\d+)_", _stage_of((1, 3, 6, 13))),
            (r"^(Conv_1|Conv_1_bn|out_relu)$", _fixed("top")),
        ],
        stages=5,
        top=True,
    ),
    "mobilenet_v3_small": Family(
        r"^MobileNetV3Small$",
        "mobilenet_v3",
        "none",
        _mobilenet_v3((1, 3, 8)),
        builtin_preprocessing=True,
        top=True,
    ),
    "mobilenet_v3_large": Family(
        r"^MobileNetV3Large$",
        "mobilenet_v3",
        "none",
        _mobilenet_v3((1, 3, 6, 12)),
        builtin_preprocessing=True,
        stages=5,
        top=True,
    ),
    "efficientnet": Family(
        r"^EfficientNetB\d$",
        "efficientnet",
        "none",  # Rescaling + Normalization are always inside
        _EFFICIENTNET_RULES,
        sizes={
            f"EfficientNetB{i}": s for i, s in enumerate((224, 240, 260, 300, 380, 456, 528, 600))
        },
        stages=7,
        top=True,
    ),
    "efficientnet_v2": Family(
        r"^EfficientNetV2(B\d|S|M|L)$",
        "efficientnet_v2",
        "none",
        _EFFICIENTNET_RULES,
        sizes={
            **{f"EfficientNetV2B{i}": s for i, s in enumerate((224, 240, 260, 300))},
            "EfficientNetV2S": 384,
            "EfficientNetV2M": 480,
            "EfficientNetV2L": 480,
        },
        builtin_preprocessing=True,
        stages=6,
        top=True,
        more_stages={"EfficientNetV2M": 7, "EfficientNetV2L": 7},
    ),
    "convnext": Family(
        r"^ConvNeXt(Tiny|Small|Base|Large|XLarge)$",
        "convnext",
        "none",
        [
            (r"_(prestem_normalization|stem)$", _fixed("stem")),
            (r"_stage_(\d)_block_\d+_", lambda m: f"stage{int(m[1]) + 1}"),
            (r"_downsampling_block_(\d)$", lambda m: f"stage{int(m[1]) + 2}"),  # opens next stage
        ],
        builtin_preprocessing=True,
    ),
    "densenet": Family(
        r"^DenseNet\d+$",
        "densenet",
        "torch",
        [
            (r"^(conv1_\w+|pool1)$", _fixed("stem")),
            (r"^conv([2-5])_block\d+_", lambda m: f"stage{int(m[1]) - 1}"),
            (r"^pool([2-4])_", lambda m: f"stage{int(m[1]) - 1}"),  # transition closes a stage
            (r"^(bn|relu)$", _fixed("stage4")),
        ],
    ),
    "nasnet_mobile": Family(r"^NASNetMobile$", "nasnet", "tf", _nasnet((4, 8)), stages=3),
    "nasnet_large": Family(
        r"^NASNetLarge$", "nasnet", "tf", _nasnet((6, 12)), sizes={"NASNetLarge": 331}, stages=3
    ),
}


def constructor_names() -> list[str]:
    """Every ``keras.applications`` constructor tltf knows, in table order."""
    import keras

    names = sorted(n for n in dir(keras.applications) if n[:1].isupper())
    return [n for fam in FAMILIES.values() for n in names if re.search(fam.constructors, n)]


def family_of(name: str) -> tuple[str, Family]:
    """``(family key, Family)`` of a constructor name such as ``"ResNet50"``."""
    for fam_name, fam in FAMILIES.items():
        if re.search(fam.constructors, name):
            return fam_name, fam
    raise SpecError(
        f"keras:{name} is not a supported keras.applications model. "
        f"Supported: {', '.join(constructor_names())}."
    )


def default_size(name: str) -> int:
    """The input side the family was trained at (224 unless the table says otherwise)."""
    return family_of(name)[1].sizes.get(name, 224)


def group_names(name: str) -> list[str]:
    """The groups of constructor `name`, input side first, without building it."""
    fam = family_of(name)[1]
    stages = fam.more_stages.get(name, fam.stages)
    return ["stem", *(f"stage{i}" for i in range(1, stages + 1))] + (["top"] if fam.top else [])


def layer_groups(model: Any, family: Family) -> dict[str, list[str]]:
    """Ordered ``{group: [layer names]}`` of a model from the family's stable-name rules."""
    import keras

    layers = [lyr for lyr in model.layers if not isinstance(lyr, keras.layers.InputLayer)]
    names = [layer.name for layer in layers]
    stem_end = _first_branch(layers) if family.stem_until_branch else -1
    return grouped(names, assign_groups(names, family, stem_end))


def assign_groups(names: list[str], family: Family, stem_end: int = -1) -> list[str]:
    """The group of each of the layer `names` (in model order); ``names[:stem_end + 1]``
    are the stem."""
    assigned: list[str | None] = [_match(name, family.rules) for name in names]
    assigned[: stem_end + 1] = ["stem"] * (stem_end + 1)
    return fill(assigned, inherit=family.inherit)


def detect_family(names: list[str]) -> tuple[str, Family] | None:
    """The family whose stable names cover most of `names` (at least half), if any.

    For networks saved by their users: a fine-tuned ResNet50 saved whole keeps
    ResNet's layer names, so it keeps ResNet's groups.
    """
    best, best_share = None, 0.5
    for fam_name, fam in FAMILIES.items():
        if fam.stem_until_branch:
            continue  # needs the graph, not only names
        share = sum(_match(n, fam.rules) is not None for n in names) / max(len(names), 1)
        if share >= best_share and (best is None or share > best_share):
            best, best_share = (fam_name, fam), share
    return best


def _match(name: str, rules: list[Rule]) -> str | None:
    for pattern, group_of in rules:
        match = re.search(pattern, name)
        if match:
            return group_of(match)
    return None


def _first_branch(layers: list) -> int:
    """Index of the first layer whose output feeds more than one layer."""
    consumers: dict[int, int] = {}
    for layer in layers:
        for node in layer._inbound_nodes:
            for parent in {id(t._keras_history.operation) for t in node.input_tensors}:
                consumers[parent] = consumers.get(parent, 0) + 1
    return next((i for i, lyr in enumerate(layers) if consumers.get(id(lyr), 0) > 1), -1)


def _quietly(constructor: Any, kwargs: dict) -> Any:
    """Calls a keras.applications constructor without its console chatter.

    Keras prints "Downloading data from URL" (also when offline, before the error
    that tltf turns into its own) and MobileNets warn that the 224 px weights load
    at other sizes, which is what a model without its top wants.
    """
    import warnings

    import keras

    interactive = keras.config.is_interactive_logging_enabled()
    keras.config.disable_interactive_logging()  # print_msg goes to absl's log instead
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r".*weights for input shape")
            return constructor(**kwargs)
    finally:
        if interactive:
            keras.config.enable_interactive_logging()


@register_source("keras", modality="image")
def load(
    name: str,
    *,
    spec: str,
    weights: str | None = "imagenet",
    input_shape: tuple[int, int, int] | None = None,
    pooling: str = "avg",
    sha256: str | None = None,
) -> Backbone:
    """Builds ``keras.applications.<name>`` without its top, raw 0-255 RGB in.

    Example:
        >>> bb = load_backbone("keras:EfficientNetV2B0", weights=None, input_shape=(64, 64, 3))
        >>> list(bb.groups)
        ['stem', 'stage1', ..., 'stage6', 'top']

    Options: ``weights`` ("imagenet", None, or a local ``.h5``/``.weights.h5`` file,
    checked against ``sha256=``), ``input_shape`` (default: the family's size),
    ``pooling`` ("avg" or "max").
    """
    import keras

    from tltf.layers import ImagePreprocessing

    fam_name, fam = family_of(name)
    constructor = getattr(keras.applications, name, None)
    if constructor is None:
        raise SpecError(
            f"keras.applications has no {name!r} in this Keras {keras.__version__}. "
            f"Supported: {', '.join(constructor_names())}."
        )
    if pooling not in POOLINGS:
        raise SpecError(f"pooling={pooling!r}; use one of {POOLINGS}.")
    size = default_size(name)
    input_shape = tuple(input_shape or (size, size, 3))
    if len(input_shape) != 3 or input_shape[-1] != 3:
        raise SpecError(f"input_shape={input_shape}: image backbones take (height, width, 3).")
    if min(input_shape[:2]) < fam.min_size:
        raise SpecError(
            f"keras:{name}: input_shape={input_shape} is too small; "
            f"this family needs at least {fam.min_size}x{fam.min_size}."
        )
    local_weights = weights not in (None, "imagenet")
    if sha256 and not local_weights:
        raise SpecError(
            f"{spec}: sha256= checks a local weights file; pass weights='/path/to/file.h5'."
        )
    if local_weights:
        check_sha256(str(weights), sha256)
    kwargs: dict[str, Any] = dict(
        include_top=False, weights=weights, input_shape=input_shape, pooling=pooling
    )
    if fam.builtin_preprocessing:
        kwargs["include_preprocessing"] = True
    try:
        base = _quietly(constructor, kwargs)
    except ValueError as exc:
        raise SpecError(f"{spec}: {exc}") from None
    except Exception as exc:  # a failed weights download surfaces as many error types
        if weights == "imagenet":
            raise download_failed(
                spec,
                f"the ImageNet weights of {name}",
                exc,
                cache="$KERAS_HOME/models (default ~/.keras/models)",
                local=(
                    f"weights='/path/to/{name.lower()}_notop.h5' in Python, or "
                    f"--weights /path/to/{name.lower()}_notop.h5 with tltf train"
                ),
            ) from None
        raise
    return Backbone(
        spec=spec,
        modality="image",
        model=base,
        preprocessor=ImagePreprocessing(fam.preprocess, name="image_preprocessing"),
        groups=layer_groups(base, fam),
        feature_dim=int(base.output.shape[-1]),
        input_spec={"shape": list(input_shape), "dtype": "float32", "family": fam_name},
        default_lr=1e-4,
        pretrained=weights is not None,
    )
