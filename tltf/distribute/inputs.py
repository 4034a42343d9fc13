"""Input pipelines under a strategy: sharding across workers, and the TPU pre-flight check."""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from tltf.distribute.strategy import _multi_worker, _tpu_kind
from tltf.errors import DataError

# Ops that read files, and those that read them as the dataset's source (FILE sharding).
_FILE_READER_OPS = ("ReadFile", "MatchingFiles", "WholeFileReader")
_RECORD_READER_MARKS = ("RecordDataset", "TextLineDataset")
_PYTHON_OPS = {
    "PyFunc": "tf.numpy_function",
    "PyFuncStateless": "tf.numpy_function",
    "EagerPyFunc": "tf.py_function",
}
_BATCH_OPS = ("BatchDataset", "BatchDatasetV2", "ParallelBatchDataset", "PaddedBatchDatasetV2")


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
