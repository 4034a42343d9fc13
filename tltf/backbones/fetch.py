"""Fetching weights: sha256 checks, weights files in model folders, and offline errors."""

from __future__ import annotations

import hashlib
import os
import textwrap

from tltf.errors import BackboneUnavailable


def check_sha256(path: str, expected: str | None) -> None:
    """Refuses a weights file whose sha256 differs from `expected` (when given).

    Example:
        >>> check_sha256("/models/resnet50_notop.h5", "4d473c1d...")   # BackboneUnavailable if not
        >>> check_sha256("/models/resnet50_notop.h5", None)            # no hash: nothing checked
    """
    if not expected:
        return
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    if digest.hexdigest() != expected.lower():
        raise BackboneUnavailable(
            f"Weights file {path} has sha256 {digest.hexdigest()}, expected {expected}. "
            "The file is corrupt or not the model you meant; re-download or re-install it."
        )


_SAVED_MODEL_WEIGHTS = os.path.join("variables", "variables.data-00000-of-00001")


def find_weights_file(folder: str) -> str:
    """The main weights file of a preset, Hugging Face or SavedModel folder (what sha256= checks).

    Example:
        >>> find_weights_file("/models/minilm")
        '/models/minilm/model.weights.h5'
    """
    names = ("model.safetensors", "model.weights.h5", "pytorch_model.bin", _SAVED_MODEL_WEIGHTS)
    for name in names:
        path = os.path.join(folder, name)
        if os.path.exists(path):
            return path
    raise BackboneUnavailable(
        f"No weights file ({', '.join(names)}) in {folder}; is it a KerasHub preset, "
        "a Hugging Face model folder or a single-shard SavedModel?"
    )


def is_download_error(exc: BaseException) -> bool:
    """Whether `exc` (or an error it was raised from) is a failed fetch over the network.

    Example:
        >>> is_download_error(ConnectionError("timed out")), is_download_error(KeyError("x"))
        (True, False)
    """
    seen = 0
    while exc is not None and seen < 10:
        text = f"{type(exc).__name__} {exc}".lower()
        if isinstance(exc, (OSError, ConnectionError, TimeoutError)) or any(
            s in text for s in ("url", "http", "connection", "download", "fetch", "resolve")
        ):
            return True
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return False


CACHE_FOLDERS = (
    "KERAS_HOME (Keras Applications weights, default ~/.keras)",
    "TFHUB_CACHE_DIR (TF-Hub modules)",
    "KAGGLEHUB_CACHE (KerasHub presets, default ~/.cache/kagglehub)",
    "HF_HOME (Hugging Face models, default ~/.cache/huggingface)",
)


def download_failed(
    spec: str, fetched: str, exc: BaseException, cache: str, local: str
) -> Exception:
    """A `BackboneUnavailable` for a fetch that failed, saying how to work offline.

    Raise it ``from None`` so that no urllib / requests traceback reaches the user.

    Example:
        >>> try:
        ...     keras.applications.ResNet50(include_top=False)
        ... except OSError as exc:
        ...     raise download_failed("keras:ResNet50", "the ImageNet weights", exc,
        ...                           cache="~/.keras", local="weights='/path/to.h5'") from None
    """
    root = exc  # the innermost error says why (Keras wraps urllib's in its own)
    while (root.__cause__ or root.__context__) is not None:
        root = root.__cause__ or root.__context__
    lines = str(root).strip().splitlines()
    first = textwrap.shorten(lines[0], 200, placeholder=" ...") if lines else ""
    reason = f"{type(root).__name__}: {first}" if first else type(root).__name__
    return BackboneUnavailable(
        f"{spec}: could not download {fetched} ({reason}). To work offline, fill the cache "
        f"on a machine that is online and copy it here: {cache}. The caches are set by "
        f"{'; '.join(CACHE_FOLDERS)}. Or use a local copy: {local}."
    )
