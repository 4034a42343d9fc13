"""Writing files and folders atomically, for the feature cache, exports and resumable runs.

Everything is written under a temporary name, then renamed into place, so a killed
process never leaves a half-written file or folder under its final name. Temporary
names carry the writer's pid; `remove_stale` deletes those of processes that no
longer run. Paths may be local or, for files, any `tf.io.gfile` URL (``gs://``).
`latest_version` finds the newest version folder of an export; `load_keras` reads a
``.keras`` archive with errors that say what is wrong with the file.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import shutil
import uuid
import zipfile
from typing import Any

from tltf.errors import ExportError, FolderInUse, SpecError

TMP_PREFIX = ".tmp-"
LOCK_FILE = ".lock"
_HELD: dict[str, list] = {}  # folder -> [open lock file, holders in this process]


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


def load_keras(path: str, *, safe_mode: bool = True) -> Any:
    """``keras.saving.load_model(path, compile=False)``, with `SpecError` for a bad file.

    Example:
        >>> network = load_keras("task_a.keras")

    A missing file, a file that is not a whole zip archive (truncated, or another
    format), a class that is not registered and a Lambda layer under ``safe_mode``
    each get one line that names the file and the fix.
    """
    import keras

    if not os.path.isfile(path):
        raise SpecError(f"{path}: no such file.")
    if not zipfile.is_zipfile(path):
        raise SpecError(
            f"{path}: not a valid .keras archive (truncated, or another format?). Save the "
            "model again with model.save('x.keras')."
        )
    try:
        return keras.saving.load_model(path, compile=False, safe_mode=safe_mode)
    except (TypeError, ValueError) as exc:
        text = str(exc)
        missing = re.search(r"Could not locate (?:class|function) '([^']+)'", text)
        if missing:
            raise SpecError(
                f"{path} holds {missing[1]!r}, a class Keras does not know here. Import the "
                f"module that defines it, decorated with "
                f"@keras.saving.register_keras_serializable(), before loading."
            ) from None
        if "safe_mode" in text:
            raise SpecError(
                f"{path} runs Python code when loaded (a Lambda layer); tltf loads it only "
                "with safe_mode=False, which you should pass only for files you trust."
            ) from None
        raise SpecError(f"{path}: Keras could not load it: {text.splitlines()[0]}") from None


class FolderLock:
    """An exclusive lock on a folder across processes (``flock`` on ``FOLDER/.lock``).

    Example:
        >>> with FolderLock("runs/topics"):     # FolderInUse if another process holds it
        ...     train_there()

    The lock file records the holder's pid for the message. The kernel drops the lock
    when its process ends, however it ends, so a stale lock is simply taken over.
    Within one process the lock is re-entrant (`tltf train` holds it, and so does the
    `tltf.fine_tune` it calls). Remote folders (``gs://``) are not locked.
    """

    def __init__(self, folder: str) -> None:
        self.remote = "://" in folder  # gs:// and such: no lock (flock is local)
        self.folder = folder if self.remote else os.path.realpath(folder)
        self.held = False

    def acquire(self) -> FolderLock:
        """Takes the lock, or raises `FolderInUse` naming the process that holds it."""
        if self.held or self.remote:
            return self
        entry = _HELD.get(self.folder)
        if entry is None:
            os.makedirs(self.folder, exist_ok=True)
            fh = open(os.path.join(self.folder, LOCK_FILE), "a+")  # noqa: SIM115  held open
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                fh.seek(0)
                pid = fh.read().strip() or "unknown"
                fh.close()
                raise FolderInUse(
                    f"{self.folder} is in use by PID {pid}; wait for it to end, or use "
                    "another run folder."
                ) from None
            fh.seek(0)
            fh.truncate()
            fh.write(str(os.getpid()))
            fh.flush()
            entry = _HELD[self.folder] = [fh, 0]
        entry[1] += 1
        self.held = True
        return self

    def release(self) -> None:
        """Lets the lock go (the last holder in this process closes the lock file)."""
        if not self.held:
            return
        self.held = False
        entry = _HELD[self.folder]
        entry[1] -= 1
        if entry[1] == 0:
            del _HELD[self.folder]
            entry[0].close()

    def __enter__(self) -> FolderLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
