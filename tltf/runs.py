"""Resumable runs: `fit` calls that a killed process picks up where it stopped.

`tltf.fine_tune(..., run_dir=...)` trains through a `Run`. Under
MultiWorkerMirroredStrategy only the chief writes the state; see docs/distribute.md.
"""

from __future__ import annotations

import functools
import io
import json
import os
from typing import Any

import numpy as np

from tltf.distribute.workers import _task_name, chief_writes, is_chief
from tltf.errors import SpecError
from tltf.io import FolderLock, write_atomically

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
    ``model.keras`` (the trained model, written by `finish`), and under a ``lora:``
    policy ``adapters.npz`` (its adapters and head alone, `tltf.save_adapters`).

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
        # one writer at a time (local folders; the chief writes); released by `finish`
        self.lock = FolderLock(run_dir) if run_dir and self.chief else None
        if self.lock:
            self.lock.acquire()
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
            # the orders its fit drew: one to build the model (under a strategy), then its epochs'
            _advance(data, epochs - initial_epoch, build=_builds_from_data(model))
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
            # before the backup: an epoch's logs and random states, then its weights
            _epoch_logs_class()(self, backup),
            # kept until the phase's weights are saved: a kill in between loses no phase
            keras.callbacks.BackupAndRestore(
                backup, double_checkpoint=True, delete_checkpoint=False
            ),
        ]
        model._initial_epoch = None  # Keras keeps a restored epoch on the model for later fits
        _advance(data, _restored_epoch(backup) - initial_epoch)
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
        from tltf.adapters import ADAPTERS_FILE, save_adapters
        from tltf.lora import is_lora
        from tltf.metadata import info

        with chief_writes(self._path("model.keras")) as target:
            model.save(target)
        if is_lora(info(model).freeze):
            with chief_writes(self._path(ADAPTERS_FILE)) as target:
                save_adapters(model, target)
        backups = self._path("backup")
        if self.chief and _exists(backups) and not _list(backups):
            _remove_tree(backups)
        if self.lock:
            self.lock.release()
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
        arrays.update(_seed_arrays(model))
        previous = self.state["weights"]
        self.state["phases"].append(phase)
        self.state["weights"] = phase
        if not self.chief:
            return
        path = self._path(f"weights-{phase}.npz")
        buffer = io.BytesIO()  # zip needs seeking, which a GFile being written lacks
        np.savez(buffer, **arrays)
        write_atomically(path, buffer.getvalue())
        self.write_state()
        if previous and previous != phase:
            _remove(self._path(f"weights-{previous}.npz"))

    def _load_weights(self, model: Any, phase: str) -> None:
        with _open(self._path(f"weights-{phase}.npz"), "rb") as fh:
            arrays = np.load(io.BytesIO(fh.read()))
        for i, weight in enumerate(model.weights):
            weight.assign(arrays[f"w{i}"])
        _assign_seeds(model, arrays)  # dropout's random stream goes on

    def write_state(self) -> None:
        """Writes ``tltf_run.json`` atomically (the chief only).

        Example:
            >>> run.state["epochs"]["0"] = {"loss": 0.52}
            >>> run.write_state()
        """
        if not self.chief:
            return
        path = self._path(STATE_FILE)
        write_atomically(path, json.dumps(self.state, indent=1))


def _exists(path: str) -> bool:
    import tensorflow as tf

    return tf.io.gfile.exists(path)


def _open(path: str, mode: str) -> Any:
    import tensorflow as tf

    tf.io.gfile.makedirs(os.path.dirname(path) or ".")
    return tf.io.gfile.GFile(path, mode)


def _remove(path: str) -> None:
    import tensorflow as tf

    if tf.io.gfile.exists(path):
        tf.io.gfile.remove(path)


def _makedirs(path: str) -> None:
    import tensorflow as tf

    tf.io.gfile.makedirs(path)


def _list(path: str) -> list[str]:
    import tensorflow as tf

    return tf.io.gfile.listdir(path)


def _remove_tree(path: str) -> None:
    import tensorflow as tf

    if tf.io.gfile.exists(path):
        tf.io.gfile.rmtree(path)


@functools.cache
def _seed_states(model: Any) -> list:
    """The model's random-number states (`keras.random.SeedGenerator`s, e.g. dropout's):
    variables that ``model.weights`` leaves out, and so Keras' backups too."""
    weights = {id(w) for w in model.weights}
    return [v for v in model.variables if id(v) not in weights]


def _seed_arrays(model: Any) -> dict[str, np.ndarray]:
    return {f"s{i}": np.asarray(v.numpy()) for i, v in enumerate(_seed_states(model))}


def _assign_seeds(model: Any, arrays: Any) -> None:
    """Sets the random states saved by `_seed_arrays` (files written before them have none)."""
    for i, state in enumerate(_seed_states(model)):
        if f"s{i}" in arrays:
            state.assign(arrays[f"s{i}"])


def _restored_epoch(backup: str) -> int:
    """The epoch `keras.callbacks.BackupAndRestore` will resume `backup` at (0: none)."""
    for name in ("training_metadata.json", "training_metadata.json.bkp"):
        path = os.path.join(backup, name)
        if not _exists(path):
            continue
        try:
            with _open(path, "r") as fh:
                return int(json.load(fh)["epoch"])
        except (ValueError, KeyError):  # a half-written file: Keras falls back to the .bkp
            continue
    return 0


def _builds_from_data(model: Any) -> bool:
    """Whether Keras' `fit` reads a first batch to build `model` before its epochs.

    Keras 3 does that for a model made under a `tf.distribute` strategy scope (it keeps
    the strategy then), which opens one more iterator, and so draws one more order.
    """
    return getattr(model, "_distribute_strategy", None) is not None


def _advance(data: Any, epochs: int, *, build: bool = False) -> None:
    """Draws `epochs` epochs' shuffle orders from `data` without training on them
    (and, with `build`, first the order of the batch `fit` reads to build the model).

    A tf.data pipeline reshuffles on each pass from one seeded sequence, so a resumed
    process starts that sequence again; drawing (and dropping) the first batch of each
    epoch that ran before brings epoch E back to the order it had in an uninterrupted
    run. A kill then changes nothing in the history or the weights. A resumed `fit`
    builds the model itself, so only a skipped one needs `build`.
    """
    if not hasattr(data, "as_numpy_iterator"):
        return
    if build:
        next(iter(data), None)
    if epochs <= 0:
        return
    # Keras 3's EpochIterator opens an iterator as each epoch begins (and reads it) and,
    # when the number of batches is known, opens another as it ends (unread); each
    # draws the next order, and a read one the orders of any shuffles inside it too
    known = int(data.cardinality()) > 0
    for _ in range(epochs):
        next(iter(data), None)
        if known:
            iter(data)


def _epoch_logs_class() -> type:
    """The callback class that records epochs in a `Run` (made on first use: keras loads late)."""
    import keras

    class EpochLogs(keras.callbacks.Callback):
        """Records each finished epoch's logs in the run state, and the model's random
        states beside the backup (Keras' backup holds weights, not `SeedGenerator`s)."""

        def __init__(self, run: Run, backup: str) -> None:
            super().__init__()
            self.run = run
            self.backup = backup

        def on_train_begin(self, logs: dict | None = None) -> None:
            path = os.path.join(self.backup, f"seeds-{_restored_epoch(self.backup)}.npz")
            if _exists(path):
                with _open(path, "rb") as fh:
                    _assign_seeds(self.model, np.load(io.BytesIO(fh.read())))

        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            self.run.state["epochs"][str(epoch)] = {k: float(v) for k, v in (logs or {}).items()}
            self.run.write_state()
            buffer = io.BytesIO()
            np.savez(buffer, **_seed_arrays(self.model))
            if not _exists(self.backup):
                _makedirs(self.backup)
            write_atomically(os.path.join(self.backup, f"seeds-{epoch + 1}.npz"), buffer.getvalue())
            _remove(os.path.join(self.backup, f"seeds-{epoch - 1}.npz"))  # keeps two

    return EpochLogs
