"""WAV files to mono 16 kHz waveforms, in Python (loading) and in the graph (serving).

Training and serving treat a clip the same way: mixed down to mono, resampled to
`SAMPLE_RATE` by linear interpolation, then padded with silence on both sides or
cut to its middle to the model's clip length (`fit_length`). The Python reader takes
PCM of 8, 16, 24 and 32 bits and 32/64-bit float WAV; the serving graph decodes with
`tf.audio.decode_wav`, which takes 16-bit PCM only.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Sequence
from typing import Any

import numpy as np

from tltf.errors import DataError
from tltf.io import files_below

SAMPLE_RATE = 16000
MIN_SAMPLES = SAMPLE_RATE // 10  # float inputs narrower than 0.1 s are not waveforms
WAV_EXTENSIONS = (".wav", ".wave")
_PCM, _FLOAT, _EXTENSIBLE = 1, 3, 0xFFFE
_STREAMING = 0x7FFF0000  # data sizes from here up mean "unknown, until the end of the file"


def is_wav_file(path: str) -> bool:
    """Whether `path` has a WAV file extension."""
    return path.lower().endswith(WAV_EXTENSIONS)


def read_wav(source: str | bytes) -> tuple[np.ndarray, int]:
    """``(mono float32 waveform in [-1, 1], sample rate)`` of a WAV file or its bytes.

    Example:
        >>> wave, rate = read_wav("clips/hey/001.wav")
        >>> wave.dtype, rate
        (dtype('float32'), 22050)

    Raises `DataError` saying what is wrong: not a WAV file, an encoding it cannot
    read (compressed WAV), truncated, or no samples.
    """
    name = source if isinstance(source, str) else "<wav bytes>"
    if isinstance(source, str):
        with open(source, "rb") as fh:
            data = fh.read()
    else:
        data = bytes(source)
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise DataError(f"{name}: not a WAV file (no RIFF/WAVE header)")
    fmt, samples, pos = None, None, 12
    while pos + 8 <= len(data):
        chunk, size = data[pos : pos + 4], struct.unpack("<I", data[pos + 4 : pos + 8])[0]
        body = data[pos + 8 : pos + 8 + size]
        if chunk == b"fmt ":
            if len(body) < 16:
                raise DataError(f"{name}: truncated format chunk")
            tag, channels, rate, _, _, bits = struct.unpack("<HHIIHH", body[:16])
            if tag == _EXTENSIBLE and len(body) >= 26:
                tag = struct.unpack("<H", body[24:26])[0]
            fmt = (tag, channels, rate, bits)
        elif chunk == b"data":
            if size >= _STREAMING:  # a streamed file (espeak-ng --stdout): to the end
                body = data[pos + 8 :]
            elif len(body) < size:
                raise DataError(f"{name}: truncated ({len(body)} of {size} data bytes)")
            samples = body
            break
        pos += 8 + size + (size & 1)
    if fmt is None or samples is None:
        raise DataError(
            f"{name}: truncated or malformed WAV (no {'fmt' if fmt is None else 'data'} chunk)"
        )
    tag, channels, rate, bits = fmt
    wave = _decode(samples, tag, bits, name)
    if channels < 1 or rate < 1:
        raise DataError(f"{name}: malformed WAV ({channels} channels at {rate} Hz)")
    wave = wave[: len(wave) // channels * channels].reshape(-1, channels).mean(axis=1)
    if not len(wave):
        raise DataError(f"{name}: empty (no samples)")
    return wave.astype("float32"), int(rate)


def _decode(raw: bytes, tag: int, bits: int, name: str) -> np.ndarray:
    if tag == _FLOAT and bits in (32, 64):
        return np.frombuffer(raw[: len(raw) // (bits // 8) * (bits // 8)], f"<f{bits // 8}")
    if tag != _PCM or bits not in (8, 16, 24, 32):
        raise DataError(
            f"{name}: WAV encoding {tag} at {bits} bits; tltf reads PCM (8, 16, 24, 32 bits) "
            "and float WAV. Convert it, e.g. ffmpeg -i in.wav -c:a pcm_s16le out.wav"
        )
    if bits == 8:
        return (np.frombuffer(raw, np.uint8).astype("float32") - 128) / 128
    if bits == 24:
        b = np.frombuffer(raw[: len(raw) // 3 * 3], np.uint8).reshape(-1, 3).astype(np.int32)
        return ((b[:, 0] | b[:, 1] << 8 | b[:, 2] << 16) << 8 >> 8) / float(1 << 23)
    kind = "<i2" if bits == 16 else "<i4"
    return np.frombuffer(raw[: len(raw) // (bits // 8) * (bits // 8)], kind) / float(
        1 << (bits - 1)
    )


def resample(wave: np.ndarray, rate: int, target: int = SAMPLE_RATE) -> np.ndarray:
    """`wave` at `target` Hz, by linear interpolation (as `resample_graph`).

    Example:
        >>> len(resample(np.zeros(22050, "float32"), 22050))
        16000
    """
    if rate == target:
        return wave.astype("float32")
    n = int(len(wave) * target // rate)
    return np.interp(np.arange(n) * (rate / target), np.arange(len(wave)), wave).astype("float32")


def fit_length(wave: np.ndarray, samples: int) -> np.ndarray:
    """`wave` padded with silence on both sides, or cut to its middle, to `samples`."""
    if len(wave) >= samples:
        start = (len(wave) - samples) // 2
        return wave[start : start + samples]
    left = (samples - len(wave)) // 2
    return np.pad(wave, (left, samples - len(wave) - left))


def scan_audio(
    paths: Sequence[str], *, strict: bool
) -> tuple[list[np.ndarray], list[int], list[tuple[str, str]]]:
    """Reads WAV files: ``(waveforms at SAMPLE_RATE, indices kept, (file, reason) skipped)``.

    Unreadable, empty and silent files are skipped (with `strict`, a `DataError`).
    """
    waves, keep, skipped = [], [], []
    for i, path in enumerate(paths):
        try:
            if not os.path.isfile(path):
                raise DataError(f"{path}: no such file")
            wave, rate = read_wav(path)
            if not np.any(wave):
                raise DataError(f"{path}: silent (every sample is 0)")
        except DataError as exc:
            if strict:
                raise DataError(f"{exc} (strict=True; without it the file is skipped)") from None
            skipped.append((path, str(exc).split(": ", 1)[-1]))
            continue
        waves.append(resample(wave, rate))
        keep.append(i)
    return waves, keep, skipped


def load_noise(noise: Any) -> np.ndarray:
    """Background noise for `AudioAugment`: one 16 kHz waveform from a folder of WAV
    files (searched below it), a WAV file, a list of them, or a waveform.

    Raises `DataError` naming the file that cannot be read, or saying that none was found.
    """
    if isinstance(noise, np.ndarray):
        wave = noise.astype("float32").reshape(-1)
        what = "noise waveform"
    else:
        paths = [noise] if isinstance(noise, (str, os.PathLike)) else list(noise)
        files = []
        for path in map(str, paths):
            if os.path.isdir(path):
                found = [f for f in files_below(path) if is_wav_file(f)]
                if not found:
                    raise DataError(f"noise={path!r}: no .wav files in this folder.")
                files += found
            elif os.path.isfile(path):
                files.append(path)
            else:
                raise DataError(f"noise={path!r}: no such file or folder.")
        waves = [resample(*read_wav(path)) for path in files]
        wave = np.concatenate(waves) if waves else np.zeros(0, "float32")
        what = f"noise={noise!r}"
    if len(wave) < MIN_SAMPLES or not np.all(np.isfinite(wave)) or not np.any(wave):
        raise DataError(
            f"{what}: give at least 0.1 s of finite, non-silent 16 kHz audio in [-1, 1]."
        )
    return wave


def decode_wav_graph(wav_bytes: Any, samples: int) -> Any:
    """WAV bytes ``[N]`` -> float32 ``[N, samples]`` at `SAMPLE_RATE`, in the graph.

    16-bit PCM (`tf.audio.decode_wav`), mixed to mono, resampled and fitted to
    `samples` as in training.
    """
    import tensorflow as tf

    def decode(data):
        tf.debugging.assert_positive(
            tf.strings.length(data), message="wav_bytes holds an empty string; send a WAV file"
        )
        audio, rate = tf.audio.decode_wav(data)
        wave = tf.reduce_mean(audio, axis=1)
        return fit_length_graph(resample_graph(wave, rate), samples)

    return tf.map_fn(decode, wav_bytes, fn_output_signature=tf.TensorSpec([samples], tf.float32))


def resample_graph(wave: Any, rate: Any, target: int = SAMPLE_RATE) -> Any:
    """`resample` in TensorFlow ops (linear interpolation)."""
    import tensorflow as tf

    rate = tf.cast(rate, tf.int64)
    n = tf.cast(tf.shape(wave, out_type=tf.int64)[0] * target // rate, tf.int32)
    pos = tf.cast(tf.range(n), tf.float64) * (tf.cast(rate, tf.float64) / target)
    last = tf.shape(wave)[0] - 1
    low = tf.minimum(tf.cast(tf.floor(pos), tf.int32), last)
    high = tf.minimum(low + 1, last)
    frac = tf.cast(pos - tf.cast(low, tf.float64), tf.float32)
    return tf.gather(wave, low) * (1 - frac) + tf.gather(wave, high) * frac


def fit_length_graph(wave: Any, samples: int) -> Any:
    """`fit_length` in TensorFlow ops."""
    import tensorflow as tf

    n = tf.shape(wave)[0]
    start = tf.maximum(0, (n - samples) // 2)
    wave = wave[start : start + samples]
    short = samples - tf.shape(wave)[0]
    return tf.ensure_shape(tf.pad(wave, [[short // 2, short - short // 2]]), [samples])


def random_crop_graph(wave: Any, samples: int, draw: Any) -> Any:
    """A `samples`-long part of a longer `wave`, chosen by the random int64 `draw`;
    a shorter `wave` as `fit_length_graph`.

    Training crops long clips at random (each epoch another part) and evaluation
    takes their middle, so the model sees all of a long clip without training on
    one fixed cut of it.
    """
    import tensorflow as tf

    extra = tf.cast(tf.maximum(tf.shape(wave)[0] - samples, 0), tf.int64)
    start = tf.cast(tf.math.floormod(draw, extra + 1), tf.int32)
    return fit_length_graph(wave[start : start + samples], samples)


def encode_wav(wave: np.ndarray, rate: int = SAMPLE_RATE) -> bytes:
    """A mono 16-bit PCM WAV file's bytes (parity samples, tests)."""
    pcm = (np.clip(wave, -1, 1 - 1 / 32768) * 32768).astype("<i2").tobytes()
    header = struct.pack(
        "<4sI4s4sIHHIIHH4sI",
        b"RIFF",
        36 + len(pcm),
        b"WAVE",
        b"fmt ",
        16,
        _PCM,
        1,
        rate,
        rate * 2,
        2,
        16,
        b"data",
        len(pcm),
    )
    return header + pcm
