"""TFLite on real weights: the float SavedModel against float, dynamic, float16 and int8 files.

ImageNet MobileNet v1 1.0 (``tools/mobilenet_v1_weights.py``) at 128 px on
``shared/data/openclipart/target``: ``build(freeze="all")`` and ``fine_tune`` with
the defaults on the whole training set (950 images), then ``tltf.export`` with each
``quantize`` mode (int8 calibrated on 200 training images, uint8 in and out).
For each file: its size, batch-1 latency on the CPU (median over the test images
after a warm-up; the SavedModel's ``serving_tensor`` signature for the float
reference), accuracy on the 175 test images, and how often its top-1 class is the
SavedModel's. ``--seeds`` trains that many heads (each seed its own export), so the
accuracy differences come with a spread.

    python benchmarks/bench_tflite.py --json benchmarks/results/tflite.json    # ~5 min
"""

from __future__ import annotations

import os
import sys
import tempfile
import time

from common import ROOT, SHARED_DATA, finish, parser

sys.path.insert(0, os.path.join(ROOT, "tools"))

TARGET = os.path.join(SHARED_DATA, "openclipart", "target")
IMAGE_SIZE = 128
MODES = ("dynamic", "float16", "int8")


def _latency(fn, xs) -> float:
    import numpy as np

    for x in xs[:5]:
        fn(x[None])
    times = []
    for x in xs:
        start = time.perf_counter()
        fn(x[None])
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def run_seed(seed: int, train, test, weights: str, folder: str) -> dict:
    import keras
    import mobilenet_v1_weights as mw
    import numpy as np
    import tensorflow as tf

    import tltf
    from tltf.tflite import TFLiteModel, tensor_inputs

    keras.utils.set_random_seed(seed)
    model = tltf.build(
        "keras:MobileNet",
        weights=weights,
        sha256=mw.WEIGHTS_SHA256,
        input_shape=(IMAGE_SIZE, IMAGE_SIZE, 3),
        class_names=train.class_names,
        freeze="all",
    )
    tltf.fine_tune(model, train, seed=seed, verbose=0)
    pixels = tensor_inputs(test, tltf.info(model))
    rows = {}
    saved = tltf.export(model, os.path.join(folder, f"seed{seed}"))
    serve = tf.saved_model.load(saved).signatures["serving_tensor"]
    reference = serve(images=tf.constant(pixels))["scores"].numpy().argmax(-1)
    size = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(saved) for f in fs)
    rows["saved_model"] = {
        "bytes": size,
        "latency_ms": 1e3 * _latency(lambda x: serve(images=tf.constant(x)), pixels),
        "accuracy": float(np.mean(reference == test.labels)),
        "agreement": 1.0,
    }
    for mode in ("float", *MODES):
        start = time.perf_counter()
        path = tltf.export(
            model,
            os.path.join(folder, f"seed{seed}"),
            formats=["saved_model", "tflite"],
            quantize=mode if mode != "float" else False,
            representative_data=train,
        )
        export_s = time.perf_counter() - start
        file = os.path.join(path, "tflite", "model.tflite")
        lite = TFLiteModel(file)
        predicted = lite.scores(pixels).argmax(-1)
        rows[f"tflite_{mode}"] = {
            "bytes": os.path.getsize(file),
            "latency_ms": 1e3 * _latency(lite.scores, pixels),
            "accuracy": float(np.mean(predicted == test.labels)),
            "agreement": float(np.mean(predicted == reference)),
            "export_s": export_s,
        }
        print(f"seed {seed} {mode:8s} {rows[f'tflite_{mode}']}", flush=True)
    return rows


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, default=3)
    args = p.parse_args()

    import mobilenet_v1_weights as mw
    import numpy as np

    import tltf

    weights = mw.cached_weights()
    train = tltf.data.from_directory(os.path.join(TARGET, "train"), verbose=False)
    test = tltf.data.from_directory(
        os.path.join(TARGET, "test"), class_names=train.class_names, verbose=False
    )
    runs = []
    with tempfile.TemporaryDirectory() as folder:
        for seed in range(args.seeds):
            runs.append(run_seed(seed, train, test, weights, folder))
    table = {}
    print(
        f"\n{'file':18s} {'size MB':>8s} {'latency ms':>11s} {'accuracy':>15s} "
        f"{'vs SavedModel':>15s} {'agreement':>10s}"
    )
    for arm in runs[0]:
        acc = np.array([r[arm]["accuracy"] for r in runs])
        diff = acc - np.array([r["saved_model"]["accuracy"] for r in runs])
        se = lambda v: float(np.std(v, ddof=1) / np.sqrt(len(v))) if len(v) > 1 else 0.0  # noqa: E731
        table[arm] = {
            "mb": runs[0][arm]["bytes"] / 2**20,
            "latency_ms": float(np.median([r[arm]["latency_ms"] for r in runs])),
            "accuracy": float(acc.mean()),
            "accuracy_se": se(acc),
            "difference": float(diff.mean()),
            "difference_se": se(diff),
            "agreement": float(np.mean([r[arm]["agreement"] for r in runs])),
        }
        t = table[arm]
        print(
            f"{arm:18s} {t['mb']:8.2f} {t['latency_ms']:11.2f} "
            f"{t['accuracy']:.3f} ± {t['accuracy_se']:.3f} {t['difference']:+.3f} ± "
            f"{t['difference_se']:.3f} {t['agreement']:10.3f}"
        )
    finish("tflite", {"seeds": args.seeds, "table": table, "runs": runs}, args)


if __name__ == "__main__":
    main()
