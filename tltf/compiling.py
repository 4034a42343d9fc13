"""`compile_model`: a tltf model's optimizer (with per-group rates), loss, metrics and XLA policy.

Its own module so that `tltf.build`, freezing and the training phases compile the
same way without importing each other.
"""

from __future__ import annotations

from typing import Any

from tltf.distribute import compile_options, in_strategy_scope, patch_keras_fit
from tltf.heads import get_task


@in_strategy_scope
def compile_model(
    model: Any,
    lr: Any = None,
    optimizer: Any = None,
    loss: Any = None,
    metrics: list | None = None,
) -> None:
    """Compiles a tltf model: its optimizer with per-group rates, loss and metrics.

    Example:
        >>> tltf.compile_model(model, lr=1e-4)      # Adam, keeping the compiled loss and metrics

    Args:
        lr: a rate or a `keras.optimizers.schedules` schedule for a new Adam; default
            the backbone's fine-tuning rate (1e-3 when only the head trains).
        optimizer: any Keras optimizer instead of Adam.
        loss / metrics: default the model's compiled ones, else the task's.

    The multipliers of ``tltf.info(model)["lr_decay"]`` are applied to the optimizer
    (`tltf.rates`). XLA and TPU steps per call follow `tltf.distribute.compile_options`
    (XLA only for image models on GPU), and the Keras `fit` workarounds the model's
    strategy needs are applied (`tltf.distribute.patch_keras_fit`).
    """
    import keras

    from tltf.metadata import info
    from tltf.rates import apply_group_rates

    patch_keras_fit(model)
    meta = info(model)
    task = get_task(meta["task"])
    if optimizer is None:
        if lr is None:
            lr = 1e-3 if meta["freeze"] == "all" else meta["default_lr"]
        optimizer = keras.optimizers.Adam(lr)
    compiled = getattr(model, "compiled", False)
    if loss is None:
        loss = model.loss if compiled and model.loss is not None else task.loss(meta)
    if metrics is None:
        config = model.get_compile_config() if compiled else None
        metrics = (
            keras.saving.deserialize_keras_object(config["metrics"])
            if config and config.get("metrics") is not None
            else task.metrics(meta)
        )
    model.compile(
        optimizer=apply_group_rates(optimizer, model),
        loss=loss,
        metrics=metrics,
        **compile_options(model),
    )
