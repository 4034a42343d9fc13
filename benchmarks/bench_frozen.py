"""Frozen backbone, 10 epochs of head training: tltf (cached features) against the Keras guide.

The Keras transfer-learning guide's recipe puts the frozen base inside the model
and calls ``fit`` for every epoch, so every epoch runs the backbone again. tltf's
``fine_tune`` with ``freeze="all"`` runs it once and trains the head on cached
features. Both train the same MobileNetV2 (the same weights) on
shared/data/openclipart/target (train/ for training and validation on test/).

No pretrained weights can be downloaded here, so the backbone is MobileNetV2 with
``weights=None`` whose BatchNorm statistics are set from one batch of training
images (else random MobileNet features vanish, ~1e-11): the features are random
but informative enough to compare the two heads' accuracy. Timing does not depend
on the weights.

The process's one-time costs (TensorFlow's start, oneDNN kernels, Keras' first
`fit`) are paid before either recipe is timed, and each timing is the fastest of
``--repeats`` runs, each on a fresh, untraced model: the machine may be busy.

    python benchmarks/bench_frozen.py [--epochs 10] [--size 160] [--repeats 2]
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile

from common import SHARED_DATA, finish, parser, timed

TARGET = os.path.join(SHARED_DATA, "openclipart", "target")


def calibrate_batchnorm(model, images) -> None:
    """Sets every BatchNorm's moving statistics to those of `images` (a data-dependent init)."""
    import keras

    bns = [
        layer
        for layer in model.get_layer("backbone")._flatten_layers()
        if isinstance(layer, keras.layers.BatchNormalization)
    ]
    for layer in bns:
        layer.trainable, layer.momentum = True, 0.0
    model(images, training=True)
    for layer in bns:
        layer.trainable, layer.momentum = False, 0.99


def warm_up_process(forward) -> None:
    """Pays the process's one-time costs before either recipe is timed.

    Whichever recipe runs first would otherwise also pay for TensorFlow's runtime
    start, oneDNN's kernels for MobileNetV2's layer shapes and Keras' first `fit`,
    and the second would get them for free. One forward pass and a tiny `fit` do it;
    neither traces a function that the timed runs use.
    """
    import keras
    import numpy as np

    forward()
    x, y = np.random.default_rng(0).normal(size=(64, 8)), np.arange(64) % 2
    tiny = keras.Sequential([keras.Input((8,)), keras.layers.Dense(2)])
    tiny.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    tiny.fit(x, y, validation_data=(x, y), epochs=2, verbose=0)


def guide_model(tltf_model, size: int, num_classes: int):
    """The guide's recipe: frozen base inside the model, same backbone weights as `tltf_model`."""
    import keras

    base = keras.applications.MobileNetV2(
        weights=None, include_top=False, input_shape=(size, size, 3)
    )
    base.set_weights(tltf_model.get_layer("backbone").get_weights())
    base.trainable = False
    inputs = keras.Input(shape=(size, size, 3))
    x = keras.layers.Rescaling(scale=1 / 127.5, offset=-1)(inputs)  # MobileNetV2's [-1, 1]
    x = base(x, training=False)
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dropout(0.2)(x)
    outputs = keras.layers.Dense(num_classes)(x)
    model = keras.Model(inputs, outputs)
    model.compile(
        optimizer=keras.optimizers.Adam(),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
    )
    return model


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=10)
    # 160 px, a size MobileNetV2 has ImageNet weights for. At 96 px one forward pass over
    # these 950 images takes ~2 s on 2 cores, so the ~1 s that Keras' fit spends tracing
    # the head's train step, whatever the data size, dominates the forward-pass ratio.
    p.add_argument("--size", type=int, default=160)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--repeats", type=int, default=2, help="runs of each timing; the fastest counts")
    args = p.parse_args()

    import keras
    import tensorflow as tf

    import tltf

    keras.utils.set_random_seed(0)
    train, test = tltf.data.from_directory(TARGET, verbose=True)
    size, batch, names = args.size, args.batch_size, train.class_names

    def fresh_model():
        return tltf.build(
            "keras:MobileNetV2", class_names=names, weights=None, input_shape=(size, size, 3)
        )

    model = fresh_model()
    spec = tltf.info(model)["input_spec"]
    sample, _ = next(iter(train.as_tf_dataset(64, training=True, input_spec=spec)))
    calibrate_batchnorm(model, sample)
    initial_weights = model.get_weights()
    t: dict[str, float] = {}

    # One forward pass over the training set: decode + preprocessing + backbone + head.
    def forward() -> None:
        ds = train.as_tf_dataset(batch, training=False, input_spec=spec, cache=False)
        model.predict(ds, verbose=0)

    cache_dir = tempfile.mkdtemp(prefix="tltf-bench-")
    fit = dict(epochs=args.epochs, batch_size=batch, verbose=0)
    warm_up_process(forward)
    # As a user would: nothing traced for the model, empty cache (the guide below is
    # cold too). Each repeat trains a fresh copy of the untrained model; the fastest counts.
    cold = []
    for i in range(args.repeats):
        copy = model if i == 0 else fresh_model()
        copy.set_weights(initial_weights)
        with timed(t, "run"):
            tltf.fine_tune(copy, train, validation_data=test, cache_dir=f"{cache_dir}/c{i}", **fit)
        cold.append(t.pop("run"))
    t["tltf"] = min(cold)
    tltf_accuracy = tltf.evaluate(model, test).accuracy
    with timed(t, "tltf_warm_cache"):
        tltf.fine_tune(model, train, validation_data=test, cache_dir=f"{cache_dir}/c0", **fit)
    # Against one forward pass, both traced already: an empty cache, no validation data.
    # (fine_tune recompiles the model, which drops Keras' traced predict function: so all
    # forward passes come first, after one untimed pass that traces.)
    runs: dict[str, list[float]] = {"forward_pass": [], "tltf_no_validation": []}
    forward()
    for _ in range(args.repeats):
        with timed(t, "run"):
            forward()
        runs["forward_pass"].append(t.pop("run"))
    for i in range(args.repeats):
        with timed(t, "run"):
            tltf.fine_tune(model, train, cache_dir=f"{cache_dir}/b{i}", **fit)
        runs["tltf_no_validation"].append(t.pop("run"))
    t.update({k: min(v) for k, v in runs.items()})

    def folder(split: str, shuffle: bool):
        return (
            keras.utils.image_dataset_from_directory(
                os.path.join(TARGET, split),
                class_names=names,
                image_size=(size, size),
                batch_size=batch,
                shuffle=shuffle,
                seed=0,
            )
            .cache()
            .prefetch(tf.data.AUTOTUNE)
        )

    guides = []
    for _ in range(args.repeats):
        guide = guide_model(model, size, len(names))  # a fresh model each time: traced cold
        with timed(t, "run"):
            guide.fit(
                folder("train", True),
                validation_data=folder("test", False),
                epochs=args.epochs,
                verbose=0,
            )
        guides.append(t.pop("run"))
    t["guide"] = min(guides)
    guide_accuracy = guide.evaluate(folder("test", False), verbose=0, return_dict=True)["accuracy"]
    shutil.rmtree(cache_dir)

    se = math.sqrt(max(guide_accuracy * (1 - guide_accuracy), 1e-9) / len(test))
    results = {
        "train_examples": len(train),
        "test_examples": len(test),
        "epochs": args.epochs,
        "image_size": size,
        "seconds": {k: round(v, 2) for k, v in t.items()},
        "runs": {"tltf": [round(v, 2) for v in cold], "guide": [round(v, 2) for v in guides]},
        "speedup_vs_guide": round(t["guide"] / t["tltf"], 2),
        "tltf_over_forward_pass": round(t["tltf_no_validation"] / t["forward_pass"], 2),
        "accuracy": {"tltf": round(tltf_accuracy, 4), "guide": round(guide_accuracy, 4)},
        "accuracy_standard_error": round(se, 4),
    }
    print(f"training examples {len(train)}, test {len(test)}, {args.epochs} epochs, {size}x{size}")
    print(f"one forward pass over the training set: {t['forward_pass']:.1f} s")
    print(f"Keras guide recipe (frozen base in the model, fit): {t['guide']:.1f} s {guides}")
    print(f"tltf fine_tune (cached features, cold cache):     {t['tltf']:.1f} s {cold}")
    print(f"tltf fine_tune, cache already there:               {t['tltf_warm_cache']:.1f} s")
    print(f"speed-up vs the guide: {results['speedup_vs_guide']}x (target >= 6x)")
    print(
        f"tltf without validation data, traced already: {t['tltf_no_validation']:.1f} s = "
        f"{results['tltf_over_forward_pass']}x one forward pass (target <= 1.3x)"
    )
    print(
        f"test accuracy: tltf {tltf_accuracy:.3f}, guide {guide_accuracy:.3f} "
        f"(standard error {se:.3f}, difference {abs(tltf_accuracy - guide_accuracy):.3f})"
    )
    finish("frozen", results, args)


if __name__ == "__main__":
    main()
