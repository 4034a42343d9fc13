"""Makes a wake-word data set with espeak-ng: "hey tiltef" against other speech and noise.

    apt-get install espeak-ng
    python tools/make_wakeword_data.py --out data/wakeword --train 16 --test 8

Writes ``OUT/{train,test}/{hey_tiltef,other}/NNNN.wav``, 16 kHz mono 16-bit PCM.
Training and test clips use different espeak-ng voices (accents and voice
variants), so the test measures voices the model never heard. "other" is other
speech (including near misses such as "hey", "tilt", "hey steve") and, for a
quarter of it, generated noise. Each clip is spoken at a random speed and pitch.
The committed sample ``tltf/examples/wakeword`` was made with the defaults.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess

import numpy as np

from tltf.modalities.audio_files import encode_wav, read_wav, resample

WAKE_WORD = "hey tiltef"
OTHER = [
    "hey",
    "tilt",
    "hey steve",
    "hey there",
    "tiltef",
    "a tilted table",
    "hello",
    "what time is it",
    "turn on the lights",
    "play some music",
    "stop",
    "hey tilda",
    "it is raining today",
    "seven eleven",
    "okay computer",
    "good morning",
    "tell me a joke",
    "they tilt left",
    "hay fever",
    "the weather is fine",
    "set a timer",
    "next song",
]
TRAIN_VOICES = ["en-us", "en-gb", "en-gb-x-rp", "en-gb-x-gbclan"]
TEST_VOICES = ["en-gb-scotland", "en-029", "en-gb-x-gbcwmd"]
TRAIN_VARIANTS = ["m1", "m2", "m3", "m4", "f1", "f2", "f3", "Andy", "Annie", "Michael"]
TEST_VARIANTS = ["m6", "m7", "f4", "f5", "Alicia", "Jacky"]


def speak(text: str, voice: str, speed: int, pitch: int) -> np.ndarray:
    """`text` spoken by espeak-ng, at 16 kHz."""
    wav = subprocess.run(
        ["espeak-ng", "-v", voice, "-s", str(speed), "-p", str(pitch), "--stdout", text],
        check=True,
        capture_output=True,
    ).stdout
    wave, rate = read_wav(wav)
    return resample(wave, rate)


def noise(rng: np.random.Generator) -> np.ndarray:
    """0.5-1.5 s of white or brown noise at a random level."""
    n = int(rng.uniform(0.5, 1.5) * 16000)
    x = rng.normal(size=n)
    if rng.random() < 0.5:
        x = np.cumsum(x)
        x -= np.convolve(x, np.ones(400) / 400, mode="same")  # brown, without drift
    return (x / np.abs(x).max() * rng.uniform(0.05, 0.5)).astype("float32")


def make(
    out: str,
    split: str,
    per_class: int,
    voices: list,
    variants: list,
    seed: int,
    other: int | None = None,
) -> None:
    """Writes `per_class` wake-word clips and `other` (default as many) other clips."""
    rng = np.random.default_rng(seed)
    for label, count in (("hey_tiltef", per_class), ("other", other or per_class)):
        folder = os.path.join(out, split, label)
        os.makedirs(folder, exist_ok=True)
        for i in range(count):
            voice = f"{rng.choice(voices)}+{rng.choice(variants)}"
            speed, pitch = int(rng.integers(120, 200)), int(rng.integers(25, 75))
            if label == "other" and rng.random() < 0.25:
                wave = noise(rng)
            else:
                wave = speak(
                    WAKE_WORD if label == "hey_tiltef" else rng.choice(OTHER), voice, speed, pitch
                )
            with open(os.path.join(folder, f"{i:04d}.wav"), "wb") as fh:
                fh.write(encode_wav(wave))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--train", type=int, default=16, help="clips per class for training")
    parser.add_argument("--test", type=int, default=8, help="clips per class for testing")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if shutil.which("espeak-ng") is None:
        raise SystemExit("espeak-ng is not installed: apt-get install espeak-ng")
    make(args.out, "train", args.train, TRAIN_VOICES, TRAIN_VARIANTS, args.seed)
    make(args.out, "test", args.test, TEST_VOICES, TEST_VARIANTS, args.seed + 1)
    print(f"wrote {args.out}/train and {args.out}/test")


if __name__ == "__main__":
    main()
