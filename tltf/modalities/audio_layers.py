"""Keras layers of the audio modality: the log-mel front end, and the pieces of a speech
embedding that runs over sliding windows of frames. All are registered, so models that
hold them save as `.keras` and load with ``safe_mode`` (no `Lambda`)."""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
import tensorflow as tf


@keras.saving.register_keras_serializable(package="tltf")
class LogMel(keras.layers.Layer):
    """Waveforms ``[B, samples]`` (floats in [-1, 1]) -> log-mel frames ``[B, frames, bins]``.

    `tf.signal.stft` with a periodic Hann window of `window` samples, centred in
    frames of `fft_length` samples every `step` samples (no padding), the power
    spectrum through the mel matrix `mel` (``[fft_length // 2 + 1, bins]``, a fixed
    weight), ``10 log10`` clipped below at `floor`, at most `top_db` under each
    clip's loudest bin, then ``x * scale + offset``. `input_scale` multiplies the
    waveform first (openWakeWord's front end takes int16 values).

    Example:
        >>> LogMel(mel_matrix)(tf.zeros([2, 32000])).shape        # 16 kHz, 2 s
        TensorShape([2, 197, 32])
    """

    def __init__(
        self,
        mel: Any = None,
        *,
        bins: int = 32,
        fft_length: int = 512,
        window: int = 400,
        step: int = 160,
        floor: float = 1e-10,
        top_db: float = 80.0,
        scale: float = 0.1,
        offset: float = 2.0,
        input_scale: float = 32768.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.bins, self.fft_length, self.window, self.step = bins, fft_length, window, step
        self.floor, self.top_db, self.scale, self.offset = floor, top_db, scale, offset
        self.input_scale = input_scale
        self.mel = self.add_weight(
            shape=(fft_length // 2 + 1, bins), initializer="zeros", trainable=False, name="mel"
        )
        if mel is not None:
            self.mel.assign(np.asarray(mel, dtype="float32"))

    def frames(self, samples: int) -> int:
        """Frames of a clip of `samples` samples."""
        return max(0, (samples - self.fft_length) // self.step + 1)

    def call(self, waveforms: Any) -> Any:
        x = tf.cast(waveforms, tf.float32) * self.input_scale
        start = (self.fft_length - self.window) // 2  # the window sits in the frame's middle
        if x.shape[-1] is not None:  # exactly the samples of the frames (no slicing after)
            n = self.frames(int(x.shape[-1]))
            x = x[:, start : start + (n - 1) * self.step + self.window]
        else:
            x = x[:, start:]
        spectrum = tf.signal.stft(
            x,
            frame_length=self.window,
            frame_step=self.step,
            fft_length=self.fft_length,
            window_fn=tf.signal.hann_window,
            pad_end=False,
        )
        power = tf.math.real(spectrum) ** 2 + tf.math.imag(spectrum) ** 2
        db = 10.0 * tf.math.log(tf.maximum(power @ self.mel, self.floor)) / np.log(10.0)
        db = tf.maximum(db, tf.reduce_max(db, axis=[1, 2], keepdims=True) - self.top_db)
        return db * self.scale + self.offset

    def compute_output_shape(self, input_shape: Any) -> tuple:
        samples = input_shape[-1]
        return (input_shape[0], None if samples is None else self.frames(samples), self.bins)

    def get_config(self) -> dict:
        return {
            **super().get_config(),
            "bins": self.bins,
            "fft_length": self.fft_length,
            "window": self.window,
            "step": self.step,
            "floor": self.floor,
            "top_db": self.top_db,
            "scale": self.scale,
            "offset": self.offset,
            "input_scale": self.input_scale,
        }


@keras.saving.register_keras_serializable(package="tltf")
class Floor(keras.layers.Layer):
    """``max(x, value)``: the clamp after each activation of the speech embedding."""

    def __init__(self, value: float = -0.4, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.value = float(value)

    def call(self, x: Any) -> Any:
        return keras.ops.maximum(x, self.value)

    def compute_output_shape(self, input_shape: Any) -> Any:
        return input_shape

    def get_config(self) -> dict:
        return {**super().get_config(), "value": self.value}


@keras.saving.register_keras_serializable(package="tltf")
class Windows(keras.layers.Layer):
    """Frames ``[B, T, bins]`` -> windows ``[B * W, length, bins, 1]``, one every `step` frames.

    With `Unwindow` after a network that embeds one window, a clip becomes ``W``
    embeddings (openWakeWord: 76 frames, every 8).
    """

    def __init__(self, length: int = 76, step: int = 8, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.length, self.step = int(length), int(step)

    def count(self, frames: int) -> int:
        """Windows in a clip of `frames` frames."""
        return max(0, (frames - self.length) // self.step + 1)

    def call(self, frames: Any) -> Any:
        windows = tf.signal.frame(frames, self.length, self.step, axis=1)  # [B, W, L, bins]
        return tf.reshape(windows, [-1, self.length, int(frames.shape[-1]), 1])

    def compute_output_shape(self, input_shape: Any) -> tuple:
        return (None, self.length, input_shape[-1], 1)

    def get_config(self) -> dict:
        return {**super().get_config(), "length": self.length, "step": self.step}


@keras.saving.register_keras_serializable(package="tltf")
class Unwindow(keras.layers.Layer):
    """Embeddings ``[B * W, ..., D]`` -> ``[B, W * D]`` (``"flatten"``) or ``[B, D]`` (``"mean"``)."""

    def __init__(self, windows: int = 16, pooling: str = "flatten", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.windows, self.pooling = int(windows), pooling

    def call(self, x: Any) -> Any:
        dim = int(np.prod(x.shape[1:]))
        x = tf.reshape(x, [-1, self.windows, dim])
        if self.pooling == "mean":
            return tf.reduce_mean(x, axis=1)
        return tf.reshape(x, [-1, self.windows * dim])

    def compute_output_shape(self, input_shape: Any) -> tuple:
        dim = int(np.prod(input_shape[1:]))
        return (None, dim if self.pooling == "mean" else self.windows * dim)

    def get_config(self) -> dict:
        return {**super().get_config(), "windows": self.windows, "pooling": self.pooling}


AUGMENT_PRESETS = {
    "none": None,
    "light": {"gain_db": 3.0, "shift_seconds": 0.1, "snr_db": (20.0, 40.0)},
    "strong": {"gain_db": 6.0, "shift_seconds": 0.25, "snr_db": (5.0, 20.0)},
}


@keras.saving.register_keras_serializable(package="tltf")
class AudioAugment(keras.layers.Layer):
    """Waveform augmentation, active in training only: gain, time shift, noise at an SNR.

    Each clip of a batch gets its own draw: a gain of up to ±`gain_db` dB, a shift
    of up to ±`shift_seconds` (the clip moves in time, silence fills in), and noise
    at a signal-to-noise ratio drawn from `snr_db` (dB). The noise is white, or a
    random stretch of the recorded background `noise` (a 16 kHz waveform: a room,
    a street, music; wrapped around where a clip is longer), which the layer keeps
    as a fixed weight so that a saved model trains on again as it did. At
    inference it passes the waveforms through.

    Example:
        >>> AudioAugment(gain_db=6, shift_seconds=0.1, snr_db=(10, 30))(waves, training=True)
    """

    def __init__(
        self,
        gain_db: float = 3.0,
        shift_seconds: float = 0.1,
        snr_db: tuple[float, float] = (20.0, 40.0),
        sample_rate: int = 16000,
        seed: int | None = None,
        noise: Any = None,
        noise_samples: int = 0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.gain_db, self.shift_seconds = float(gain_db), float(shift_seconds)
        self.snr_db, self.sample_rate, self.seed = tuple(map(float, snr_db)), int(sample_rate), seed
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.noise_samples = int(noise_samples if noise is None else len(noise))
        self.noise = None
        if self.noise_samples:
            self.noise = self.add_weight(
                shape=(self.noise_samples,), initializer="zeros", trainable=False, name="noise"
            )
            if noise is not None:
                self.noise.assign(np.asarray(noise, dtype="float32"))

    def call(self, waves: Any, training: bool | None = None) -> Any:
        if not training:
            return waves
        x = tf.cast(waves, tf.float32)
        batch, length = tf.shape(x)[0], tf.shape(x)[1]
        uniform = lambda low, high: keras.random.uniform(  # noqa: E731
            (batch, 1), low, high, seed=self.seed_generator
        )
        x = x * 10.0 ** (uniform(-self.gain_db, self.gain_db) / 20.0)
        most = int(self.shift_seconds * self.sample_rate)
        if most:
            shift = tf.cast(tf.round(uniform(-most, most)), tf.int32)
            index = tf.range(length)[None, :] - shift
            inside = (index >= 0) & (index < length)
            x = tf.gather(x, tf.clip_by_value(index, 0, length - 1), batch_dims=1)
            x = tf.where(inside, x, 0.0)
        if self.noise is None:
            noise = keras.random.normal(tf.shape(x), seed=self.seed_generator)
        else:  # a random stretch of the recording per clip
            start = tf.cast(uniform(0, self.noise_samples), tf.int32)
            index = (start + tf.range(length)[None, :]) % self.noise_samples
            noise = tf.gather(tf.convert_to_tensor(self.noise), index)
        power = tf.reduce_mean(x**2, axis=1, keepdims=True)
        noise_power = tf.reduce_mean(noise**2, axis=1, keepdims=True) + 1e-12
        wanted = power / 10.0 ** (uniform(*self.snr_db) / 10.0)
        return x + noise * tf.sqrt(wanted / noise_power)

    def compute_output_shape(self, input_shape: Any) -> Any:
        return input_shape

    def get_config(self) -> dict:
        return {
            **super().get_config(),
            "gain_db": self.gain_db,
            "shift_seconds": self.shift_seconds,
            "snr_db": list(self.snr_db),
            "sample_rate": self.sample_rate,
            "seed": self.seed,
            "noise_samples": self.noise_samples,
        }
