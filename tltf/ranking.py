"""`rank`: which pretrained backbone to use, measured on your data before any training (LogME).

LogME (You et al., ICML 2021) fits, for each class column (or regression target),
a Bayesian linear regression on the frozen pooled features and takes its
maximized log evidence per example: how well a linear head on these features can
explain the labels, with the weight prior and noise level chosen by the data, not
by hand. It has no hyperparameters and needs one SVD (of FᵀF when N > D) per
backbone, then a few fixed-point steps per class:

    γ = Σ σᵢ / (σᵢ + α/β),  α = γ / ‖m‖²,  β = (N − γ) / ‖Fm − y‖²

In a public reproduction (thuml/Transfer-Learning-Library) its ranking agreed
with fine-tuned accuracy better than LEEP or NCE (weighted Kendall τ 0.665 over
8 data sets x 10 ImageNet models); rankings of close candidates are unstable
(Agostinelli et al., ECCV 2022), so `rank` reports a bootstrap spread, and a
k-nearest-neighbour accuracy on a held-out split beside the score.

    >>> result = tltf.rank(["keras:MobileNet", "keras:EfficientNetV2B0"], train)
    >>> print(result.table())
    >>> result.scores[0]          # candidate 0's LogME, in the order given

The features come from the feature cache (`tltf.feature_cache`): a backbone's
features, once extracted, serve both `rank` and the head phase of `fine_tune`.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from tltf.errors import DataError

_TINY = 1e-12  # floor of ‖m‖² and ‖Fm − y‖² (features at unit scale)
BOOTSTRAP = 20  # resamples of the examples for a score's spread
KNN = 5  # neighbours of the held-out accuracy
HOLDOUT = 0.2  # share of each class held out for it


def logme(features: np.ndarray, targets: np.ndarray, *, regression: bool = False) -> float:
    """LogME of `features` ``[N, D]`` for `targets`: mean log evidence per example (higher is better).

    Classification: `targets` are class indices ``[N]``, one one-hot column per class.
    Regression: real targets ``[N]`` or ``[N, k]``, one column each. The score is
    the mean over the columns.

    Example:
        >>> logme(features, labels)
        -0.61
    """
    f = np.asarray(features, dtype=np.float64)
    if f.ndim != 2 or len(f) < 2:
        raise DataError(f"logme: features of shape {f.shape}; need [N, D] with N >= 2.")
    y = np.asarray(targets)
    if regression:
        columns = y.reshape(len(y), -1).astype(np.float64)
    else:
        y = y.astype(np.int64)
        columns = (y[:, None] == np.unique(y)[None, :]).astype(np.float64)
    if len(columns) != len(f):
        raise DataError(f"logme: {len(f)} feature rows but {len(columns)} targets.")
    # LogME is invariant to the features' scale (it rescales the prior); at unit RMS row
    # norm the fixed point's arithmetic stays in range (random networks give ~1e-20)
    f = f / max(float(np.sqrt(np.mean(np.sum(f**2, axis=1)))), 1e-300)
    n, d = f.shape
    if n > d:  # the eigenvectors of FᵀF (D x D) give Uᵀy without the N x N factor
        sigma, v = np.linalg.eigh(f.T @ f)
        keep = sigma > 1e-10 * max(sigma.max(), 1e-300)
        sigma, v = sigma[keep], v[:, keep]
        project = (columns.T @ f @ v) / np.sqrt(sigma)  # [k, r]: Uᵀy per column
    else:
        u, s, _ = np.linalg.svd(f, full_matrices=False)
        sigma, project = s**2, columns.T @ u
    pairs = zip(project, columns.T, strict=True)
    return float(np.mean([_evidence(x, col, sigma, n, d) for x, col in pairs]))


def _evidence(x: np.ndarray, y: np.ndarray, sigma: np.ndarray, n: int, d: int) -> float:
    """Maximized log evidence per example of one target column (x = Uᵀy)."""
    x2 = x**2
    rest = max(float(y @ y - x2.sum()), 0.0)  # ‖y‖² outside the features' span
    alpha, beta = 1.0, 1.0
    for _ in range(1000):  # a few steps usually; a column with no linear signal lets α grow
        t = alpha / beta
        gamma = float((sigma / (sigma + t)).sum())
        m2 = float((sigma * x2 / (sigma + t) ** 2).sum())  # ‖m‖²
        res2 = float((x2 / (1 + sigma / t) ** 2).sum()) + rest  # ‖Fm − y‖²
        alpha, beta = gamma / max(m2, _TINY), (n - gamma) / max(res2, _TINY)
        if abs(alpha / beta - t) / t < 1e-7:
            break
    t = alpha / beta  # the evidence at the fixed point
    m2 = float((sigma * x2 / (sigma + t) ** 2).sum())
    res2 = float((x2 / (1 + sigma / t) ** 2).sum()) + rest
    log_det = float(np.log(alpha + beta * sigma).sum()) + (d - len(sigma)) * np.log(alpha)
    evidence = (
        d / 2 * np.log(alpha)
        + n / 2 * np.log(beta)
        - log_det / 2
        - beta / 2 * res2
        - alpha / 2 * m2
        - n / 2 * np.log(2 * np.pi)
    )
    return float(evidence / n)


def knn_accuracy(
    features: np.ndarray, labels: np.ndarray, *, holdout: float = HOLDOUT, seed: int = 0
) -> float:
    """Accuracy of a cosine `KNN`-nearest-neighbour vote on a stratified held-out split.

    Example:
        >>> knn_accuracy(features, labels)
        0.83
    """
    rng = np.random.default_rng(seed)
    labels = np.asarray(labels).astype(np.int64)
    test = np.concatenate(
        [
            rng.permutation(rows)[: max(1, int(round(holdout * len(rows))))]
            for rows in (np.flatnonzero(labels == c) for c in np.unique(labels))
            if len(rows) > 1
        ]
    )
    train = np.setdiff1d(np.arange(len(labels)), test)
    if not len(test) or not len(train):
        raise DataError("knn_accuracy needs at least 2 examples of some class.")
    unit = features / np.maximum(np.linalg.norm(features, axis=1, keepdims=True), 1e-12)
    similar = unit[test] @ unit[train].T
    k = min(KNN, len(train))
    nearest = np.argsort(-similar, axis=1)[:, :k]
    votes = np.zeros((len(test), int(labels.max()) + 1))
    np.add.at(votes, (np.arange(len(test))[:, None], labels[train][nearest]), 1.0)
    return float(np.mean(votes.argmax(1) == labels[test]))


@dataclass
class Ranking:
    """What `rank` measured, one entry per candidate in the order given.

    ``scores[i]`` is candidate i's LogME (higher is better), ``spread[i]`` its standard
    deviation over `BOOTSTRAP` resamples of the examples, ``knn[i]`` the held-out
    k-NN accuracy (None for regression), ``seconds[i]`` the feature extraction and
    scoring time (near 0 when the features were cached).

    Example:
        >>> result = tltf.rank(["keras:MobileNet", "keras:MobileNetV2"], train)
        >>> result.best, result.order()
        ('keras:MobileNet', [0, 1])
    """

    candidates: list[str]
    scores: list[float]
    spread: list[float]
    knn: list[float | None]
    feature_dims: list[int]
    seconds: list[float]
    examples: int = 0
    task: str = "classification"
    note: str = ""

    def order(self) -> list[int]:
        """Candidate indices, best LogME first.

        Example:
            >>> tltf.rank(["keras:MobileNetV2", "keras:MobileNet"], train).order()
            [1, 0]
        """
        return sorted(range(len(self.scores)), key=lambda i: -self.scores[i])

    @property
    def best(self) -> str:
        """The candidate with the highest LogME.

        Example:
            >>> tltf.rank(["keras:MobileNetV2", "keras:MobileNet"], train).best
            'keras:MobileNet'
        """
        return self.candidates[self.order()[0]]

    def table(self) -> str:
        """The candidates as a text table, best first.

        Example:
            >>> print(tltf.rank(candidates, train).table())
            rank  backbone          LogME            k-NN acc  dim   time
            1     keras:MobileNet   0.412 ± 0.011    0.845     1024  12.3 s
        """
        width = max(8, *(len(c) for c in self.candidates))
        lines = [f"{'rank':<5} {'backbone':<{width}}  {'LogME':<16} {'k-NN acc':<9} dim    time"]
        for place, i in enumerate(self.order(), 1):
            knn = "-" if self.knn[i] is None else f"{self.knn[i]:.3f}"
            score = f"{self.scores[i]:.3f} ± {self.spread[i]:.3f}"
            lines.append(
                f"{place:<5} {self.candidates[i]:<{width}}  {score:<16} {knn:<9} "
                f"{self.feature_dims[i]:<6} {self.seconds[i]:.1f} s"
            )
        return "\n".join(lines + ([f"note: {self.note}"] if self.note else []))

    def as_dict(self) -> dict:
        """JSON-ready: each candidate's figures, in the order given (``tltf rank --json``).

        Example:
            >>> json.dumps(tltf.rank(candidates, train).as_dict())
        """
        return {
            "examples": self.examples,
            "task": self.task,
            "note": self.note,
            "candidates": [
                {
                    "backbone": c,
                    "logme": s,
                    "logme_spread": sp,
                    "knn_accuracy": k,
                    "feature_dim": d,
                    "seconds": t,
                }
                for c, s, sp, k, d, t in zip(
                    self.candidates,
                    self.scores,
                    self.spread,
                    self.knn,
                    self.feature_dims,
                    self.seconds,
                    strict=True,
                )
            ],
        }


def rank(
    candidates: Sequence[Any],
    train: Any,
    *,
    batch_size: int = 32,
    cache_dir: str | None = None,
    png: str | None = None,
    seed: int = 0,
    verbose: bool = True,
    **options: Any,
) -> Ranking:
    """Scores each candidate backbone on `train` with LogME and a k-NN probe; no training.

    Example:
        >>> result = tltf.rank(["keras:MobileNet", "keras:MobileNetV2"], train,
        ...                    input_shape=(128, 128, 3), png="rank.png")
        >>> print(result.table())

    Args:
        candidates: backbone specs or `tltf.Backbone` objects, as `tltf.build` takes.
        train: a labelled `tltf.data.Dataset` (class labels, or real targets for
            regression).
        batch_size: of the feature extraction.
        cache_dir: of the feature cache (`tltf.feature_cache`); ``fine_tune`` with the
            same backbone and data reuses the features.
        png: also draw the scores as a bar chart there.
        seed: of the bootstrap and the k-NN split.
        verbose: print the extraction progress and the table.
        **options: passed to `tltf.build` for every spec (``input_shape=``,
            ``sequence_length=``, ``weights=``).

    Returns:
        A `Ranking`, its lists in the order of `candidates`.
    """
    import tltf
    from tltf.feature_cache import cached_features

    if not candidates:
        raise DataError("rank: give at least one backbone.")
    hint = getattr(train, "task_hint", None)
    if hint not in ("classification", "regression"):
        raise DataError(
            f"rank takes a tltf.data.Dataset of class labels or regression targets; got "
            f"{type(train).__name__}" + (f" ({hint})" if hint else "") + "."
        )
    regression = hint == "regression"
    names, scores, spread, knn, dims, seconds = [], [], [], [], [], []
    rng = np.random.default_rng(seed)
    resamples = [rng.integers(0, len(train), len(train)) for _ in range(BOOTSTRAP)]
    for candidate in candidates:
        name = candidate if isinstance(candidate, str) else candidate.spec
        start = time.perf_counter()
        model = tltf.build(
            candidate,
            class_names=train.class_names,
            task="regression" if regression else "classification",
            freeze="all",
            **({} if not isinstance(candidate, str) else options),
        )
        features, targets = cached_features(
            model,
            train,
            batch_size=batch_size,
            cache_dir=cache_dir,
            name="training",
            verbose=verbose,
        ).arrays()
        names.append(name)
        scores.append(logme(features, targets, regression=regression))
        spread.append(
            float(
                np.std([logme(features[r], targets[r], regression=regression) for r in resamples])
            )
        )
        knn.append(None if regression else knn_accuracy(features, targets, seed=seed))
        dims.append(int(features.shape[1]))
        seconds.append(time.perf_counter() - start)
    wide = max(dims)
    note = (
        f"{len(train)} examples and up to {wide} feature dimensions: with no more examples "
        "than dimensions every labelling fits exactly, and LogME can favour degenerate "
        "features; rank on more examples, or trust the k-NN accuracy."
        if len(train) <= wide
        else ""
    )
    result = Ranking(
        names,
        scores,
        spread,
        knn,
        dims,
        seconds,
        examples=len(train),
        task="regression" if regression else "classification",
        note=note,
    )
    if verbose:
        print(result.table(), flush=True)
    if png:
        from tltf import plots

        plots.ranking(result, png)
    return result
