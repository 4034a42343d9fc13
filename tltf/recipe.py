"""The default recipe: how long each `tltf.fine_tune` phase trains, at what rate, and when it stops.

One place for the defaults that `tltf.fine_tune`, ``tltf train`` and
`tltf.recommend` share, chosen by ``benchmarks/bench_accuracy.py`` on real
pretrained weights (MiniLM on debian-topics, ImageNet MobileNet v1 on
openclipart; figures in benchmarks/README.md).

- **The head converges (LP-FT), regularized as a logistic regression.** While
  only the head trains, its kernels carry an L2 penalty of 1 / (2 N) for N
  training examples (scikit-learn's default ``C=1``, per example; a classifier's
  features reach it L2-normalized to length √10, so ``C=10`` on unit vectors:
  `tltf.heads.classification.FEATURE_LENGTH`), and it trains
  on all of them until its training loss stops improving: the rate drops by
  `HEAD_LR_FACTOR` after `HEAD_LR_PATIENCE` epochs without progress, and it stops
  after `HEAD_PATIENCE`, keeping its best epoch, within `HEAD_MAX_STEPS` steps.
  On cached features a step costs microseconds (an epoch there is at least
  `HEAD_STEPS_PER_EPOCH` steps, several passes over a small set); without the
  cache each epoch is a forward pass, so it stops after `HEAD_EPOCHS_UNCACHED`.
  Measured (benchmarks/README.md): stopping the head on the validation loss of a
  10% slice instead picked the first epoch on two of three 18-image slices at 32
  images per class, 5.5 points below a logistic regression on average; a head
  without the penalty lost 1-5 points to it at 8-32 examples per class.
- **Phase 2 is sized by the data.** `MIN_STEPS` optimizer steps, so a small set
  is not left after a handful of updates, or `MIN_EPOCHS` passes if that is
  more, and no more, so a large set is not over-trained. It stops early after `PATIENCE`
  epochs without a better validation loss and keeps its best epoch. Without
  ``validation_data``, `fine_tune` holds out `HOLDOUT` of each class for it
  (the head has trained on all of them).

- **Random weights train from scratch.** A backbone built with ``weights=None``
  has no features worth a head-only phase, so there is none; BatchNorm statistics
  train (``bn="auto"``) with a momentum of at most `SCRATCH_BN_MOMENTUM`, so they
  follow the changing weights within tens of steps, and phase 2's rate is
  `SCRATCH_LR`, for up to `SCRATCH_EPOCHS` epochs. Measured: with frozen statistics a random MobileNetV2 kept its
  loss at ln(C); with Keras' momentum of 0.999 its moving statistics were still
  near their initial values after 650 steps (validation accuracy 0.154, one class).

An explicit ``epochs=`` / ``freeze_epochs=`` trains exactly that many epochs, with
no early stopping, as before.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from tltf.errors import SpecError
from tltf.lora import is_lora

HEAD_LR = 3e-3  # Adam, while only the head trains
HEAD_MAX_STEPS = 3000  # the head phase's step budget (cached features)
HEAD_MAX_EPOCHS = 300
HEAD_PATIENCE = 8  # epochs without a lower training loss: stop
HEAD_LR_PATIENCE = 3  # ... : lower the rate
HEAD_LR_FACTOR = 0.3
# an automatic head epoch on cached features: this many steps at least (several passes
# over a small set), since Keras' per-epoch work (~30 ms) dwarfs a head step
HEAD_STEPS_PER_EPOCH = 32
HEAD_EPOCHS_UNCACHED = 5  # each one a forward pass through the backbone
MIN_STEPS = 150  # phase 2's optimizer steps, at least
MIN_EPOCHS = 3
PATIENCE = 3
HOLDOUT = 0.1  # share of each class held out when no validation data is given
SCRATCH_LR = 1e-3  # phase 2's rate when the backbone's weights are random
LORA_LR = 2e-3  # phase 2's rate when only LoRA adapters train (`tltf.lora`)
SCRATCH_EPOCHS = 30  # phase 2's upper bound then (it stops early on validation loss)
# BatchNorm momentum of a random backbone, at most: Keras applications use 0.99-0.999,
# whose moving statistics stay near their initial values for hundreds of steps
SCRATCH_BN_MOMENTUM = 0.9


# the least value of each numeric argument of `tltf.fine_tune` and `tltf.build` (and of
# the config keys of the same names); rates must be above it
LEAST = {"epochs": 0, "freeze_epochs": 0, "batch_size": 1, "image_size": 1, "sequence_length": 1}
POSITIVE = ("lr", "head_lr")
BOUNDED = (*LEAST, *POSITIVE)


def check_arguments(**values: Any) -> None:
    """`SpecError` naming the first argument out of range; None (a default) passes.

    Example:
        >>> check_arguments(epochs=-1)
        SpecError: epochs=-1: must be a whole number of at least 0 (or None: sized by the data).
    """
    for name, value in values.items():
        if value is None or isinstance(value, bool):
            continue
        if not isinstance(value, (int, float)):
            raise SpecError(f"{name}={value!r}: must be a number.")
        if name in LEAST and (value < LEAST[name] or value != int(value)):
            raise SpecError(
                f"{name}={value!r}: must be a whole number of at least {LEAST[name]}"
                + (" (or None: sized by the data)." if name.endswith("epochs") else ".")
            )
        if name in POSITIVE and not value > 0:
            raise SpecError(f"{name}={value!r}: must be above 0 (e.g. 1e-4).")


def backbone_lr(meta: Any, policy: Any) -> float:
    """Phase 2's peak rate under `policy`: `LORA_LR` for adapters, else the backbone's own.

    Example:
        >>> backbone_lr(tltf.info(model), "lora:8"), backbone_lr(tltf.info(model), "top:2")
        (0.002, 5e-05)

    Adapters start at zero (``B = 0``), so they need far larger steps than pretrained
    kernels: rank-8 LoRA on MiniLM at 32 rows per class (benchmarks/bench_lora.py, one
    seed) reached 0.775 at MiniLM's 5e-5, 0.823 at 5e-4, 0.843 at 2e-3, 0.830 at 1e-2.
    """
    return LORA_LR if is_lora(policy) else float(meta["default_lr"])


def head_epochs(steps_per_epoch: int, cached: bool) -> int:
    """The most epochs an automatic head-only phase may take (it stops early).

    Example:
        >>> head_epochs(3, cached=True), head_epochs(300, cached=True), head_epochs(3, cached=False)
        (93, 10, 5)
    """
    if not cached:
        return HEAD_EPOCHS_UNCACHED
    return max(
        1, min(HEAD_MAX_EPOCHS, HEAD_MAX_STEPS // max(HEAD_STEPS_PER_EPOCH, steps_per_epoch))
    )


def finetune_epochs(steps_per_epoch: int, scratch: bool = False) -> int:
    """The most epochs an automatic phase 2 may take: `MIN_STEPS` steps and `MIN_EPOCHS` passes.

    From random weights (`scratch`) at least `SCRATCH_EPOCHS`; early stopping ends it.

    Example:
        >>> finetune_epochs(3), finetune_epochs(20), finetune_epochs(500), finetune_epochs(500, True)
        (50, 8, 3, 30)
    """
    least = SCRATCH_EPOCHS if scratch else MIN_EPOCHS
    return max(least, math.ceil(MIN_STEPS / max(1, steps_per_epoch)))


@contextmanager
def head_penalty(model: Any, examples: int) -> Iterator[None]:
    """An L2 penalty of 1 / (2 `examples`) on the head's kernels, for the duration.

    Kernels that already carry a regularizer keep theirs.

    Example:
        >>> with head_penalty(model, len(train)):
        ...     model.fit(...)
    """
    import keras

    from tltf.metadata import head_model

    kernels = [
        layer.kernel
        for layer in head_model(model).layers
        if getattr(layer, "kernel", None) is not None and layer.kernel.regularizer is None
    ]
    for kernel in kernels:
        kernel.regularizer = keras.regularizers.L2(1 / (2 * max(1, examples)))
    try:
        yield
    finally:
        for kernel in kernels:
            kernel.regularizer = None


def head_callbacks() -> list:
    """The callbacks of an automatic head phase: a lower rate on a plateau, then a stop.

    Example:
        >>> [type(cb).__name__ for cb in head_callbacks()]
        ['ReduceLROnPlateau', 'EarlyStopping']
    """
    import keras

    return [
        keras.callbacks.ReduceLROnPlateau("loss", factor=HEAD_LR_FACTOR, patience=HEAD_LR_PATIENCE),
        keras.callbacks.EarlyStopping("loss", patience=HEAD_PATIENCE, restore_best_weights=True),
    ]


def early_stopping(monitor: str) -> Any:
    """The callback of an automatic phase 2: stops after `PATIENCE` epochs, restores the best.

    Example:
        >>> early_stopping("val_loss").restore_best_weights
        True
    """
    import keras

    return keras.callbacks.EarlyStopping(
        monitor=monitor, patience=PATIENCE, restore_best_weights=True
    )
