"""Makes tltf/op_lists/: the op names (and attributes) that each stock TF Serving release registers.

A stock ``tensorflow/serving`` image links the core ops of its own TensorFlow
version and the ops of the tensorflow-text version pinned in its
``tensorflow_serving/workspace.bzl`` (``@org_tensorflow_text//tensorflow_text:ops_lib``
in ``model_servers/BUILD``). The pip packages of the same versions register the
same ops, so the lists are read from them, one throwaway virtualenv per version:

    python3 -m venv /tmp/v && /tmp/v/bin/pip install tensorflow==2.16.2 tensorflow-text==2.12.1
    /tmp/v/bin/python tools/serving_ops.py dump /tmp/ops/2.16.2.json     # core (and text) ops
    ...                                                                  # one per version
    python tools/serving_ops.py merge /tmp/ops/*.json                    # writes tltf/op_lists/

``dump`` lists what the running TensorFlow registers (TF_GetAllOpList), then what
importing tensorflow_text adds, if it is installed. ``merge`` writes one file for
core TensorFlow and one for tensorflow-text, in the format `tltf.serving_ops` reads.
"""

from __future__ import annotations

import json
import os
import sys

OUT = os.path.join(os.path.dirname(__file__), "..", "tltf", "op_lists")


def _registered() -> dict[str, list[str]]:
    from tensorflow.core.framework import op_def_pb2
    from tensorflow.python.client import pywrap_tf_session as c_api

    buffer = c_api.TF_GetAllOpList()
    ops = op_def_pb2.OpList()
    ops.ParseFromString(c_api.TF_GetBuffer(buffer))
    c_api.TF_DeleteBuffer(buffer)
    return {op.name: sorted(a.name for a in op.attr) for op in ops.op}


def dump(path: str) -> None:
    import tensorflow as tf

    core = _registered()
    result = {"tensorflow": tf.__version__, "core": core}
    try:
        import tensorflow_text
    except ImportError:
        pass
    else:
        every = _registered()
        result["tensorflow_text"] = tensorflow_text.__version__
        result["text"] = {k: v for k, v in every.items() if k not in core}
    with open(path, "w") as fh:
        json.dump(result, fh)


def _key(version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in version.split("."))


def _lines(lists: dict[str, dict[str, list[str]]]) -> list[str]:
    """``op since[-until] attr attr@since ...`` for the union of versioned op lists."""
    versions = sorted(lists, key=_key)
    lines = []
    for op in sorted(set().union(*lists.values())):
        having = [v for v in versions if op in lists[v]]
        span = having[0] if having[-1] == versions[-1] else f"{having[0]}-{having[-1]}"
        attrs = []
        for attr in sorted(set().union(*(lists[v][op] for v in having))):
            first = next(v for v in having if attr in lists[v][op])
            attrs.append(attr if first == having[0] else f"{attr}@{first}")
        lines.append(" ".join([op, span, *attrs]))
    return lines


def merge(paths: list[str]) -> None:
    dumps = [json.load(open(p)) for p in paths]
    core = {d["tensorflow"]: d["core"] for d in dumps}
    text = {d["tensorflow_text"]: d["text"] for d in dumps if "text" in d}
    os.makedirs(OUT, exist_ok=True)
    header = "# op since[-until] attribute[@since] ... (made by tools/serving_ops.py)\n"
    for name, lists in (("tensorflow", core), ("tensorflow-text", text)):
        versions = " ".join(sorted(lists, key=_key))
        with open(os.path.join(OUT, f"{name}.txt"), "w") as fh:
            fh.write(f"{header}# versions: {versions}\n" + "\n".join(_lines(lists)) + "\n")


if __name__ == "__main__":
    command, *args = sys.argv[1:]
    dump(args[0]) if command == "dump" else merge(args)
