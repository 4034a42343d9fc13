"""tltf.plots: curves that show whether a run learns."""

from __future__ import annotations

import math

from tltf import plots


def test_training_curves_start_at_zero_and_mark_chance(tmp_path, monkeypatch):
    figures = []
    monkeypatch.setattr(plots, "_save", lambda figure, path: figures.append(figure) or path)
    flat = {"loss": [1.7918, 1.7917, 1.7918], "accuracy": [0.17, 0.16, 0.17]}
    plots.training_curves(flat, str(tmp_path / "c.png"), num_classes=6)
    loss_ax, acc_ax = figures[0].axes
    assert loss_ax.get_ylim()[0] == 0 and acc_ax.get_ylim()[0] == 0  # a flat run looks flat
    chance = {ax.get_title(): ax.lines[-1].get_ydata()[0] for ax in (loss_ax, acc_ax)}
    assert math.isclose(chance["loss"], math.log(6)) and math.isclose(chance["accuracy"], 1 / 6)
