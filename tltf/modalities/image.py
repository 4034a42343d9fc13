"""Images: 0-255 RGB pixels ``[H, W, 3]`` in, image files and encoded bytes on the way.

Training and serving decode the same way (`tltf.data.load_image`: decode,
transparency flattened onto the model's background, resize), so an export
sees the pixels its model trained on. The pixel primitives live in
`tltf.modalities.image_files`; this object says where each is used.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from tltf.errors import DataError, ExportError, SpecError
from tltf.modalities.base import Loaded, Modality, file_bytes
from tltf.modalities.image_files import (
    BACKGROUND,
    IMAGE_EXTENSIONS,
    MAX_PIXELS,
    augmentation_layers,
    decode_file,
    is_image_file,
    load_image,
    resize_pixels,
    scan_images,
)
from tltf.modalities.registry import register_modality

# Decoded images are cached in memory when they take at most this many bytes.
CACHE_BYTES = 1 << 30


class Image(Modality):
    name = "image"
    file_kind = "an image"
    file_types = f"image ({' '.join(IMAGE_EXTENSIONS)})"
    default_lr = 1e-4
    build_options = ("augment", "background")
    tflite_signature = "serving_tensor"

    def accepts(self, input_spec: dict) -> bool:
        return input_spec.get("dtype") != "string" and len(input_spec.get("shape", ())) == 3

    def input_layers(self, x: Any, spec: str, options: dict) -> tuple[Any, dict]:
        """Augmentation right after the raw pixels; the background colour into the input spec."""
        augment, background = options.get("augment", "none"), options.get("background")
        if augment != "none":
            x = augmentation_layers(augment)(x)
        return x, {} if background is None else {"background": _background(background)}

    # -- data -------------------------------------------------------------------
    def is_file(self, path: str) -> bool:
        return is_image_file(path)

    def load_files(self, paths: Sequence[str], *, strict: bool, max_pixels: int) -> Loaded:
        return _scanned(paths, scan_images(paths, max_pixels=max_pixels, strict=strict))

    def load_records(self, items, names, *, strict, max_pixels) -> Loaded:
        scan = scan_images(names, max_pixels=max_pixels, strict=strict, contents=items)
        return _scanned(items, scan)

    def from_array(self, xs: np.ndarray, source: str) -> Any:
        if xs.dtype.kind not in "iuf" or xs.ndim not in (3, 4):
            return None
        if xs.ndim == 4 and xs.shape[-1] not in (1, 3, 4):
            raise DataError(f"{source}: image array of shape {xs.shape}; use [N, H, W, 1|3|4].")
        return xs if xs.ndim == 4 else xs[..., None]

    def claims_tfds_feature(self, feature: Any) -> bool:
        import tensorflow_datasets as tfds

        return isinstance(feature, tfds.features.Image)

    def tfds_decoder(self, tfds: Any) -> Any:
        return tfds.decode.SkipDecoding()  # the encoded bytes: decoded like files

    def batches(self, data, y, batch_size, *, training, seed, input_spec, cache) -> Any:
        """Float32 RGB ``[B, H, W, 3]`` of 0-255 pixels, decoded in parallel and resized to the
        spec's H, W; cached in memory when they fit (``cache=None``: up to `CACHE_BYTES`)."""
        import tensorflow as tf

        height, width = (int(d) for d in input_spec["shape"][:2])
        background = input_spec.get("background", BACKGROUND)
        auto = tf.data.AUTOTUNE
        if isinstance(data.x, np.ndarray):
            ds = tf.data.Dataset.from_tensor_slices((data.x, y))
            ds = ds.shuffle(len(data), seed=seed) if training else ds
            ds = ds.map(
                lambda img, t: (resize_pixels(img, height, width, background), t),
                num_parallel_calls=auto,
            )
            return ds.batch(batch_size)
        if cache is None:
            cache = len(data) * height * width * 3 * 4 <= CACHE_BYTES
        is_bytes = bool(len(data)) and isinstance(data.x[0], bytes)
        pillow = (
            data.decode_with_pillow
            if data.decode_with_pillow is not None
            else np.zeros(len(data), dtype=bool)
        )
        ds = tf.data.Dataset.from_tensor_slices((list(data.x), pillow, y))
        if training and not cache:
            ds = ds.shuffle(len(data), seed=seed, reshuffle_each_iteration=True)

        def load(item, use_pillow, target):
            image = decode_file(
                item, use_pillow, height, width, is_bytes=is_bytes, background=background
            )
            return image, target

        ds = ds.map(load, num_parallel_calls=auto)
        if cache:
            ds = ds.cache()
            if training:
                ds = ds.shuffle(len(data), seed=seed, reshuffle_each_iteration=True)
        return ds.batch(batch_size)

    def fingerprint(self, data: Any, items: Any) -> None:
        """Pixels, or image files' paths and contents (a changed file is a new entry)."""
        if data.decode_with_pillow is not None:
            items(data.decode_with_pillow)
        paths = not isinstance(data.x, np.ndarray) and bool(len(data))
        items(data.x, files=paths and isinstance(data.x[0], str))

    # -- export ---------------------------------------------------------------------
    def signatures(self, module: Any, meta: dict, serve: Any, task: Any) -> dict:
        """``serving_default`` takes encoded image bytes ``[N]``, ``serving_tensor`` pixels."""
        return self.encoded_signatures(
            module,
            serve,
            encoded="image_bytes",
            decode=lambda values: decode_images(values, meta),
            tensor="images",
            shape=[*image_size(meta), 3],
            signature="serving_tensor",
        )

    def samples(
        self, meta: dict, parity_inputs: Any, task: Any
    ) -> dict[str, dict[str, np.ndarray]]:
        """Encoded PNG/JPEG of several sizes and channel counts, and pixels; or the user's."""
        import tensorflow as tf

        size = image_size(meta)
        if parity_inputs is None:
            rng = np.random.default_rng(0)
            pixels = rng.uniform(0, 255, (3, *size, 3)).astype("float32")
            encoded = [
                tf.io.encode_png(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).numpy(),
                tf.io.encode_jpeg(
                    rng.integers(0, 256, (size[0] + 7, size[1] * 2, 3), dtype=np.uint8)
                ).numpy(),
                tf.io.encode_png(
                    rng.integers(0, 256, (size[0] // 2 + 1, size[1], 1), dtype=np.uint8)
                ).numpy(),
            ]
        elif isinstance(parity_inputs, np.ndarray) and parity_inputs.dtype != object:
            if parity_inputs.ndim != 4 or tuple(parity_inputs.shape[1:]) != (*size, 3):
                raise ExportError(
                    f"parity_inputs pixels have shape {parity_inputs.shape}; expected [N, {size[0]}, {size[1]}, 3]."
                )
            pixels = parity_inputs.astype("float32")
            rounded = np.clip(np.round(pixels), 0, 255).astype(np.uint8)
            encoded = [tf.io.encode_png(image).numpy() for image in rounded]
        else:
            encoded = [_read_bytes(item) for item in parity_inputs]
            if not encoded:
                raise ExportError("parity_inputs is empty.")
            pixels = decode_images(tf.constant(encoded), meta).numpy()
        return {
            "serving_default": {"image_bytes": np.array(encoded, dtype=object)},
            "serving_tensor": {"images": pixels},
        }

    def reference_inputs(self, signature: str, values: list, meta: dict) -> list:
        return [decode_images(values[0], meta)] if signature == "serving_default" else values

    def cli_inputs(self, data: Any) -> list[str]:
        if len(data) and isinstance(data.x[0], bytes):
            raise DataError(
                f"{data.source} holds encoded images, not files; evaluate an export on image "
                "files (a folder or a CSV of paths), or evaluate the run folder."
            )
        return [str(x) for x in data.x]

    def serving_example(self, x: Any) -> tuple[dict, str]:
        import tensorflow as tf

        image = x if isinstance(x, bytes) else tf.io.read_file(x).numpy()
        shown = "<image bytes>" if isinstance(x, bytes) else x
        return {"image_bytes": tf.constant([image])}, shown

    # -- the CLI ----------------------------------------------------------------------
    def backbone_options(self, cfg: dict) -> dict:
        options: dict = {}
        if cfg.get("image_size"):
            options["input_shape"] = (cfg["image_size"], cfg["image_size"], 3)
        if cfg.get("weights"):
            options["weights"] = None if cfg["weights"] == "random" else cfg["weights"]
        return options


def _scanned(items: Sequence, scan: tuple) -> Loaded:
    """`Loaded` from `scan_images`' ``(kept, needs Pillow, transparent, skipped)``."""
    keep, pillow, transparent, skipped = scan
    return Loaded(
        [items[i] for i in keep],
        np.asarray(keep, dtype=np.int64),
        skipped,
        {"decode_with_pillow": pillow, "transparent": transparent},
    )


def image_size(meta: dict) -> tuple[int, int]:
    """``(height, width)`` an image model's export resizes to."""
    height, width = meta["input_spec"]["shape"][:2]
    if not height or not width:
        raise ExportError(
            f"The image model takes any size ({meta['input_spec']['shape']}); build it with "
            "input_shape=(H, W, 3) so the export knows what to resize images to."
        )
    return int(height), int(width)


def decode_images(image_bytes: Any, meta: dict) -> Any:
    """Encoded JPEG/PNG/GIF/BMP strings ``[N]`` -> float32 RGB pixels ``[N, H, W, 3]``, 0-255.

    The graph behind the ``image_bytes`` input: `tltf.data.load_image` (the decode,
    transparency flattened onto the model's background, and resize that training
    uses) for each image, after refusing empty strings.
    """
    import tensorflow as tf

    size = image_size(meta)
    background = meta["input_spec"].get("background", BACKGROUND)

    def decode(data):
        tf.debugging.assert_positive(
            tf.strings.length(data),
            message="image_bytes holds an empty string; send the bytes of a JPEG, PNG, GIF or BMP file",
        )
        tf.debugging.assert_less_equal(
            header_pixels(data),
            tf.constant(MAX_PIXELS, tf.int64),
            message=f"image_bytes holds an image of more than {MAX_PIXELS:,} pixels (the "
            "decompression-bomb limit); resize it before sending",
        )
        return load_image(data, *size, background)

    return tf.map_fn(decode, image_bytes, fn_output_signature=tf.TensorSpec([*size, 3], tf.float32))


def header_pixels(data: Any) -> Any:
    """Width × height of an encoded PNG, GIF, BMP or JPEG from its header (int64; 0 for
    another format), read before decoding so a huge image is refused without its memory.

    Example:
        >>> header_pixels(tf.io.read_file("poster.png")).numpy()
        144000000
    """
    import tensorflow as tf

    head = tf.cast(
        tf.io.decode_raw(tf.strings.substr(tf.strings.join([data, "\0" * 32]), 0, 32), tf.uint8),
        tf.int64,
    )

    def number(start: int, size: int, big: bool) -> Any:
        places = range(size) if not big else reversed(range(size))
        return sum(head[start + i] * 256**p for i, p in zip(range(size), places, strict=True))

    def starts(*magic: int) -> Any:
        return tf.reduce_all(tf.equal(head[: len(magic)], tf.constant(magic, tf.int64)))

    bmp_height = number(22, 4, big=False)
    bmp_height = tf.where(bmp_height >= 2**31, 2**32 - bmp_height, bmp_height)  # top-down
    return tf.case(
        [
            (starts(137, 80, 78, 71), lambda: number(16, 4, True) * number(20, 4, True)),
            (starts(71, 73, 70), lambda: number(6, 2, False) * number(8, 2, False)),
            (starts(66, 77), lambda: number(18, 4, False) * bmp_height),
            (
                starts(255, 216),
                lambda: tf.reduce_prod(tf.cast(tf.image.extract_jpeg_shape(data)[:2], tf.int64)),
            ),
        ],
        default=lambda: tf.constant(0, tf.int64),
    )


def _background(value: Any) -> float | list[float]:
    """A grey level or an RGB triple in 0-255, checked."""
    values = [value] if isinstance(value, (int, float)) else list(value)
    if len(values) not in (1, 3) or not all(
        isinstance(v, (int, float)) and 0 <= v <= 255 for v in values
    ):
        raise SpecError(
            f"background={value!r}; give a grey level or (r, g, b), each 0-255 (white: 255)."
        )
    return float(values[0]) if len(values) == 1 else [float(v) for v in values]


def _read_bytes(item: Any) -> bytes:
    found = file_bytes(item)
    if found is not None:
        return found
    raise ExportError(
        f"parity_inputs item {str(item)[:80]!r}: give encoded image bytes, image file paths, "
        "or an [N, H, W, 3] pixel array."
    )


IMAGE = register_modality(Image())
