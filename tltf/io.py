"""Writing files and folders atomically, for the feature cache, exports and resumable runs.

Everything is written under a temporary name, then renamed into place, so a killed
process never leaves a half-written file or folder under its final name. Temporary
names carry the writer's pid; `remove_stale` deletes those of processes that no
longer run. Paths may be local or, for files, any `tf.io.gfile` URL (``gs://``).
`latest_version` finds the newest version folder of an export.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid

from tltf.errors import ExportError

TMP_PREFIX = ".tmp-"


def temporary_path(folder: str, name: str) -> str:
    """A fresh temporary name in `folder` for `name`, marked with this process's pid.

    Example:
        >>> temporary_path("export/topics", "3")
        'export/topics/.tmp-3-4711-9f2c01ab'
    """
    return os.path.join(folder, f"{TMP_PREFIX}{name}-{os.getpid()}-{uuid.uuid4().hex[:8]}")


def remove_stale(folder: str) -> None:
    """Deletes the temporary files and folders in `folder` whose process no longer runs.

    Example:
        >>> remove_stale(os.path.expanduser("~/.cache/tltf/features"))
    """
    for name in os.listdir(folder):
        if not name.startswith(TMP_PREFIX):
            continue
        try:
            os.kill(int(name.split("-")[-2]), 0)
        except ProcessLookupError:
            path = os.path.join(folder, name)
            if os.path.isdir(path):
                shutil.rmtree(path, ignore_errors=True)
            else:
                with contextlib.suppress(FileNotFoundError):  # another writer removed it
                    os.remove(path)
        except (ValueError, IndexError, PermissionError):
            continue  # not a pid of ours, or alive under another user


def write_atomically(path: str, payload: bytes | str) -> None:
    """Writes `payload` to `path`: to a temporary file, flushed to disk, then renamed over it.

    Example:
        >>> write_atomically("runs/a/tltf_run.json", json.dumps(state))
        >>> write_atomically("gs://bucket/run/weights.npz", buffer.getvalue())
    """
    mode = "wb" if isinstance(payload, bytes) else "w"
    folder = os.path.dirname(path) or "."
    tmp = temporary_path(folder, os.path.basename(path))
    if "://" in path:  # a tf.io.gfile file system (GCS for TPUs): no fsync there
        import tensorflow as tf

        tf.io.gfile.makedirs(folder)
        with tf.io.gfile.GFile(tmp, mode) as fh:
            fh.write(payload)
        tf.io.gfile.rename(tmp, path, overwrite=True)
        return
    os.makedirs(folder, exist_ok=True)
    try:
        with open(tmp, mode, **({} if mode == "wb" else {"encoding": "utf-8"})) as fh:
            fh.write(payload)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def latest_version(export_dir: str) -> str:
    """`export_dir` if it holds a SavedModel, else its highest-numbered version folder.

    Example:
        >>> latest_version("export/topics")          # holds 1/, 2/ and 3/
        'export/topics/3'
    """
    if os.path.isfile(os.path.join(export_dir, "saved_model.pb")):
        return export_dir
    versions = (
        [n for n in os.listdir(export_dir) if n.isdigit()] if os.path.isdir(export_dir) else []
    )
    if not versions:
        raise ExportError(
            f"{export_dir} holds no saved_model.pb and no version folders (1, 2, ...)."
        )
    return os.path.join(export_dir, max(versions, key=int))


def files_below(folder: str) -> list[str]:
    """Every file under `folder`, hidden files and folders left out, in sorted order.

    Example:
        >>> files_below("photos/cat")
        ['photos/cat/1.jpg', 'photos/cat/more/2.jpg']
    """
    out = []
    for here, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        out.extend(os.path.join(here, f) for f in sorted(files) if not f.startswith("."))
    return out
