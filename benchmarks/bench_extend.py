"""Adding classes to a trained model (`tltf.extend`): what happens to the old classes?

ImageNet MobileNet v1 at 128 px on ``openclipart/target``: a classifier trained with
the defaults (``freeze="all"``) on 4 classes (all their training images), then
extended with 2 new classes from 16 examples each, and fine-tuned with the defaults
on the old data and the new examples. Test accuracy on the old classes' test images
(6-way predictions) before and after, and on the new classes; beside it, the same
with the new rows started at zero (``extend`` without examples) and a 6-class model
trained on the same data from the start. 3 seeds (each its own 16 examples).

    python benchmarks/bench_extend.py --json benchmarks/results/extend.json    # ~3 min
"""

from __future__ import annotations

import os
import sys
import tempfile

from common import ROOT, SHARED_DATA, finish, parser

sys.path.insert(0, os.path.join(ROOT, "tools"))

TARGET = os.path.join(SHARED_DATA, "openclipart", "target")
NEW = ("tools", "transportation")
SHOTS = 16


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, default=3)
    args = p.parse_args()

    import keras
    import mobilenet_v1_weights as mw
    import numpy as np

    import tltf

    probe = tltf.data.from_directory(os.path.join(TARGET, "train"), verbose=False)
    old_names = [c for c in probe.class_names if c not in NEW]
    names = old_names + list(NEW)
    train = tltf.data.from_directory(
        os.path.join(TARGET, "train"), class_names=names, verbose=False
    )
    test = tltf.data.from_directory(os.path.join(TARGET, "test"), class_names=names, verbose=False)
    options = {
        "weights": mw.cached_weights(),
        "sha256": mw.WEIGHTS_SHA256,
        "input_shape": (128, 128, 3),
        "freeze": "all",
    }
    old_rows = np.flatnonzero(train.labels < len(old_names))
    old_test = test.subset(np.flatnonzero(test.labels < len(old_names)))
    new_test = test.subset(np.flatnonzero(test.labels >= len(old_names)))

    def accuracy(model, data, offset=0):
        predicted = model.predict(tltf.tflite.tensor_inputs(data, tltf.info(model)), verbose=0)
        return float(np.mean(predicted.argmax(1) == data.labels - offset))

    rows = []
    with tempfile.TemporaryDirectory() as cache:
        keras.utils.set_random_seed(0)
        four = tltf.build("keras:MobileNet", class_names=old_names, **options)
        old_only = train.subset(old_rows).with_class_names(old_names)
        tltf.fine_tune(four, old_only, cache_dir=cache, verbose=0)
        before = accuracy(four, old_test)
        for seed in range(args.seeds):
            rng = np.random.default_rng(seed)
            shots = np.concatenate(
                [
                    rng.permutation(np.flatnonzero(train.labels == names.index(c)))[:SHOTS]
                    for c in NEW
                ]
            )
            data = train.subset(np.sort(np.concatenate([old_rows, shots])))
            keras.utils.set_random_seed(seed)
            grown = tltf.extend(
                four, list(NEW), train.subset(shots), cache_dir=cache, verbose=False
            )
            tltf.fine_tune(grown, data, cache_dir=cache, seed=seed, verbose=0)
            keras.utils.set_random_seed(seed)
            zero = tltf.extend(four, list(NEW))  # zero rows: no imprinting
            tltf.fine_tune(zero, data, cache_dir=cache, seed=seed, verbose=0)
            keras.utils.set_random_seed(seed)
            fresh = tltf.build("keras:MobileNet", class_names=names, **options)
            tltf.fine_tune(fresh, data, cache_dir=cache, seed=seed, verbose=0)
            row = {
                "seed": seed,
                "old_before": before,
                "old_after": accuracy(grown, old_test),
                "new_after": accuracy(grown, new_test),
                "old_zero": accuracy(zero, old_test),
                "new_zero": accuracy(zero, new_test),
                "old_fresh": accuracy(fresh, old_test),
                "new_fresh": accuracy(fresh, new_test),
            }
            rows.append(row)
            print({k: round(v, 3) for k, v in row.items()}, flush=True)
    mean = {k: float(np.mean([r[k] for r in rows])) for k in rows[0] if k != "seed"}
    drop = [r["old_before"] - r["old_after"] for r in rows]
    print(
        f"old classes {mean['old_before']:.3f} -> {mean['old_after']:.3f} after extend + "
        f"fine_tune (drop {np.mean(drop):+.3f}, per seed {[round(d, 3) for d in drop]}); new "
        f"classes {mean['new_after']:.3f}; zero rows instead of imprinted: old {mean['old_zero']:.3f}, "
        f"new {mean['new_zero']:.3f}; a fresh 6-class head: old {mean['old_fresh']:.3f}, "
        f"new {mean['new_fresh']:.3f}"
    )
    finish("extend", {"rows": rows, "mean": mean, "old_names": old_names, "new": NEW}, args)


if __name__ == "__main__":
    main()
