"""Does `tltf.rank` (LogME) order backbones as training them does? Kendall's τ on real data.

For each data set, candidates of known different quality, scored by `tltf.rank` on
k training examples per class, then trained with tltf's defaults on the same
examples (``freeze="all"``, what `tltf.recommend` advises under 200 per class) and
tested on the held-out test set. Kendall's τ between the LogME scores (and the
k-NN accuracies) and the test accuracies, per seed (each seed its own subset):

- image, ``openclipart/target`` (175 test images): ImageNet MobileNet v1 at 128, 96,
  64 and 32 px, and MobileNet v1 with random weights at 128 px;
- text, ``debian-topics`` (600 test rows): all-MiniLM-L6-v2 at 128 and at 16 tokens,
  and a 2-layer BERT with random weights (MiniLM's vocabulary).

    python benchmarks/bench_rank.py --json benchmarks/results/rank.json     # ~10 min
"""

from __future__ import annotations

import os
import sys
import tempfile
import time

from common import ROOT, SHARED_DATA, finish, parser

sys.path.insert(0, os.path.join(ROOT, "tools"))
sys.path.insert(0, os.path.join(ROOT, "tests"))

IMAGE = os.path.join(SHARED_DATA, "openclipart", "target")


def _subset(data, k: int, seed: int):
    import numpy as np

    rng = np.random.default_rng(seed)
    rows = [
        rng.permutation(np.flatnonzero(data.labels == c))[:k] for c in range(len(data.class_names))
    ]
    return data.subset(np.sort(np.concatenate(rows)))


def image_candidates() -> tuple[dict, object, object]:
    import mobilenet_v1_weights as mw

    import tltf

    weights = mw.cached_weights()
    train = tltf.data.from_directory(os.path.join(IMAGE, "train"), verbose=False)
    test = tltf.data.from_directory(
        os.path.join(IMAGE, "test"), class_names=train.class_names, verbose=False
    )
    candidates = {
        f"MobileNet v1 ImageNet {s}px": lambda s=s: tltf.load_backbone(
            "keras:MobileNet", weights=weights, sha256=mw.WEIGHTS_SHA256, input_shape=(s, s, 3)
        )
        for s in (128, 96, 64, 32)
    }
    candidates["MobileNet v1 random 128px"] = lambda: tltf.load_backbone(
        "keras:MobileNet", weights=None, input_shape=(128, 128, 3)
    )
    return candidates, train, test


def text_candidates(folder: str) -> tuple[dict, object, object]:
    import keras
    import keras_hub
    from minilm_util import minilm_and_example

    import tltf

    minilm, train, test = minilm_and_example()
    random_bert = os.path.join(folder, "random_bert")
    keras.utils.set_random_seed(0)
    tokenizer = keras_hub.models.BertTokenizer.from_preset(minilm)
    keras_hub.models.BertBackbone(
        vocabulary_size=tokenizer.vocabulary_size(),
        num_layers=2,
        num_heads=2,
        hidden_dim=64,
        intermediate_dim=128,
        max_sequence_length=512,
    ).save_to_preset(random_bert)
    tokenizer.save_to_preset(random_bert)
    candidates = {
        "MiniLM 128 tokens": lambda: tltf.load_backbone(f"keras_hub:{minilm}", sequence_length=128),
        "MiniLM 16 tokens": lambda: tltf.load_backbone(f"keras_hub:{minilm}", sequence_length=16),
        "BERT random 128 tokens": lambda: tltf.load_backbone(
            f"keras_hub:{random_bert}", sequence_length=128
        ),
    }
    return candidates, train, test


def run(name: str, candidates: dict, full, test, k: int, seeds: int, cache: str) -> dict:
    import keras
    import numpy as np
    from scipy.stats import kendalltau

    import tltf

    backbones = {label: make() for label, make in candidates.items()}
    per_seed = []
    for seed in range(seeds):
        train = _subset(full, k, seed)
        start = time.perf_counter()
        ranking = tltf.rank(list(backbones.values()), train, cache_dir=cache, verbose=False)
        rank_s = time.perf_counter() - start
        accuracy = []
        for backbone in backbones.values():
            keras.utils.set_random_seed(seed)
            model = tltf.build(backbone, class_names=train.class_names, freeze="all")
            tltf.fine_tune(model, train, cache_dir=cache, seed=seed, verbose=0)
            accuracy.append(tltf.evaluate(model, test).accuracy)
        row = {
            "seed": seed,
            "logme": ranking.scores,
            "logme_spread": ranking.spread,
            "knn": ranking.knn,
            "accuracy": accuracy,
            "tau_logme": float(kendalltau(ranking.scores, accuracy).statistic),
            "tau_knn": float(kendalltau(ranking.knn, accuracy).statistic),
            "rank_seconds": rank_s,
        }
        per_seed.append(row)
        print(
            f"{name} k={k} seed {seed}: tau LogME {row['tau_logme']:+.3f}, k-NN "
            f"{row['tau_knn']:+.3f} ({rank_s:.0f} s to rank)",
            flush=True,
        )
        for label, s, sp, kn, acc in zip(
            backbones, ranking.scores, ranking.spread, ranking.knn, accuracy, strict=True
        ):
            print(f"  {label:28s} LogME {s:+.3f} ± {sp:.3f}  k-NN {kn:.3f}  trained {acc:.3f}")
    return {
        "candidates": list(backbones),
        "k": k,
        "seeds": per_seed,
        "tau_logme": float(np.mean([r["tau_logme"] for r in per_seed])),
        "tau_knn": float(np.mean([r["tau_knn"] for r in per_seed])),
    }


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--data", default="image,text")
    p.add_argument("--k", type=int, default=32, help="training examples per class")
    p.add_argument("--seeds", type=int, default=3)
    args = p.parse_args()
    results = {}
    with tempfile.TemporaryDirectory() as folder:
        for name in args.data.split(","):
            candidates, full, test = (
                image_candidates() if name == "image" else text_candidates(folder)
            )
            results[name] = run(name, candidates, full, test, args.k, args.seeds, folder)
            print(
                f"{name}: mean Kendall tau, LogME {results[name]['tau_logme']:+.3f}, "
                f"k-NN {results[name]['tau_knn']:+.3f}",
                flush=True,
            )
    finish("rank", results, args)


if __name__ == "__main__":
    main()
