"""`recommend`: the seeds' transfer-learning rules, as code.

How much of a pretrained network to retrain depends on two things: how much
labelled data there is per class, and how similar the new task is to the one
the network was trained on.

=======================  ===========================  ============================
data per class           similar task                 different task
=======================  ===========================  ============================
small (under ~200)       freeze all: train the head   freeze all; expect less
                         (text encoders: top:2)
medium (~200 to ~1000)   open the top groups          open more groups
large (~1000 and more)   open everything, low rate    open everything, BN adapts
=======================  ===========================  ============================

Frozen groups keep what the first task taught them; every group you open adapts
to the new task and needs more data to do so without overfitting.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from tltf import recipe
from tltf.backbones import source_modality
from tltf.errors import SpecError
from tltf.modalities import get_modality

SIMILARITIES = ("high", "medium", "low")
# "tens per class", and more: at 128 and 158 per class the frozen head still beat opened
# groups on both benchmarks (MobileNet v1 by 1.4-4.6 points, MiniLM by 0.5; benchmarks/README.md)
SMALL_PER_CLASS = 200
LARGE_PER_CLASS = 1000  # "thousands per class"
# share of the backbone's groups to open with medium data, by similarity
OPEN_SHARE = {"high": 0.25, "medium": 0.5, "low": 0.75}
# when the number of groups is unknown (a spec string that was not loaded)
OPEN_GROUPS = {"high": 2, "medium": 3, "low": 4}


@dataclass(frozen=True)
class Recommendation:
    """What `recommend` advises; `build_kwargs` and `fine_tune_kwargs` apply it.

    Example:
        >>> rec = tltf.recommend(2000, 10, similarity="medium", backbone=bb)
        >>> model = tltf.build(bb, class_names=names, **rec.build_kwargs())
        >>> tltf.fine_tune(model, train, validation_data=val, **rec.fine_tune_kwargs())
    """

    freeze: str
    bn: str
    lr: float
    head_lr: float
    lr_decay: float | None
    unfreeze: str
    epochs: int | None
    freeze_epochs: int | None
    data_size: str
    explanation: str

    def build_kwargs(self) -> dict:
        """``freeze``, ``bn`` and ``lr_decay`` for `tltf.build`.

        Example:
            >>> tltf.recommend(2000, 10, similarity="medium").build_kwargs()
            {'freeze': 'top:3', 'bn': 'frozen', 'lr_decay': 0.5}
        """
        return {"freeze": self.freeze, "bn": self.bn, "lr_decay": self.lr_decay}

    def fine_tune_kwargs(self) -> dict:
        """``epochs``, ``freeze_epochs``, ``lr``, ``head_lr`` and ``unfreeze`` for `tltf.fine_tune`.

        Example:
            >>> tltf.recommend(300, 10).fine_tune_kwargs()
            {'lr': 0.0001, 'head_lr': 0.003, 'unfreeze': 'at_once', 'epochs': None,
             'freeze_epochs': None}

        None epochs are `tltf.fine_tune`'s own default: sized by the data, with early
        stopping (`tltf.recipe`).
        """
        keys = ("epochs", "freeze_epochs", "lr", "head_lr", "unfreeze")
        return {k: v for k, v in asdict(self).items() if k in keys}


def recommend(
    num_examples: int,
    num_classes: int,
    similarity: str = "high",
    backbone: Any = None,
) -> Recommendation:
    """A freeze policy, BN policy, learning rates and epochs for your data, with the reasons.

    Example:
        >>> print(tltf.recommend(300, 10, similarity="high").explanation)
        With 30 labelled examples per class (small data) ...

    Args:
        num_examples: labelled training examples.
        num_classes: classes (labels, tags); 1 for regression or embeddings by pairs.
        similarity: how close your data and task are to the backbone's pretraining:
            "high" (photos for an ImageNet network, English prose for a text encoder),
            "medium", or "low" (X-rays, spectrograms, source code, another language).
        backbone: optional: a `tltf.Backbone`, a tltf model, or a spec string. Its
            groups size ``top:N``, and its modality sets the rates (5e-5 text, 1e-4
            images). A spec string tells only its source's modality (``keras:`` images,
            ``hf:`` text); for ``keras_hub:`` or ``hub:`` pass the loaded Backbone.
    """
    if similarity not in SIMILARITIES:
        raise SpecError(f"similarity={similarity!r}; use one of {SIMILARITIES}.")
    if int(num_examples) < 1 or int(num_classes) < 1:
        raise SpecError(f"num_examples={num_examples}, num_classes={num_classes}: need >= 1.")
    per_class = num_examples / num_classes
    groups, lr, small_open = _backbone_facts(backbone)
    size = (
        "small"
        if per_class < SMALL_PER_CLASS
        else "medium"
        if per_class < LARGE_PER_CLASS
        else "large"
    )
    head_lr = recipe.HEAD_LR
    epochs = freeze_epochs = None  # fine_tune's default: sized by the data, stopping early
    if size == "small":
        freeze, bn, decay, unfreeze = "all", "frozen", None, "at_once"
        why = (
            "that is too little to retrain pretrained layers without overfitting them, so "
            "keep the whole backbone frozen and train only the new head (feature "
            "extraction) until it converges, which is cheap on cached features"
        )
        if small_open and similarity == "high" and (groups is None or groups > small_open):
            freeze = f"top:{small_open}"
            why = (
                f"this backbone's kind still gains from opening its top {small_open} groups "
                "at this size (measured: a text encoder at 8 and 32 examples per class "
                "beat its frozen features), so train the head until it converges, then "
                f"those {small_open} groups at a low rate, and keep the rest frozen"
            )
        elif similarity != "high":
            why += (
                f"; with {similarity} similarity the frozen features fit your task less well, "
                "so expect lower accuracy: a backbone pretrained on data closer to yours, or "
                "more labels, helps more than opening layers"
            )
    elif size == "medium":
        n = (
            OPEN_GROUPS[similarity]
            if groups is None
            else max(1, min(groups, round(groups * OPEN_SHARE[similarity])))
        )
        freeze, bn, decay, unfreeze = f"top:{n}", "frozen", 0.5, "gradual"
        why = (
            f"that is enough to adapt the top {n} group(s) (more the less similar your task "
            "is, since more layers must change), while the lower ones keep their general "
            "features. Train the head until it converges, then open one group per epoch from the top "
            "(gradual unfreezing) with each group below at half the rate of the one above "
            "(lr_decay=0.5), and keep BatchNorm statistics frozen"
        )
    else:
        low = similarity == "low"
        freeze, unfreeze = "none", "at_once"
        bn, decay = ("train", None) if low else ("frozen", 0.8)
        why = (
            "that is enough to fine-tune the whole network. Train the head until it converges, then "
            "every group at a low rate with warm-up and cosine decay"
            + (
                "; with low similarity let every group, and the BatchNorm statistics, "
                "adapt fully (bn='train', one rate for all)"
                if low
                else "; the lower groups move a little slower (lr_decay=0.8) to keep "
                "their general features, and BatchNorm statistics stay frozen"
            )
        )
    explanation = (
        f"With {per_class:,.0f} labelled examples per class ({size} data) and {similarity} "
        f"similarity to the backbone's pretraining, {why}. Suggested: freeze={freeze!r}, "
        f"bn={bn!r}, lr={lr:g} (head {head_lr:g}), lr_decay={decay}, unfreeze={unfreeze!r}; "
        "fine_tune sizes each phase by the data and stops it early."
    )
    return Recommendation(
        freeze, bn, lr, head_lr, decay, unfreeze, epochs, freeze_epochs, size, explanation
    )


def _backbone_facts(backbone: Any) -> tuple[int | None, float, int]:
    """(number of groups or None, fine-tuning rate, groups to open with small data)."""
    if backbone is None:
        return None, 1e-4, 0
    if isinstance(backbone, str):  # the source's modality, when it has one
        modality = source_modality(backbone)
        if modality is None:
            return None, 1e-4, 0
        mod = get_modality(modality)
        return None, mod.default_lr, mod.small_data_open
    if hasattr(backbone, "groups") and hasattr(backbone, "default_lr"):
        opened = get_modality(backbone.modality).small_data_open
        return len(backbone.groups), float(backbone.default_lr), opened
    from tltf.metadata import info

    meta = info(backbone)
    opened = get_modality(meta["modality"]).small_data_open
    return len(meta["groups"]), float(meta["default_lr"]), opened
