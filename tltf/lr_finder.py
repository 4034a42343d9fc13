"""`lr_find`: the learning-rate range test (Smith 2017; fastai's ``lr_find``) for tltf models.

The rate grows exponentially from `min_lr` to `max_lr`, one training step each,
while the loss is recorded; the sweep stops early once the loss diverges. The
model's weights (all of them, BatchNorm statistics too) and its optimizer are
put back afterwards, so the sweep leaves no trace.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tltf.errors import SpecError, TltfError


@dataclass
class LRFindResult:
    """The sweep: rates, raw and smoothed losses, and the suggested rate.

    Attributes:
        suggestion: the rate where the smoothed loss falls fastest (steepest descent
            in log-rate), before its minimum; `min_lr_over_10` when the curve is too short.
        min_lr_over_10: a tenth of the rate at the smoothed loss's minimum (more cautious).
        lrs, losses, smoothed: per step.
        plot: the PNG written, or None (see `note`).
        note: why there is no plot, or why the sweep stopped early.

    Example:
        >>> found = tltf.lr_find(model, train, plot=None)
        >>> found.suggestion, found.min_lr_over_10
        (0.0012, 0.00085)
    """

    suggestion: float
    min_lr_over_10: float
    lrs: list[float] = field(repr=False)
    losses: list[float] = field(repr=False)
    smoothed: list[float] = field(repr=False)
    plot: str | None = None
    note: str = ""


def lr_find(
    model: Any,
    train: Any,
    *,
    min_lr: float = 1e-7,
    max_lr: float = 1.0,
    steps: int = 100,
    batch_size: int = 32,
    beta: float = 0.98,
    diverge: float = 4.0,
    plot: str | None = "lr_find.png",
    seed: int = 0,
) -> LRFindResult:
    """Sweeps the learning rate on `train` and suggests one; restores the model afterwards.

    Example:
        >>> tltf.set_freeze(model, "top:2")                    # the groups you will train
        >>> found = tltf.lr_find(model, train, plot="runs/lr_find.png")
        >>> tltf.fine_tune(model, train, lr=found.suggestion)

    The sweep trains what the model trains now (its freeze policy and per-group
    rates), with a fresh optimizer of the compiled one's type.

    Args:
        train: what `tltf.fine_tune` takes; it is repeated when shorter than `steps`.
        min_lr / max_lr: the range, swept exponentially.
        steps: steps of the sweep (up to a few hundred).
        beta: smoothing of the loss (exponential moving average, bias-corrected).
        diverge: stop once the smoothed loss exceeds this multiple of its minimum.
        plot: PNG file for the loss-vs-rate curve; None for no plot. Needs matplotlib
            (``pip install 'tltf[plots]'``); without it the result says so in `note`.
    """
    from tltf.batches import to_tf_dataset
    from tltf.compiling import compile_model

    if not 0 < min_lr < max_lr or steps < 5:
        raise SpecError(
            f"lr_find needs 0 < min_lr < max_lr and steps >= 5; got {min_lr}, {max_lr}, {steps}."
        )
    original = model.optimizer
    kind = getattr(original, "inner_optimizer", original)
    with model.distribute_strategy.scope():  # optimizers belong to the model's strategy
        sweep = type(kind).from_config({**kind.get_config(), "learning_rate": min_lr})
    saved = [w.numpy() for w in model.weights]
    ds = to_tf_dataset(train, model, batch_size, training=True, seed=seed).repeat()
    lrs = np.geomspace(min_lr, max_lr, steps).tolist()
    losses: list[float] = []
    smoothed: list[float] = []
    avg, note = 0.0, ""
    compile_model(model, optimizer=sweep)
    try:
        for lr, (x, y) in zip(lrs, ds, strict=False):
            sweep.learning_rate = lr
            loss = float(model.train_on_batch(x, y, return_dict=True)["loss"])
            losses.append(loss)
            avg = beta * avg + (1 - beta) * loss
            smoothed.append(avg / (1 - beta ** len(losses)))
            if not math.isfinite(loss) or smoothed[-1] > diverge * min(smoothed):
                note = f"stopped at step {len(losses)}: the loss diverged at lr {lr:.2g}"
                break
    finally:
        for w, value in zip(model.weights, saved, strict=True):
            w.assign(value)
        compile_model(model, optimizer=original)
    result = _suggest(lrs[: len(losses)], losses, smoothed, note)
    if plot:
        try:
            result.plot = _plot(result, plot)
        except TltfError as exc:  # no matplotlib
            result.note = f"{result.note}; no plot: {exc}" if result.note else f"no plot: {exc}"
    return result


def _suggest(
    lrs: list[float], losses: list[float], smoothed: list[float], note: str
) -> LRFindResult:
    """The steepest descent of the smoothed loss before its minimum, and min/10."""
    curve = np.asarray(smoothed)
    lowest = int(np.nanargmin(curve))
    min_over_10 = lrs[lowest] / 10
    skip = max(1, len(curve) // 10)  # the first steps barely move the loss
    if lowest - skip >= 3:
        slope = np.gradient(curve[skip : lowest + 1], np.log(lrs[skip : lowest + 1]))
        suggestion = lrs[skip + int(np.argmin(slope))]
    else:
        suggestion = min_over_10
    return LRFindResult(
        suggestion, min_over_10, list(lrs), list(losses), list(smoothed), None, note
    )


def _plot(result: LRFindResult, path: str) -> str:
    from tltf.plots import _figure, _save

    figure = _figure()
    figure.set_size_inches(6.5, 4.2)
    ax = figure.add_subplot(1, 1, 1)
    ax.plot(result.lrs, result.losses, color="lightgrey", linewidth=1, label="loss per step")
    ax.plot(result.lrs, result.smoothed, color="tab:blue", label="smoothed")
    ax.axvline(
        result.suggestion,
        color="tab:red",
        linestyle="--",
        label=f"suggestion {result.suggestion:.2g}",
    )
    ax.axvline(
        result.min_lr_over_10,
        color="tab:green",
        linestyle=":",
        label=f"min / 10: {result.min_lr_over_10:.2g}",
    )
    ax.set_xscale("log")
    finite = np.asarray(result.smoothed)[np.isfinite(result.smoothed)]
    ax.set_ylim(finite.min() * 0.9, max(np.percentile(finite, 95), finite.min() * 1.1) * 1.1)
    ax.set_xlabel("learning rate")
    ax.set_ylabel("training loss")
    ax.set_title("learning-rate range test")
    ax.grid(alpha=0.3)
    ax.legend()
    return _save(figure, path)
