"""The seeds' speech experiment: a wake word from k clips, by transfer from a speech network.

    apt-get install espeak-ng
    python benchmarks/bench_audio.py --json benchmarks/results/audio.json \\
        --png benchmarks/results/audio.png

Task B: "hey tiltef" against other speech and noise (`tools/make_wakeword_data.py`),
with k = 8, 32 and 128 wake-word clips and a fixed set of 256 "other" clips for
training; the test set (100 wake words, 300 others) is spoken by espeak-ng voices
that no training clip uses. Arms, each with tltf's defaults:

- ``scratch``: the same log-mel CNN with random weights, trained from scratch
  (``weights=None``: `tltf.recipe`'s scratch schedule);
- ``probe_lr``: scikit-learn's logistic regression on the frozen embedding, and
  ``probe_scaled`` the same after a `StandardScaler`;
- ``frozen``: ``speech:openwakeword`` with ``freeze="all"`` (features cached), and
  ``frozen_mean`` / ``frozen_flatten`` with each pooling of the embeddings;
- ``top2``: the same with its top two groups fine-tuned;
- ``frozen_mean_shift`` / ``top2_shift``: ``frozen_mean`` / ``top2`` trained on clips
  moved at random by up to 0.6 s in the window (``augment={"shift_seconds": 0.6}``), so
  that they find the word anywhere in it.

Reported: accuracy on the test clips as loaded (centred in the window, as in training)
and ``shifted`` (each test clip at a random place in the window, as in a stream), false
rejects (wake words missed) at the threshold that keeps false
accepts at or under one per hour of "other" test audio (the test holds minutes, so that
is the threshold with no false accept at all), and wall time. 3 seeds of the k clips.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import finish, parser  # noqa: E402

SPEC = "speech:openwakeword"
ARMS = (
    "scratch",
    "probe_lr",
    "probe_scaled",
    "frozen",
    "frozen_mean",
    "frozen_flatten",
    "top2",
    "frozen_mean_shift",
    "top2_shift",
)
SHIFT = {"shift_seconds": 0.6}  # the "light" augmentation, moving clips up to 0.6 s
WAKE = "hey_tiltef"


def load(folder: str):
    import tltf

    return (
        tltf.data.from_directory(os.path.join(folder, "train"), verbose=False),
        tltf.data.from_directory(os.path.join(folder, "test"), verbose=False),
    )


def place(wave, samples: int, rng):
    """`wave` at a random place in a window of `samples` (a random part of a longer one)."""
    import numpy as np

    if len(wave) >= samples:
        start = int(rng.integers(0, len(wave) - samples + 1))
        return wave[start : start + samples]
    out = np.zeros(samples, "float32")
    start = int(rng.integers(0, samples - len(wave) + 1))
    out[start : start + len(wave)] = wave
    return out


def scores(model, data, shifted: bool = False):
    """Wake-word probability of each clip of `data` (centred, or at random places)."""
    import numpy as np

    from tltf.modalities.audio_files import fit_length

    samples = int(model.input_shape[-1])
    rng = np.random.default_rng(7)
    x = np.stack([place(w, samples, rng) if shifted else fit_length(w, samples) for w in data.x])
    logits = model.predict(x, batch_size=64, verbose=0)
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    return (p / p.sum(axis=1, keepdims=True))[:, data.class_names.index(WAKE)]


def false_rejects(wake_scores, other_scores, other_hours: float) -> float:
    """Share of wake words below the threshold that allows one false accept per hour."""
    import numpy as np

    allowed = int(np.floor(other_hours))  # 0 when the test holds less than an hour
    ordered = np.sort(other_scores)[::-1]
    threshold = ordered[allowed] if allowed < len(ordered) else -np.inf
    return float(np.mean(wake_scores <= threshold))


def pick(train, k: int, seed: int):
    """`k` wake-word clips (seeded) and every "other" clip."""
    import numpy as np

    rng = np.random.default_rng(1000 + seed)
    wake = train.class_names.index(WAKE)
    pos = rng.permutation(np.flatnonzero(train.labels == wake))[:k]
    neg = np.flatnonzero(train.labels != wake)
    return train.subset(np.sort(np.concatenate([pos, neg])))


def run_arm(arm: str, sub, test, seed: int, cache: str) -> dict:
    import keras
    import numpy as np

    import tltf
    from tltf.feature_cache import cached_features

    keras.utils.set_random_seed(seed)
    started = time.perf_counter()
    if arm in ("probe_lr", "probe_scaled"):
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        model = tltf.build(SPEC, class_names=sub.class_names)
        feats = {}
        for name, data in (("train", sub), ("test", test)):
            entry = cached_features(model, data, cache_dir=cache, verbose=False)
            xs, ys = zip(*[(x.numpy(), y.numpy()) for x, y in entry.dataset(4096)], strict=True)
            feats[name] = np.concatenate(xs), np.concatenate(ys)
        steps = [StandardScaler()] if arm == "probe_scaled" else []
        lr = make_pipeline(*steps, LogisticRegression(max_iter=3000)).fit(*feats["train"])
        p = lr.predict_proba(feats["test"][0])[:, sub.class_names.index(WAKE)]
        accuracy = float(lr.score(*feats["test"]))
        shifted = float("nan")
    else:
        options = {
            "scratch": {"weights": None, "freeze": "none"},
            "frozen": {"freeze": "all"},
            "frozen_mean": {"freeze": "all", "pooling": "mean"},
            "frozen_flatten": {"freeze": "all", "pooling": "flatten"},
            "top2": {"freeze": "top:2"},
            "frozen_mean_shift": {"freeze": "all", "pooling": "mean", "augment": SHIFT},
            "top2_shift": {"freeze": "top:2", "augment": SHIFT},
        }[arm]
        model = tltf.build(SPEC, class_names=sub.class_names, **options)
        tltf.fine_tune(model, sub, seed=seed, cache_dir=cache, verbose=0)
        p = scores(model, test)
        truth = test.labels == test.class_names.index(WAKE)
        accuracy = float(np.mean((p > 0.5) == truth))
        shifted = float(np.mean((scores(model, test, shifted=True) > 0.5) == truth))
    seconds = time.perf_counter() - started
    is_wake = test.labels == test.class_names.index(WAKE)
    other_hours = sum(len(w) for w, o in zip(test.x, ~is_wake, strict=True) if o) / 16000 / 3600
    frr = false_rejects(p[is_wake], p[~is_wake], other_hours)
    return {"accuracy": accuracy, "shifted": shifted, "false_rejects": frr, "seconds": seconds}


def main() -> None:
    import numpy as np

    p = parser(__doc__.splitlines()[0])
    p.add_argument("--ks", default="8,32,128")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--arms", default=",".join(ARMS))
    p.add_argument("--png", help="write accuracy and false rejects against k here")
    p.add_argument(
        "--cache-dir", help="the feature cache to use and keep (default: a temporary one)"
    )
    p.add_argument(
        "--data", help="a folder made by tools/make_wakeword_data.py (default: make one)"
    )
    args = p.parse_args()
    ks = [int(k) for k in args.ks.split(",")]
    work = tempfile.mkdtemp(prefix="tltf-bench-audio-")
    try:
        folder = args.data
        if folder is None:
            folder = os.path.join(work, "data")
            sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(__file__)), "tools"))
            from make_wakeword_data import TEST_VARIANTS, TEST_VOICES, TRAIN_VARIANTS, TRAIN_VOICES
            from make_wakeword_data import make as speak_clips

            started = time.perf_counter()
            speak_clips(folder, "train", max(ks), TRAIN_VOICES, TRAIN_VARIANTS, seed=0, other=256)
            speak_clips(folder, "test", 100, TEST_VOICES, TEST_VARIANTS, seed=1, other=300)
            print(f"clips spoken in {time.perf_counter() - started:.0f} s -> {folder}", flush=True)
        cache = args.cache_dir or os.path.join(work, "cache")
        train, test = load(folder)
        print(f"train {len(train)} clips, test {len(test)} (held-out voices)", flush=True)
        cells: dict = {}
        for k in ks:
            for arm in args.arms.split(","):
                runs = []
                for seed in range(args.seeds):
                    runs.append(run_arm(arm, pick(train, k, seed), test, seed, cache))
                    r = runs[-1]
                    print(
                        f"  k={k:4d} {arm:14s} seed {seed}: accuracy {r['accuracy']:.3f}, "
                        f"shifted {r['shifted']:.3f}, "
                        f"false rejects {r['false_rejects']:.3f}, {r['seconds']:.1f} s",
                        flush=True,
                    )
                cells[f"{k}/{arm}"] = runs
        stats = {}
        print(f"\n| arm | {' | '.join(f'k = {k}' for k in ks)} |")
        print(f"|---|{'---|' * len(ks)}")
        for arm in args.arms.split(","):
            row = []
            for k in ks:
                runs = cells[f"{k}/{arm}"]
                acc = np.array([r["accuracy"] for r in runs])
                frr = np.array([r["false_rejects"] for r in runs])
                moved = np.array([r["shifted"] for r in runs])
                sec = np.mean([r["seconds"] for r in runs])
                se = acc.std(ddof=1) / np.sqrt(len(acc)) if len(acc) > 1 else 0.0
                stats[f"{k}/{arm}"] = {
                    "accuracy": float(acc.mean()),
                    "accuracy_se": float(se),
                    "shifted": float(moved.mean()),
                    "false_rejects": float(frr.mean()),
                    "seconds": float(sec),
                }
                row.append(
                    f"{acc.mean():.3f} ± {se:.3f}, shifted {moved.mean():.3f}, "
                    f"FRR {frr.mean():.2f} ({sec:.0f} s)"
                )
            print(f"| {arm} | {' | '.join(row)} |")
        if args.png:
            import matplotlib

            matplotlib.use("Agg")
            import matplotlib.pyplot as plt

            fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
            for arm in args.arms.split(","):
                s = [stats[f"{k}/{arm}"] for k in ks]
                axes[0].errorbar(
                    ks,
                    [c["accuracy"] for c in s],
                    [c["accuracy_se"] for c in s],
                    label=arm,
                    marker="o",
                    capsize=3,
                )
                axes[1].plot(ks, [c["false_rejects"] for c in s], label=arm, marker="o")
            for ax, title in zip(
                axes, ("test accuracy", "false rejects at 0 false accepts"), strict=True
            ):
                ax.set_xscale("log", base=2)
                ax.set_xlabel("wake-word clips (k)")
                ax.set_title(title)
            axes[0].legend()
            fig.tight_layout()
            fig.savefig(args.png, dpi=110)
        finish(
            "audio", {"cells": cells, "stats": stats, "train": len(train), "test": len(test)}, args
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
