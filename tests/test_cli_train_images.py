"""`tltf train` on a folder of images, as a user runs it: from random weights, to an export."""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest
import yaml
from cli_util import run_cli
from image_util import write_colours

import tltf


@pytest.fixture(scope="module")
def colours(tmp_path_factory):
    """12 noisy 32x32 PNGs per colour class."""
    return write_colours(tmp_path_factory.mktemp("colours"), 12)


@pytest.fixture(scope="module")
def scratch_run(colours, tmp_path_factory):
    """``tltf train --weights random`` with the defaults: no epochs, freeze or BN given."""
    root = tmp_path_factory.mktemp("scratch")
    argv = ["train", "--backbone", "keras:MobileNetV2", "--weights", "random"]
    argv += ["--image-size", "32", "--data", str(colours), "--batch-size", "8"]
    argv += ["--run-dir", str(root / "run"), "--export-dir", str(root / "export")]
    code, out, err = run_cli(argv)
    return {"code": code, "out": out, "err": err, "run_dir": root / "run", "root": root}


def test_image_run_exits_0_writes_metrics_and_predicts_through_the_export(scratch_run):
    assert scratch_run["code"] == 0, scratch_run["err"]
    metrics = json.loads((scratch_run["run_dir"] / "metrics.json").read_text())
    assert metrics["export"].endswith("1") and "accuracy" in metrics["held_out"]
    assert "SavedModel prediction:" in scratch_run["out"]


def test_random_weights_train_everything_with_bn_statistics_and_learn(scratch_run):
    saved = yaml.safe_load((scratch_run["run_dir"] / "config.yaml").read_text())
    assert saved["freeze"] == "none" and saved["bn"] == "auto"
    out = scratch_run["out"]
    assert "head only" not in out  # no head phase on random features
    assert "tltf: training all 7 groups and the head at lr 0.001, up to" in out
    model = keras.saving.load_model(scratch_run["run_dir"] / "model.keras")
    bns = [
        layer
        for layer in model.get_layer("backbone").layers
        if isinstance(layer, keras.layers.BatchNormalization)
    ]
    assert {layer.momentum for layer in bns} == {tltf.recipe.SCRATCH_BN_MOMENTUM}
    # the statistics trained (frozen ones stay at variance 1, and the loss at ln 3)
    assert all(abs(float(np.mean(layer.moving_variance)) - 1) > 1e-3 for layer in bns)
    assert "\r" not in out and "\x1b[" not in out  # not a terminal: one line per epoch


def test_task_b_trains_on_the_task_a_run_folder(scratch_run, colours):
    argv = ["train", "--backbone", f"file:{scratch_run['run_dir']}", "--data", str(colours)]
    argv += ["--freeze", "top:2", "--epochs", "1", "--freeze-epochs", "1", "--batch-size", "8"]
    argv += ["--run-dir", str(scratch_run["root"] / "B")]
    argv += ["--export-dir", str(scratch_run["root"] / "export")]
    code, out, err = run_cli(argv)
    assert code == 0, err
    assert "is a tltf model" in out and "tltf: training groups stage5, top and the head" in out
    saved = json.loads((scratch_run["root"] / "B" / "metrics.json").read_text())
    assert saved["backbone"] == f"file:{scratch_run['run_dir']}"
