"""`from_directory`: one sub-folder per class, of image files or `.txt` files."""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from tltf.data.dataset import Dataset, finish, skipped_summary
from tltf.errors import DataError
from tltf.io import files_below
from tltf.modalities import get_modality, modalities
from tltf.modalities.image_files import MAX_PIXELS

# folder names that mark an existing split, in the order loaders return splits
SPLIT_FOLDERS = {"train": "train", "validation": "validation", "val": "validation", "test": "test"}


def from_directory(
    path: str | os.PathLike,
    *,
    modality: str | None = None,
    validation_split: float | None = None,
    test_split: float | None = None,
    seed: int = 0,
    class_names: Sequence[str] | None = None,
    strict: bool = False,
    max_pixels: int = MAX_PIXELS,
    verbose: bool = True,
) -> Dataset | tuple[Dataset, ...]:
    """Loads ``path/CLASS/file``: images (JPEG, PNG, GIF, BMP) or texts (``.txt``, UTF-8).

    An existing split, ``path/train/CLASS/...`` beside ``path/test/`` and/or
    ``path/validation/`` (or ``val/``), is detected: the result is then a tuple in
    the order train, validation, test, with the class names of ``train/``; a lone
    ``path/train/`` is the training set. `validation_split` / `test_split` carve the missing ones out of train.

    Example:
        >>> train, test = tltf.data.from_directory("openclipart/target")
        openclipart/target [train]: 950 image examples, 6 classes (animals 193, ...) | openclipart/target [test]: ...

    Images of any size or mode (greyscale, palette, RGBA, 16-bit, CMYK) become RGB.
    Corrupt, truncated or non-image files are skipped and counted in the report
    (``strict=True`` raises instead); an image over `max_pixels` is refused.
    An empty class folder, a single class, an empty or non-UTF-8 text file raise
    `DataError`. `modality` ("image" or "text") defaults to the commoner file kind.
    """
    root = os.fspath(path)
    if not os.path.isdir(root):
        what = "is a file; use from_csv/from_jsonl" if os.path.exists(root) else "does not exist"
        raise DataError(f"{root} {what}; give a folder with one sub-folder per class.")
    subfolders = _subfolders(root)
    splits = {SPLIT_FOLDERS[d]: d for d in subfolders if d in SPLIT_FOLDERS}
    lone_train = subfolders == [splits.get("train")]  # path/train/CLASS/... alone
    if "train" not in splits or (len(splits) < 2 and not lone_train):
        data = _load_classes(root, root, modality, class_names, strict, max_pixels)
        return finish(
            data,
            validation_split=validation_split,
            test_split=test_split,
            seed=seed,
            verbose=verbose,
        )
    for name, frac in (("validation", validation_split), ("test", test_split)):
        if frac and name in splits:
            raise DataError(
                f"{root} already has a {splits[name]}/ folder; drop {name}_split={frac}."
            )
    train = _load_classes(
        os.path.join(root, splits["train"]), root, modality, class_names, strict, max_pixels
    )
    parts = {"train": train}
    for name in ("validation", "test"):
        if name in splits:
            folder = os.path.join(root, splits[name])
            part = _load_classes(
                folder, root, train.modality, train.class_names, strict, max_pixels
            )
            part.split = name
            parts[name] = part
    carved = finish(
        train, validation_split=validation_split, test_split=test_split, seed=seed, verbose=False
    )
    if isinstance(carved, tuple):
        parts.update({p.split: p for p in carved})
    else:
        train.split = "train"
    out = tuple(parts[k] for k in ("train", "validation", "test") if k in parts)
    if verbose:
        print(" | ".join(p.report() for p in out))
    return out if len(out) > 1 else out[0]


def _subfolders(folder: str) -> list[str]:
    return sorted(
        d
        for d in os.listdir(folder)
        if not d.startswith(".") and os.path.isdir(os.path.join(folder, d))
    )


def _load_classes(
    folder: str,
    root: str,
    modality: str | None,
    class_names: Sequence[str] | None,
    strict: bool,
    max_pixels: int,
) -> Dataset:
    """``folder/CLASS/...`` -> Dataset; `root` names the source in messages."""
    found = _subfolders(folder)
    names = list(found) if class_names is None else [str(c) for c in class_names]
    unknown = [c for c in found if c not in names]
    if unknown:
        raise DataError(
            f"{os.path.join(folder, unknown[0])}: class folder {unknown[0]!r} is not one of "
            f"the classes {names} (of the training data or class_names). Remove or rename "
            "it, or train with that class."
        )
    if class_names is None and len(names) < 2:
        raise DataError(
            f"{folder}: found {len(names)} class folder(s) {names}; classification needs at "
            "least 2. Put each class's files in its own sub-folder: "
            f"{folder}/CLASS_A/..., {folder}/CLASS_B/..."
        )
    skipped = [
        (os.path.join(folder, f), "not in a class folder")
        for f in sorted(os.listdir(folder))
        if not f.startswith(".") and os.path.isfile(os.path.join(folder, f))
    ]
    files = {c: files_below(os.path.join(folder, c)) for c in found}
    everything = [f for fs in files.values() for f in fs]
    if modality is None:
        modality = _commonest_kind(folder, everything)
    mod = get_modality(modality)
    paths, labels = [], []
    for c in found:
        for f in files[c]:
            if mod.is_file(f):
                paths.append(f)
                labels.append(names.index(c))
            else:
                skipped.append((f, f"not {mod.file_kind} file"))
    loaded = mod.load_files(paths, strict=strict, max_pixels=max_pixels)
    x, labels, skipped = (
        loaded.x,
        np.array(labels, dtype=np.int64)[loaded.keep],
        skipped + loaded.skipped,
    )
    paths = [paths[i] for i in loaded.keep]
    for c in found:
        if not np.any(labels == names.index(c)):
            inside = os.path.join(folder, c) + os.sep
            lost = [s for s in skipped if s[0].startswith(inside)]
            raise DataError(
                f"{os.path.join(folder, c)}: class folder {c!r} has no usable {modality} "
                f"files{skipped_summary(lost)}. Add examples or remove the folder."
            )
    return Dataset(
        x,
        labels,
        class_names=names,
        modality=modality,
        source=root,
        locations=paths,
        skipped=skipped,
        **loaded.extras,
    )


def _commonest_kind(folder: str, files: list[str]) -> str:
    """The modality most of `files` belong to (the first registered on a tie)."""
    counts = {m.name: sum(map(m.is_file, files)) for m in modalities()}
    if not any(counts.values()):
        kinds = " or ".join(m.file_types for m in modalities() if m.file_types)
        raise DataError(f"{folder}: no {kinds} files in its class folders.")
    return max(counts, key=counts.get)
