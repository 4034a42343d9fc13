"""Keras layers that tltf puts into the models it builds.

They are registered as serializable, so a model saved with `model.save("x.keras")`
loads again with `keras.models.load_model` once `tltf` is imported.
"""

from __future__ import annotations

from typing import Any

import keras
import tensorflow as tf

from tltf.card import ModelCard

# Per-channel constants of `keras.applications.imagenet_utils.preprocess_input`.
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)
_CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)
IMAGE_MODES = ("none", "tf", "torch", "caffe", "unit")


@keras.saving.register_keras_serializable(package="tltf")
class ImagePreprocessing(keras.layers.Layer):
    """Maps raw RGB pixels in [0, 255] to what a pretrained image network expects.

    `mode` follows `keras.applications.imagenet_utils.preprocess_input`:
    "tf" scales to [-1, 1], "torch" to ImageNet mean/std, "caffe" flips to BGR and
    subtracts the ImageNet mean; "unit" scales to [0, 1]; "none" passes pixels
    through, for networks that normalize inside (EfficientNet, ConvNeXt, ...).

    Example:
        >>> ImagePreprocessing("tf")(np.array([[[0.0, 127.5, 255.0]]]))
        <tf.Tensor: shape=(1, 1, 3), dtype=float32, numpy=array([[[-1.,  0.,  1.]]], dtype=float32)>
    """

    def __init__(self, mode: str = "none", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if mode not in IMAGE_MODES:
            raise ValueError(f"ImagePreprocessing: mode={mode!r}; use one of {IMAGE_MODES}.")
        self.mode = mode

    def call(self, images):
        x = keras.ops.cast(images, "float32")
        if self.mode == "tf":
            return x / 127.5 - 1.0
        if self.mode == "unit":
            return x / 255.0
        if self.mode == "torch":
            return (x / 255.0 - keras.ops.array(_IMAGENET_MEAN)) / keras.ops.array(_IMAGENET_STD)
        if self.mode == "caffe":
            return keras.ops.flip(x, axis=-1) - keras.ops.array(_CAFFE_MEAN_BGR)
        return x

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self) -> dict:
        return {**super().get_config(), "mode": self.mode}


@keras.saving.register_keras_serializable(package="tltf")
class TextPreprocessor(keras.layers.Layer):
    """Raw strings in, token features out, padded only to the longest text in the batch.

    Wraps a KerasHub `TextClassifierPreprocessor` (which packs to a fixed
    `sequence_length`) and trims the padding columns that no example in the batch
    uses. Short texts then cost a fraction of a full 512-token pass, while
    training, evaluation and the exported graph all tokenize the same way.
    Inputs may be a string tensor or a tuple of two (text pairs); `feature_names`
    are the backbone's inputs (RoBERTa-type models take no segment ids).

    Example:
        >>> pre = TextPreprocessor(keras_hub.models.BertTextClassifierPreprocessor.from_preset(
        ...     "/models/bert", sequence_length=512))
        >>> pre(tf.constant(["a short text"]))["token_ids"].shape      # not [1, 512]
        TensorShape([1, 5])
    """

    def __init__(
        self,
        preprocessor: keras.layers.Layer,
        feature_names: tuple[str, ...] = ("padding_mask", "segment_ids", "token_ids"),
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.preprocessor = preprocessor
        self.feature_names = tuple(feature_names)

    def build(self, input_shape: Any = None) -> None:
        self.built = True  # the wrapped KerasHub preprocessor builds itself on first call

    @property
    def sequence_length(self) -> int:
        """The most tokens a text is cut to (the wrapped preprocessor's setting).

        Example:
            >>> model.get_layer("text_preprocessor").sequence_length
            128
        """
        return int(self.preprocessor.sequence_length)

    def call(self, inputs):
        from tltf.packing import use_core_packer  # imports keras_hub

        # built here, once the tokenizer's vocabulary has loaded; packs with core ops, so
        # that exports load on TF Serving 2.14-2.19 (tltf.packing)
        use_core_packer(self.preprocessor)
        # x= by keyword: KerasHub reads a positional 2-tuple as (x, y), not as a text pair
        x = self.preprocessor(x=tuple(inputs) if isinstance(inputs, (list, tuple)) else inputs)
        mask = tf.cast(x["padding_mask"], "int32")
        longest = tf.maximum(tf.reduce_max(tf.reduce_sum(mask, axis=1)), 1)
        return {key: x[key][:, :longest] for key in self.feature_names}

    def compute_output_spec(self, inputs):
        first = inputs[0] if isinstance(inputs, (list, tuple)) else inputs
        batch = first.shape[0]
        dtypes = {"padding_mask": "bool"}
        return {
            k: keras.KerasTensor((batch, None), dtype=dtypes.get(k, "int32"))
            for k in self.feature_names
        }

    def get_config(self) -> dict:
        return {
            **super().get_config(),
            "preprocessor": keras.saving.serialize_keras_object(self.preprocessor),
            "feature_names": list(self.feature_names),
        }

    @classmethod
    def from_config(cls, config: dict) -> TextPreprocessor:
        config = dict(config)
        config["preprocessor"] = keras.saving.deserialize_keras_object(config["preprocessor"])
        return cls(**config)


@keras.saving.register_keras_serializable(package="tltf")
class TltfInfo(keras.layers.Layer):
    """Identity layer that carries a tltf model's card through `.keras` save/load.

    The card (`tltf.card.ModelCard`: task, class names, backbone spec, layer groups,
    freeze policy, fingerprint, input spec) is saved as JSON in the layer's config
    and read with `tltf.info(model)`; `tltf.metadata.update_info` replaces it.

    Example:
        >>> model.get_layer("tltf_info").card.task      # what tltf.info(model) reads
        'classification'
    """

    def __init__(self, info: ModelCard | dict | str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.card = info if isinstance(info, ModelCard) else ModelCard.from_dict(info or {})
        self.supports_masking = True  # per-word features carry a mask (tltf.words)

    def call(self, inputs):
        return inputs

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self) -> dict:
        return {**super().get_config(), "info": self.card.to_json()}


def load_saved_model(handle: str) -> Any:
    """`tensorflow_hub.load` (URL, TF-Hub handle or folder), registering tf-text ops if needed.

    Text preprocessing SavedModels use tf-text ops, which exist only after
    ``import tensorflow_text``; that import is slow, so it happens on demand.

    Example:
        >>> module = load_saved_model("/models/bert_en_uncased_preprocess")
        >>> module.tokenize(tf.constant(["hello world"]))
    """
    import tensorflow_hub as hub

    try:
        return hub.load(handle)
    except (tf.errors.NotFoundError, RuntimeError) as exc:
        if "Op type not registered" not in str(exc):
            raise
        import tensorflow_text  # noqa: F401  (registers the ops)

        return hub.load(handle)


def _saved_model_endpoint(module: Any, endpoint: str | None = None) -> tuple[Any, str]:
    """``(function, name)``: `endpoint` of a loaded SavedModel, else the first it has of
    ``__call__`` (TF-Hub reusable SavedModels), ``serve`` (Keras exports), ``serving_default``."""
    names = [endpoint] if endpoint else ["__call__", "serve", "serving_default"]
    signatures = getattr(module, "signatures", {})
    for name in names:
        function = getattr(module, name, None)
        if getattr(function, "concrete_functions", None):  # a restored tf.function
            return function, name
        if name in signatures:
            return signatures[name], name
    raise ValueError(
        f"SavedModel has none of the endpoints {names}; signatures: {list(signatures)}."
    )


@keras.saving.register_keras_serializable(package="tltf")
class FeatureNorm(keras.layers.Layer):
    """``(x - mean) / std`` per feature: the head's input for backbones whose features
    are large and unnormalized (`tltf.Backbone.standardize_features`). `mean` and `std`
    are weights, set once from the training set's features by
    `tltf.feature_cache.adapt_feature_norm` (`tltf.fine_tune` does it).

    Example:
        >>> layer = model.get_layer("feature_norm")      # speech:openwakeword models
        >>> layer.std.numpy()[:2]
        array([14.2, 9.8], dtype=float32)
    """

    def build(self, input_shape: Any) -> None:
        k = int(input_shape[-1])
        self.mean = self.add_weight(shape=(k,), initializer="zeros", trainable=False, name="mean")
        self.std = self.add_weight(shape=(k,), initializer="ones", trainable=False, name="std")

    def call(self, x: Any) -> Any:
        return (x - keras.ops.cast(self.mean, x.dtype)) / keras.ops.cast(self.std, x.dtype)

    def compute_output_shape(self, input_shape: Any) -> Any:
        return input_shape


@keras.saving.register_keras_serializable(package="tltf")
class UnitLength(keras.layers.Layer):
    """Each vector L2-normalized, then scaled to `length`: a classifier head's input
    (`tltf.heads.classification.FEATURE_LENGTH`).

    Example:
        >>> layer = model.get_layer("head_unit_length")
        >>> np.linalg.norm(layer(features), axis=-1)
        array([3.1622777, 3.1622777], dtype=float32)

    Written with ``tf.math.l2_normalize``, which the TFLite converter fuses into its
    int8 ``L2_NORMALIZATION`` kernel; Keras' `UnitNormalization` leaves a float
    ``SQUARE`` behind in a full-integer file. It computes in float32 (a sum of squares
    can overflow float16).
    """

    def __init__(self, length: float = 1.0, **kwargs: Any) -> None:
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        self.length = float(length)

    def call(self, x: Any) -> Any:
        x = tf.cast(x, tf.float32)
        return tf.math.l2_normalize(x, axis=-1) * self.length

    def compute_output_shape(self, input_shape: Any) -> Any:
        return input_shape

    def get_config(self) -> dict:
        return {**super().get_config(), "length": self.length}


@keras.saving.register_keras_serializable(package="tltf")
class HubModule(keras.layers.Layer):
    """A TF2 SavedModel (TF-Hub module or Keras export) as a trainable Keras 3 layer.

    `tensorflow_hub.KerasLayer` is a Keras 2 layer and cannot sit in a Keras 3
    model (tensorflow/hub #903). This layer holds ``hub.load(handle)`` and wraps
    each restored `tf.Variable` in a `keras.Variable` (a wrapper, not a copy), so
    optimizers, ``.keras`` files and exports see the module's own variables.
    Variable paths are ``<layer name>/<variable name with "/" as "_">``.

    The BatchNorm policy `bn` decides the module's ``training`` flag: "frozen"
    always calls it with ``training=False`` (statistics fixed, dropout off);
    "train" passes ``training=True`` during fit when any of its variables train,
    which updates the statistics of the whole module (it takes one flag).
    Regularization losses of the module are added while it trains.

    Example:
        >>> layer = HubModule("/models/feature_vector", name="hub_module")
        >>> features = layer(images)            # images in [0, 1]

    Reloading a ``.keras`` file loads `handle` again, then its saved weights.
    """

    follows_bn_policy = True  # `tltf.set_freeze` sets `bn`: the module has no BN layers to freeze

    def __init__(
        self,
        handle: str,
        endpoint: str | None = None,
        output_key: str | None = None,
        arguments: dict | None = None,
        bn: str = "frozen",
        frozen_variables: list[str] | tuple[str, ...] = (),
        per_example: bool = False,
        **kwargs: Any,
    ) -> None:
        trainable = kwargs.pop("trainable", True)
        kwargs["dtype"] = "float32"  # the module's functions are traced in float32
        super().__init__(**kwargs)
        self.handle = handle
        self.endpoint = endpoint
        self.output_key = output_key
        self.arguments = dict(arguments or {})
        self.bn = bn  # set by `tltf.set_freeze` (see `follows_bn_policy`)
        self.per_example = per_example  # the module takes one example (YAMNet: a waveform)
        self._module = load_saved_model(handle)
        self._fn, self._endpoint = _saved_model_endpoint(self._module, endpoint)
        self._takes_training = self._endpoint == "__call__" and any(
            len(f.structured_input_signature[0]) > 1
            or "training" in f.structured_input_signature[1]
            for f in self._fn.concrete_functions
        )
        owned = list(getattr(self._module, "variables", [])) or list(self._fn.variables)
        trainable_ids = {id(v) for v in getattr(self._module, "trainable_variables", owned)}
        names: dict[str, int] = {}
        wrapped = []
        with keras.name_scope(self.name, caller=self):
            for v in owned:
                name = v.name.split(":")[0].replace("/", "_")
                names[name] = names.get(name, 0) + 1
                if names[name] > 1:
                    name = f"{name}_{names[name] - 1}"
                wrapped.append(
                    keras.Variable(initializer=v, trainable=id(v) in trainable_ids, name=name)
                )
        self.module_variables = wrapped  # tracked by Keras: trainable ones first
        self.variable_names = tuple(v.name.split(":")[0] for v in owned)  # the module's own
        self._module_trainable = {v.name for v in wrapped if v.trainable}
        self._reg_losses = list(getattr(self._module, "regularization_losses", []))
        self.trainable = trainable  # after tracking: only then does it reach the variables
        frozen = set(frozen_variables)
        for v in wrapped:
            if v.name in frozen:
                v.trainable = False
        self.built = True

    def call(self, inputs, training=None):
        trains = bool(training) and bool(self.trainable_weights)
        kwargs = dict(self.arguments)
        if self._takes_training:
            kwargs["training"] = trains and self.bn == "train"
        if self.per_example:  # one call per example, stacked (a fixed-size input)
            sample = self._run(inputs[0], kwargs)
            spec = tf.nest.map_structure(lambda t: tf.TensorSpec(t.shape, t.dtype), sample)
            outputs = tf.map_fn(lambda x: self._run(x, kwargs), inputs, fn_output_signature=spec)
        else:
            outputs = self._run(inputs, kwargs)
        if trains:
            for loss in self._reg_losses:
                self.add_loss(loss())
        if isinstance(outputs, dict) and self.output_key:
            return outputs[self.output_key]
        if isinstance(outputs, dict) and len(outputs) == 1:
            return next(iter(outputs.values()))
        return outputs

    def _run(self, inputs: Any, kwargs: dict) -> Any:
        """The module's endpoint on `inputs`."""
        if self._endpoint == "serving_default" and not isinstance(inputs, dict):
            (key,) = self._fn.structured_input_signature[1]
            return self._fn(**{key: inputs}, **kwargs)
        if self._endpoint == "serving_default":
            return self._fn(**inputs, **kwargs)
        return self._fn(inputs, **kwargs)

    def get_config(self) -> dict:
        frozen = [
            v.name
            for v in self.module_variables
            if v.name in self._module_trainable and not v.trainable
        ]
        return {
            **super().get_config(),
            "handle": self.handle,
            "endpoint": self.endpoint,
            "output_key": self.output_key,
            "arguments": self.arguments,
            "bn": self.bn,
            "frozen_variables": frozen if self.trainable else [],
            "per_example": self.per_example,
        }


@keras.saving.register_keras_serializable(package="tltf")
class HubTextPreprocessor(keras.layers.Layer):
    """Raw strings in, BERT-style inputs out, from a TF-Hub text preprocessing SavedModel.

    Uses the module's ``tokenize`` + ``bert_pack_inputs(seq_length=...)`` when it
    has them (TF-Hub BERT preprocessors do), else calls it. Like `TextPreprocessor`,
    it trims the padding columns that no text in the batch uses.

    Example:
        >>> pre = HubTextPreprocessor("/models/bert_en_uncased_preprocess", sequence_length=128)
        >>> sorted(pre(tf.constant(["hello world"])))
        ['input_mask', 'input_type_ids', 'input_word_ids']
    """

    FEATURES = ("input_word_ids", "input_mask", "input_type_ids")

    def __init__(self, handle: str, sequence_length: int = 128, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.handle = handle
        self.sequence_length = int(sequence_length)
        self._module = load_saved_model(handle)
        self.built = True

    def call(self, inputs):
        module = self._module
        if hasattr(module, "tokenize") and hasattr(module, "bert_pack_inputs"):
            x = module.bert_pack_inputs([module.tokenize(inputs)], seq_length=self.sequence_length)
        else:
            x = module(inputs)
        longest = tf.maximum(tf.reduce_max(tf.reduce_sum(tf.cast(x["input_mask"], "int32"), 1)), 1)
        return {key: tf.cast(x[key][:, :longest], "int32") for key in self.FEATURES}

    def compute_output_spec(self, inputs):
        return {k: keras.KerasTensor((inputs.shape[0], None), dtype="int32") for k in self.FEATURES}

    def get_config(self) -> dict:
        return {
            **super().get_config(),
            "handle": self.handle,
            "sequence_length": self.sequence_length,
        }


def saved_model_dependencies(model: Any) -> list:
    """The loaded SavedModels that tltf layers in `model` call (TF-Hub modules, preprocessors).

    An export must track them: their functions capture resources, like a
    tokenizer's vocabulary table, that ``model.weights`` does not hold.

    Example:
        >>> module = tf.Module()
        >>> module.dependencies = saved_model_dependencies(model)     # [] without TF-Hub layers
    """
    return [
        layer._module
        for layer in model._flatten_layers()
        if isinstance(layer, (HubModule, HubTextPreprocessor))
    ]
