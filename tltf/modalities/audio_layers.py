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
        n = self.frames(int(x.shape[-1])) if x.shape[-1] is not None else None
        start = (self.fft_length - self.window) // 2  # the window sits in the frame's middle
        spectrum = tf.signal.stft(
            x[:, start:],
            frame_length=self.window,
            frame_step=self.step,
            fft_length=self.fft_length,
            window_fn=tf.signal.hann_window,
            pad_end=False,
        )
        if n is not None:
            spectrum = spectrum[:, :n]
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
