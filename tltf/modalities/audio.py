"""Audio: mono waveforms at 16 kHz ``[samples]`` in, WAV files and WAV bytes on the way.

A `Dataset` of audio holds each clip as a float32 waveform in [-1, 1] at
`SAMPLE_RATE`, at its own length; batches fit every clip to the model's clip
length (`audio_files.fit_length`: padded with silence on both sides, or cut to
its middle). The export's ``serving_default`` does the same from WAV bytes in the
graph, so a served clip is the clip the model trained on.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from tltf.errors import DataError, ExportError
from tltf.modalities.audio_files import (
    MIN_SAMPLES,
    SAMPLE_RATE,
    WAV_EXTENSIONS,
    decode_wav_graph,
    encode_wav,
    fit_length,
    is_wav_file,
    load_noise,
    random_crop_graph,
    scan_audio,
)
from tltf.modalities.base import Loaded, Modality, file_bytes
from tltf.modalities.registry import register_modality


class Audio(Modality):
    name = "audio"
    file_kind = "a .wav"
    file_types = f"audio ({' '.join(WAV_EXTENSIONS)})"
    default_lr = 1e-4
    default_backbone = "speech:openwakeword"
    tflite_signature = "serving_waveform"
    layer_modules = ("tltf.modalities.audio_layers",)
    build_options = ("augment", "noise")

    def accepts(self, input_spec: dict) -> bool:
        return (
            input_spec.get("dtype") == "float32"
            and len(input_spec.get("shape", ())) == 1
            and "sample_rate" in input_spec
        )

    def model_inputs(self, x: Any, meta: dict, task: Any) -> Any:
        samples = clip_samples(meta)
        return np.stack([fit_length(np.asarray(w, "float32"), samples) for w in x])

    def input_layers(self, x: Any, spec: str, options: dict) -> tuple[Any, dict]:
        """Augmentation (`audio_layers.AUGMENT_PRESETS`) right after the raw waveform."""
        from tltf.errors import SpecError
        from tltf.modalities.audio_layers import AUGMENT_PRESETS, AudioAugment

        augment, noise = options.get("augment", "none"), options.get("noise")
        if isinstance(augment, dict):  # the "light" preset with some settings changed
            unknown = sorted(set(augment) - set(AUGMENT_PRESETS["light"]))
            if unknown:
                raise SpecError(
                    f"augment={augment!r}: unknown setting {unknown[0]!r}; audio takes "
                    f"{sorted(AUGMENT_PRESETS['light'])}."
                )
            settings, name = {**AUGMENT_PRESETS["light"], **augment}, "custom"
        elif isinstance(augment, str) and augment in AUGMENT_PRESETS:
            settings, name = AUGMENT_PRESETS[augment], augment
        else:
            raise SpecError(
                f"augment={augment!r}; audio takes one of {list(AUGMENT_PRESETS)}, or a dict "
                f"of {sorted(AUGMENT_PRESETS['light'])}."
            )
        if noise is not None and not settings:
            raise SpecError(
                "noise= is mixed in by the augmentation; add augment='light' (20-40 dB SNR) "
                "or augment='strong' (5-20 dB)."
            )
        if settings:
            background = None if noise is None else load_noise(noise)
            x = AudioAugment(**settings, noise=background, name=f"augmentation_{name}")(x)
        return x, {}

    # -- data -------------------------------------------------------------------
    def is_file(self, path: str) -> bool:
        return is_wav_file(path)

    def load_files(self, paths: Sequence[str], *, strict: bool, max_pixels: int) -> Loaded:
        waves, keep, skipped = scan_audio(paths, strict=strict)
        return Loaded(waves, np.asarray(keep, dtype=np.int64), skipped)

    def from_array(self, xs: np.ndarray, source: str) -> Any:
        """Float waveforms ``[N, samples]`` at 16 kHz, or a list of 1-D waveforms."""
        if xs.dtype == object and len(xs) and all(np.ndim(w) == 1 for w in xs):
            waves = [np.asarray(w, "float32") for w in xs]
        elif xs.dtype.kind == "f" and xs.ndim == 2 and xs.shape[1] >= MIN_SAMPLES:
            waves = list(xs.astype("float32"))
        else:
            return None
        for i, w in enumerate(waves):
            if not np.all(np.isfinite(w)) or np.abs(w).max(initial=0) > 1:
                raise DataError(
                    f"{source} example {i}: waveform values must be finite, in [-1, 1] "
                    "(16 kHz floats; int16 samples: divide by 32768)."
                )
        return waves

    def batches(self, data, y, batch_size, *, training, seed, input_spec, cache) -> Any:
        """Float32 waveforms ``[B, samples]``, each clip fitted to the spec's length.

        Training crops each longer clip at a random place, another each epoch;
        evaluation takes its middle. Shorter clips are padded on both sides.
        """
        import tensorflow as tf

        samples = int(input_spec["shape"][0])
        lengths = np.array([len(w) for w in data.x], dtype=np.int64)
        if training and np.any(lengths > samples):
            waves = tf.RaggedTensor.from_row_lengths(np.concatenate(data.x), lengths)
            ds = tf.data.Dataset.from_tensor_slices((waves, y)).shuffle(len(data), seed=seed)
            draws = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True)
            return (
                tf.data.Dataset.zip(ds, draws)
                .map(lambda clip, draw: (random_crop_graph(clip[0], samples, draw), clip[1]))
                .batch(batch_size)
            )
        x = (
            np.stack([fit_length(w, samples) for w in data.x])
            if len(data)
            else np.zeros((0, samples), "float32")
        )
        ds = tf.data.Dataset.from_tensor_slices((x, y))
        return (ds.shuffle(len(data), seed=seed) if training else ds).batch(batch_size)

    def fit_report(self, data: Any, input_spec: dict) -> str:
        """How many clips are shorter than the model's clip (padded) or longer (cropped)."""
        samples = int(input_spec["shape"][0])
        lengths = np.array([len(w) for w in data.x])
        short, long = int(np.sum(lengths < samples)), int(np.sum(lengths > samples))
        if not short and not long:
            return ""
        seconds = f"{samples / SAMPLE_RATE:g} s"
        parts = [f"{short} shorter than {seconds}, padded with silence"] if short else []
        if long:
            parts.append(
                f"{long} longer, cropped at random in training and to their middle in evaluation"
            )
        return f"{data.source}: {len(data)} clips; {'; '.join(parts)}"

    def fingerprint(self, data: Any, items: Any) -> None:
        items(np.array([np.asarray(w, "float32").tobytes() for w in data.x], dtype=object))

    # -- export ---------------------------------------------------------------------
    def signatures(self, module: Any, meta: dict, serve: Any, task: Any) -> dict:
        """``serving_default`` takes WAV bytes ``[N]``, ``serving_waveform`` floats."""
        samples = clip_samples(meta)
        return self.encoded_signatures(
            module,
            serve,
            encoded="wav_bytes",
            decode=lambda values: decode_wav_graph(values, samples),
            tensor="waveforms",
            shape=[samples],
            signature="serving_waveform",
        )

    def samples(
        self, meta: dict, parity_inputs: Any, task: Any
    ) -> dict[str, dict[str, np.ndarray]]:
        """WAV bytes at three rates and lengths, and waveforms; or the user's clips."""
        import tensorflow as tf

        samples = clip_samples(meta)
        if parity_inputs is None:
            rng = np.random.default_rng(0)
            t = np.arange(samples) / SAMPLE_RATE
            waves = [
                0.3 * np.sin(2 * np.pi * f * t) * rng.uniform(0.5, 1) for f in (220, 880, 3000)
            ]
            encoded = [
                encode_wav(waves[0]),
                encode_wav(rng.uniform(-0.5, 0.5, samples // 2), 8000),
                encode_wav(rng.uniform(-0.5, 0.5, samples * 3 // 2), 22050),
            ]
            waveforms = np.stack(waves).astype("float32")
        else:
            encoded = [_wav_bytes(item) for item in parity_inputs]
            if not encoded:
                raise ExportError("parity_inputs is empty.")
            waveforms = decode_wav_graph(tf.constant(encoded), samples).numpy()
        return {
            "serving_default": {"wav_bytes": np.array(encoded, dtype=object)},
            "serving_waveform": {"waveforms": waveforms},
        }

    def reference_inputs(self, signature: str, values: list, meta: dict) -> list:
        if signature == "serving_default":
            return [decode_wav_graph(values[0], clip_samples(meta))]
        return values

    def cli_inputs(self, data: Any) -> list[str]:
        """The WAV files the clips came from (a dataset of arrays has none)."""
        paths = data.locations or []
        if len(paths) != len(data) or not all(os.path.isfile(p) for p in paths):
            raise DataError(
                f"{data.source} holds waveforms, not WAV files; evaluate an export on a folder "
                "or CSV of WAV files, or evaluate the run folder."
            )
        return list(paths)

    def serving_example(self, x: Any) -> tuple[dict, str]:
        import tensorflow as tf

        shown = x if isinstance(x, str) else f"<{len(x) / SAMPLE_RATE:.2f} s of audio>"
        return {"wav_bytes": tf.constant([_wav_bytes(x)])}, shown

    def backbone_options(self, cfg: dict) -> dict:
        return {"weights": None} if cfg.get("weights") == "random" else {}


def clip_samples(meta: dict) -> int:
    """Samples of the clip an audio model takes."""
    return int(meta["input_spec"]["shape"][0])


def _wav_bytes(item: Any) -> bytes:
    """WAV bytes of WAV bytes, a WAV file's path, or a 16 kHz waveform."""
    found = file_bytes(item)
    if found is not None:
        return found
    if isinstance(item, np.ndarray) and item.ndim == 1:
        return encode_wav(item)
    raise ExportError(
        f"parity_inputs item {str(item)[:80]!r}: give WAV bytes, WAV file paths or 16 kHz "
        "waveforms."
    )


AUDIO = register_modality(Audio())
