"""`export`: a tltf model -> a TF Serving version folder that serves raw inputs.

The SavedModel is a plain `tf.Module` that tracks each weight's `tf.Variable`
once (Keras' `ExportArchive` stores every weight twice, keras #23553), with
`tf.function` endpoints that take what a client has: text strings, or encoded
image bytes. Preprocessing (tokenization, decode, resize, normalization) runs
in the graph, and the task head's `serve` turns the model outputs into named
serving outputs, so every task exports the same way.

Layout, one folder per version (written to a temporary name, then renamed)::

    export/models.config                      # for tensorflow_model_server --model_config_file
    export/NAME/1/saved_model.pb, variables/
    export/NAME/1/assets.extra/labels.txt     # one class name per line
    export/NAME/1/assets.extra/tltf.json      # backbone, fingerprint, task, input spec, versions
    export/NAME/1/assets.extra/tf_serving_warmup_requests
    export/NAME/1/tflite/model.tflite, labels.txt   # with formats=[..., "tflite"]
"""

from __future__ import annotations

import json
import os
import posixpath
import shutil
import time
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from tltf.distribute import chief_only
from tltf.errors import ExportError
from tltf.heads import get_task
from tltf.io import remove_stale, temporary_path, write_atomically
from tltf.lora import merged
from tltf.metadata import backbone_model, info
from tltf.modalities import get_modality, modalities
from tltf.serving_ops import check_serving, finish_saved_model
from tltf.tflite import REPRESENTATIVE, TFLiteModel, convert, tensor_inputs, tflite_mode

FORMATS = ("saved_model", "tflite")
# TF Serving API -> (signature name, the SignatureDef method_name it requires)
EXAMPLE_SIGNATURES = {
    "classify": ("classification", "tensorflow/serving/classify"),
    "regress": ("regression", "tensorflow/serving/regress"),
}
PARITY_TOLERANCE = 1e-4
MIXED_PRECISION_TOLERANCE = 1e-2
_SERVING_API_NOTE = (
    "tensorflow-serving-api is not installed: no warm-up file and no models.config "
    "(pip install 'tltf[serving]')."
)


@chief_only
def export(
    model: Any,
    path: str,
    version: int | None = None,
    *,
    formats: Sequence[str] = ("saved_model",),
    parity_inputs: Sequence[str] | Sequence[bytes] | np.ndarray | None = None,
    quantize: bool | str = False,
    representative_data: Any = None,
    tflite_io: str = "uint8",
    models_root: str | None = "/models",
    serving: str | None = None,
) -> str:
    """Writes `model` as version folder ``path/<version>`` for TF Serving; returns its path.

    Example:
        >>> tltf.export(model, "export/topics")            # -> "export/topics/1"
        >>> tltf.export(model, "export/topics")            # -> "export/topics/2"
        >>> tltf.export(image_model, "export/pets", formats=["saved_model", "tflite"])

    The version is written under a temporary name and renamed into place, so a
    server never sees half a model. Before publishing, the written SavedModel is
    reloaded and its outputs compared with the Keras model's; a difference above
    1e-4 (1e-2 under mixed precision) raises `ExportError` and publishes nothing.

    Args:
        model: a model from `tltf.build` (trained or not).
        path: the model's folder, ``export/NAME``; versions go inside it.
        version: an integer version; default the next one after those in `path`.
        formats: ``"saved_model"`` (always written) and ``"tflite"`` (image models:
            ``tflite/model.tflite`` from the ``serving_tensor`` signature, plus labels).
        parity_inputs: sample inputs for the parity check and the warm-up requests:
            strings for text models (``(texts, second_texts)`` for text pairs);
            encoded image bytes, image file paths or a ``[N, H, W, 3]`` 0-255 pixel
            array for image models. Default: synthesized.
        quantize: the TFLite file's mode (`tltf.tflite`): False (float32), True or
            ``"dynamic"`` (int8 weights), ``"float16"``, or ``"int8"`` (full integer,
            calibrated on `representative_data`; its one output is the quantized
            ``scores``). A quantized file's differences from the Keras model are
            measured and recorded in ``tltf.json``, not enforced; its tensor types are.
        representative_data: for ``quantize="int8"``: a sample of the training data (a
            `tltf.data.Dataset`, file paths, or a float array as the TFLite input takes
            it); at most 200 examples are drawn.
        tflite_io: for ``quantize="int8"``: ``"uint8"`` (pixels 0-255 as they are) or
            ``"int8"`` inputs and outputs.
        models_root: where the parent of `path` is mounted in the serving container;
            ``models.config`` there gets ``base_path: "<models_root>/NAME"``. None
            uses the local absolute path; TF Serving needs absolute paths.
        serving: a stock TF Serving release (``"2.19"``) that must load the export:
            if the graph uses an op (or op attribute) that release lacks, `ExportError`
            names each one and the oldest release that has it, and nothing is published.
            Either way ``tltf.json`` lists the stock releases that can load it
            (``serving_versions``; `tltf.serving_ops`).

    Returns:
        The published version folder, e.g. ``"export/topics/3"``. Under
        MultiWorkerMirroredStrategy only the chief publishes; the other workers
        export to a temporary folder that is removed, and return None.
    """
    meta = info(model)
    formats = _check_formats(formats, meta)
    mode = tflite_mode(quantize)
    if mode == "int8" and representative_data is None and "tflite" in formats:
        raise ExportError(
            "quantize='int8' calibrates on representative inputs: pass representative_data= "
            "(a sample of the training data; tltf export --tflite int8 uses the run's)."
        )
    os.makedirs(path, exist_ok=True)
    remove_stale(path)
    version = _choose_version(path, version)
    final = os.path.join(path, str(version))
    tmp = temporary_path(path, str(version))
    samples = _samples(meta, parity_inputs)
    try:
        with merged(model):  # LoRA deltas folded into the kernels: a plain graph
            servable, signatures = _servable(model, meta)
            import tensorflow as tf

            tf.saved_model.save(servable, tmp, signatures=signatures)
        methods = {name: m for name, m in EXAMPLE_SIGNATURES.values() if name in signatures}
        # debug attributes: TF Serving 2.14 refuses them; methods: Classify / Regress need them
        finish_saved_model(tmp, methods)
        releases = check_serving(tmp, serving)  # the stock releases that load it
        parity = _check_parity(tmp, model, meta, samples)  # against the unmerged model
        extra = os.path.join(tmp, "assets.extra")
        os.makedirs(extra)
        write_atomically(
            os.path.join(extra, "labels.txt"), "".join(f"{c}\n" for c in meta["class_names"])
        )
        if "tflite" in formats:
            with merged(model):
                parity["tflite"] = _write_tflite(
                    tmp, servable, model, meta, samples, mode, representative_data, tflite_io
                )
        _write_warmup(os.path.join(extra, "tf_serving_warmup_requests"), path, samples)
        write_atomically(
            os.path.join(extra, "tltf.json"),
            json.dumps(_manifest(meta, parity, releases), indent=2),
        )
        try:
            os.rename(tmp, final)
        except OSError as exc:
            raise ExportError(
                f"Could not publish {final}: {exc}. Is another export writing it?"
            ) from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _update_models_config(path, models_root)
    return final


def _check_formats(formats: Sequence[str], meta: dict) -> tuple[str, ...]:
    formats = (formats,) if isinstance(formats, str) else tuple(formats)
    unknown = [f for f in formats if f not in FORMATS]
    if unknown or "saved_model" not in formats:
        raise ExportError(f"formats={list(formats)}: use 'saved_model', optionally with 'tflite'.")
    why_not = get_modality(meta["modality"]).tflite_blocker
    if "tflite" in formats and why_not:
        kinds = " and ".join(m.name for m in modalities() if not m.tflite_blocker)
        raise ExportError(
            f"formats=['tflite'] is for {kinds} models; this is a {meta['modality']} model "
            f"({why_not})."
        )
    return formats


def _choose_version(path: str, version: int | None) -> int:
    existing = [int(n) for n in os.listdir(path) if n.isdigit()]
    if version is None:
        return max(existing, default=0) + 1
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise ExportError(f"version={version!r}: TF Serving versions are positive integers.")
    if version in existing:
        raise ExportError(
            f"{os.path.join(path, str(version))} exists; versions are immutable once served. "
            "Leave version=None to take the next one."
        )
    return version


def _servable(model: Any, meta: dict) -> tuple[Any, dict]:
    """A `tf.Module` holding the weights once, and its signatures by name."""
    import tensorflow as tf

    from tltf.layers import saved_model_dependencies

    module = tf.Module()
    module.model_weights = [w.value for w in model.weights]
    # loaded SavedModels inside layers (TF-Hub modules) hold resources, e.g. vocabulary tables
    module.saved_model_dependencies = saved_model_dependencies(model)

    task = get_task(meta["task"])
    signatures = get_modality(meta["modality"]).signatures(
        module, meta, lambda inputs: _serve(model, meta, inputs), task
    )
    examples = _example_signature(meta, signatures["serving_default"])
    if examples:
        name, module.serve_examples = examples
        signatures[name] = module.serve_examples
    return module, signatures


def _example_signature(meta: dict, default: Any) -> tuple[str, Any] | None:
    """TF Serving's Classify / Regress signature, on serialized `tf.Example`s, or None.

    Where the task has such an API (`tltf.heads.Task.example_api`) and every input of
    ``serving_default`` is a string per example (texts, encoded files), each Example
    holds them as bytes features of the same names (``text``, ``image_bytes``, ...).
    """
    import tensorflow as tf

    task = get_task(meta["task"])
    api = task.example_api(meta)
    specs = default.input_signature
    if api is None or not all(s.dtype == tf.string and s.shape.as_list() == [None] for s in specs):
        return None
    features = {s.name: tf.io.FixedLenFeature([], tf.string) for s in specs}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="inputs")])
    def serve_examples(serialized):
        parsed = tf.io.parse_example(serialized, features)
        return task.example_outputs(default(*(parsed[s.name] for s in specs)), meta)

    return EXAMPLE_SIGNATURES[api][0], serve_examples


def _serve(model: Any, meta: dict, inputs: list) -> dict:
    """The task's serving outputs for a list of input tensors (one per model input)."""
    return get_task(meta["task"]).serve(
        model, inputs[0] if len(inputs) == 1 else tuple(inputs), meta
    )


def _samples(meta: dict, parity_inputs: Any) -> dict[str, dict[str, np.ndarray]]:
    """``{signature: {input name: batch}}`` for the parity check and the warm-up file."""
    return get_modality(meta["modality"]).samples(meta, parity_inputs, get_task(meta["task"]))


def _reference(model: Any, meta: dict, signature: str, inputs: dict) -> dict:
    """What the Keras model computes for a signature's inputs, through the task's `serve`."""
    import tensorflow as tf

    values = [tf.constant(v) for v in inputs.values()]
    values = get_modality(meta["modality"]).reference_inputs(signature, values, meta)
    return {k: v.numpy() for k, v in _serve(model, meta, values).items()}


def _tolerance(model: Any) -> float:
    layers = [model, *model.layers, *backbone_model(model).layers]
    mixed = any(getattr(layer, "compute_dtype", "float32") != "float32" for layer in layers)
    return MIXED_PRECISION_TOLERANCE if mixed else PARITY_TOLERANCE


def _max_differences(reference: dict, served: dict) -> dict[str, float]:
    """Largest absolute difference per float output (string outputs follow the scores)."""
    return {
        key: float(np.max(np.abs(np.asarray(served[key]) - ref), initial=0.0))
        for key, ref in reference.items()
        if np.issubdtype(np.asarray(ref).dtype, np.floating)
    }


def _check_parity(saved: str, model: Any, meta: dict, samples: dict) -> dict:
    """Reloads the SavedModel and compares every signature with the Keras model."""
    import tensorflow as tf

    loaded = tf.saved_model.load(saved)
    tolerance = _tolerance(model)
    report = {"tolerance": tolerance}
    for signature, inputs in samples.items():
        served = loaded.signatures[signature](**{k: tf.constant(v) for k, v in inputs.items()})
        diffs = _max_differences(
            _reference(model, meta, signature, inputs), {k: v.numpy() for k, v in served.items()}
        )
        worst = max(diffs, key=diffs.get)
        if not diffs[worst] <= tolerance:
            raise ExportError(
                f"Parity check failed: the exported '{signature}' output '{worst}' differs from "
                f"the Keras model's by {diffs[worst]:.3g} (tolerance {tolerance:g}) on "
                f"{len(next(iter(inputs.values())))} sample inputs; nothing was published."
            )
        report[signature] = diffs
    for name in (n for n, _ in EXAMPLE_SIGNATURES.values() if n in loaded.signatures):
        inputs = samples["serving_default"]
        reference = _reference(model, meta, "serving_default", inputs)
        expected = get_task(meta["task"]).example_outputs(
            {k: tf.constant(v) for k, v in reference.items()}, meta
        )
        served = loaded.signatures[name](inputs=tf.constant(serialized_examples(inputs)))
        diffs = _max_differences(
            {k: v.numpy() for k, v in expected.items()}, {k: v.numpy() for k, v in served.items()}
        )
        worst = max(diffs, key=diffs.get)
        if not diffs[worst] <= tolerance:
            raise ExportError(
                f"Parity check failed: the exported '{name}' output '{worst}' differs from the "
                f"Keras model's by {diffs[worst]:.3g}; nothing was published."
            )
        report[name] = diffs
    return report


def serialized_examples(inputs: dict[str, Sequence]) -> list[bytes]:
    """Serialized `tf.Example`s, one per row of `inputs`: a bytes feature per input name,
    as the ``classification`` / ``regression`` signatures take them.

    Example:
        >>> serialized_examples({"text": ["a goal", "an equation"]})
        [b'\\n\\x14\\n\\x12\\n\\x04text...', ...]
    """
    import tensorflow as tf

    def feature(value: Any) -> Any:
        data = value if isinstance(value, bytes) else str(value).encode("utf-8")
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=[data]))

    rows = zip(*inputs.values(), strict=True)
    return [
        tf.train.Example(
            features=tf.train.Features(feature=dict(zip(inputs, map(feature, row), strict=True)))
        ).SerializeToString()
        for row in rows
    ]


def _write_tflite(
    saved: str,
    servable: Any,
    model: Any,
    meta: dict,
    samples: dict,
    mode: str,
    representative: Any,
    io: str,
) -> dict:
    """Converts the modality's tensor signature (TFLite cannot decode files) and checks it."""
    signature = get_modality(meta["modality"]).tflite_signature
    inputs = samples[signature]
    name = next(iter(inputs))
    calibration = None
    if mode == "int8":
        if get_task(meta["task"]).example_api(meta) != "classify":  # no 'scores' output
            raise ExportError(
                f"quantize='int8' is for models with a 'scores' output (classifiers); this is "
                f"a {meta['task']} model. Use quantize='dynamic' or 'float16'."
            )
        calibration = tensor_inputs(representative, meta, limit=REPRESENTATIVE)
        inputs = {name: calibration[:64]}
    content = convert(
        saved,
        meta,
        mode,
        scores=lambda x: _serve(model, meta, [x])["scores"],
        tracked=servable,
        representative=calibration,
        input_name=name,
        io=io,
    )
    folder = os.path.join(saved, "tflite")
    os.makedirs(folder)
    with open(os.path.join(folder, "model.tflite"), "wb") as fh:
        fh.write(content)
    write_atomically(
        os.path.join(folder, "labels.txt"), "".join(f"{c}\n" for c in meta["class_names"])
    )
    reference = _reference(model, meta, signature, inputs)
    lite = TFLiteModel(content=content)
    served = lite.outputs_for(inputs[name])
    diffs = _max_differences({k: v for k, v in reference.items() if k in served}, served)
    worst = max(diffs, key=diffs.get)
    if mode == "float" and not diffs[worst] <= PARITY_TOLERANCE:
        raise ExportError(
            f"Parity check failed: the TFLite model's '{worst}' differs from the Keras model's "
            f"by {diffs[worst]:.3g} (tolerance {PARITY_TOLERANCE:g}); nothing was published."
        )
    report = {"mode": mode, "quantized": mode != "float", "bytes": len(content), **diffs}
    if "scores" in served:  # on the calibration sample for int8, else the parity inputs
        agree = served["scores"].argmax(-1) == reference["scores"].argmax(-1)
        report["top1_agreement"] = float(np.mean(agree))
    return {**report, **({"io": io} if mode == "int8" else {})}


def _write_warmup(file: str, path: str, samples: dict) -> None:
    """TF Serving replays these PredictionLog records at load, before taking traffic."""
    try:
        from tensorflow_serving.apis import model_pb2, predict_pb2, prediction_log_pb2
    except ImportError:
        warnings.warn(_SERVING_API_NOTE, stacklevel=3)
        return
    import tensorflow as tf

    request = predict_pb2.PredictRequest(
        model_spec=model_pb2.ModelSpec(
            name=os.path.basename(os.path.normpath(path)), signature_name="serving_default"
        )
    )
    for name, value in samples["serving_default"].items():
        request.inputs[name].CopyFrom(tf.make_tensor_proto(value))
    log = prediction_log_pb2.PredictionLog(
        predict_log=prediction_log_pb2.PredictLog(request=request)
    )
    with tf.io.TFRecordWriter(file) as writer:
        writer.write(log.SerializeToString())


def _update_models_config(path: str, models_root: str | None) -> None:
    """Adds or updates this model's entry in ``models.config`` beside the model folder."""
    try:
        from google.protobuf import text_format
        from tensorflow_serving.config import model_server_config_pb2
    except ImportError:
        return  # _write_warmup has said so
    folder = os.path.normpath(os.path.abspath(path))
    name = os.path.basename(folder)
    base = posixpath.join(models_root, name) if models_root else folder
    file = os.path.join(os.path.dirname(folder), "models.config")
    config = model_server_config_pb2.ModelServerConfig()
    if os.path.exists(file):
        with open(file) as fh:
            try:
                text_format.Parse(fh.read(), config)
            except text_format.ParseError as exc:
                raise ExportError(
                    f"{path} was exported, but {file} is not a valid TF Serving model config "
                    f"({exc}); fix or delete it and export again."
                ) from None
    entries = config.model_config_list.config
    entry = next((c for c in entries if c.name == name), None) or entries.add(name=name)
    entry.base_path = base
    entry.model_platform = "tensorflow"
    write_atomically(file, text_format.MessageToString(config))


def _manifest(meta: dict, parity: dict, releases: list[str]) -> dict:
    import tensorflow as tf

    import tltf

    return {
        "task": meta["task"],
        "class_names": list(meta["class_names"]),
        "modality": meta["modality"],
        # {module: pip package} that loading the SavedModel needs (custom ops)
        "requires": dict(get_modality(meta["modality"]).serving_imports),
        "backbone": meta["backbone"],
        "fingerprint": meta["fingerprint"],
        "extended_from": meta["extended_from"],  # tltf.extend: the classes it grew from
        "input_spec": meta["input_spec"],
        "tltf_version": tltf.__version__,
        "tensorflow_version": tf.__version__,
        "exported_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "parity": parity,
        "serving_versions": releases,  # stock TF Serving releases with every op it uses
    }
