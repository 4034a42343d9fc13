"""The `Modality` contract and its registry: one object per kind of input.

Everything tltf does differently for images and texts (and audio next) is a
method or attribute of that modality's object: the raw input and its
`keras.Input`, loading files and columns, the tf.data pipeline, build options
such as augmentation, the serving signatures and their sample inputs, the
feature cache's identity and sort key, and the CLI's backbone options. The rest
of tltf looks the object up by the name a `Backbone` or `Dataset` declares
(`get_modality`) and calls it; it never compares modality names. A new modality
is one subclass registered with `register_modality`, plus a source that returns
backbones declaring it (see docs/architecture.md).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tltf.errors import DataError, ExportError


@dataclass
class Loaded:
    """Examples a modality read from files, cells or records.

    Example:
        >>> Loaded(["a text"], np.array([0])).x
        ['a text']

    Attributes:
        x: the examples kept, as the `Dataset` holds them.
        keep: indices of the kept items among those given (bad files are skipped).
        skipped: ``(file, reason)`` for each item left out.
        extras: per-example `Dataset` fields of this modality (``decode_with_pillow=``).
    """

    x: Any
    keep: np.ndarray
    skipped: list[tuple[str, str]] = field(default_factory=list)
    extras: dict[str, Any] = field(default_factory=dict)


class Modality:
    """What tltf must know about one kind of raw input; subclass it for a new one.

    Example:
        >>> mod = get_modality("image")
        >>> mod.accepts({"shape": [224, 224, 3], "dtype": "float32"})
        True

    Attributes:
        name: the name that backbones, datasets and model metadata declare.
        file_kind: one of the files it loads, for messages ("an image", "a .txt").
        file_types: its files, for messages ("image (.jpg .png)", ".txt").
        default_lr: a fine-tuning rate for its backbones when the source has none.
        small_data_open: top groups `tltf.recommend` opens with small data (under ~200
            examples per class) at high similarity; 0 keeps the backbone frozen.
            Chosen by ``benchmarks/bench_accuracy.py``.
        end_groups: names of the first and last layer groups of a network split
            by numbered blocks (TF-Hub modules).
        xla_blocker: why its models cannot be XLA-compiled (`jit_compile`; "" when they can).
        tflite_blocker: why its exports cannot convert to TFLite ("" when they can).
        tflite_signature: the export signature that TFLite converts (a tensor input).
        build_options: `tltf.build` options only this modality takes.
        serving_imports: ``(module, pip package)`` pairs that loading its exports needs
            (custom ops); written into the export's ``tltf.json`` for `tltf predict`.
        default_column: the CSV/JSONL column read as its input when the loader is given
            no ``<name>_column=`` ("text" for text), or None.
        default_backbone: the spec ``tltf train`` uses for its data without ``--backbone``.
        layer_modules: modules that register its Keras layers (imported before a
            `.keras` file loads).
    """

    name: str = ""
    file_kind: str = ""
    file_types: str = ""
    default_lr: float = 1e-4
    small_data_open: int = 0  # ImageNet MobileNet v1, 8-128 images per class: frozen is best
    end_groups: tuple[str, str] = ("stem", "top")
    xla_blocker: str = ""
    tflite_blocker: str = ""
    tflite_signature: str = "serving_default"
    build_options: tuple[str, ...] = ()
    serving_imports: tuple[tuple[str, str], ...] = ()
    default_column: str | None = None
    default_backbone: str | None = None
    layer_modules: tuple[str, ...] = ()

    # -- the model's raw input ------------------------------------------------
    def accepts(self, input_spec: dict) -> bool:
        """Whether a backbone's raw `input_spec` is this modality's kind of input.

        Example:
            >>> get_modality("text").accepts({"shape": [], "dtype": "string"})
            True
        """
        raise NotImplementedError

    def inputs(self, input_spec: dict, task: Any) -> Any:
        """The model's `keras.Input` (or a tuple of them, one per `task.text_inputs`).

        Example:
            >>> get_modality("image").inputs({"shape": [96, 96, 3], "dtype": "float32"}, task).name
            'inputs'
        """
        import keras

        return keras.Input(
            shape=tuple(input_spec["shape"]), dtype=input_spec["dtype"], name="inputs"
        )

    def model_inputs(self, x: Any, meta: dict, task: Any) -> Any:
        """In-memory examples ``x`` as the model's `predict` takes them.

        Example:
            >>> get_modality("text").model_inputs(np.array(["a", "b"]), meta, task)
            ['a', 'b']
        """
        spec = meta["input_spec"]
        try:
            return np.asarray(x, dtype=spec["dtype"])
        except (TypeError, ValueError):
            first = next(iter(x), None) if hasattr(x, "__iter__") else x
            raise DataError(
                f"x holds {type(first).__name__} values such as {str(first)[:40]!r}, and this "
                f"{self.name} model takes {spec['dtype']} arrays of shape {spec['shape']} per "
                f"example. Load files with tltf.data (from_directory, from_csv), or give arrays "
                "of that kind."
            ) from None

    def input_layers(self, x: Any, spec: str, options: dict) -> tuple[Any, dict]:
        """Layers between the raw input and the preprocessor (e.g. augmentation), for the
        `build_options` given; ``(x, entries to add to the model's input_spec)``.

        Example:
            >>> x, extra = get_modality("image").input_layers(inputs, spec, {"background": 0})
            >>> extra
            {'background': 0.0}
        """
        return x, {}

    # -- data -------------------------------------------------------------------
    def is_file(self, path: str) -> bool:
        """Whether a file in a class folder is one of this modality's examples.

        Example:
            >>> get_modality("text").is_file("notes/a.txt")
            True
        """
        return False

    def load_files(self, paths: Sequence[str], *, strict: bool, max_pixels: int) -> Loaded:
        """Examples from files (a class folder's, or a CSV column of paths).

        Example:
            >>> loaded = get_modality("image").load_files(paths, strict=False, max_pixels=MAX)
            >>> loaded.keep, loaded.skipped           # broken files are skipped and counted
            (array([0, 2]), [('b.jpg', 'corrupt')])
        """
        raise DataError(f"{self.name} examples cannot be loaded from files.")

    def load_cells(
        self,
        cells: list[str],
        where: Any,
        column: str,
        folder: str,
        *,
        strict: bool,
        max_pixels: int,
    ) -> Loaded:
        """Examples from a CSV/JSONL column (`where(i)` names row i; `folder` holds the file).

        By default the cells are file paths, relative to that file's folder, read
        with `load_files`; a modality whose examples sit in the cells (text) overrides it.

        Example:
            >>> get_modality("text").load_cells(["hi", "yo"], where, "text", ".",
            ...                                 strict=True, max_pixels=0).x
            ['hi', 'yo']
        """
        files = [os.path.join(folder, p) for p in cells]
        return self.load_files(files, strict=strict, max_pixels=max_pixels)

    def load_records(
        self, items: list, names: list[str], *, strict: bool, max_pixels: int
    ) -> Loaded:
        """Examples from TFDS records (`names` name each one in messages).

        Example:
            >>> get_modality("text").load_records([b"hi"], ["ds[0]"], strict=True, max_pixels=0).x
            ['hi']
        """
        raise DataError(f"{self.name} examples cannot be read from TFDS.")

    def from_array(self, xs: np.ndarray, source: str) -> Any:
        """In-memory examples (`tltf.data.from_arrays`) checked, or None when not this kind.

        Example:
            >>> get_modality("image").from_array(np.zeros((2, 8, 8)), "arrays").shape
            (2, 8, 8, 1)
        """
        return None

    def claims_tfds_feature(self, feature: Any) -> bool:
        """Whether a TFDS feature holds this modality's examples.

        Example:
            >>> get_modality("image").claims_tfds_feature(tfds.features.Image())
            True
        """
        return False

    def tfds_decoder(self, tfds: Any) -> Any:
        """A TFDS decoder for the input feature (None: TFDS decodes it).

        Example:
            >>> get_modality("image").tfds_decoder(tfds)      # keep the encoded bytes
            <tensorflow_datasets...SkipDecoding object at ...>
        """
        return None

    def batches(
        self,
        data: Any,
        y: np.ndarray,
        batch_size: int,
        *,
        training: bool,
        seed: int,
        input_spec: dict,
        cache: bool | None,
    ) -> Any:
        """A batched ``tf.data.Dataset`` of ``(x, y)`` from a `tltf.data.Dataset`.

        Example:
            >>> ds = get_modality(train.modality).batches(train, train.y, 32, training=True,
            ...                                           seed=0, input_spec=spec, cache=None)
        """
        import tensorflow as tf

        ds = tf.data.Dataset.from_tensor_slices((np.asarray(data.x), y))
        return (ds.shuffle(len(data), seed=seed) if training else ds).batch(batch_size)

    def fit_report(self, data: Any, input_spec: dict) -> str:
        """A line on how training fits `data` to the model's input, or "" (nothing to say).

        Example:
            >>> get_modality("audio").fit_report(train, meta["input_spec"])
            'clips/train: 40 clips; 3 shorter than 2 s, padded with silence'
        """
        return ""

    # -- the feature cache --------------------------------------------------------
    def example_lengths(self, data: Any) -> np.ndarray | None:
        """A size per example to sort the extraction by (texts: characters), or None.

        Example:
            >>> get_modality("text").example_lengths(train)[:2]
            array([41, 17])
        """
        return None

    def fingerprint(self, data: Any, items: Any) -> None:
        """Feeds `data`'s examples into the cache key: ``items(values, files=bool)``.

        Example:
            >>> get_modality("image").fingerprint(train, items)   # paths and file contents
        """
        items(data.x)

    # -- export ---------------------------------------------------------------------
    def signatures(self, module: Any, meta: dict, serve: Any, task: Any) -> dict:
        """``{name: tf.function}`` serving raw inputs; ``serve(list of tensors)`` -> outputs.

        Each function is also set on `module` so that the SavedModel tracks it.

        Example:
            >>> sorted(get_modality("image").signatures(module, meta, serve, task))
            ['serving_default', 'serving_tensor']
        """
        import tensorflow as tf

        spec = meta["input_spec"]
        shape, dtype = [None, *spec["shape"]], tf.as_dtype(spec["dtype"])

        @tf.function(input_signature=[tf.TensorSpec(shape, dtype, name="inputs")])
        def serve_inputs(inputs):
            return serve([inputs])

        module.serve_inputs = serve_inputs
        return {"serving_default": serve_inputs}

    def encoded_signatures(
        self,
        module: Any,
        serve: Any,
        *,
        encoded: str,
        decode: Any,
        tensor: str,
        shape: list,
        signature: str,
    ) -> dict:
        """``serving_default`` on encoded files' bytes (decoded by `decode` in the graph),
        and `signature` on the decoded float32 tensor ``[N, *shape]``.

        Example:
            >>> self.encoded_signatures(module, serve, encoded="wav_bytes", decode=decode,
            ...                         tensor="waveforms", shape=[32000],
            ...                         signature="serving_waveform")
            {'serving_default': ..., 'serving_waveform': ...}
        """
        import tensorflow as tf

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=encoded)])
        def serve_encoded(values):
            # An empty request is served as one zero example, then cut off again: on a
            # decoded batch of 0, TensorFlow's graph optimizer can drop the first
            # convolution (``Incompatible shapes: [0,32,32,3] vs. [32]`` in BatchNorm)
            values = tf.ensure_shape(values, [None])  # a server does not check it
            n = tf.size(values)
            decoded = tf.cond(
                n > 0, lambda: decode(values), lambda: tf.zeros([1, *shape], tf.float32)
            )
            return _first(serve([tf.ensure_shape(decoded, [None, *shape])]), n)

        @tf.function(input_signature=[tf.TensorSpec([None, *shape], tf.float32, name=tensor)])
        def serve_tensor(values):
            # a server feeds tensors without checking the signature's shape: check it here
            values = tf.ensure_shape(values, [None, *shape])
            # an empty batch gets one zero example, cut off again, as above: a concat,
            # not a cond, so that TFLite still converts this signature
            n = tf.shape(values)[0]
            padded = tf.concat([values, tf.zeros([tf.maximum(0, 1 - n), *shape])], 0)
            return _first(serve([padded]), n)

        module.serve_encoded = serve_encoded
        module.serve_tensor = serve_tensor
        return {"serving_default": serve_encoded, signature: serve_tensor}

    def samples(
        self, meta: dict, parity_inputs: Any, task: Any
    ) -> dict[str, dict[str, np.ndarray]]:
        """``{signature: {input name: batch}}`` for the export's parity check and warm-up.

        Example:
            >>> get_modality("text").samples(meta, ["hello"], task)
            {'serving_default': {'text': array(['hello'], dtype=object)}}
        """
        spec = meta["input_spec"]
        if parity_inputs is None:
            rng = np.random.default_rng(0)
            parity_inputs = rng.normal(size=(3, *spec["shape"]))
        x = np.asarray(parity_inputs, dtype=spec["dtype"])
        if x.shape[1:] != tuple(spec["shape"]):
            raise ExportError(
                f"parity_inputs of shape {x.shape}; expected [N, {', '.join(map(str, spec['shape']))}]."
            )
        return {"serving_default": {"inputs": x}}

    def reference_inputs(self, signature: str, values: list, meta: dict) -> list:
        """A signature's input tensors as the Keras model takes them (e.g. decoded).

        Example:
            >>> get_modality("image").reference_inputs("serving_default", [jpegs], meta)
            [<tf.Tensor: shape=(2, 224, 224, 3), dtype=float32, ...>]
        """
        return values

    def cli_inputs(self, data: Any) -> list[str]:
        """`data`'s examples as ``tltf predict`` takes them (texts, or files' paths).

        Example:
            >>> get_modality("image").cli_inputs(test)[:1]
            ['photos/cat/1.jpg']
        """
        return [str(x) for x in data.x]

    def serving_example(self, x: Any) -> tuple[dict, str]:
        """One example as a feed for ``serving_default`` and how to show it.

        Example:
            >>> feed, shown = get_modality("text").serving_example("a game")
            >>> served(**feed)["label"]
        """
        import tensorflow as tf

        return {"inputs": tf.constant([x])}, f"<{self.name} example>"

    # -- the CLI ----------------------------------------------------------------------
    def backbone_options(self, cfg: dict) -> dict:
        """`tltf train`'s source options from the config (``image_size=``, ...).

        Example:
            >>> get_modality("image").backbone_options({"image_size": 160, "weights": None})
            {'input_shape': (160, 160, 3)}
        """
        return {}


def _first(outputs: dict, n: Any) -> dict:
    """The first `n` rows of each batched output (those of a padded batch's real examples)."""
    return {k: v[:n] if v.shape.rank and v.shape[0] is None else v for k, v in outputs.items()}


def file_bytes(item: Any) -> bytes | None:
    """`item` if it is bytes, the content of the file it names, else None (parity inputs).

    Example:
        >>> file_bytes("clips/a.wav")[:4]
        b'RIFF'
    """
    if isinstance(item, bytes):
        return item
    if isinstance(item, (str, os.PathLike)) and os.path.isfile(item):
        with open(item, "rb") as fh:
            return fh.read()
    return None
