"""Images: checking files before training, decoding them the way the export does, augmentation."""

from __future__ import annotations

import io
import os
import re
import warnings
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from tltf.errors import DataError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".gif", ".bmp")
# Pillow's own decompression-bomb threshold (about 89 megapixels).
MAX_PIXELS = 89_478_485
AUGMENTATION_PRESETS = ("none", "light", "strong")
_PROBLEMS = {
    "missing": "no such file",
    "corrupt": "corrupt or truncated image file",
    "not an image": "not an image (unknown or damaged format)",
    "damaged": "damaged JPEG data (its header is intact, but libjpeg reports corrupt scan data, "
    "which would decode to garbage pixels)",
}
# libjpeg's warnings that mean the scan data is damaged (others, such as an unknown JFIF
# revision, are harmless); Pillow and TensorFlow decode such files with at most a warning
_JPEG_DAMAGE = ("Corrupt JPEG data", "Premature end of JPEG file")
BACKGROUND = 255.0  # transparent pixels are flattened onto white (0-255, or [r, g, b])
_TF_MODES = {"JPEG": ("RGB", "L", "CMYK"), "PNG": None, "BMP": ("RGB", "RGBA", "L"), "GIF": None}


def is_image_file(path: str) -> bool:
    return path.lower().endswith(IMAGE_EXTENSIONS)


def inspect_image(
    path: str, max_pixels: int = MAX_PIXELS, data: bytes | None = None
) -> tuple[str | None, bool, bool]:
    """Fully decodes one file (or its bytes `data`) with Pillow.

    Returns ``(problem or None, needs Pillow, has transparency)``. A problem is
    "missing", "corrupt", "not an image" or "damaged" (a JPEG whose scan data libjpeg
    reports as corrupt: `jpeg_damaged`). An image over `max_pixels` raises
    `DataError` (a decompression bomb is refused, not skipped). TensorFlow drops a
    GIF's transparency, so such a GIF needs Pillow.
    """
    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path if data is None else io.BytesIO(data)) as im:
                width, height = im.size
                if width * height > max_pixels:
                    raise _too_big(path, f"{width}x{height} = {width * height:,}", max_pixels)
                im.load()
                if im.format == "JPEG" and jpeg_damaged(path if data is None else data):
                    return "damaged", False, False
                modes = _TF_MODES.get(im.format, ())
                transparent = im.mode in ("RGBA", "LA", "PA") or "transparency" in im.info
                needs_pillow = (
                    (modes is not None and im.mode not in modes)
                    or getattr(im, "n_frames", 1) > 1
                    or (transparent and im.format == "GIF")
                )
                return None, needs_pillow, transparent
    except Image.DecompressionBombError as e:  # over twice Pillow's own limit
        found = re.search(r"\((\d+) pixels\)", str(e))
        size = f"{int(found.group(1)):,}" if found else "too many"
        hard = 2 * (Image.MAX_IMAGE_PIXELS or 0)
        if max_pixels < hard:
            raise _too_big(path, size, max_pixels) from None
        raise DataError(
            f"{path} has {size} pixels, over Pillow's own hard limit of {hard:,} (twice "
            "PIL.Image.MAX_IMAGE_PIXELS), which max_pixels= cannot raise. If you trust the "
            "file, set PIL.Image.MAX_IMAGE_PIXELS higher before loading, or resize it."
        ) from None
    except DataError:
        raise
    except FileNotFoundError:
        return "missing", False, False
    except Image.UnidentifiedImageError:
        return "not an image", False, False
    except (OSError, SyntaxError, ValueError, EOFError, IndexError):
        return "corrupt", False, False


def jpeg_damaged(source: str | bytes) -> bool:
    """Whether libjpeg warns that a JPEG's scan data is corrupt (a file path or its bytes).

    Pillow and TensorFlow decode such a file without an error, into garbage pixels
    (TensorFlow prints ``Corrupt JPEG data`` on each decode). libjpeg-turbo, through
    simplejpeg's ``strict`` mode, decodes it at 1/8 scale: every coefficient is still
    entropy-decoded, so the check sees the whole scan for a fraction of a full decode.

    Example:
        >>> jpeg_damaged(open("photo.jpg", "rb").read())
        False
    """
    import simplejpeg

    if isinstance(source, str):
        with open(source, "rb") as f:
            source = f.read()
    try:
        simplejpeg.decode_jpeg(source, colorspace="GRAY", min_height=1, min_width=1, strict=True)
    except ValueError as e:
        return str(e).startswith(_JPEG_DAMAGE)
    return False


def _too_big(path: str, size: str, max_pixels: int) -> DataError:
    return DataError(
        f"{path} has {size} pixels, over the limit of {max_pixels:,} (a decompression-bomb "
        "guard). Resize or remove the file, or pass max_pixels=... if you trust it."
    )


def scan_images(
    paths: Sequence[str],
    *,
    max_pixels: int = MAX_PIXELS,
    strict: bool = False,
    contents: Sequence[bytes] | None = None,
) -> tuple[list[int], list[bool], list[tuple[str, str]]]:
    """Checks image files in parallel: ``(kept indices, needs-Pillow flags, transparency
    flags, skipped)``.

    Corrupt, truncated, missing or non-image files are skipped and listed as
    ``(path, reason)``; with ``strict=True`` the first one raises `DataError`.
    `contents`, when given, are the files' bytes and `paths` only name them.
    """
    workers = min(8, os.cpu_count() or 1, max(len(paths), 1))
    data = contents if contents is not None else [None] * len(paths)
    with ThreadPoolExecutor(workers) as pool:
        results = list(pool.map(lambda p, d: inspect_image(p, max_pixels, d), paths, data))
    kept, pillow, transparent, skipped = [], [], [], []
    for i, (path, (problem, needs_pillow, alpha)) in enumerate(zip(paths, results, strict=True)):
        if problem is None:
            kept.append(i)
            pillow.append(needs_pillow)
            transparent.append(alpha)
            continue
        if strict:
            raise DataError(
                f"{path}: {_PROBLEMS[problem]}. Remove or replace it, or load with "
                "strict=False to skip such files and count them in the report."
            )
        skipped.append((path, problem))
    return kept, pillow, transparent, skipped


def _pillow_rgba(data: bytes) -> np.ndarray:
    from PIL import Image

    with Image.open(io.BytesIO(data)) as im:
        im.seek(0)
        return np.asarray(im.convert("RGBA"), dtype=np.uint8)


def flatten(image: Any, background: Any = BACKGROUND) -> Any:
    """Pixels ``[h, w, 1|2|3|4]`` (grey, grey+alpha, RGB, RGBA) -> float32 RGB on `background`.

    Transparent pixels take the background's colour (white by default), partly
    transparent ones a blend, as a viewer shows them on a white page.

    Example:
        >>> flatten(tf.constant([[[255, 0, 0, 0]]], tf.uint8)).numpy()   # clear red -> white
        array([[[255., 255., 255.]]], dtype=float32)
    """
    import tensorflow as tf

    x = tf.cast(image, tf.float32)
    channels = tf.shape(x)[-1]
    rgb = tf.cond(channels < 3, lambda: tf.repeat(x[..., :1], 3, axis=-1), lambda: x[..., :3])
    alpha = tf.cond(
        tf.equal(channels % 2, 0), lambda: x[..., -1:] / 255.0, lambda: tf.ones_like(x[..., :1])
    )
    return rgb * alpha + tf.constant(background, tf.float32) * (1.0 - alpha)


def resize_pixels(image: Any, height: int, width: int, background: Any = BACKGROUND) -> Any:
    """Any image tensor ``[h, w]`` / ``[h, w, 1|2|3|4]`` -> float32 RGB ``[height, width, 3]``, 0-255.

    An alpha channel is flattened onto `background` (`flatten`).
    """
    import tensorflow as tf

    image = tf.convert_to_tensor(image)
    if image.shape.rank == 2:
        image = image[..., None]
    if image.shape[-1] not in (1, 2, 3, 4):
        raise DataError(f"images need 1 to 4 channels, got shape {image.shape}.")
    return tf.image.resize(flatten(image, background), (height, width))


def load_image(data: Any, height: int, width: int, background: Any = BACKGROUND) -> Any:
    """Encoded JPEG/PNG/GIF/BMP bytes (a scalar tf.string) -> float32 RGB ``[height, width, 3]``.

    This is the decode + resize that both training and an exported serving
    signature use, so that the two see the same pixels; transparency is flattened
    onto `background` (white).

    Example:
        >>> load_image(tf.io.read_file("cat.jpg"), 224, 224).shape
        TensorShape([224, 224, 3])
    """
    import tensorflow as tf

    image = tf.io.decode_image(data, channels=0, expand_animations=False)
    return tf.image.resize(flatten(image, background), (height, width))


def decode_file(
    item: Any,
    use_pillow: Any,
    height: int,
    width: int,
    *,
    is_bytes: bool,
    background: Any = BACKGROUND,
) -> Any:
    """tf.data map step: a path (or encoded bytes) -> float32 RGB ``[height, width, 3]``."""
    import tensorflow as tf

    data = item if is_bytes else tf.io.read_file(item)

    def with_pillow():
        image = tf.numpy_function(_pillow_rgba, [data], tf.uint8, stateful=False)
        image.set_shape([None, None, 4])
        return tf.image.resize(flatten(image, background), (height, width))

    return tf.cond(use_pillow, with_pillow, lambda: load_image(data, height, width, background))


def augmentation_layers(preset: str = "light", seed: int | None = None) -> Any:
    """Image augmentation as Keras layers: active in training only, identity at inference.

    Presets: "none" (identity), "light" (flip, small rotation/zoom/contrast), "strong"
    (flip, larger rotation/zoom/contrast, translation). Input is raw 0-255 pixels, so
    put the layers right after the model input, before the backbone's preprocessing;
    leave them out of exports.

    Example:
        >>> aug = tltf.data.augmentation_layers("light")
        >>> x = aug(inputs)          # inside a functional model
    """
    import keras

    presets = {
        "none": [],
        "light": [
            keras.layers.RandomFlip("horizontal", seed=seed),
            keras.layers.RandomRotation(0.05, seed=seed),
            keras.layers.RandomZoom(0.1, seed=seed),
            keras.layers.RandomContrast(0.1, value_range=(0, 255), seed=seed),
        ],
        "strong": [
            keras.layers.RandomFlip("horizontal", seed=seed),
            keras.layers.RandomRotation(0.15, seed=seed),
            keras.layers.RandomZoom(0.25, seed=seed),
            keras.layers.RandomTranslation(0.1, 0.1, seed=seed),
            keras.layers.RandomContrast(0.3, value_range=(0, 255), seed=seed),
        ],
    }
    if preset not in presets:
        raise DataError(f"augmentation preset {preset!r}; use one of {AUGMENTATION_PRESETS}.")
    layers = presets[preset] or [keras.layers.Identity()]
    return keras.Sequential(layers, name=f"augmentation_{preset}")
