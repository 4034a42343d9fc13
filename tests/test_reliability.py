"""Bad inputs and faults, one row each: the input, the error class and the words it must say.

The rows come from a reliability trial (issue 19) that tried faults as a careful user
would; each was a raw Python, TensorFlow or Keras error, or a silent wrong result,
before. Cases that need an export are in tests/test_export.py
(`test_predict_and_evaluate_name_the_bad_file`), the resume cases in tests/test_resume.py.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest

import tltf
from tltf.config import ConfigError, check
from tltf.errors import DataError, FolderInUse, SpecError


def _csv(tmp_path, text: str) -> str:
    path = tmp_path / "r.csv"
    path.write_text(text)
    return str(path)


def _keras_file(tmp_path, *, truncated: bool = False, custom: bool = False) -> str:
    import keras

    class Doubler(keras.layers.Layer):  # not registered: Keras cannot find it on load
        def call(self, x):
            return 2 * x

    inputs = keras.Input((3,))
    x = Doubler()(inputs) if custom else inputs
    path = str(tmp_path / "m.keras")
    keras.Model(inputs, keras.layers.Dense(2)(x)).save(path)
    if truncated:
        raw = open(path, "rb").read()
        open(path, "wb").write(raw[: len(raw) // 2])
    return path


def _image_model():
    return tltf.build(
        "keras:MobileNetV2", class_names=["a", "b"], weights=None, input_shape=(32, 32, 3)
    )


# (case, call, error class, words the message must hold)
CASES = [
    (
        "CSV row with a field too many",
        lambda tmp: tltf.data.from_csv(_csv(tmp, "text,label\nhi,a\nyo,b\ntoo,many,fields\n")),
        DataError,
        r"r.csv line 4: 3 fields, header has 2 \(quote texts that contain commas",
    ),
    (
        "arrays of different lengths",
        lambda tmp: tltf.data.from_arrays(["a", "b", "c"], ["x", "y"]),
        DataError,
        "arrays: 3 examples but 2 labels",
    ),
    (
        "fine_tune arrays of different lengths",
        lambda tmp: tltf.fine_tune(_image_model(), (np.zeros((3, 32, 32, 3)), [0, 1]), epochs=1),
        DataError,
        r"\(x, y\) arrays of different lengths \(\[2, 3\]\)",
    ),
    (
        "file paths given to an image model",
        lambda tmp: tltf.fine_tune(_image_model(), (["a.png", "b.png"], [0, 1]), epochs=1),
        DataError,
        "x holds str values such as 'a.png', and this image model takes float32 arrays",
    ),
    ("epochs < 0", lambda tmp: tltf.fine_tune(None, None, epochs=-1), SpecError, "epochs=-1"),
    (
        "freeze_epochs < 0",
        lambda tmp: tltf.fine_tune(None, None, freeze_epochs=-1),
        SpecError,
        "freeze_epochs=-1: must be a whole number of at least 0",
    ),
    (
        "lr <= 0",
        lambda tmp: tltf.fine_tune(None, None, lr=0.0),
        SpecError,
        "lr=0.0: must be above 0",
    ),
    (
        "head_lr <= 0",
        lambda tmp: tltf.fine_tune(None, None, head_lr=-1e-3),
        SpecError,
        "head_lr=-0.001: must be above 0",
    ),
    (
        "batch_size = 0",
        lambda tmp: tltf.fine_tune(None, None, batch_size=0),
        SpecError,
        "batch_size=0: must be a whole number of at least 1",
    ),
    (
        "config epochs -1",
        lambda tmp: check({"epochs": -1}, "run.yaml"),
        ConfigError,
        "run.yaml: epochs=-1",
    ),
    (
        "config image_size 0",
        lambda tmp: check({"image_size": "0"}, "--image-size"),
        ConfigError,
        "image_size=0: must be a whole number of at least 1",
    ),
    (
        "backbone option typo poolling",
        lambda tmp: tltf.load_backbone("keras:MobileNet", poolling="avg"),
        SpecError,
        "unknown option poolling=; did you mean 'pooling'",
    ),
    (
        "backbone option typo wieghts",
        lambda tmp: tltf.build("keras:MobileNet", class_names=["a", "b"], wieghts=None),
        SpecError,
        "unknown option wieghts=; did you mean 'weights'",
    ),
    (
        "KerasHub option typo",
        lambda tmp: tltf.load_backbone("hf:org/model", sequence_lenght=64),
        SpecError,
        "did you mean 'sequence_length'",
    ),
    (
        "truncated .keras file",
        lambda tmp: tltf.load_model(_keras_file(tmp, truncated=True)),
        SpecError,
        r"m.keras: not a valid .keras archive \(truncated",
    ),
    (
        "unregistered custom layer",
        lambda tmp: tltf.load_backbone(f"file:{_keras_file(tmp, custom=True)}"),
        SpecError,
        "holds 'Doubler', a class Keras does not know here.*register_keras_serializable",
    ),
]


@pytest.mark.parametrize("case,call,error,words", CASES, ids=[c[0] for c in CASES])
def test_bad_input_gets_one_clear_error(tmp_path, case, call, error, words):
    with pytest.raises(error, match=words):
        call(tmp_path)


def test_labels_are_stripped_and_case_twins_warned(tmp_path):
    path = _csv(tmp_path, "text,label\nhello,cats \nworld,dogs\nmore,cats\nagain,Dogs\n")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        data = tltf.data.from_csv(path)
    assert data.class_names == ["Dogs", "cats", "dogs"]  # "cats " is "cats"
    assert list(data.labels) == [1, 2, 1, 0]
    said = [str(w.message) for w in caught]
    assert any("r.csv line 2: label 'cats ' has surrounding whitespace" in m for m in said)
    assert any("'Dogs' and 'dogs'" in m for m in said)


def test_epochs_zero_that_trains_nothing_is_refused(tmp_path, tiny_bert_dir):
    model = tltf.build(
        f"keras_hub:{tiny_bert_dir}", class_names=["a", "b"], freeze="all", sequence_length=16
    )
    never = tmp_path / "never"
    with pytest.raises(SpecError, match="epochs=0 with freeze='all' trains nothing"):
        tltf.fine_tune(model, (["x", "y"], ["a", "b"]), epochs=0, run_dir=str(never))
    assert not never.exists()  # refused before anything was written


def test_cli_refuses_negative_epochs_with_exit_code_2(tmp_path, capsys):
    from tltf.cli import main

    run_dir = tmp_path / "run"
    code = main(["train", "--data", "x.csv", "--epochs", "-1", "--run-dir", str(run_dir)])
    assert code == 2
    assert "epochs=-1" in capsys.readouterr().err
    assert not run_dir.exists()  # nothing left behind


def test_max_pixels_above_pillows_limit_names_the_real_limit(tmp_path, monkeypatch):
    from PIL import Image

    from tltf.modalities.image_files import inspect_image

    Image.new("RGB", (40, 30)).save(tmp_path / "big.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 500)  # Pillow refuses over 1,000
    with pytest.raises(DataError, match="over Pillow's own hard limit of 1,000") as caught:
        inspect_image(str(tmp_path / "big.png"), max_pixels=5_000)
    assert "5,000" not in str(caught.value)  # no "over the limit of 5,000"
    with pytest.raises(DataError, match="over the limit of 600"):
        inspect_image(str(tmp_path / "big.png"), max_pixels=600)


def test_a_jpeg_with_damaged_scan_data_is_skipped_or_refused_under_strict(tmp_path):
    from PIL import Image

    pixels = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    for label in ("a", "b"):
        (tmp_path / label).mkdir()
        for i in range(2):
            Image.fromarray(pixels).save(tmp_path / label / f"{i}.jpg", quality=90)
    path = tmp_path / "a" / "0.jpg"
    raw = bytearray(path.read_bytes())
    middle = (raw.find(b"\xff\xda") + len(raw)) // 2  # inside the scan, after the header
    raw[middle : middle + 200] = bytes(200)
    path.write_bytes(bytes(raw))
    with Image.open(path) as im:
        im.load()  # Pillow decodes it without a word, into garbage pixels
    data = tltf.data.from_directory(str(tmp_path), verbose=False)
    assert len(data) == 3 and data.skipped == [(str(path), "damaged")]
    assert "1 damaged (0.jpg)" in data.report()
    with pytest.raises(DataError, match="0.jpg: damaged JPEG data .*libjpeg reports corrupt"):
        tltf.data.from_directory(str(tmp_path), strict=True, verbose=False)


HOLDER = textwrap.dedent(
    """
    import sys, time
    from tltf.io import FolderLock
    FolderLock(sys.argv[1]).acquire()
    print("locked", flush=True)
    time.sleep(60)
    """
)


def test_a_run_folder_has_one_writer_and_a_dead_holder_frees_it(tmp_path):
    from tltf.io import FolderLock

    folder = str(tmp_path / "run")
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, folder], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(FolderInUse, match=f"run is in use by PID {holder.pid}"):
            FolderLock(folder).acquire()
    finally:
        holder.kill()  # as kill -9: the lock file stays, the kernel drops the lock
        holder.wait()
    with FolderLock(folder) as lock:  # the stale lock is taken over
        again = FolderLock(folder).acquire()  # re-entrant within one process
        again.release()
        assert lock.held
    assert open(os.path.join(folder, ".lock")).read() == str(os.getpid())


def test_fine_tune_under_a_held_run_folder_is_refused(tmp_path, tiny_bert_dir):
    from tltf.io import FolderLock

    folder = str(tmp_path / "run")
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, folder], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        model = tltf.build(
            f"keras_hub:{tiny_bert_dir}", class_names=["a", "b"], freeze="all", sequence_length=16
        )
        before = [w.numpy().copy() for w in model.weights]
        with pytest.raises(FolderInUse, match=f"in use by PID {holder.pid}"):
            tltf.fine_tune(model, (["x", "y"], ["a", "b"]), epochs=1, run_dir=folder, verbose=0)
        for w, b in zip(model.weights, before, strict=True):
            np.testing.assert_array_equal(w.numpy(), b)  # nothing trained
        assert sorted(os.listdir(folder)) == [".lock"]
    finally:
        holder.kill()
        holder.wait()
    assert FolderLock(folder).acquire().held
