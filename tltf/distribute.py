"""Training under `tf.distribute`: strategy choice, precision, TPU pre-flight, resumable runs.

The same script runs on a laptop CPU, a multi-GPU box, several workers and a
Colab TPU; `tltf.build` and `tltf.fine_tune` call what is here:

    >>> model = tltf.build(spec, class_names=names, strategy="auto", precision="auto")
    >>> tltf.fine_tune(model, train, epochs=3, batch_size=32, run_dir="runs/topics")
    >>> tltf.export(model, "export/topics")      # the chief writes; other workers do not

- `resolve` picks the strategy: a TPU (``tpu=``, ``TPU_NAME``, Colab's TPU
  Node address or a TPU VM's local chips), else TF_CONFIG with several workers
  (MultiWorkerMirroredStrategy), else several GPUs (MirroredStrategy), else the
  default strategy.
- `precision_policy`: bfloat16 on TPU, float16 with loss scaling on GPUs of
  compute capability 7.0 and up, float32 on CPU. The logits stay float32.
- `preflight` raises, before a TPU trains, on the inputs known to fail there.
- `Run` makes ``fit`` calls resumable: a process killed mid-epoch and started
  again with the same command loses at most the epoch it was in.

TensorFlow is imported only inside functions, so importing this module is cheap.
See docs/distribute.md.
"""

from __future__ import annotations

import contextlib
import functools
import glob
import importlib.util
import inspect
import io
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from types import MethodType
from typing import Any

import numpy as np

from tltf.errors import DataError, SpecError

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
# Keras versions [first, end) whose `fit` needs `patch_keras_fit` (keras #20585).
KERAS_FIT_BUG_VERSIONS = ((3, 0), (3, 16))
# Ops that read files, and those that read them as the dataset's source (FILE sharding).
_FILE_READER_OPS = ("ReadFile", "MatchingFiles", "WholeFileReader")
_RECORD_READER_MARKS = ("RecordDataset", "TextLineDataset")
_PYTHON_OPS = {
    "PyFunc": "tf.numpy_function",
    "PyFuncStateless": "tf.numpy_function",
    "EagerPyFunc": "tf.py_function",
}
_BATCH_OPS = ("BatchDataset", "BatchDatasetV2", "ParallelBatchDataset", "PaddedBatchDatasetV2")

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


def _dataset_graph(dataset: Any) -> Any:
    """The dataset's GraphDef (functions included), or None when it cannot be serialized."""
    import tensorflow as tf
    from tensorflow.core.framework import graph_pb2

    try:
        serialized = dataset._as_serialized_graph(
            external_state_policy=tf.data.experimental.ExternalStatePolicy.IGNORE
        )
    except (tf.errors.OpError, ValueError, TypeError):
        return None
    graph = graph_pb2.GraphDef()
    graph.ParseFromString(serialized.numpy())
    return graph


def _all_nodes(graph: Any) -> list:
    return [*graph.node, *(n for f in graph.library.function for n in f.node_def)]


def shard(dataset: Any, strategy: Any = None) -> Any:
    """`dataset` with the auto-shard policy that fits where its data come from.

    Only where `strategy` spans several input workers (MultiWorkerMirroredStrategy in
    a cluster, TPUs); elsewhere nothing is sharded and `dataset` is returned as it is.

    Data from tensors in memory (every tltf dataset, arrays, file paths mapped
    to their contents) shard by ``DATA``: each worker keeps its part of each
    batch. A pipeline that reads record files (TFRecord, text lines) keeps
    ``AUTO``, so TensorFlow shards by ``FILE`` when there are files for every
    worker. A policy the caller set explicitly is kept.

    Example:
        >>> ds = shard(train.as_tf_dataset(32, training=True), strategy)
        >>> model.fit(ds, epochs=3)
    """
    import tensorflow as tf

    policy = tf.data.experimental.AutoShardPolicy
    if strategy is not None and not (_multi_worker(strategy) or _tpu_kind(strategy)):
        return dataset
    if dataset.options().experimental_distribute.auto_shard_policy != policy.AUTO:
        return dataset
    graph = _dataset_graph(dataset)
    nodes = _all_nodes(graph) if graph is not None else []
    if any(mark in node.op for node in nodes for mark in _RECORD_READER_MARKS):
        return dataset
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = policy.DATA
    return dataset.with_options(options)


def _string_constants(nodes: list) -> list[str]:
    import tensorflow as tf

    values = []
    for node in nodes:
        if node.op == "Const" and node.attr["dtype"].type == tf.string.as_datatype_enum:
            array = tf.make_ndarray(node.attr["value"].tensor)
            values += [v.decode("utf-8", "replace") for v in np.ravel(array)[:1000]]
    return values


def _batch_size(graph: Any) -> int | None:
    """The outermost batch op's batch size, read from the dataset graph."""
    import tensorflow as tf

    by_name = {node.name: node for node in graph.node}
    ret = next((n for n in graph.node if n.op == "_Retval"), None)
    node = by_name.get(ret.input[0].split(":")[0]) if ret is not None else None
    while node is not None:
        if node.op in _BATCH_OPS:
            size = by_name.get(node.input[1].split(":")[0])
            if size is not None and size.op == "Const":
                return int(tf.make_ndarray(size.attr["value"].tensor))
            return None
        inputs = [i for i in node.input if not i.startswith("^")]
        node = by_name.get(inputs[0].split(":")[0]) if inputs else None
    return None


def preflight(dataset: Any, strategy: Any, batch_size: int | None = None) -> list[str]:
    """Checks, before a TPU trains, for the input problems known to fail there.

    Raises `DataError` naming the fix when the batch size (given, or read from
    the dataset) does not divide among the TPU cores; on a TPU Node (whose input
    pipeline runs on a remote host) when the data come from local files, which
    must move to a GCS bucket, or when the dataset calls Python (`tf.py_function`,
    `tf.numpy_function`, `Dataset.from_generator`). On a TPU VM those Python calls
    work but are often the bottleneck: they are returned as warnings. Off TPU it
    checks nothing and returns [].

    Example:
        >>> tltf.distribute.preflight(train_ds, strategy)     # before model.fit
        []
    """
    kind = _tpu_kind(strategy)
    if kind is None:
        return []
    replicas = int(strategy.num_replicas_in_sync)
    graph = _dataset_graph(dataset)
    nodes = _all_nodes(graph) if graph is not None else []
    if batch_size is None and graph is not None:
        batch_size = _batch_size(graph)
    if batch_size is not None and batch_size % replicas:
        fix = replicas * max(1, round(batch_size / replicas))
        raise DataError(
            f"The batch size {batch_size} does not divide among the {replicas} TPU cores; "
            f"use a multiple of {replicas}, e.g. batch_size={fix} (tltf.fine_tune's batch_size "
            "is per core, so any value works there)."
        )
    python = {_PYTHON_OPS[n.op] for n in nodes if n.op in _PYTHON_OPS}
    if any(n.op == "GeneratorDataset" for n in nodes):  # runs its generator via numpy_function
        python = (python - {"tf.numpy_function"}) | {"Dataset.from_generator"}
    warnings = []
    if python:
        message = (
            f"The dataset calls Python ({', '.join(sorted(python))}), which "
            + (
                "cannot run on a TPU Node's remote input host"
                if kind == "node"
                else "runs under the GIL on the TPU VM's host and often starves the TPU"
            )
            + ". Load the data into memory first (tltf.data.from_arrays, "
            "tf.data.Dataset.from_tensor_slices) or write TFRecords and read them with tf.data."
        )
        if kind == "node":
            raise DataError(message)
        warnings.append(message)
    if kind == "node" and any(
        n.op in _FILE_READER_OPS or any(m in n.op for m in _RECORD_READER_MARKS) for n in nodes
    ):
        local = [
            s
            for s in _string_constants(nodes)
            if not s.startswith("gs://") and (os.path.isabs(s) or os.path.exists(s))
        ]
        if local:
            raise DataError(
                f"The dataset reads local files ({local[0]!r}, {len(local)} in all), but a TPU "
                "Node reads its input on a remote host that cannot see this machine's disk. "
                "Copy the data to a GCS bucket (gsutil -m cp -r DIR gs://BUCKET/) and load it "
                "from gs:// paths, or load it into memory (tltf.data.from_arrays)."
            )
    return warnings


# -- Keras 3 `fit` under tf.distribute (keras #20585) --------------------------------------


def _keras_version() -> tuple[int, int]:
    import keras

    major, minor = keras.__version__.split(".")[:2]
    return int(major), int(minor)


def _multi_worker(strategy: Any) -> bool:
    import tensorflow as tf

    return (
        isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)
        and strategy.extended._in_multi_worker_mode()
    )


def _local_value(value: Any) -> Any:
    import tensorflow as tf

    if isinstance(value, tf.distribute.DistributedValues):
        return value.values[0]
    return value


def _symbolic_build_from_local_batch(
    self: Any, iterator: Any = None, data_batch: Any = None
) -> None:
    """`TensorFlowTrainer._maybe_symbolic_build`, building from one replica's first batch.

    Keras reduces the first distributed batch with ``strategy.reduce("MEAN")`` only
    to learn its structure and shapes; that fails on string batches (text models)
    and under MultiWorkerMirroredStrategy. One replica's batch has both.
    """
    from keras import tree

    if self._distribute_strategy is None:
        return
    if iterator is not None:
        for _, _, it in iterator:
            data_batch = tree.map_structure(_local_value, next(it))
            break
    with self.distribute_strategy.scope():
        self._symbolic_build(data_batch=data_batch)


def _reduce_scalar_logs(original: Callable) -> Callable:
    """Wraps Keras' `reduce_per_replica`: MEAN over replicas without ``axis=0`` under MWMS.

    Keras reduces the per-replica scalar logs (loss, metrics) with
    ``strategy.reduce("MEAN", v, axis=0)``, which fails on scalars ("Invalid
    reduction dimension 0"). An element-wise mean over replicas is what is meant.
    """

    @functools.wraps(original)
    def reduce_per_replica(values: Any, strategy: Any, reduction: Any) -> Any:
        if _multi_worker(strategy) and reduction in ("auto", "mean"):
            from keras import tree

            def mean(value: Any) -> Any:
                if getattr(value, "shape", None) is not None and len(value.shape) == 0:
                    return strategy.reduce("MEAN", value, axis=None)
                return original(value, strategy, reduction)

            return tree.map_structure(mean, values)
        return original(values, strategy, reduction)

    reduce_per_replica.tltf_original = original
    return reduce_per_replica


def patch_keras_fit(model: Any) -> list[str]:
    """Applies the workarounds `model.fit` needs on its strategy; returns their names.

    Keras 3.0-3.15 (`KERAS_FIT_BUG_VERSIONS`) fails in `fit` under tf.distribute
    (keras #20585): ``"first_batch"`` (with several replicas: the first batch is
    reduced to learn its shapes; fails for strings and under MWMS) is fixed on
    this model only; ``"scalar_logs"`` (MWMS: scalar logs reduced over axis 0)
    wraps Keras' module-level reducer, changing only multi-worker reductions.
    Other Keras versions get nothing. Idempotent; `tltf.compile_model` calls it.

    Example:
        >>> patch_keras_fit(model)          # under MirroredStrategy with two GPUs, Keras 3.15
        ['first_batch']
    """
    first, end = KERAS_FIT_BUG_VERSIONS
    if not first <= _keras_version() < end:
        return []
    from keras.src.backend.tensorflow import trainer as tf_trainer

    strategy = model.distribute_strategy
    applied = []
    if strategy.num_replicas_in_sync > 1 or _multi_worker(strategy):
        object.__setattr__(
            model, "_maybe_symbolic_build", MethodType(_symbolic_build_from_local_batch, model)
        )
        applied.append("first_batch")
    if _multi_worker(strategy):
        if not hasattr(tf_trainer.reduce_per_replica, "tltf_original"):
            tf_trainer.reduce_per_replica = _reduce_scalar_logs(tf_trainer.reduce_per_replica)
        applied.append("scalar_logs")
    return applied


# -- chief and workers ----------------------------------------------------------------------


def is_chief(tf_config: dict | None = None) -> bool:
    """True in the process that writes shared outputs: the chief, worker 0 without a chief,
    or any process without TF_CONFIG.

    Example:
        >>> is_chief({"cluster": {"worker": ["a:1", "b:1"]}, "task": {"type": "worker", "index": 1}})
        False
    """
    config = tf_config if tf_config is not None else _tf_config()
    if not config or "task" not in config:
        return True
    role = config["task"].get("type")
    if role in ("chief", "master"):
        return True
    cluster = config.get("cluster", {})
    return (
        role == "worker"
        and int(config["task"].get("index", 0)) == 0
        and not (cluster.get("chief") or cluster.get("master"))
    )


def _task_name() -> str:
    task = (_tf_config() or {}).get("task", {})
    return f"{task.get('type', 'worker')}{task.get('index', 0)}"


@contextlib.contextmanager
def chief_writes(path: str) -> Iterator[str]:
    """Yields `path` in the chief; in other workers a temporary path, removed on exit.

    Under MultiWorkerMirroredStrategy every worker must run the same saving code
    (reading distributed variables may need all of them), but only the chief's
    files are kept.

    Example:
        >>> with chief_writes("runs/a/model.keras") as target:
        ...     model.save(target)
    """
    if is_chief():
        yield path
        return
    folder = tempfile.mkdtemp(prefix=f"tltf-{_task_name()}-")
    try:
        yield os.path.join(folder, os.path.basename(os.path.normpath(path)))
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def chief_only(writer: Callable) -> Callable:
    """Decorates ``writer(model, path, ...)`` to write through `chief_writes`.

    Non-chief workers return None; the chief returns what `writer` returns.

    Example:
        >>> @chief_only
        ... def save(model, path):
        ...     model.save(path)
        ...     return path
        >>> save(model, "runs/a/model.keras")      # None in the other workers
        'runs/a/model.keras'
    """

    @functools.wraps(writer)
    def wrapper(model: Any, path: str, *args: Any, **kwargs: Any) -> Any:
        with chief_writes(path) as target:
            result = writer(model, target, *args, **kwargs)
        return result if target == path else None

    return wrapper


# -- resumable runs ------------------------------------------------------------------------

STATE_FILE = "tltf_run.json"


class Run:
    """`model.fit` calls that survive being killed: state and backups in `run_dir`.

    Each ``fit`` covers epochs ``[initial_epoch, epochs)`` (a phase of
    `tltf.fine_tune`). A phase that finished is not trained again: its weights
    and per-epoch logs are in `run_dir`. An unfinished phase trains under
    `keras.callbacks.BackupAndRestore`, which restores the last completed epoch.
    Only the chief writes the state file and the final model; each other worker
    keeps its own backup folder. `run_dir` must be visible to every worker.

    Layout: ``tltf_run.json`` (finished phases, logs per epoch), ``weights-A-B.npz``
    (after the last finished phase), ``backup/A-B[-workerN]/`` (Keras' backups),
    ``model.keras`` (the trained model, written by `finish`).

    Example:
        >>> run = Run("runs/topics", model)
        >>> history = run.fit(model, train_ds, initial_epoch=0, epochs=3)
        >>> run.finish(model)
    """

    def __init__(self, run_dir: str | None, model: Any) -> None:
        from tltf.metadata import info

        self.dir = run_dir
        meta = info(model)
        self.identity = {k: meta[k] for k in ("task", "backbone", "fingerprint", "class_names")}
        self.chief = is_chief()
        self._holds: str | None = None  # the finished phase whose weights the model holds
        self.state = {"model": self.identity, "phases": [], "weights": None, "epochs": {}}
        if run_dir and _exists(self._path(STATE_FILE)):
            with _open(self._path(STATE_FILE), "r") as fh:
                self.state = json.load(fh)
            if self.state["model"] != json.loads(json.dumps(self.identity)):
                raise SpecError(
                    f"{run_dir} holds a run of another model ({self.state['model']['backbone']}, "
                    f"classes {self.state['model']['class_names']}); use a new run_dir or delete it."
                )

    def _path(self, *names: str) -> str:
        return os.path.join(self.dir, *names)

    def fit(
        self, model: Any, data: Any, *, initial_epoch: int, epochs: int, **fit_kwargs: Any
    ) -> Any:
        """`model.fit` over epochs ``[initial_epoch, epochs)``, resumed or skipped as recorded.

        Returns a `History` of all the phase's epochs, those of earlier processes too.

        Example:
            >>> history = run.fit(model, train_ds, initial_epoch=1, epochs=4, verbose=0)
            >>> history.epoch
            [1, 2, 3]
        """
        if not self.dir:
            return model.fit(data, initial_epoch=initial_epoch, epochs=epochs, **fit_kwargs)
        import keras

        phase = f"{initial_epoch}-{epochs}"
        if phase in self.state["phases"]:
            if self.state["weights"] == phase:
                self._load_weights(model, phase)
            self._holds = phase
            return self._history(initial_epoch, epochs, None)
        if self.state["weights"] not in (None, self._holds):
            raise SpecError(
                f"{self.dir} holds a run whose phases {self.state['phases']} do not lead to "
                f"epochs {phase} of this call (were epochs or freeze_epochs changed?); use a "
                "new run_dir, or delete it."
            )
        backup = self._path("backup", phase if self.chief else f"{phase}-{_task_name()}")
        callbacks = [
            *(fit_kwargs.pop("callbacks", None) or []),
            _epoch_logs_class()(self),  # before the backup: an epoch's logs, then its weights
            # kept until the phase's weights are saved: a kill in between loses no phase
            keras.callbacks.BackupAndRestore(
                backup, double_checkpoint=True, delete_checkpoint=False
            ),
        ]
        model._initial_epoch = None  # Keras keeps a restored epoch on the model for later fits
        history = model.fit(
            data, initial_epoch=initial_epoch, epochs=epochs, callbacks=callbacks, **fit_kwargs
        )
        model._initial_epoch = None
        self._save_weights(model, phase)
        self._holds = phase
        _remove_tree(backup)
        return self._history(initial_epoch, epochs, history)

    def finish(self, model: Any) -> str | None:
        """Writes ``model.keras`` (the chief; other workers write a temporary copy); its path.

        Example:
            >>> run.finish(model)
            'runs/topics/model.keras'
        """
        if not self.dir:
            return None
        with chief_writes(self._path("model.keras")) as target:
            model.save(target)
        backups = self._path("backup")
        if self.chief and _exists(backups) and not _list(backups):
            _remove_tree(backups)
        return self._path("model.keras") if self.chief else None

    def _history(self, first: int, end: int, history: Any) -> Any:
        import keras

        # the phase's recorded epochs: all of them, or up to where it stopped early
        ran = [e for e in range(first, end) if str(e) in self.state["epochs"]]
        merged = history or keras.callbacks.History()
        if not ran:
            merged.epoch, merged.history = [], {}
            return merged
        logs = [self.state["epochs"][str(e)] for e in ran]
        merged.epoch = ran
        merged.history = {k: [entry[k] for entry in logs] for k in logs[-1]}
        return merged

    def _save_weights(self, model: Any, phase: str) -> None:
        arrays = {f"w{i}": np.asarray(w.numpy()) for i, w in enumerate(model.weights)}
        previous = self.state["weights"]
        self.state["phases"].append(phase)
        self.state["weights"] = phase
        if not self.chief:
            return
        path = self._path(f"weights-{phase}.npz")
        buffer = io.BytesIO()  # zip needs seeking, which a GFile being written lacks
        np.savez(buffer, **arrays)
        with _open(f"{path}.tmp", "wb") as fh:
            fh.write(buffer.getvalue())
        _replace(f"{path}.tmp", path)
        self.write_state()
        if previous and previous != phase:
            _remove(self._path(f"weights-{previous}.npz"))

    def _load_weights(self, model: Any, phase: str) -> None:
        with _open(self._path(f"weights-{phase}.npz"), "rb") as fh:
            arrays = np.load(io.BytesIO(fh.read()))
        for i, weight in enumerate(model.weights):
            weight.assign(arrays[f"w{i}"])

    def write_state(self) -> None:
        """Writes ``tltf_run.json`` atomically (the chief only).

        Example:
            >>> run.state["epochs"]["0"] = {"loss": 0.52}
            >>> run.write_state()
        """
        if not self.chief:
            return
        path = self._path(STATE_FILE)
        with _open(f"{path}.tmp", "w") as fh:
            json.dump(self.state, fh, indent=1)
        _replace(f"{path}.tmp", path)


def _exists(path: str) -> bool:
    import tensorflow as tf

    return tf.io.gfile.exists(path)


def _open(path: str, mode: str) -> Any:
    import tensorflow as tf

    tf.io.gfile.makedirs(os.path.dirname(path) or ".")
    return tf.io.gfile.GFile(path, mode)


def _replace(source: str, target: str) -> None:
    import tensorflow as tf

    tf.io.gfile.rename(source, target, overwrite=True)


def _remove(path: str) -> None:
    import tensorflow as tf

    if tf.io.gfile.exists(path):
        tf.io.gfile.remove(path)


def _list(path: str) -> list[str]:
    import tensorflow as tf

    return tf.io.gfile.listdir(path)


def _remove_tree(path: str) -> None:
    import tensorflow as tf

    if tf.io.gfile.exists(path):
        tf.io.gfile.rmtree(path)


@functools.cache
def _epoch_logs_class() -> type:
    """The callback class that records epochs in a `Run` (made on first use: keras loads late)."""
    import keras

    class EpochLogs(keras.callbacks.Callback):
        """Records each finished epoch's logs in the run state."""

        def __init__(self, run: Run) -> None:
            super().__init__()
            self.run = run

        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            self.run.state["epochs"][str(epoch)] = {k: float(v) for k, v in (logs or {}).items()}
            self.run.write_state()

    return EpochLogs
