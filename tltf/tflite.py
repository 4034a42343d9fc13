"""TFLite files of an export: float, dynamic-range, float16 or full-integer int8, checked.

TFLite has no image or WAV decoder, so the file converts the modality's tensor
signature (``serving_tensor``: pixels 0-255 at the model's fixed size;
``serving_waveform``: 16 kHz samples). The quantization modes are those of
TFLite and MediaPipe Model Maker (``QuantizationConfig.for_dynamic``,
``for_float16``, ``for_int8``):

- ``"float"``: float32, the export's outputs (scores and label strings).
- ``"dynamic"``: int8 weights, float activations (about 1/4 the size).
- ``"float16"``: float16 weights (1/2 the size; GPU delegates run them natively).
- ``"int8"``: full-integer: int8 weights and activations, calibrated on
  representative inputs, with ``uint8`` (default) or ``int8`` input and output.
  Its one output is ``scores``, quantized (`TFLiteModel` dequantizes it); the labels
  are in ``labels.txt`` beside it. The pixels go in as they are, 0-255: the model's
  normalization is quantized with the rest.

After converting, the file's tensor types are checked (Model Maker once wrote a
float model when asked for int8, tensorflow#57619): an int8 file with a float
tensor is refused.
"""

from __future__ import annotations

import os
import shutil
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np

from tltf.errors import ExportError
from tltf.modalities import get_modality
from tltf.modalities.base import file_bytes

MODES = ("float", "dynamic", "float16", "int8")
INT8_IO = ("uint8", "int8")
REPRESENTATIVE = 200  # calibration inputs for int8, at most (Model Maker's default is 100)


def tflite_mode(quantize: bool | str) -> str:
    """`tltf.export`'s ``quantize`` as a mode: False -> "float", True -> "dynamic".

    Example:
        >>> tflite_mode(True), tflite_mode("int8")
        ('dynamic', 'int8')
    """
    if quantize is False or quantize is None:
        return "float"
    if quantize is True:
        return "dynamic"
    if quantize not in MODES:
        raise ExportError(f"quantize={quantize!r}; use one of {MODES} (True: 'dynamic').")
    return quantize


def convert(
    saved: str,
    meta: dict,
    mode: str,
    *,
    scores: Callable[[Any], Any] | None = None,
    tracked: Any = None,
    representative: np.ndarray | None = None,
    input_name: str = "inputs",
    io: str = "uint8",
) -> bytes:
    """The TFLite file of an export's tensor signature, in `mode`, with its types checked.

    Example:
        >>> content = convert("export/pets/.tmp-3", meta, "int8", scores=fn, representative=x)

    Args:
        saved: the SavedModel folder (float, dynamic and float16 convert its signature).
        meta: the model's card (`tltf.info`).
        mode: one of `MODES`.
        scores: for int8, a function from the tensor input to the ``scores`` output.
        tracked: for int8, what holds the variables `scores` reads (the export's module).
        representative: for int8, calibration inputs ``[N, ...]`` as the signature takes them.
        input_name: for int8, the input's name (the tensor signature's).
        io: for int8, the input and output type: ``"uint8"`` or ``"int8"``.
    """
    import tensorflow as tf

    signature = get_modality(meta["modality"]).tflite_signature
    if mode != "int8":
        converter = tf.lite.TFLiteConverter.from_saved_model(saved, signature_keys=[signature])
        if mode in ("dynamic", "float16"):
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
        if mode == "float16":
            converter.target_spec.supported_types = [tf.float16]
        content = converter.convert()
        check_types(content, mode)
        return content
    if io not in INT8_IO:
        raise ExportError(f"tflite_io={io!r}; use one of {INT8_IO}.")
    if representative is None or not len(representative):
        raise ExportError("quantize='int8' needs representative inputs to calibrate on.")
    shape = [None, *representative.shape[1:]]
    spec = tf.TensorSpec(shape, tf.float32, input_name)
    module = tf.Module()  # the same signature name as the other modes, with `scores` only
    module.tracked = tracked
    module.fn = tf.function(lambda x: {"scores": scores(x)}, input_signature=[spec])
    scores_only = os.path.join(saved, "tflite-int8.tmp")
    tf.saved_model.save(module, scores_only, signatures={signature: module.fn})
    converter = tf.lite.TFLiteConverter.from_saved_model(scores_only, signature_keys=[signature])
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: ([x[None]] for x in representative)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = converter.inference_output_type = getattr(tf, io)
    try:
        content = converter.convert()
    except Exception as exc:  # the converter names the op it could not quantize
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ExportError(
            f"quantize='int8': TFLite could not convert this model to full integer ({first}). "
            "Use quantize='dynamic' or 'float16'."
        ) from None
    finally:
        shutil.rmtree(scores_only, ignore_errors=True)
    check_types(content, mode, io)
    return content


def check_types(content: bytes, mode: str, io: str = "uint8") -> None:
    """Refuses a converted file whose tensors are not of `mode`'s types.

    int8: the input and output are `io`, and no tensor is float. dynamic: some
    weights are int8. float16: some are float16.

    Example:
        >>> check_types(open("model.tflite", "rb").read(), "int8")
    """
    model = TFLiteModel(content=content)
    tensors = model.interpreter.get_tensor_details()
    kinds = {np.dtype(t["dtype"]).name for t in tensors}
    if mode == "int8":
        ends = [model.input, *model.outputs]
        wrong = [t["name"] for t in ends if np.dtype(t["dtype"]).name != io]
        floats = [t["name"] for t in tensors if np.dtype(t["dtype"]).kind == "f"]
        if wrong or floats:
            raise ExportError(
                "quantize='int8' gave a file that is not full-integer: "
                + (f"{len(floats)} float tensors (e.g. {floats[0]!r})" if floats else "")
                + (f"; inputs/outputs not {io}: {wrong}" if wrong else "")
                + " (ops with no int8 kernel stay float). Use quantize='dynamic' or 'float16'; "
                "nothing was published."
            )
    elif mode in ("dynamic", "float16"):
        want = "int8" if mode == "dynamic" else "float16"
        if want not in kinds:
            raise ExportError(
                f"quantize={mode!r} gave a file with no {want} weights (types: "
                f"{', '.join(sorted(kinds))}); nothing was published."
            )


class TFLiteModel:
    """Runs a TFLite file's one signature on float inputs; quantized inputs/outputs handled.

    Example:
        >>> lite = TFLiteModel("export/pets/3/tflite/model.tflite")
        >>> lite.scores(pixels).shape              # pixels [N, 224, 224, 3], 0-255
        (N, 6)
    """

    def __init__(self, path: str | None = None, content: bytes | None = None) -> None:
        import tensorflow as tf

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tf.lite.Interpreter's deprecation notice
            self.interpreter = tf.lite.Interpreter(model_path=path, model_content=content)
        self.interpreter.allocate_tensors()
        self.input = self.interpreter.get_input_details()[0]
        self.outputs = self.interpreter.get_output_details()
        self.path = path

    @property
    def input_shape(self) -> tuple[int, ...]:
        """One example's shape, e.g. ``(224, 224, 3)``: a TFLite file has one fixed size."""
        return tuple(int(d) for d in self.input["shape"][1:])

    def scores(self, x: np.ndarray, batch_size: int = 32) -> np.ndarray:
        """The ``scores`` output for float inputs ``[N, ...]``, as float32.

        Example:
            >>> TFLiteModel("model.tflite").scores(pixels).argmax(-1)
        """
        return self.outputs_for(x, batch_size, only="scores")["scores"]

    def outputs_for(self, x: np.ndarray, batch_size: int = 32, only: str | None = None) -> dict:
        """Every output (or `only` one) by name for float inputs ``[N, ...]``, dequantized.

        Example:
            >>> TFLiteModel("model.tflite").outputs_for(pixels)["top_k_labels"]
        """
        signature = next(iter(self.interpreter.get_signature_list()))
        named = self.interpreter.get_signature_runner(signature).get_output_details()
        index = {d["index"]: n for n, d in named.items() if only in (None, n)}
        if only is not None and not index:
            raise ExportError(f"{self.path or 'the TFLite model'} has no {only!r} output.")
        details = [o for o in self.outputs if o["index"] in index]
        results: dict[str, list] = {index[o["index"]]: [] for o in details}
        for start in range(0, len(x), batch_size):
            batch = _quantize(np.asarray(x[start : start + batch_size], "float32"), self.input)
            self.interpreter.resize_tensor_input(self.input["index"], batch.shape)
            self.interpreter.allocate_tensors()
            self.interpreter.set_tensor(self.input["index"], batch)
            self.interpreter.invoke()
            for o in details:
                value = self.interpreter.get_tensor(o["index"])
                results[index[o["index"]]].append(_dequantize(value, o))
        return {k: np.concatenate(v) for k, v in results.items() if v}


def tensor_inputs(data: Any, meta: dict, limit: int | None = None, seed: int = 0) -> np.ndarray:
    """Examples as the TFLite signature takes them (float pixels / waveforms ``[N, ...]``).

    `data`: a float array already in that form, file paths or encoded bytes (decoded
    as ``serving_default`` decodes them), or a `tltf.data.Dataset`. `limit` draws
    that many at most (seeded), for calibration.

    Example:
        >>> tensor_inputs(train, tltf.info(model), limit=200).shape
        (200, 224, 224, 3)
    """
    import tensorflow as tf

    modality = get_modality(meta["modality"])
    if hasattr(data, "class_names") and hasattr(data, "x"):  # a tltf Dataset
        numeric = isinstance(data.x, np.ndarray) and data.x.dtype.kind in "fiu"
        data = data.x if numeric else modality.cli_inputs(data)
    if isinstance(data, np.ndarray) and data.dtype.kind in "fiu":
        items = data
    else:
        items = list(data)
    if limit is not None and len(items) > limit:
        rows = np.sort(np.random.default_rng(seed).choice(len(items), limit, replace=False))
        items = items[rows] if isinstance(items, np.ndarray) else [items[i] for i in rows]
    if isinstance(items, np.ndarray):
        return items.astype("float32")
    encoded = [_read(item) for item in items]
    batches = [
        modality.reference_inputs("serving_default", [tf.constant(encoded[i : i + 64])], meta)[0]
        for i in range(0, len(encoded), 64)
    ]
    return np.concatenate([np.asarray(b) for b in batches]).astype("float32")


def _read(item: Any) -> bytes:
    found = file_bytes(item)
    if found is None:
        raise ExportError(f"{item!r} is not a file; give file paths, encoded bytes or an array.")
    return found


def _quantize(x: np.ndarray, detail: dict) -> np.ndarray:
    dtype = np.dtype(detail["dtype"])
    if dtype.kind == "f":
        return x.astype(dtype)
    scale, zero = detail["quantization"]
    info = np.iinfo(dtype)
    return np.clip(np.round(x / scale + zero), info.min, info.max).astype(dtype)


def _dequantize(x: np.ndarray, detail: dict) -> np.ndarray:
    kind = np.dtype(detail["dtype"]).kind
    if kind in "fOSU":  # floats, and label strings
        return x.astype("float32") if kind == "f" else x
    scale, zero = detail["quantization"]
    return ((x.astype("float32") - zero) * scale).astype("float32")
