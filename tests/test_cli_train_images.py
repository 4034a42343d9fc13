"""`tltf train` on a folder of images, as a user runs it: from random weights, to an export."""

from __future__ import annotations

import contextlib
import io
import json
import math

import numpy as np
import pytest
import yaml
from PIL import Image

from tltf.cli import main

COLOURS = {"red": (200, 30, 30), "green": (30, 200, 30), "blue": (30, 30, 200)}


def _run(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def colours(tmp_path_factory):
    """12 noisy 32x32 PNGs per colour class."""
    root = tmp_path_factory.mktemp("colours")
    rng = np.random.default_rng(0)
    for name, colour in COLOURS.items():
        (root / name).mkdir()
        for i in range(12):
            pixels = np.clip(np.array(colour) + rng.normal(0, 25, (32, 32, 3)), 0, 255)
            Image.fromarray(pixels.astype("uint8")).save(root / name / f"{i}.png")
    return root


@pytest.fixture(scope="module")
def scratch_run(colours, tmp_path_factory):
    """``tltf train --weights random`` with the defaults: no epochs, freeze or BN given."""
    root = tmp_path_factory.mktemp("scratch")
    argv = ["train", "--backbone", "keras:MobileNetV2", "--weights", "random"]
    argv += ["--image-size", "32", "--data", str(colours), "--batch-size", "8"]
    argv += ["--run-dir", str(root / "run"), "--export-dir", str(root / "export")]
    code, out, err = _run(argv)
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
    history = json.loads((scratch_run["run_dir"] / "metrics.json").read_text())["history"]
    assert min(history["loss"]) < math.log(3) - 0.05  # frozen BN kept it at ln(3)
    assert "\r" not in out and "\x1b[" not in out  # not a terminal: one line per epoch
