"""Which stock TF Serving releases can load a SavedModel: their op lists, the check, the edits.

A stock ``tensorflow/serving`` image registers the core ops of its TensorFlow and
the ops of the tensorflow-text version pinned in its ``workspace.bzl``: text-2.12.1
at tags 2.14.0-2.19.1, text-2.20.0 at 2.20.0. A SavedModel whose graph uses an op
the server lacks (or an op attribute newer than the server's op) fails to load
with ``Op type not registered``. The op lists in ``tltf/op_lists/`` were read from
the pip packages of those versions (``tools/serving_ops.py``).

    >>> missing_ops("export/topics/3", "2.19")
    {}
    >>> serving_versions("export/topics/3")
    ['2.14', '2.15', '2.16', '2.17', '2.18', '2.19', '2.20']
"""

from __future__ import annotations

import functools
import os
from typing import Any

from tltf.errors import ExportError

# stock TF Serving release -> (its TensorFlow, its tensorflow-text)
SERVING_RELEASES = {
    "2.14": ("2.14.1", "2.12.1"),
    "2.15": ("2.15.1", "2.12.1"),
    "2.16": ("2.16.2", "2.12.1"),
    "2.17": ("2.17.1", "2.12.1"),
    "2.18": ("2.18.1", "2.12.1"),
    "2.19": ("2.19.1", "2.12.1"),
    "2.20": ("2.20.0", "2.20.0"),
}
# op attributes that only serve error messages, and that some stock releases do not know
DEBUG_ATTRIBUTES = {"VarHandleOp": ("debug_name",)}
_LISTS = os.path.join(os.path.dirname(__file__), "op_lists")


def _key(version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in version.split("."))


@functools.cache
def _op_list(package: str) -> dict[str, tuple[str, str, dict[str, str]]]:
    """``{op: (since, until, {attr: since})}`` from ``op_lists/<package>.txt``."""
    ops = {}
    with open(os.path.join(_LISTS, f"{package}.txt")) as fh:
        last = next(ln for ln in fh if ln.startswith("# versions:")).split()[-1]
        for line in fh:
            op, span, *attrs = line.split()
            since, _, until = span.partition("-")
            first = {a.partition("@")[0]: a.partition("@")[2] or since for a in attrs}
            ops[op] = (since, until or last, first)
    return ops


def _registered(version: str, package: str) -> dict[str, set[str]]:
    """The ops (with their attributes) that `package` at `version` registers."""
    v = _key(version)
    return {
        op: {a for a, s in attrs.items() if _key(s) <= v}
        for op, (since, until, attrs) in _op_list(package).items()
        if _key(since) <= v <= _key(until)
    }


def known_ops(serving: str) -> dict[str, set[str]]:
    """The ops and attributes that the stock TF Serving image `serving` (e.g. ``"2.19"``) has.

    Example:
        >>> "TFText>RoundRobinTrim" in known_ops("2.19"), "TFText>RoundRobinTrim" in known_ops("2.20")
        (False, True)
    """
    return {op: set(attrs) for op, attrs in _known(_release(serving)).items()}


@functools.cache
def _known(release: str) -> dict[str, set[str]]:
    if release not in SERVING_RELEASES:
        raise ExportError(
            f"serving={release!r}: tltf knows the stock TF Serving releases "
            f"{', '.join(SERVING_RELEASES)}; give one of them (an image newer than "
            f"{list(SERVING_RELEASES)[-1]} has at least the ops of that one)."
        )
    tf_version, text_version = SERVING_RELEASES[release]
    return {**_registered(tf_version, "tensorflow"), **_registered(text_version, "tensorflow-text")}


def graph_ops(saved_model: str) -> dict[str, set[str]]:
    """``{op: attributes set on its nodes}`` of a SavedModel folder, functions included.

    Example:
        >>> sorted(graph_ops("export/topics/3"))[:3]
        ['AddV2', 'All', 'ArgMax']
    """
    ops: dict[str, set[str]] = {}
    for graph in _read(saved_model).meta_graphs:
        functions = {f.signature.name for f in graph.graph_def.library.function}
        for node in _nodes(graph):
            if node.op not in functions:  # a call of a library function, not an op
                # attributes named _* are the runtime's (_class, _output_shapes), not the op's
                ops.setdefault(node.op, set()).update(a for a in node.attr if a[0] != "_")
    return ops


def finish_saved_model(saved_model: str, methods: dict[str, str] | None = None) -> int:
    """Edits a written SavedModel for TF Serving; returns how many debug attributes it dropped.

    - Drops the `DEBUG_ATTRIBUTES`: TensorFlow 2.15+ sets ``debug_name`` on each
      variable's ``VarHandleOp``; it only names the variable in error messages, and
      TF Serving 2.14 refuses to load a graph that sets it (``NodeDef mentions attr
      'debug_name' not in Op``).
    - Sets the `methods` (``{signature: method_name}``): TF2's `tf.saved_model.save`
      marks every signature ``tensorflow/serving/predict``, and TF Serving's Classify
      and Regress APIs take only ``tensorflow/serving/classify`` / ``.../regress`` ones.

    The SavedModel's fingerprint is written again to match.

    Example:
        >>> finish_saved_model("export/topics/.tmp-3", {"classification": "tensorflow/serving/classify"})
        262
    """
    file = os.path.join(saved_model, "saved_model.pb")
    proto = _read(saved_model)
    dropped = 0
    for graph in proto.meta_graphs:
        for node in _nodes(graph):
            for attr in DEBUG_ATTRIBUTES.get(node.op, ()):
                if attr in node.attr:
                    del node.attr[attr]
                    dropped += 1
        for name, method in (methods or {}).items():
            graph.signature_def[name].method_name = method
    with open(file, "wb") as fh:
        fh.write(proto.SerializeToString())
    _rewrite_fingerprint(saved_model)
    return dropped


def _read(saved_model: str) -> Any:
    from tensorflow.core.protobuf import saved_model_pb2

    proto = saved_model_pb2.SavedModel()
    with open(os.path.join(saved_model, "saved_model.pb"), "rb") as fh:
        proto.ParseFromString(fh.read())
    return proto


def _nodes(graph: Any) -> list:
    """Every node of a MetaGraph: the graph's and its functions'."""
    nodes = [*graph.graph_def.node]
    for function in graph.graph_def.library.function:
        nodes.extend(function.node_def)
    return nodes


def _rewrite_fingerprint(saved_model: str) -> None:
    """``fingerprint.pb`` holds a checksum of ``saved_model.pb``: written again (or removed:
    it is optional, and SavedModels before TF 2.12 have none)."""
    try:
        from tensorflow.python.saved_model import fingerprinting_utils

        fingerprinting_utils.write_fingerprint(saved_model)
    except Exception:  # a private module: if it moved, leave no stale checksum
        path = os.path.join(saved_model, "fingerprint.pb")
        if os.path.exists(path):
            os.remove(path)


def missing_ops(saved_model: str, serving: str) -> dict[str, str]:
    """What the stock TF Serving `serving` lacks to load `saved_model`: ``{op: why}``.

    Example:
        >>> missing_ops("old_export/1", "2.19")
        {'TFText>RoundRobinTrim': 'not registered (the oldest stock release that has it: 2.20)'}
    """
    _known(_release(serving))  # an unknown release raises before the graph is read
    return _missing(graph_ops(saved_model), _release(serving))


def serving_versions(saved_model: str) -> list[str]:
    """The stock TF Serving releases whose ops cover `saved_model` (see `missing_ops`).

    Example:
        >>> serving_versions("export/topics/3")
        ['2.14', '2.15', '2.16', '2.17', '2.18', '2.19', '2.20']
    """
    return check_serving(saved_model)


def check_serving(saved_model: str, serving: str | None = None) -> list[str]:
    """Raises `ExportError` naming each op that the stock TF Serving `serving` lacks; returns
    the releases that can load `saved_model` (its graph is read once for both).

    Example:
        >>> check_serving("export/topics/3", "2.19")       # tltf.export(..., serving="2.19")
        ['2.14', '2.15', '2.16', '2.17', '2.18', '2.19', '2.20']
    """
    if serving is not None:
        _known(_release(serving))  # an unknown release raises before the graph is read
    ops = graph_ops(saved_model)
    missing = {} if serving is None else _missing(ops, _release(serving))
    if missing:
        lines = "".join(f"\n  {op}: {why}" for op, why in missing.items())
        raise ExportError(
            f"The stock TF Serving {_release(serving)} image cannot load this model; its graph "
            f"uses ops that release lacks:{lines}\nServe it from the release named for each op "
            "or a newer one, or from a server built with those ops (docs/serving.md); nothing "
            "was published."
        )
    return [v for v in SERVING_RELEASES if not _missing(ops, v)]


def _missing(ops: dict[str, set[str]], release: str) -> dict[str, str]:
    known = _known(release)
    missing = {}
    for op, attrs in sorted(ops.items()):
        if op.startswith("_"):
            continue  # internal ops that the runtime adds and strips (_Mkl*, _Send, ...)
        if _has(known, op, attrs):
            continue
        oldest = next((v for v in SERVING_RELEASES if _has(_known(v), op, attrs)), None)
        where = (
            f"the oldest stock release that has it: {oldest}"
            if oldest
            else f"no stock release up to {list(SERVING_RELEASES)[-1]} has it"
        )
        if op not in known:
            missing[op] = f"not registered ({where})"
        else:
            extra = ", ".join(sorted(attrs - known[op]))
            missing[op] = f"attribute {extra} is newer than this release's op ({where})"
    return missing


def _has(known: dict[str, set[str]], op: str, attrs: set[str]) -> bool:
    return op in known and attrs <= known[op]


def _release(serving: str) -> str:
    """``"2.19.1"`` -> ``"2.19"``: releases of one minor version link the same ops."""
    return ".".join(str(serving).split(".")[:2])
