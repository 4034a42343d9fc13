"""`tltf.rank` and ``tltf rank``: LogME against a direct computation, and the ranking API."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from cli_util import run_cli
from image_util import write_colours

import tltf
from tltf.ranking import knn_accuracy, logme

optimize = pytest.importorskip("scipy.optimize")


def direct_log_evidence(f: np.ndarray, y: np.ndarray, alpha: float, beta: float) -> float:
    """log p(y | F, α, β) of Bayesian linear regression, per example, from its definition:
    w ~ N(0, I/α), y ~ N(Fw, I/β), with A = αI + βFᵀF and m = βA⁻¹Fᵀy."""
    n, d = f.shape
    a = alpha * np.eye(d) + beta * f.T @ f
    m = beta * np.linalg.solve(a, f.T @ y)
    evidence = (
        d / 2 * np.log(alpha)
        + n / 2 * np.log(beta)
        - beta / 2 * np.sum((y - f @ m) ** 2)
        - alpha / 2 * m @ m
        - np.linalg.slogdet(a)[1] / 2
        - n / 2 * np.log(2 * np.pi)
    )
    return evidence / n


@pytest.mark.parametrize("n, d", [(40, 6), (5, 12)])  # the FᵀF and the SVD paths
def test_logme_is_the_maximized_evidence(n, d):
    rng = np.random.default_rng(0)
    f = rng.normal(size=(n, d))
    labels = np.arange(n) % 3
    expected = []
    for c in range(3):
        y = (labels == c).astype(float)
        best = optimize.minimize(
            lambda p, y=y: -direct_log_evidence(f, y, np.exp(p[0]), np.exp(p[1])),
            x0=[0.0, 0.0],
            method="Nelder-Mead",
            options={"xatol": 1e-8, "fatol": 1e-10, "maxiter": 4000},
        )
        expected.append(-best.fun)
    # (where a column has no linear signal the maximum is a supremum at α -> ∞, which the
    # fixed point approaches to within ~1e-5 per example)
    assert logme(f, labels) == pytest.approx(np.mean(expected), abs=1e-4)
    targets = rng.normal(size=(n, 2))
    regression = np.mean(
        [
            -optimize.minimize(
                lambda p, y=t: -direct_log_evidence(f, y, np.exp(p[0]), np.exp(p[1])),
                x0=[0.0, 0.0],
                method="Nelder-Mead",
                options={"xatol": 1e-8, "fatol": 1e-10, "maxiter": 4000},
            ).fun
            for t in targets.T
        ]
    )
    assert logme(f, targets, regression=True) == pytest.approx(regression, abs=1e-4)


def test_informative_features_score_higher_and_knn_sees_them():
    rng = np.random.default_rng(1)
    labels = np.repeat(np.arange(4), 25)
    signal = np.eye(4)[labels] * 3 + rng.normal(size=(100, 4))
    informative = np.concatenate([signal, rng.normal(size=(100, 12))], axis=1)
    noise = rng.normal(size=(100, 16))
    assert logme(informative, labels) > logme(noise, labels) + 0.1
    assert knn_accuracy(informative, labels) >= 0.9 > 0.5 > knn_accuracy(noise, labels)


@pytest.fixture(scope="module")
def colours(tmp_path_factory):
    """8 noisy 40x40 PNGs per colour class."""
    return write_colours(tmp_path_factory.mktemp("colours"), 8, (40, 40))


def _pixel_backbone(kind: str) -> tltf.Backbone:
    """A 32x32 image "backbone" with 6 features: ``colour``, the per-channel means (what the
    classes differ in), or ``noise``, four pixels less those means (the same in every class)."""
    import keras

    def features(t):
        mean = keras.ops.mean(t, axis=(1, 2))
        if kind == "colour":
            return mean
        corners = [t[:, 0, 0], t[:, 0, -1], t[:, -1, 0], t[:, -1, -1]]
        return keras.ops.concatenate([c - mean for c in corners], axis=-1)

    inputs = keras.Input((32, 32, 3), name="pixels")
    x = keras.layers.Lambda(features, name=f"{kind}_features")(inputs)
    x = keras.layers.Dense(6, name="mix", kernel_initializer="orthogonal")(x)
    return tltf.Backbone(
        spec=f"test:{kind}",
        modality="image",
        model=keras.Model(inputs, x),
        preprocessor=keras.layers.Identity(name="image_preprocessing"),
        groups={"mix": ["mix"]},
        feature_dim=6,
        input_spec={"shape": [32, 32, 3], "dtype": "float32"},
    )


def test_rank_orders_by_what_the_features_know_and_shares_the_feature_cache(
    colours, tmp_path, monkeypatch
):
    import tltf.feature_cache.store as store

    train = tltf.data.from_directory(str(colours), verbose=False)
    candidates = [_pixel_backbone("noise"), _pixel_backbone("colour")]
    png = tmp_path / "rank.png"
    result = tltf.rank(candidates, train, png=str(png), verbose=False)
    assert result.candidates == ["test:noise", "test:colour"]  # the order given
    assert result.scores[1] > result.scores[0] + 0.1 and result.best == "test:colour"
    assert result.order() == [1, 0] and result.feature_dims == [6, 6]
    assert result.knn[1] == 1.0 and result.knn[0] < 0.8
    assert all(s > 0 for s in result.spread) and not result.note
    assert result.table().splitlines()[1].split()[:2] == ["1", "test:colour"]
    assert png.stat().st_size > 1000
    extracted = []
    real = store._extract
    monkeypatch.setattr(store, "_extract", lambda *a, **k: extracted.append(1) or real(*a, **k))
    model = tltf.build(candidates[1], class_names=train.class_names, freeze="all")
    tltf.fine_tune(model, train, verbose=0)  # the head trains on the features rank cached
    assert not extracted


def test_rank_says_when_there_are_fewer_examples_than_feature_dimensions(colours):
    """24 examples of 1024-d features: every labelling fits exactly, and LogME's evidence
    then rewards a degenerate spectrum (random MobileNet features scored above ImageNet's
    on these colours); the result says so."""
    train = tltf.data.from_directory(str(colours), verbose=False)
    result = tltf.rank(
        ["keras:MobileNet"], train, weights=None, input_shape=(32, 32, 3), verbose=False
    )
    assert "24 examples" in result.note and "1024" in result.note
    assert result.note in result.table()


def test_rank_refuses_what_it_cannot_score(colours):
    with pytest.raises(tltf.DataError, match="at least one backbone"):
        tltf.rank([], tltf.data.from_directory(str(colours), verbose=False))
    with pytest.raises(tltf.DataError, match="tltf.data.Dataset"):
        tltf.rank(["keras:MobileNet"], [1, 2, 3])


def test_cli_rank_json_and_chart(colours, tmp_path):
    argv = ["rank", "--data", str(colours), "--backbone", "keras:MobileNetV2"]
    argv += ["--backbone", "keras:MobileNet", "--image-size", "32", "--option", "weights=null"]
    code, out, err = run_cli([*argv, "--json", "--png", str(tmp_path / "r.png")])
    assert code == 0, err
    report = json.loads(out)
    assert [c["backbone"] for c in report["candidates"]] == ["keras:MobileNetV2", "keras:MobileNet"]
    assert report["examples"] == 24 and os.path.isfile(tmp_path / "r.png")
    code, out, err = run_cli(argv)
    assert code == 0, err
    header = next(line for line in out.splitlines() if line.startswith("rank "))
    assert "LogME" in header and "k-NN acc" in header
