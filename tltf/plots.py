"""PNG plots of a run: training curves and the confusion matrix.

They use matplotlib's object API (no pyplot), so they change no global backend
state and work the same in scripts, servers and notebooks. matplotlib is an
optional dependency: ``pip install 'tltf[plots]'``.

Example:
    >>> from tltf import plots
    >>> plots.training_curves(history.history, "runs/topics/training_curves.png", phase_starts=[1])
    >>> plots.confusion_matrix(tltf.evaluate(model, test), "runs/topics/confusion_matrix.png")
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from tltf.errors import TltfError


def training_curves(
    history: dict[str, Sequence[float]],
    path: str,
    *,
    phase_starts: Sequence[int] = (),
    title: str | None = None,
    num_classes: int | None = None,
) -> str:
    """Plots each metric of a Keras history per epoch, training beside validation; returns `path`.

    Every y-axis starts at 0, so a flat curve looks flat; with `num_classes`, a grey
    line marks chance (ln C for the loss, 1 / C for accuracy), so a run that is not
    learning shows as one that sits on it.

    Example:
        >>> h = tltf.fine_tune(model, train, validation_data=val, epochs=3)
        >>> plots.training_curves(h.history, "curves.png", phase_starts=[1])

    Args:
        history: ``{"loss": [...], "val_loss": [...], "accuracy": [...], ...}``.
        path: the PNG file to write.
        phase_starts: epoch indices (0-based) where a new phase begins; each gets a
            dashed line, e.g. ``[1]`` where `fine_tune` opens the backbone after one
            head-only epoch.
        title: above the plots.
        num_classes: classes of a single-label classifier, for the chance lines.
    """
    metrics = sorted(
        (k for k in history if not k.startswith("val_") and k != "learning_rate"),
        key=lambda k: k != "loss",
    )
    if not metrics or not any(len(history[k]) for k in metrics):
        raise TltfError("training_curves: the history has no epochs to plot.")
    figure = _figure()
    cols = min(2, len(metrics))
    rows = math.ceil(len(metrics) / cols)
    figure.set_size_inches(5.5 * cols, 3.8 * rows)
    for i, key in enumerate(metrics):
        ax = figure.add_subplot(rows, cols, i + 1)
        for name, style in ((key, "o-"), (f"val_{key}", "s--")):
            values = history.get(name)
            if values:
                epochs = np.arange(1, len(values) + 1)
                ax.plot(epochs, values, style, label="validation" if name != key else "training")
        for start in phase_starts:
            ax.axvline(start + 0.5, color="grey", linestyle=":", linewidth=1)
        chance = _chance(key, num_classes)
        if chance is not None:
            ax.axhline(chance, color="grey", linewidth=1, label="chance")
        ax.set_ylim(bottom=0)
        ax.set_xlabel("epoch")
        ax.set_ylabel(key)
        ax.set_title(key)
        ax.grid(alpha=0.3)
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.legend()
    if phase_starts:
        figure.text(0.01, 0.01, "dotted line: backbone unfrozen", fontsize=8, color="grey")
    if title:
        figure.suptitle(title)
    return _save(figure, path)


def _chance(metric: str, num_classes: int | None) -> float | None:
    """A metric's value for a model that has learned nothing (uniform over the classes)."""
    if not num_classes or num_classes < 2:
        return None
    return {"loss": math.log(num_classes), "accuracy": 1 / num_classes}.get(metric)


def confusion_matrix(report: Any, path: str, *, title: str | None = None) -> str:
    """Plots a `tltf.evaluation.ClassificationReport`'s confusion matrix; returns `path`.

    Rows are true classes, columns predicted ones; each cell shows its count, and
    its colour the share of that true class (so rare classes are as readable as
    common ones).

    Example:
        >>> plots.confusion_matrix(tltf.evaluate(model, test), "confusion.png")
    """
    counts = np.asarray(report.confusion)
    names = list(report.class_names)
    n = len(names)
    totals = counts.sum(axis=1, keepdims=True)
    share = np.divide(counts, totals, out=np.zeros(counts.shape), where=totals > 0)
    figure = _figure()
    side = max(4.5, 0.55 * n + 2.5)
    figure.set_size_inches(side + 1.2, side)
    ax = figure.add_subplot(1, 1, 1)
    image = ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    figure.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="share of the true class")
    ax.set_xticks(range(n), labels=names, rotation=45, ha="right")
    ax.set_yticks(range(n), labels=names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    font = 9 if n <= 12 else 6
    for i in range(n):
        for j in range(n):
            if counts[i, j]:
                colour = "white" if share[i, j] > 0.5 else "black"
                ax.text(
                    j, i, str(counts[i, j]), ha="center", va="center", color=colour, fontsize=font
                )
    accuracy = f"accuracy {report.accuracy:.3f} on {int(counts.sum())} examples"
    ax.set_title(f"{title}\n{accuracy}" if title else accuracy)
    return _save(figure, path)


def ranking(result: Any, path: str, *, title: str | None = None) -> str:
    """Plots a `tltf.ranking.Ranking` as bars, best first: LogME with its bootstrap spread,
    and the k-NN accuracy beside it; returns `path`.

    Example:
        >>> plots.ranking(tltf.rank(["keras:MobileNet", "keras:MobileNetV2"], train), "rank.png")
    """
    order = result.order()
    names = [result.candidates[i] for i in order]
    figure = _figure()
    has_knn = any(k is not None for k in result.knn)
    figure.set_size_inches(5.5 * (2 if has_knn else 1), max(2.5, 0.5 * len(names) + 1.5))
    ax = figure.add_subplot(1, 2 if has_knn else 1, 1)
    ax.barh(
        range(len(names)),
        [result.scores[i] for i in order],
        xerr=[result.spread[i] for i in order],
        color="tab:blue",
    )
    ax.set_yticks(range(len(names)), labels=names)
    ax.invert_yaxis()
    ax.set_xlabel("LogME (log evidence per example; higher is better)")
    if has_knn:
        knn = figure.add_subplot(1, 2, 2)
        knn.barh(range(len(names)), [result.knn[i] or 0.0 for i in order], color="tab:orange")
        knn.set_yticks(range(len(names)), labels=[""] * len(names))
        knn.invert_yaxis()
        knn.set_xlim(0, 1)
        knn.set_xlabel("k-NN accuracy on a held-out split")
    figure.suptitle(title or f"backbones on {result.examples} examples")
    return _save(figure, path)


def _figure() -> Any:
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise TltfError("Plots need matplotlib: pip install 'tltf[plots]'.") from None
    return Figure()


def _save(figure: Any, path: str) -> str:
    folder = os.path.dirname(path)
    if folder:
        os.makedirs(folder, exist_ok=True)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    return path
