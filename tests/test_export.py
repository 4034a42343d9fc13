"""`tltf.export`: TF Serving layout, signatures, parity, fresh-process loading, TFLite."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest

CLASSES = ["games", "math", "sound"]
TEXTS = ["game play score", "algebra equation matrix number", "", "sound mixer " * 30]


def calibrate_batchnorm(model, images: np.ndarray) -> None:
    """Sets BN moving statistics to one batch's, so a weights=None CNN gives input-dependent scores.

    (Random-init MobileNetV2 features are ~1e-12 in inference mode: every score would be 1/C.)
    """
    import keras

    bns = [
        layer
        for layer in model.get_layer("backbone").layers
        if isinstance(layer, keras.layers.BatchNormalization)
    ]
    for layer in bns:
        layer.trainable, layer.momentum = True, 0.0
    model(images, training=True)
    for layer in bns:
        layer.trainable, layer.momentum = False, 0.99


def softmax(logits) -> np.ndarray:
    x = np.asarray(logits, dtype=np.float64)
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


@pytest.fixture(scope="session")
def text_model(tiny_bert_dir):
    import tltf

    return tltf.build(f"keras_hub:{tiny_bert_dir}", class_names=CLASSES, sequence_length=16)


@pytest.fixture(scope="session")
def image_model():
    import tltf

    model = tltf.build(
        "keras:MobileNetV2", weights=None, input_shape=(32, 32, 3), class_names=CLASSES
    )
    calibrate_batchnorm(model, np.random.default_rng(1).uniform(0, 255, (16, 32, 32, 3)))
    return model


@pytest.fixture(scope="session")
def exports(tmp_path_factory, text_model, image_model) -> dict:
    """Two text versions and one image version with TFLite, in one export root."""
    import tltf

    root = tmp_path_factory.mktemp("export")
    return {
        "root": str(root),
        "text": [tltf.export(text_model, str(root / "topics")) for _ in range(2)],
        "image": tltf.export(image_model, str(root / "pets"), formats=["saved_model", "tflite"]),
    }


@pytest.fixture(scope="session")
def image_files(tmp_path_factory) -> dict:
    """A PNG at the model size, a JPEG and a grayscale PNG of other sizes, with their pixels."""
    import tensorflow as tf

    rng = np.random.default_rng(7)
    folder = tmp_path_factory.mktemp("images")
    specs = {"exact.png": (32, 32, 3), "wide.jpg": (40, 90, 3), "gray.png": (20, 25, 1)}
    files = {}
    for name, shape in specs.items():
        pixels = rng.integers(0, 256, shape, dtype=np.uint8)
        encode = tf.io.encode_jpeg if name.endswith(".jpg") else tf.io.encode_png
        path = folder / name
        path.write_bytes(encode(pixels).numpy())
        files[name] = str(path)
    return files


PAIRS = (TEXTS[:3], ["play the game", "number solver", ""])
TASKS = {
    "text_pair": {"class_names": ["same", "different"]},
    "multilabel": {"class_names": CLASSES, "head": {"threshold": 0.4}},
    "regression": {"class_names": ["stars", "votes"]},
    "token_classification": {"class_names": ["O", "TOPIC"]},
    "embedding": {"class_names": CLASSES, "head": {"dim": 8}},
}


@pytest.fixture(scope="session")
def task_exports(tmp_path_factory, tiny_bert_dir) -> dict:
    """``{task: (model, version folder, inputs)}`` for every task head but classification."""
    import tltf

    root = tmp_path_factory.mktemp("tasks")
    exports = {}
    for task, options in TASKS.items():
        model = tltf.build(f"keras_hub:{tiny_bert_dir}", task=task, sequence_length=16, **options)
        parity = PAIRS if task == "text_pair" else TEXTS
        folder = tltf.export(model, str(root / task), parity_inputs=parity)
        names = tltf.heads.get_task(task).text_inputs
        inputs = dict(zip(names, PAIRS if task == "text_pair" else (TEXTS,), strict=True))
        exports[task] = (model, folder, inputs)
    return exports


def reference_pixels(files: dict) -> np.ndarray:
    """What any correct server sees: decode to RGB, bilinear resize to 32x32."""
    import tensorflow as tf

    images = []
    for path in files.values():
        image = tf.io.decode_image(open(path, "rb").read(), channels=3, expand_animations=False)
        images.append(tf.image.resize(image, (32, 32)).numpy())
    return np.stack(images)


def test_versions_increase_and_layout(exports, text_model):
    import tltf

    first, second = exports["text"]
    assert first.endswith(os.path.join("topics", "1"))
    assert second.endswith(os.path.join("topics", "2"))
    assert sorted(os.listdir(os.path.dirname(first))) == ["1", "2"]  # no temporary folders left
    for name in ("saved_model.pb", "variables/variables.index"):
        assert os.path.isfile(os.path.join(first, name))
    extra = os.path.join(first, "assets.extra")
    assert open(os.path.join(extra, "labels.txt")).read().splitlines() == CLASSES
    manifest = json.load(open(os.path.join(extra, "tltf.json")))
    meta = tltf.info(text_model)
    for key in ("task", "class_names", "backbone", "fingerprint", "input_spec"):
        assert manifest[key] == meta[key]
    assert manifest["tltf_version"] == tltf.__version__
    assert manifest["parity"]["serving_default"]["scores"] <= 1e-4


def test_every_export_loads_on_the_stock_tf_serving_releases(exports, task_exports):
    """Checked against the op lists of tensorflow/serving 2.14-2.20 (tltf.serving_ops): each
    task's text export and the image export use only ops those images register."""
    from tltf.serving_ops import SERVING_RELEASES, missing_ops

    folders = [exports["text"][0], exports["image"], *(f for _, f, _ in task_exports.values())]
    for folder in folders:
        manifest = json.load(open(os.path.join(folder, "assets.extra", "tltf.json")))
        assert manifest["serving_versions"] == list(SERVING_RELEASES), folder
        assert missing_ops(folder, "2.14") == {}


def test_weights_are_stored_once(exports, image_model):
    """keras ExportArchive would store each weight twice (keras #23553)."""
    variables_bytes = os.path.getsize(
        os.path.join(exports["image"], "variables", "variables.data-00000-of-00001")
    )
    weight_bytes = sum(int(np.prod(w.shape)) * 4 for w in image_model.weights)
    assert weight_bytes <= variables_bytes < 1.05 * weight_bytes


FRESH_SCRIPT = textwrap.dedent(
    """
    import json, os, sys
    blocked = ["keras_hub", "keras_nlp", "tensorflow_hub", "tf_keras"]
    blocked += ["tltf." + m for m in ("backbone", "builder", "data", "freezing", "heads",
                                      "layers", "metadata", "serving", "sources", "training")]
    for name in blocked:
        sys.modules[name] = None  # importing any of these now raises ImportError
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    import tensorflow as tf
    import tensorflow_text  # noqa: F401  registers the tokenizer ops (it needs keras importable)

    jobs, results = json.loads(sys.argv[1]), {}
    for folder, inputs in jobs.items():
        if "image_bytes" in inputs:
            inputs = {"image_bytes": [open(f, "rb").read() for f in inputs["image_bytes"]]}
        out = tf.saved_model.load(folder).signatures["serving_default"](
            **{k: tf.constant(v) for k, v in inputs.items()}
        )
        results[folder] = {
            k: [s.decode() for s in v.numpy().ravel()] if v.dtype == tf.string else v.numpy().tolist()
            for k, v in out.items()
        }
    results["modules"] = sorted(m for m in ("keras_hub", "tltf") if sys.modules.get(m))
    from tltf.commands import predict  # `tltf predict` runs without tltf's model code

    image_folder, image_inputs = list(jobs.items())[1]
    results["predict"] = predict.predict(image_folder, image_inputs["image_bytes"])
    print(json.dumps(results))
    """
)


def keras_outputs(model, inputs: dict) -> dict:
    """What the Keras model serves in-process, through its task's `serve`."""
    import tensorflow as tf

    import tltf

    meta = tltf.info(model)
    values = [tf.constant(v) for v in inputs.values()]
    task = tltf.heads.get_task(meta["task"])
    out = task.serve(model, values[0] if len(values) == 1 else tuple(values), meta)
    return {k: v.numpy() for k, v in out.items()}


def test_fresh_process_serves_the_same_outputs(
    exports, task_exports, text_model, image_model, image_files
):
    """Only TF + TF-Text: scores match the Keras model's for every task head."""
    text_dir, image_dir = exports["text"][0], exports["image"]
    jobs = {text_dir: {"text": TEXTS}, image_dir: {"image_bytes": list(image_files.values())}}
    jobs.update({folder: inputs for _, folder, inputs in task_exports.values()})
    proc = subprocess.run(
        [sys.executable, "-c", FRESH_SCRIPT, json.dumps(jobs)],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    results = json.loads(proc.stdout.strip().splitlines()[-1])
    assert results["modules"] == []

    expected = {
        text_dir: softmax(text_model(np.array(TEXTS))),
        image_dir: softmax(image_model(reference_pixels(image_files))),
    }
    for folder, want in expected.items():
        np.testing.assert_allclose(results[folder]["scores"], want, atol=1e-4)
        assert results[folder]["label"] == [CLASSES[i] for i in want.argmax(axis=1)]
    assert len(set(results[image_dir]["label"])) > 1 or np.ptp(expected[image_dir]) > 0.05
    assert [row["label"] for row in results["predict"]] == results[image_dir]["label"]
    np.testing.assert_allclose(
        [row["scores"] for row in results["predict"]], expected[image_dir], atol=1e-4
    )

    for task, (model, folder, inputs) in task_exports.items():
        want = keras_outputs(model, inputs)
        assert set(results[folder]) == set(want), task
        for key, value in want.items():
            if value.dtype.kind in "SO":
                assert results[folder][key] == [s.decode() for s in value.ravel()], (task, key)
            else:
                np.testing.assert_allclose(results[folder][key], value, atol=1e-4, err_msg=task)


def test_image_signatures_and_bytes_of_any_size(exports, image_model, image_files):
    import tensorflow as tf

    loaded = tf.saved_model.load(exports["image"])
    assert set(loaded.signatures) == {"serving_default", "serving_tensor", "classification"}
    inputs = loaded.signatures["serving_default"].structured_input_signature[1]
    assert inputs["image_bytes"].dtype == tf.string  # REST {"b64": ...} needs the _bytes suffix

    pixels = reference_pixels(image_files)
    want = softmax(image_model(pixels))
    data = [open(f, "rb").read() for f in image_files.values()]
    by_bytes = loaded.signatures["serving_default"](image_bytes=tf.constant(data))
    by_tensor = loaded.signatures["serving_tensor"](images=tf.constant(pixels))
    for out in (by_bytes, by_tensor):
        np.testing.assert_allclose(out["scores"].numpy(), want, atol=1e-4)
        assert out["top_k_labels"].shape == (3, 3)
        np.testing.assert_allclose(out["top_k_scores"].numpy()[:, 0], want.max(axis=1), atol=1e-4)


def test_bad_inputs_give_clear_errors(exports):
    import tensorflow as tf

    serve = tf.saved_model.load(exports["image"]).signatures["serving_default"]
    with pytest.raises(tf.errors.InvalidArgumentError, match="empty string"):
        serve(image_bytes=tf.constant([b""]))
    with pytest.raises(tf.errors.InvalidArgumentError, match="Unknown image file format"):
        serve(image_bytes=tf.constant([b"this is not an image"]))
    text = tf.saved_model.load(exports["text"][0]).signatures["serving_default"]
    with pytest.raises(tf.errors.InvalidArgumentError, match="expected to be a string tensor"):
        text(text=tf.constant([1.0]))
    for value in ("one text", [["nested"]]):
        with pytest.raises(tf.errors.InvalidArgumentError, match=r"tensor text \[.*\] is not comp"):
            text(text=tf.constant(value))
    with pytest.raises(
        tf.errors.InvalidArgumentError, match=r"tensor image_bytes \[\] is not comp"
    ):
        serve(image_bytes=tf.constant(b"not a batch"))


def test_parity_failure_publishes_nothing(tmp_path, text_model, monkeypatch):
    """A model that drifts between writing and checking (here: a bias nudged) is refused."""
    import tensorflow as tf

    import tltf
    from tltf.errors import ExportError

    bias = text_model.get_layer("logits").bias
    original = bias.numpy()
    real_save = tf.saved_model.save

    def save_then_drift(*args, **kwargs):
        real_save(*args, **kwargs)
        bias.assign(original + np.array([0.5, 0.0, 0.0], "float32"))

    monkeypatch.setattr(tf.saved_model, "save", save_then_drift)
    try:
        with pytest.raises(ExportError, match=r"differs from the Keras model's by 0\.\d+"):
            tltf.export(text_model, str(tmp_path / "drift"))
    finally:
        bias.assign(original)
    assert os.listdir(tmp_path / "drift") == []


def test_export_refuses_bad_arguments(tmp_path, exports, text_model):
    import tltf
    from tltf.errors import ExportError

    topics = os.path.dirname(exports["text"][0])
    with pytest.raises(ExportError, match="exists"):
        tltf.export(text_model, topics, version=1)
    with pytest.raises(ExportError, match="positive integers"):
        tltf.export(text_model, str(tmp_path), version=0)
    with pytest.raises(ExportError, match="tflite.*image and audio models"):
        tltf.export(text_model, str(tmp_path), formats=["saved_model", "tflite"])
    with pytest.raises(ExportError, match="formats="):
        tltf.export(text_model, str(tmp_path), formats=["onnx"])


def test_tflite_matches_keras(exports, image_model):
    import tensorflow as tf

    folder = os.path.join(exports["image"], "tflite")
    assert open(os.path.join(folder, "labels.txt")).read().splitlines() == CLASSES
    interpreter = tf.lite.Interpreter(model_path=os.path.join(folder, "model.tflite"))
    runner = interpreter.get_signature_runner("serving_tensor")
    images = np.random.default_rng(3).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    out = runner(images=images)
    np.testing.assert_allclose(out["scores"], softmax(image_model(images)), atol=1e-4)
    assert [s.decode() for s in out["label"]] == [CLASSES[i] for i in out["scores"].argmax(1)]


def test_onnx_conversion_gives_the_same_scores(tmp_path, exports, image_model):
    """tf2onnx converts the exported image SavedModel; onnxruntime serves the same scores."""
    pytest.importorskip("tf2onnx")
    ort = pytest.importorskip("onnxruntime")

    onnx_file = str(tmp_path / "pets.onnx")
    convert = [sys.executable, "-m", "tf2onnx.convert", "--saved-model", exports["image"]]
    convert += ["--signature_def", "serving_tensor", "--opset", "17", "--output", onnx_file]
    proc = subprocess.run(convert, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]

    session = ort.InferenceSession(onnx_file, providers=["CPUExecutionProvider"])
    (image_input,) = session.get_inputs()
    outputs = {o.name for o in session.get_outputs()}
    assert {"scores", "label", "top_k_labels", "top_k_scores"} <= outputs  # as in docs/serving.md
    images = np.random.default_rng(4).uniform(0, 255, (3, 32, 32, 3)).astype("float32")
    scores, labels = session.run(["scores", "label"], {image_input.name: images})
    want = softmax(image_model(images))
    np.testing.assert_allclose(scores, want, atol=1e-4)
    assert [str(s) for s in labels] == [CLASSES[i] for i in want.argmax(1)]
    assert np.ptp(want) > 1e-3  # input-dependent scores, so the comparison means something


def test_warmup_requests_parse_and_run(exports):
    import tensorflow as tf
    from tensorflow_serving.apis import prediction_log_pb2

    for folder, name in ((exports["text"][0], "topics"), (exports["image"], "pets")):
        file = os.path.join(folder, "assets.extra", "tf_serving_warmup_requests")
        records = list(tf.data.TFRecordDataset(file).as_numpy_iterator())
        assert records
        serve = tf.saved_model.load(folder).signatures["serving_default"]
        for record in records:
            request = prediction_log_pb2.PredictionLog.FromString(record).predict_log.request
            assert request.model_spec.name == name
            assert request.model_spec.signature_name == "serving_default"
            inputs = {k: tf.constant(tf.make_ndarray(v)) for k, v in request.inputs.items()}
            assert serve(**inputs)["scores"].shape[-1] == len(CLASSES)


def test_models_config_lists_each_model_once(exports):
    from google.protobuf import text_format
    from tensorflow_serving.config import model_server_config_pb2

    text = open(os.path.join(exports["root"], "models.config")).read()
    config = text_format.Parse(text, model_server_config_pb2.ModelServerConfig())
    entries = {c.name: c.base_path for c in config.model_config_list.config}
    assert entries == {"topics": "/models/topics", "pets": "/models/pets"}
    assert all(c.model_platform == "tensorflow" for c in config.model_config_list.config)


def test_without_serving_api_there_is_no_warmup_file(tmp_path, text_model, monkeypatch):
    import tltf

    for name in ("tensorflow_serving", "tensorflow_serving.apis", "tensorflow_serving.config"):
        monkeypatch.setitem(sys.modules, name, None)  # as if not installed
    with pytest.warns(UserWarning, match="tensorflow-serving-api is not installed"):
        folder = tltf.export(text_model, str(tmp_path / "plain"), parity_inputs=["one text"])
    assert sorted(os.listdir(os.path.join(folder, "assets.extra"))) == ["labels.txt", "tltf.json"]
    assert not os.path.exists(tmp_path / "models.config")


KILL_SCRIPT = textwrap.dedent(
    """
    import os, sys, time
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    import tltf
    from tltf import serving

    def stall(saved, *args):
        print("WRITTEN", sorted(os.listdir(saved)), flush=True)
        time.sleep(120)

    serving._check_parity = stall
    model = tltf.build("keras:MobileNetV2", weights=None, input_shape=(32, 32, 3), num_classes=2)
    tltf.export(model, sys.argv[1])
    """
)


def test_kill_mid_export_leaves_no_version(tmp_path, text_model):
    import tltf

    target = str(tmp_path / "killed")
    proc = subprocess.Popen(
        [sys.executable, "-c", KILL_SCRIPT, target],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        line = proc.stdout.readline()  # the SavedModel is on disk, not yet published
        assert line.startswith("WRITTEN") and "saved_model.pb" in line
        assert [n for n in os.listdir(target) if n.isdigit()] == []
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    leftovers = os.listdir(target)
    assert len(leftovers) == 1 and leftovers[0].startswith(".tmp-1-")  # no partial version
    assert tltf.export(text_model, target, parity_inputs=["x"]).endswith(os.sep + "1")
    assert os.listdir(target) == ["1"]  # the dead export's temporary folder is cleaned up


def test_quantized_tflite_from_pixel_parity_inputs(tmp_path, exports, image_model):
    import tltf

    pixels = np.random.default_rng(5).uniform(0, 255, (4, 32, 32, 3)).astype("float32")
    folder = tltf.export(
        image_model,
        str(tmp_path / "small"),
        formats=["saved_model", "tflite"],
        quantize=True,
        parity_inputs=pixels,
    )
    size = os.path.getsize(os.path.join(folder, "tflite", "model.tflite"))
    float_size = os.path.getsize(os.path.join(exports["image"], "tflite", "model.tflite"))
    assert size < 0.5 * float_size
    report = json.load(open(os.path.join(folder, "assets.extra", "tltf.json")))["parity"]
    assert report["tflite"]["quantized"] is True and report["tflite"]["bytes"] == size
    assert report["serving_tensor"]["scores"] <= 1e-4  # the SavedModel itself stays exact


def predict_args(*argv: str):
    import argparse

    from tltf.commands import predict

    parser = argparse.ArgumentParser()
    predict.add_arguments(parser)
    return predict.run, parser.parse_args(argv)


def test_predict_command_json_and_table(exports, text_model, image_model, image_files, capsys):
    from tltf.cli import COMMANDS

    assert COMMANDS["predict"] == "tltf.commands.predict"
    run, args = predict_args(os.path.dirname(exports["text"][0]), *TEXTS[:2], "--json")
    assert run(args) == 0
    rows = json.loads(capsys.readouterr().out)
    want = softmax(text_model(np.array(TEXTS[:2])))
    assert [r["input"] for r in rows] == TEXTS[:2]
    assert [r["label"] for r in rows] == [CLASSES[i] for i in want.argmax(1)]
    np.testing.assert_allclose([r["scores"] for r in rows], want, atol=1e-4)

    run, args = predict_args(exports["image"], *image_files.values())
    assert run(args) == 0
    lines = capsys.readouterr().out.splitlines()
    want = softmax(image_model(reference_pixels(image_files)))
    assert lines[0].split() == ["INPUT", "OUTPUTS"] and len(lines) == 1 + len(image_files)
    for line, scores, name in zip(lines[1:], want, image_files, strict=True):
        top = CLASSES[int(scores.argmax())]
        assert line.split("  ")[-1].startswith(f"{top} {scores.max():.3f}")
        assert line.split()[0].endswith(name)  # long paths are cut in front: the name shows


def test_predict_reads_a_csv_column(tmp_path, exports, image_files, capsys):
    table = os.path.join(os.path.dirname(image_files["exact.png"]), "images.csv")
    with open(table, "w") as fh:  # image paths relative to the CSV's folder
        fh.write("path,note\n" + "".join(f"{name},x\n" for name in image_files))
    run, args = predict_args(exports["image"], table, "--column", "path", "--json")
    assert run(args) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["input"] for r in rows] == list(image_files.values())

    from tltf.errors import TltfError

    run, args = predict_args(exports["image"], table, "--column", "file")
    with pytest.raises(TltfError, match="no column 'file'"):
        run(args)
    run, args = predict_args(exports["image"], table, "--column", "path", "--column", "note")
    with pytest.raises(TltfError, match="takes one input each, not pairs"):
        run(args)
    run, args = predict_args(exports["image"], str(tmp_path / "missing.png"))
    with pytest.raises(TltfError, match="no such image file"):
        run(args)


def test_predict_feeds_text_pairs(tmp_path, task_exports, capsys):
    model, folder, _ = task_exports["text_pair"]
    want = softmax(model((np.array(PAIRS[0][:2]), np.array(PAIRS[1][:2]))))
    typed = [f"{a} ||| {b}" for a, b in zip(PAIRS[0][:2], PAIRS[1][:2], strict=True)]
    run, args = predict_args(folder, *typed, "--json")
    assert run(args) == 0
    rows = json.loads(capsys.readouterr().out)
    np.testing.assert_allclose([r["scores"] for r in rows], want, atol=1e-4)

    table = tmp_path / "pairs.csv"
    table.write_text("q,a\n" + "".join(f"{a},{b}\n" for a, b in zip(*PAIRS, strict=True)))
    run, args = predict_args(folder, str(table), "--column", "q", "--column", "a", "--json")
    assert run(args) == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows[0]["input"] == [PAIRS[0][0], PAIRS[1][0]]
    np.testing.assert_allclose([r["scores"] for r in rows[:2]], want, atol=1e-4)

    from tltf.errors import TltfError

    run, args = predict_args(folder, "only one text")
    with pytest.raises(TltfError, match="Input 1 .* takes text pairs"):
        run(args)
    from tltf.commands.predict import predict

    with pytest.raises(TltfError, match="Input 2 has 3 parts"):
        predict(folder, [("a", "b"), ("a", "b", "c")])


def load_grpc_client():
    import importlib.util

    path = os.path.join(os.path.dirname(__file__), "..", "export", "grpc_client.py")
    spec = importlib.util.spec_from_file_location("grpc_client", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_grpc_client_requests_fit_the_signatures(exports, image_files, capsys):
    """A local gRPC PredictionService that runs the SavedModel stands in for TF Serving."""
    from concurrent import futures

    import grpc
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    client = load_grpc_client()
    served = {
        "topics": tf.saved_model.load(exports["text"][0]),
        "pets": tf.saved_model.load(exports["image"]),
    }

    class Service(prediction_service_pb2_grpc.PredictionServiceServicer):
        def Predict(self, request, context):
            fn = served[request.model_spec.name].signatures[request.model_spec.signature_name]
            specs = fn.structured_input_signature[1]
            assert set(request.inputs) == set(specs)
            inputs = {}
            for name, proto in request.inputs.items():
                assert tf.dtypes.as_dtype(proto.dtype) == specs[name].dtype
                inputs[name] = tf.constant(tf.make_ndarray(proto))
            response = predict_pb2.PredictResponse()
            for key, value in fn(**inputs).items():
                response.outputs[key].CopyFrom(tf.make_tensor_proto(value.numpy()))
            return response

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=1))
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(Service(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        address = f"127.0.0.1:{port}"
        assert client.main(["--model", "topics", "--server", address, *TEXTS[:2]]) == 0
        assert client.main(["--model", "pets", "--server", address, *image_files.values()]) == 0
        request = client.make_request("pets", list(image_files.values()))
        outputs = client.predict(address, request)
    finally:
        server.stop(None)
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 + len(image_files)
    assert all(line.split()[-2] in CLASSES for line in lines)
    direct = served["pets"].signatures["serving_default"](
        image_bytes=tf.constant([open(p, "rb").read() for p in image_files.values()])
    )
    np.testing.assert_allclose(outputs["scores"], direct["scores"].numpy(), atol=1e-6)


def test_classify_and_regress_apis_with_tf_servings_protos(
    exports, image_files, tmp_path, tiny_bert_dir
):
    """TF Serving's Classify and Regress (gRPC, and REST :classify / :regress) take serialized
    tf.Examples and need a signature of that method; a local PredictionService that checks
    what TF Serving checks (servables/tensorflow/classifier.cc, regressor.cc) stands in."""
    from concurrent import futures

    import grpc
    import tensorflow as tf
    from tensorflow.core.protobuf import saved_model_pb2
    from tensorflow_serving.apis import (
        classification_pb2,
        input_pb2,
        model_pb2,
        prediction_service_pb2_grpc,
        regression_pb2,
    )

    import tltf

    regressor = tltf.build(
        f"keras_hub:{tiny_bert_dir}", task="regression", class_names=["stars"], sequence_length=16
    )
    folders = {
        "topics": exports["text"][0],
        "pets": exports["image"],
        "stars": tltf.export(regressor, str(tmp_path / "stars")),
    }
    loaded = {name: tf.saved_model.load(f) for name, f in folders.items()}

    def signature_def(model: str, name: str, method: str):
        proto = saved_model_pb2.SavedModel()
        proto.ParseFromString(open(os.path.join(folders[model], "saved_model.pb"), "rb").read())
        found = proto.meta_graphs[0].signature_def[name]
        assert found.method_name == method  # TF Serving refuses any other method
        (tensor,) = found.inputs.values()  # one input: the serialized Examples
        assert tensor.dtype == tf.string.as_datatype_enum
        return loaded[model].signatures[name]

    def run(request, name: str, method: str):
        fn = signature_def(request.model_spec.name, request.model_spec.signature_name, method)
        examples = [e.SerializeToString() for e in request.input.example_list.examples]
        return fn(inputs=tf.constant(examples))

    class Service(prediction_service_pb2_grpc.PredictionServiceServicer):
        def Classify(self, request, context):
            out = run(request, "classification", "tensorflow/serving/classify")
            response = classification_pb2.ClassificationResponse()
            for classes, scores in zip(out["classes"].numpy(), out["scores"].numpy(), strict=True):
                row = response.result.classifications.add()
                for label, score in zip(classes, scores, strict=True):
                    row.classes.add(label=label.decode(), score=float(score))
            return response

        def Regress(self, request, context):
            out = run(request, "regression", "tensorflow/serving/regress")
            response = regression_pb2.RegressionResponse()
            for value in out["outputs"].numpy():
                response.result.regressions.add(value=float(value))
            return response

    def example(**features):
        return input_pb2.Input(
            example_list=input_pb2.ExampleList(
                examples=[
                    tf.train.Example(
                        features=tf.train.Features(
                            feature={
                                k: tf.train.Feature(bytes_list=tf.train.BytesList(value=[v]))
                                for k, v in features.items()
                            }
                        )
                    )
                ]
            )
        )

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=1))
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(Service(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(
            grpc.insecure_channel(f"127.0.0.1:{port}")
        )
        spec = model_pb2.ModelSpec
        text = stub.Classify(
            classification_pb2.ClassificationRequest(
                model_spec=spec(name="topics", signature_name="classification"),
                input=example(text=TEXTS[0].encode()),
            )
        )
        image = open(image_files["wide.jpg"], "rb").read()
        picture = stub.Classify(
            classification_pb2.ClassificationRequest(
                model_spec=spec(name="pets", signature_name="classification"),
                input=example(image_bytes=image),
            )
        )
        stars = stub.Regress(
            regression_pb2.RegressionRequest(
                model_spec=spec(name="stars", signature_name="regression"),
                input=example(text=b"a great game"),
            )
        )
    finally:
        server.stop(None)
    predicted = {
        "topics": loaded["topics"].signatures["serving_default"](text=tf.constant(TEXTS[:1])),
        "pets": loaded["pets"].signatures["serving_default"](image_bytes=tf.constant([image])),
    }
    for name, response in (("topics", text), ("pets", picture)):
        (row,) = response.result.classifications
        assert [c.label for c in row.classes] == CLASSES
        np.testing.assert_allclose(
            [c.score for c in row.classes], predicted[name]["scores"].numpy()[0], atol=1e-6
        )
    direct = loaded["stars"].signatures["serving_default"](text=tf.constant(["a great game"]))
    (value,) = stars.result.regressions
    assert value.value == pytest.approx(float(direct["predictions"].numpy()[0, 0]), abs=1e-5)


def test_mixed_precision_export_uses_the_looser_tolerance(tmp_path, tiny_bert_dir):
    import tltf

    model = tltf.build(
        f"keras_hub:{tiny_bert_dir}",
        class_names=CLASSES,
        sequence_length=16,
        precision="mixed_bfloat16",
    )
    folder = tltf.export(model, str(tmp_path / "mixed"), parity_inputs=TEXTS)
    parity = json.load(open(os.path.join(folder, "assets.extra", "tltf.json")))["parity"]
    assert parity["tolerance"] == 1e-2
    assert parity["serving_default"]["scores"] <= 1e-2


def test_task_outputs_have_the_documented_shapes(task_exports):
    outputs = {task: keras_outputs(m, inputs) for task, (m, _, inputs) in task_exports.items()}
    assert outputs["text_pair"]["scores"].shape == (len(PAIRS[0]), 2)
    assert set(outputs["multilabel"]) == {"scores", "predicted", "labels"}
    assert outputs["regression"]["predictions"].shape == (len(TEXTS), 2)
    words = outputs["token_classification"]["words"]
    assert [w.decode() for w in words[0] if w] == TEXTS[0].split()
    embedding = outputs["embedding"]["embedding"]
    np.testing.assert_allclose(np.linalg.norm(embedding, axis=1), 1.0, atol=1e-5)
    for task, (_, folder, _) in task_exports.items():
        manifest = json.load(open(os.path.join(folder, "assets.extra", "tltf.json")))
        assert manifest["task"] == task
        labels = open(os.path.join(folder, "assets.extra", "labels.txt")).read().splitlines()
        assert labels == TASKS[task]["class_names"]


def test_text_pair_parity_inputs_are_two_lists(tmp_path, task_exports):
    import tltf
    from tltf.errors import ExportError

    model = task_exports["text_pair"][0]
    with pytest.raises(ExportError, match=r"\(texts, second_texts\)"):
        tltf.export(model, str(tmp_path / "pair"), parity_inputs=TEXTS)


def test_predict_and_evaluate_name_the_bad_file(tmp_path, exports, image_files):
    """A truncated image, a non-image, a non-UTF-8 CSV, image paths given to a text export,
    and an image folder evaluated by a text export: each one line naming the file."""
    from tltf.commands.evaluate import evaluate_export
    from tltf.errors import DataError, TltfError

    whole = open(image_files["exact.png"], "rb").read()
    (tmp_path / "cut.png").write_bytes(whole[: len(whole) // 3])
    (tmp_path / "notes.png").write_text("not an image at all")
    for name in ("cut.png", "notes.png"):
        run, args = predict_args(exports["image"], image_files["exact.png"], str(tmp_path / name))
        with pytest.raises(TltfError, match=f"{name}: the export cannot decode it"):
            run(args)
    (tmp_path / "latin.csv").write_bytes(b"text\ncaf\xe9 au lait\n")
    run, args = predict_args(exports["text"][-1], str(tmp_path / "latin.csv"), "--column", "text")
    with pytest.raises(DataError, match="latin.csv line 2: not valid UTF-8"):
        run(args)
    run, args = predict_args(exports["text"][-1], image_files["exact.png"])
    with pytest.warns(UserWarning, match="exact.png is a file, and .* takes texts"):
        assert run(args) == 0

    import tltf

    folder = tmp_path / "photos"
    for label in ("cats", "dogs"):
        (folder / label).mkdir(parents=True)
        for i in range(2):
            (folder / label / f"{i}.png").write_bytes(whole)
    images = tltf.data.from_directory(str(folder))
    with pytest.raises(TltfError, match="is a text model, and .* holds image examples"):
        evaluate_export(os.path.dirname(exports["text"][-1]), images)


def test_serving_checks_shapes_empty_batches_and_pixel_counts(exports, image_files):
    """What a server sends is checked in the graph: a tensor of the wrong size, an empty
    batch, and an image whose header claims more pixels than the loader's limit."""
    import struct

    import tensorflow as tf

    from tltf.modalities.image import header_pixels
    from tltf.modalities.image_files import MAX_PIXELS

    loaded = tf.saved_model.load(exports["image"])
    encoded, tensor = loaded.signatures["serving_default"], loaded.signatures["serving_tensor"]
    # TensorFlow 2.21 fails on a batch of 0 in Conv2D -> BatchNorm ("Incompatible shapes:
    # [0,32,32,3] vs. [32]"); both signatures serve it as one zero example, cut off
    for out in (
        encoded(image_bytes=tf.constant([], tf.string)),
        tensor(images=tf.zeros([0, 32, 32, 3])),
    ):
        assert out["scores"].shape[0] == 0 and out["label"].shape == (0,)
    one = tf.random.uniform([1, 32, 32, 3], 0, 255)
    two = tensor(images=tf.concat([one, one], 0))["scores"]
    np.testing.assert_allclose(tensor(images=one)["scores"], two[:1], rtol=1e-5, atol=1e-6)
    with pytest.raises(
        tf.errors.InvalidArgumentError,
        match=r"\[1,64,64,3\] is not compatible with expected shape \[\?,32,32,3\]",
    ):
        tensor(images=tf.zeros([1, 64, 64, 3]))
    png = open(image_files["exact.png"], "rb").read()
    assert int(header_pixels(tf.constant(png))) == 32 * 32
    jpeg = open(image_files["wide.jpg"], "rb").read()
    assert int(header_pixels(tf.constant(jpeg))) == 40 * 90
    huge = png[:16] + struct.pack(">II", 12_000, 12_000) + png[24:]  # 144 megapixels claimed
    assert int(header_pixels(tf.constant(huge))) == 144_000_000 > MAX_PIXELS
    with pytest.raises(tf.errors.InvalidArgumentError, match="more than 89,478,485 pixels"):
        encoded(image_bytes=tf.constant([png, huge]))
