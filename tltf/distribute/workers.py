"""Chief and workers: who writes files when several processes train one model."""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from typing import Any

from tltf.distribute.strategy import _tf_config


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
