"""`Dataset`: raw examples with their labels, class names and provenance, and their tf.data pipelines."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np

from tltf.errors import DataError
from tltf.modalities import get_modality, modalities, modality_names

TASK_HINTS = ("classification", "multi_label", "regression")


class Dataset:
    """Raw examples, their labels and where they came from; `as_tf_dataset` feeds a model.

    Example:
        >>> train, val = tltf.data.from_csv("train.csv", text_column="text", validation_split=0.1)
        >>> train.class_names, train.counts()
        (['games', 'math'], {'games': 120, 'math': 80})
        >>> spec = tltf.info(model)["input_spec"]
        >>> ds = train.with_class_names(tltf.info(model)["class_names"]).as_tf_dataset(
        ...     32, training=True, input_spec=spec)

    Attributes:
        x: texts (list of str), or images as file paths (list of str), encoded image
            bytes (list of bytes) or an array ``[N, H, W, C]`` (C = 1, 3 or 4).
        labels: int array ``[N]`` of indices into `class_names` (classification), else None.
        targets: float32 multi-hot ``[N, C]`` (multi_label) or values ``[N]`` / ``[N, k]``
            (regression), else None.
        x2: the second texts of text pairs, else None.
        class_names: class names; the label columns for multi_label; target names for regression.
        modality: the `tltf.modalities` name: "text", "image", or a registered one.
        task_hint: "classification", "multi_label" or "regression".
        source: where the data came from (a file or folder), used in messages.
        locations: per example, where it came from (``"train.csv line 7"``, a file path).
        skipped: ``(file, reason)`` for each input left out while loading.
        split: "train", "validation", "test" or None.
        decode_with_pillow: per image file, True where TensorFlow cannot decode it
            faithfully (palette BMP, animated GIF), so the pipeline uses Pillow; or None.
        transparent: per image file, True where it has transparency, which decoding
            flattens onto the background (white; `tltf.data.flatten`); or None.
    """

    def __init__(
        self,
        x: Any,
        labels: Any = None,
        *,
        class_names: Sequence[str],
        modality: str,
        source: str,
        targets: Any = None,
        x2: Sequence[str] | None = None,
        task_hint: str = "classification",
        locations: Sequence[str] | None = None,
        skipped: Sequence[tuple[str, str]] = (),
        split: str | None = None,
        decode_with_pillow: Any = None,
        transparent: Any = None,
    ) -> None:
        if modality not in modality_names():
            raise DataError(f"{source}: modality={modality!r}; use one of {modality_names()}.")
        if task_hint not in TASK_HINTS:
            raise DataError(f"{source}: task_hint={task_hint!r}; use one of {TASK_HINTS}.")
        self.x = x
        self.labels = None if labels is None else np.asarray(labels, dtype=np.int64)
        self.targets = None if targets is None else np.asarray(targets, dtype=np.float32)
        self.x2 = None if x2 is None else list(x2)
        self.class_names = [str(c) for c in class_names]
        self.modality = modality
        self.task_hint = task_hint
        self.source = source
        self.locations = None if locations is None else list(locations)
        self.skipped = list(skipped)
        self.split = split
        self.decode_with_pillow = (
            None if decode_with_pillow is None else np.asarray(decode_with_pillow, dtype=bool)
        )
        self.transparent = None if transparent is None else np.asarray(transparent, dtype=bool)
        self._check()

    def _check(self) -> None:
        n = len(self.x)
        if (self.task_hint == "classification") != (self.targets is None) or (
            self.task_hint == "classification" and self.labels is None
        ):
            raise DataError(
                f"{self.source}: {self.task_hint} data needs "
                f"{'labels' if self.task_hint == 'classification' else 'targets'} (only)."
            )
        for name in ("labels", "targets", "x2", "locations", "decode_with_pillow", "transparent"):
            value = getattr(self, name)
            if value is not None and len(value) != n:
                raise DataError(f"{self.source}: {n} examples but {len(value)} {name}.")
        if self.task_hint == "multi_label" and self.targets.shape[1:] != (len(self.class_names),):
            raise DataError(
                f"{self.source}: multi-label targets of shape {self.targets.shape} need "
                f"[N, {len(self.class_names)}] for class_names {self.class_names}."
            )
        if (
            self.labels is not None
            and n
            and not 0 <= self.labels.min() <= self.labels.max() < len(self.class_names)
        ):
            raise DataError(
                f"{self.source}: label indices must lie in [0, {len(self.class_names)}) "
                f"for class_names {self.class_names}."
            )

    def __len__(self) -> int:
        return len(self.x)

    def __repr__(self) -> str:
        return f"<tltf.data.Dataset {self.report()}>"

    @property
    def y(self) -> np.ndarray:
        """What the model is trained on: `labels` for classification, else `targets`.

        Example:
            >>> train.y[:3]                   # class indices into train.class_names
            array([0, 2, 1])
        """
        return self.labels if self.task_hint == "classification" else self.targets

    def counts(self) -> dict[str, int]:
        """Examples per class (positives per class for multi_label; {} for regression).

        Example:
            >>> train.counts()
            {'cat': 200, 'dog': 198}
        """
        if self.task_hint == "regression":
            return {}
        if self.task_hint == "multi_label":
            return {
                c: int(n) for c, n in zip(self.class_names, self.targets.sum(axis=0), strict=True)
            }
        found = Counter(self.labels.tolist())
        return {c: found.get(i, 0) for i, c in enumerate(self.class_names)}

    def report(self) -> str:
        """One line: size, examples per class, and the files skipped and why.

        Example:
            >>> print(train.report())
            photos/train: 398 image examples, 2 classes (cat 200, dog 198); skipped 2 files: 2 corrupt (a.jpg, b.jpg)
        """
        where = f"{self.source} [{self.split}]" if self.split else self.source
        line = f"{where}: {len(self)} {self.modality} examples"
        if self.task_hint == "regression":
            line += f", regression on {', '.join(self.class_names)}"
        else:
            per_class = ", ".join(f"{c} {n}" for c, n in self.counts().items())
            kind = "labels" if self.task_hint == "multi_label" else "classes"
            line += f", {len(self.class_names)} {kind} ({per_class})"
        flattened = 0 if self.transparent is None else int(self.transparent.sum())
        if flattened:
            line += f"; {flattened} with transparency, flattened onto the background (white)"
        return line + skipped_summary(self.skipped)

    def class_weight(self, mode: str = "balanced") -> dict[int, float]:
        """Per-class loss weights for imbalanced data, for ``fit(class_weight=...)``.

        "balanced" weighs class c by ``n_examples / (n_classes * n_c)``, as scikit-learn
        does, so every class contributes equally to the loss.

        Example:
            >>> tltf.fine_tune(model, train, class_weight=train.class_weight("balanced"))
        """
        if mode != "balanced":
            raise DataError(f"class_weight({mode!r}); the supported mode is 'balanced'.")
        if self.task_hint != "classification":
            raise DataError(f"{self.source}: class weights apply to classification only.")
        counts = list(self.counts().values())
        k = sum(1 for n in counts if n)
        return {i: (len(self) / (k * n) if n else 0.0) for i, n in enumerate(counts)}

    def subset(self, indices: Any, split: str | None = None) -> Dataset:
        """The examples at `indices`, in that order, as a new Dataset.

        Example:
            >>> first_hundred = train.subset(range(100), split="sample")
            >>> len(first_hundred)
            100
        """
        idx = np.asarray(indices, dtype=np.int64)

        def pick(seq: Any) -> Any:
            if seq is None:
                return None
            if isinstance(seq, np.ndarray):
                return seq[idx]
            return [seq[i] for i in idx]

        return Dataset(
            pick(self.x),
            pick(self.labels),
            class_names=self.class_names,
            modality=self.modality,
            source=self.source,
            targets=pick(self.targets),
            x2=pick(self.x2),
            task_hint=self.task_hint,
            locations=pick(self.locations),
            skipped=self.skipped,
            split=split if split is not None else self.split,
            decode_with_pillow=pick(self.decode_with_pillow),
            transparent=pick(self.transparent),
        )

    def with_class_names(self, names: Sequence[str]) -> Dataset:
        """The same examples with labels re-indexed to `names` (e.g. a trained model's classes).

        A label outside `names`, such as one never seen in training, raises a
        `DataError` that names its file and row.

        Example:
            >>> test = test.with_class_names(tltf.info(model)["class_names"])
        """
        names = [str(c) for c in names]
        if names == self.class_names or self.task_hint == "regression":
            return self
        index = {c: i for i, c in enumerate(names)}
        counts = self.counts()
        unseen = [c for c in self.class_names if c not in index and counts.get(c, 0)]
        if unseen:
            first = self.class_names.index(unseen[0])
            rows = (
                np.flatnonzero(self.labels == first)
                if self.task_hint == "classification"
                else np.flatnonzero(self.targets[:, first])
            )
            where = (
                self.locations[rows[0]] if self.locations else f"{self.source} example {rows[0]}"
            )
            raise DataError(
                f"{where}: label {unseen[0]!r} is not one of the model's classes "
                f"{names} ({len(rows)} example(s) carry it; unseen labels: {unseen}). "
                "Drop those rows, or train a model whose class_names include them."
            )
        new = self.subset(np.arange(len(self)))
        new.class_names = names
        if self.task_hint == "classification":
            lookup = np.array([index.get(c, -1) for c in self.class_names], dtype=np.int64)
            new.labels = lookup[self.labels] if len(self) else self.labels
        else:
            targets = np.zeros((len(self), len(names)), dtype=np.float32)
            for j, c in enumerate(self.class_names):
                if c in index:
                    targets[:, index[c]] = self.targets[:, j]
            new.targets = targets
        return new

    def fit_report(self, input_spec: dict) -> str:
        """How batches fit these examples to a model's input (audio: clips padded or
        cropped to the model's clip length), or "" when there is nothing to say.

        Example:
            >>> train.fit_report(tltf.info(model)["input_spec"])
            'clips/train: 40 clips; 3 shorter than 2 s, padded with silence'
        """
        return get_modality(self.modality).fit_report(self, input_spec)

    def as_tf_dataset(
        self,
        batch_size: int,
        *,
        training: bool,
        input_spec: dict,
        seed: int = 0,
        cache: bool | None = None,
    ) -> Any:
        """A batched, prefetched ``tf.data.Dataset`` of ``(x, y)`` for a model's `input_spec`.

        Text: x is a tf.string ``[B]`` (a pair of them for text pairs). With
        ``training=True`` the order is shuffled (seeded, new each epoch), and texts of
        similar length share a batch, so a model that pads each batch to its longest
        text does little padding. Images: x is float32 ``[B, H, W, 3]`` of raw 0-255
        RGB pixels, decoded in parallel and resized to the spec's H, W; the decoded
        images are cached in memory when they fit (``cache=None``: up to 1 GiB).
        Nothing is dropped; the same seed gives the same order.

        Example:
            >>> ds = train.as_tf_dataset(32, training=True, input_spec=tltf.info(model)["input_spec"])
        """
        import tensorflow as tf

        if batch_size < 1:
            raise DataError(f"batch_size={batch_size}; use a positive batch size.")
        mod = get_modality(self.modality)
        if not mod.accepts(input_spec):
            wants = next((m.name for m in modalities() if m.accepts(input_spec)), "another")
            raise DataError(
                f"{self.source} holds {self.modality} examples, but the model takes "
                f"{wants} input {input_spec}. Load the matching data or build a {self.modality} model."
            )
        y = self.y.astype(np.int32 if self.task_hint == "classification" else np.float32)
        ds = mod.batches(
            self,
            y,
            batch_size,
            training=training,
            seed=seed,
            input_spec=input_spec,
            cache=cache,
        )
        # Length bucketing hides the batch count from tf.data; Keras needs it for
        # progress bars and schedules, and warns "ran out of data" without it.
        batches = -(-len(self) // batch_size)
        return ds.apply(tf.data.experimental.assert_cardinality(batches)).prefetch(tf.data.AUTOTUNE)


def skipped_summary(skipped: Sequence[tuple[str, str]], show: int = 3) -> str:
    """The load report's tail about skipped files, or "" when none was skipped.

    Example:
        >>> skipped_summary([("x/a.jpg", "corrupt"), ("x/c.doc", "not an image")])
        '; skipped 2 files: 1 corrupt (a.jpg), 1 not an image (c.doc)'
    """
    if not skipped:
        return ""
    by_reason: dict[str, list[str]] = {}
    for path, reason in skipped:
        by_reason.setdefault(reason, []).append(path.replace("\\", "/").rsplit("/", 1)[-1])
    parts = []
    for reason, names in by_reason.items():
        shown = ", ".join(names[:show]) + (", ..." if len(names) > show else "")
        parts.append(f"{len(names)} {reason} ({shown})")
    noun = "file" if len(skipped) == 1 else "files"
    return f"; skipped {len(skipped)} {noun}: " + ", ".join(parts)


def split_dataset(
    data: Dataset,
    validation_split: float | None,
    test_split: float | None,
    seed: int,
) -> Dataset | tuple[Dataset, ...]:
    """Splits into ``(train[, validation][, test])``, stratified by class, seeded.

    With no split asked, returns `data` itself. Each class keeps at least one
    training example.

    Example:
        >>> train, val = split_dataset(data, 0.1, None, seed=0)
    """
    fractions = {"validation": validation_split, "test": test_split}
    for name, frac in fractions.items():
        if frac is not None and not 0 < frac < 1:
            raise DataError(f"{name}_split={frac}; use a fraction between 0 and 1, e.g. 0.1.")
    asked = {k: v for k, v in fractions.items() if v}
    if not asked:
        return data
    if sum(asked.values()) >= 1:
        raise DataError(
            f"validation_split + test_split = {sum(asked.values())}; leave some data to train on."
        )
    rng = np.random.default_rng(seed)
    if data.task_hint == "classification":
        strata = [np.flatnonzero(data.labels == c) for c in range(len(data.class_names))]
    else:
        strata = [np.arange(len(data))]
    parts: dict[str, list[np.ndarray]] = {"train": [], **{k: [] for k in asked}}
    for members in strata:
        members = rng.permutation(members)
        start = 0
        for name, frac in asked.items():
            take = min(int(round(len(members) * frac)), max(len(members) - start - 1, 0))
            parts[name].append(members[start : start + take])
            start += take
        parts["train"].append(members[start:])
    out = []
    for name, chunks in parts.items():
        idx = np.sort(np.concatenate(chunks)) if chunks else np.array([], dtype=np.int64)
        if not len(idx):
            raise DataError(
                f"{data.source}: the {name} split is empty ({len(data)} examples); "
                f"load more data or use a larger {name}_split."
            )
        out.append(data.subset(idx, split=name))
    return tuple(out)


def finish(
    data: Dataset,
    *,
    validation_split: float | None,
    test_split: float | None,
    seed: int,
    verbose: bool,
) -> Dataset | tuple[Dataset, ...]:
    """Splits a freshly loaded Dataset and prints its one-line load report (the loaders' tail).

    Example:
        >>> train, val = finish(data, validation_split=0.1, test_split=None, seed=0, verbose=True)
        train.csv: 1800 text examples, 3 classes (...); split train 1620, validation 180
    """
    parts = split_dataset(data, validation_split, test_split, seed)
    if verbose:
        line = data.report()
        if isinstance(parts, tuple):
            line += "; split " + ", ".join(f"{p.split} {len(p)}" for p in parts)
        print(line)
    return parts
