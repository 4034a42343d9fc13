"""Choosing a `tf.distribute` strategy and a precision, and building and compiling in its scope."""

from __future__ import annotations

import contextlib
import functools
import glob
import importlib.util
import inspect
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from tltf.errors import SpecError

STRATEGIES = ("auto", "default", "cpu", "gpu", "mirrored", "multi_worker", "tpu")
PRECISIONS = ("auto", "float32", "mixed_float16", "mixed_bfloat16")
_PRECISION_ALIASES = {
    "fp32": "float32",
    "float16": "mixed_float16",
    "fp16": "mixed_float16",
    "bfloat16": "mixed_bfloat16",
    "bf16": "mixed_bfloat16",
}
# Steps run per `tf.function` call on TPU: the host round trip dominates small steps.
TPU_STEPS_PER_EXECUTION = 32

_STRATEGY_CACHE: dict[tuple, Any] = {}


@dataclass(frozen=True)
class Environment:
    """What `resolve` and `precision_policy` look at; tests build their own.

    Example:
        >>> Environment(gpus=((8, 0), (8, 0)))               # two A100s
        >>> Environment(tf_config={"cluster": {"worker": ["h1:2222", "h2:2222"]},
        ...                        "task": {"type": "worker", "index": 0}})

    Attributes:
        tpu: a TPU to use: ``"local"`` (TPU VM), a ``grpc://`` address or a TPU
            name (TPU Node), or None.
        tf_config: the parsed ``TF_CONFIG`` environment variable, or None.
        gpus: the compute capability ``(major, minor)`` of each local GPU (None
            where unknown).
    """

    tpu: str | None = None
    tf_config: dict | None = None
    gpus: tuple[tuple[int, int] | None, ...] = ()

    @classmethod
    def detect(cls, tpu: str | None = None) -> Environment:
        """Reads this machine: `tpu` or the TPU it finds, TF_CONFIG, the local GPUs.

        Lists physical devices only, so MultiWorkerMirroredStrategy can still be
        created afterwards (it must come before TensorFlow's runtime starts).

        Example:
            >>> Environment.detect()              # a machine with one T4 GPU
            Environment(tpu=None, tf_config=None, gpus=((7, 5),))
        """
        import tensorflow as tf

        gpus = []
        for device in tf.config.list_physical_devices("GPU"):
            capability = tf.config.experimental.get_device_details(device).get("compute_capability")
            gpus.append(tuple(capability) if capability else None)
        return cls(tpu=tpu or _find_tpu(), tf_config=_tf_config(), gpus=tuple(gpus))

    @property
    def workers(self) -> int:
        """Worker tasks (chief included) in the TF_CONFIG cluster; 0 without TF_CONFIG.

        Example:
            >>> env = Environment(tf_config={"cluster": {"chief": ["h0:1"], "worker": ["h1:1"]}})
            >>> env.workers
            2
        """
        cluster = (self.tf_config or {}).get("cluster", {})
        return sum(len(cluster.get(role, [])) for role in ("chief", "master", "worker"))


def _tf_config() -> dict | None:
    text = os.environ.get("TF_CONFIG")
    if not text:
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise SpecError(f"TF_CONFIG is not valid JSON ({exc}): {text[:200]!r}.") from None


def _find_tpu() -> str | None:
    """TPU_NAME, Colab's TPU Node (COLAB_TPU_ADDR), or the chips of a TPU VM (Colab, Kaggle)."""
    if os.environ.get("TPU_NAME"):
        return os.environ["TPU_NAME"]
    if os.environ.get("COLAB_TPU_ADDR"):
        return f"grpc://{os.environ['COLAB_TPU_ADDR']}"
    if glob.glob("/dev/accel[0-9]*") or (
        glob.glob("/dev/vfio/[0-9]*") and importlib.util.find_spec("libtpu") is not None
    ):
        return "local"
    return None


def choose(strategy: str = "auto", env: Environment | None = None) -> str:
    """The kind of strategy `resolve` creates for `strategy` in `env`.

    ``"auto"`` picks, in order: ``"tpu"`` when a TPU is found, ``"multi_worker"``
    when TF_CONFIG names several workers, ``"mirrored"`` with more than one GPU,
    else ``"default"`` (one device: the GPU if there is one, else the CPU).

    Example:
        >>> choose("auto", Environment(gpus=((7, 0), (7, 0))))
        'mirrored'
    """
    if strategy not in STRATEGIES:
        raise SpecError(
            f"strategy={strategy!r}; use one of {STRATEGIES} or a tf.distribute.Strategy."
        )
    env = env or Environment.detect()
    if strategy == "tpu" and not env.tpu:
        raise SpecError(
            "strategy='tpu' but no TPU was found: pass tpu='NAME' (or 'local' on a TPU VM), "
            "set TPU_NAME, or pick a TPU runtime in Colab."
        )
    if strategy == "gpu" and not env.gpus:
        raise SpecError("strategy='gpu' but TensorFlow sees no GPU; use strategy='auto' or 'cpu'.")
    if strategy != "auto":
        return strategy
    if env.tpu:
        return "tpu"
    if env.workers > 1:
        return "multi_worker"
    if len(env.gpus) > 1:
        return "mirrored"
    return "default"


def resolve(
    strategy: Any = "auto", tpu: str | None = None, *, env: Environment | None = None
) -> Any:
    """A `tf.distribute.Strategy` for `strategy`: a name from `STRATEGIES`, or a strategy.

    ``"auto"`` inside a ``strategy.scope()`` is that strategy; otherwise `choose`
    says which kind. Each kind is created once per process and reused: TPUs are
    initialized once, and MultiWorkerMirroredStrategy must be created before any
    other TensorFlow work in the process, so call this (or `tltf.build`) first.

    Example:
        >>> strategy = tltf.distribute.resolve("auto")     # on Colab TPU: TPUStrategy
        >>> strategy.num_replicas_in_sync
        8
    """
    import tensorflow as tf

    if isinstance(strategy, tf.distribute.Strategy):
        return strategy
    if strategy == "auto" and tf.distribute.has_strategy():
        return tf.distribute.get_strategy()
    env = env or Environment.detect(tpu)
    kind = choose(strategy, env)
    if kind == "default":
        return tf.distribute.get_strategy()
    key = (kind, env.tpu if kind == "tpu" else None)
    if key not in _STRATEGY_CACHE:
        _STRATEGY_CACHE[key] = _create(kind, env)
    return _STRATEGY_CACHE[key]


def _create(kind: str, env: Environment) -> Any:
    import tensorflow as tf

    if kind == "cpu":
        return tf.distribute.OneDeviceStrategy("/cpu:0")
    if kind == "gpu":
        return tf.distribute.OneDeviceStrategy("/gpu:0")
    if kind == "mirrored":
        return tf.distribute.MirroredStrategy()
    if kind == "multi_worker":
        try:
            return tf.distribute.MultiWorkerMirroredStrategy()
        except RuntimeError as exc:
            raise SpecError(
                f"MultiWorkerMirroredStrategy could not start ({exc}): create it first in the "
                "process, before any other TensorFlow work: call tltf.distribute.resolve() or "
                "tltf.build() at the top of the script."
            ) from None
    resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=env.tpu)
    tf.config.experimental_connect_to_cluster(resolver)
    tf.tpu.experimental.initialize_tpu_system(resolver)
    return tf.distribute.TPUStrategy(resolver)


def _tpu_kind(strategy: Any) -> str | None:
    """``"node"`` (a remote TPU host), ``"vm"`` (chips on this host), or None off TPU."""
    import tensorflow as tf

    if not isinstance(strategy, tf.distribute.TPUStrategy):
        return None
    master = strategy.cluster_resolver.master() or ""
    host = master.removeprefix("grpc://").split(":")[0]
    return "node" if host not in ("", "local", "localhost", "127.0.0.1") else "vm"


def _device_type(strategy: Any, env: Environment | None = None) -> str:
    """``"TPU"``, ``"GPU"`` or ``"CPU"``: what `strategy`'s replicas run on."""
    import tensorflow as tf

    if _tpu_kind(strategy):
        return "TPU"
    if type(strategy) is type(tf.distribute.get_strategy()) and not tf.distribute.has_strategy():
        env = env or Environment.detect()  # the default strategy: GPU:0 when there is one
        return "GPU" if env.gpus else "CPU"
    devices = strategy.extended.worker_devices
    return "GPU" if any("GPU" in d.upper() for d in devices) else "CPU"


def precision_policy(
    precision: str = "auto", strategy: Any = None, env: Environment | None = None
) -> str:
    """The Keras dtype policy for `precision` on `strategy` (default: the current one).

    ``"auto"``: ``"mixed_bfloat16"`` on TPU, ``"mixed_float16"`` on GPUs that all
    have compute capability 7.0 or more (Keras then wraps the optimizer in a
    `LossScaleOptimizer`), ``"float32"`` otherwise (on CPU, bfloat16 runs at half
    the speed of float32). Aliases: fp32, float16/fp16, bfloat16/bf16.

    Example:
        >>> precision_policy("auto", env=Environment(gpus=((8, 0),)))
        'mixed_float16'
    """
    import tensorflow as tf

    name = _PRECISION_ALIASES.get(precision, precision)
    if name not in PRECISIONS:
        raise SpecError(f"precision={precision!r}; use one of {PRECISIONS}.")
    if name != "auto":
        return name
    device = _device_type(strategy or tf.distribute.get_strategy(), env)
    if device == "TPU":
        return "mixed_bfloat16"
    if device == "GPU":
        env = env or Environment.detect()
        if env.gpus and all(c is not None and tuple(c) >= (7, 0) for c in env.gpus):
            return "mixed_float16"
    return "float32"


@contextlib.contextmanager
def building(
    strategy: Any = "auto", precision: str = "auto", tpu: str | None = None
) -> Iterator[tuple[Any, str]]:
    """Within: `strategy`'s scope and the precision's global dtype policy (restored after).

    Yields ``(strategy, policy name)``. Layers made inside take the policy; a
    layer created with an explicit dtype (the logits, TF-Hub modules) keeps it.

    Example:
        >>> with tltf.distribute.building("auto", "auto") as (strategy, policy):
        ...     model = make_model()
    """
    import keras

    strategy = resolve(strategy, tpu)
    policy = precision_policy(precision, strategy)
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(policy)
    try:
        with strategy.scope():
            yield strategy, policy
    finally:
        keras.config.set_dtype_policy(previous)


def builds_in_scope(build: Callable) -> Callable:
    """Decorates `tltf.build`: runs it inside `building` with its ``strategy``,
    ``precision`` and ``tpu`` arguments, passing on the strategy and policy name they resolve to.

    Example:
        >>> @builds_in_scope
        ... def build(spec, *, strategy="auto", precision="auto", tpu=None):
        ...     ...                     # runs in the strategy's scope, with the policy set
    """
    signature = inspect.signature(build)

    @functools.wraps(build)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        given = bound.arguments
        with building(given["strategy"], given["precision"], given["tpu"]) as (strategy, policy):
            given["strategy"], given["precision"] = strategy, policy
            return build(*bound.args, **bound.kwargs)

    return wrapper


def in_strategy_scope(func: Callable) -> Callable:
    """Decorates ``func(model, ...)`` to run in ``model.distribute_strategy.scope()``.

    Optimizers must be created in the scope of the model's strategy: `tltf.compile_model`
    makes a new one for each phase of `tltf.fine_tune`.

    Example:
        >>> @in_strategy_scope
        ... def compile_model(model, lr=1e-4):
        ...     model.compile(optimizer=keras.optimizers.Adam(lr))   # made in the model's scope
    """

    @functools.wraps(func)
    def wrapper(model: Any, *args: Any, **kwargs: Any) -> Any:
        with model.distribute_strategy.scope():
            return func(model, *args, **kwargs)

    return wrapper


def compile_options(model: Any) -> dict:
    """``jit_compile`` and ``steps_per_execution`` for `model.compile`, from its settings.

    ``jit_compile="auto"`` (tltf's default) is on only for image models on GPU
    without TF-Hub modules: string (tokenizer) ops have no XLA kernels, XLA slows
    CNN fine-tuning on CPU, and a trainable SavedModel layer recompiles every
    step. TPUs compile everything anyway and run `TPU_STEPS_PER_EXECUTION` steps
    per call. Models without the setting compile without XLA.

    Example:
        >>> compile_options(image_model)         # on one GPU
        {'jit_compile': True, 'steps_per_execution': 1}
    """
    from tltf.layers import HubModule
    from tltf.metadata import backbone_model, info
    from tltf.modalities import get_modality

    meta = info(model)
    device = _device_type(model.distribute_strategy)
    jit = meta.get("jit_compile", False)
    if jit not in (True, False, "auto"):
        raise SpecError(f"jit_compile={jit!r}; use True, False or 'auto'.")
    blocker = get_modality(meta["modality"]).xla_blocker
    if jit and blocker:
        if jit != "auto":
            raise SpecError(
                f"jit_compile=True on a {meta['modality']} model: {blocker}. "
                "Use jit_compile='auto' or False."
            )
        jit = False
    if jit == "auto":
        layers = backbone_model(model)._flatten_layers(include_self=True)
        jit = device == "GPU" and not any(isinstance(layer, HubModule) for layer in layers)
    return {
        "jit_compile": bool(jit) and device != "TPU",
        "steps_per_execution": TPU_STEPS_PER_EXECUTION if device == "TPU" else 1,
    }


def global_batch_size(batch_size: int, strategy: Any) -> int:
    """The batch all replicas together take in one step: `batch_size` per replica.

    Example:
        >>> global_batch_size(32, tf.distribute.MirroredStrategy(["/gpu:0", "/gpu:1"]))
        64
    """
    return int(batch_size) * int(strategy.num_replicas_in_sync)


def _multi_worker(strategy: Any) -> bool:
    import tensorflow as tf

    return (
        isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)
        and strategy.extended._in_multi_worker_mode()
    )
