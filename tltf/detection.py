"""`detect`: where a sound (a wake word) occurs in a long recording, by sliding windows.

An audio model scores one clip of its own length (``clip_seconds``). `detect`
slides that window over a longer recording every `hop_seconds`, smooths one
class's scores over `smooth` windows, and reports each run of windows at or above
`threshold` as one detection, with its start, end and best score. It takes a tltf
model or an export (its ``serving_waveform`` signature), so ``tltf predict
export/NAME long.wav --detect LABEL`` checks what a server would detect.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tltf.errors import DataError, SpecError


@dataclass
class Detections:
    """What `detect` found: one score per window, and the detections.

    Example:
        >>> found = tltf.detect(model, recording, "hey_tiltef")
        >>> found.events
        [{'start': 2.75, 'end': 5.5, 'score': 0.9987}]

    Attributes:
        label: the class scored.
        times: each window's start, in seconds.
        scores: the class's score per window, and `smoothed` those averaged.
        events: ``{"start": s, "end": s, "score": best}`` per detection, in time order.
    """

    label: str
    times: np.ndarray
    scores: np.ndarray
    smoothed: np.ndarray
    events: list[dict] = field(default_factory=list)

    def __str__(self) -> str:
        if not self.events:
            return f"no {self.label!r} detected (best smoothed score {self.smoothed.max():.2f})"
        return "\n".join(
            f"{self.label} {e['start']:.2f}-{e['end']:.2f} s (score {e['score']:.2f})"
            for e in self.events
        )


def detect(
    model: Any,
    audio: Any,
    label: str | None = None,
    *,
    hop_seconds: float = 0.25,
    threshold: float = 0.5,
    smooth: int = 3,
    batch_size: int = 32,
) -> Detections:
    """Detections of `label` in a recording longer than the model's clips.

    Example:
        >>> found = tltf.detect("export/wake", "kitchen.wav", "hey_tiltef")
        >>> print(found)
        hey_tiltef 12.25-14.50 s (score 0.97)

    Args:
        model: a tltf audio model, or an export folder (``export/NAME`` or a version).
        audio: a WAV file's path, or a mono waveform at the model's sample rate.
        label: the class to find; default the first class name.
        hop_seconds: how far each window moves.
        threshold: the smoothed score a detection needs.
        smooth: windows averaged (a moving mean) before the threshold.
    """
    score, spec, class_names = _scorer(model)
    if label is None:
        label = class_names[0]
    if label not in class_names:
        raise SpecError(f"label {label!r} is not one of the model's classes {class_names}.")
    from tltf.modalities.audio_files import fit_length, read_wav, resample

    rate, length = int(spec["sample_rate"]), int(spec["shape"][0])
    if isinstance(audio, (str, os.PathLike)):
        wave, file_rate = read_wav(os.fspath(audio))
        wave = resample(wave, file_rate, rate)
    else:
        wave = np.asarray(audio, dtype="float32")
        if wave.ndim != 1:
            raise DataError(f"audio of shape {wave.shape}: give one mono waveform, or a WAV path.")
    hop = max(1, int(round(hop_seconds * rate)))
    starts = list(range(0, max(1, len(wave) - length + 1), hop))
    if len(wave) > length and starts[-1] != len(wave) - length:
        starts.append(len(wave) - length)  # the end of the recording is scored too
    windows = np.stack([fit_length(wave[s : s + length], length) for s in starts])
    column = class_names.index(label)
    scores = np.concatenate(
        [score(windows[i : i + batch_size])[:, column] for i in range(0, len(windows), batch_size)]
    )
    k = max(1, int(smooth))
    smoothed = np.convolve(scores, np.ones(k) / k, mode="same") if len(scores) >= k else scores
    events, run = [], []
    for i, above in enumerate([*(smoothed >= threshold), False]):
        if above:
            run.append(i)
        elif run:
            events.append(
                {
                    "start": round(starts[run[0]] / rate, 3),
                    "end": round(min(len(wave), starts[run[-1]] + length) / rate, 3),
                    "score": round(float(scores[run].max()), 4),
                }
            )
            run = []
    return Detections(label, np.asarray(starts) / rate, scores, smoothed, events)


def _scorer(model: Any) -> tuple[Any, dict, list[str]]:
    """``(windows -> scores [n, C], input spec, class names)`` of a tltf model or an export."""
    import tensorflow as tf

    if isinstance(model, (str, os.PathLike)):
        from tltf.io import latest_version

        folder = latest_version(os.fspath(model))
        with open(os.path.join(folder, "assets.extra", "tltf.json")) as fh:
            manifest = json.load(fh)
        spec = manifest["input_spec"]
        signatures = tf.saved_model.load(folder).signatures
        if "serving_waveform" not in signatures or "sample_rate" not in spec:
            raise SpecError(f"{folder} is not an audio export (no serving_waveform signature).")
        served = signatures["serving_waveform"]
        return (
            lambda x: served(waveforms=tf.constant(x))["scores"].numpy(),
            spec,
            manifest["class_names"],
        )
    from tltf.heads import get_task
    from tltf.metadata import info

    meta = info(model)
    if "sample_rate" not in meta.input_spec:
        raise SpecError(f"detect takes audio models; this one is a {meta.modality} model.")
    task = get_task(meta.task)
    return (
        lambda x: task.serve(model, tf.constant(x), meta)["scores"].numpy(),
        meta["input_spec"],
        list(meta.class_names),
    )
