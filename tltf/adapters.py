"""The adapters file: a LoRA-trained model's adapters and head alone, without the backbone.

`save_adapters` writes them (1.8 MB for MiniLM at rank 8, against 91 MB for the whole
model); `load_adapters` applies them to a model built from the same backbone weights.
The file is an ``.npz`` with a JSON header that names the backbone, its weights'
fingerprint, the task and the class names, all checked on load.
"""

from __future__ import annotations

import io
import json
from typing import Any

import numpy as np

from tltf.backbone import weights_fingerprint
from tltf.errors import SpecError
from tltf.freezing import set_freeze
from tltf.io import write_atomically
from tltf.lora import adapters_of, is_lora
from tltf.metadata import backbone_model, head_model, info

ADAPTERS_FILE = "adapters.npz"  # in a run folder (`tltf.runs.Run.finish`)
_FORMAT = "tltf-lora-1"


def save_adapters(model: Any, path: str) -> str:
    """Writes the adapters and the head of a LoRA-trained model to `path` (``.npz``).

    Example:
        >>> tltf.save_adapters(model, "topics.lora.npz")     # 1.8 MB for MiniLM at rank 8
        >>> fresh = tltf.build(spec, class_names=names, freeze="lora:8")
        >>> tltf.load_adapters(fresh, "topics.lora.npz")     # the same model again

    The file holds what training changed, so it applies only to the backbone the
    model was built from (its weights' fingerprint is checked on load).
    """
    meta = info(model)
    if not is_lora(meta.freeze):
        raise SpecError(
            f"{model.name!r} has freeze={meta.freeze!r}; adapters exist under a lora:RANK "
            "policy (tltf.build(..., freeze='lora:8'))."
        )
    _check_base(model, meta)
    arrays = {f"adapter:{v.path}": v.numpy() for v in adapters_of(model)}
    arrays.update({f"head:{v.path}": v.numpy() for v in _head_variables(model)})
    header = {
        "format": _FORMAT,
        "freeze": str(meta.freeze),
        "backbone": meta.backbone,
        "fingerprint": meta.fingerprint,
        "task": meta.task,
        "class_names": list(meta.class_names),
    }
    buffer = io.BytesIO()
    np.savez(buffer, __header__=np.array(json.dumps(header)), **arrays)
    write_atomically(str(path), buffer.getvalue())
    return str(path)


def load_adapters(model: Any, path: str) -> Any:
    """Applies a `save_adapters` file to `model`, built from the same backbone; returns it.

    Example:
        >>> fresh = tltf.build(spec, class_names=names)       # any freeze policy
        >>> tltf.load_adapters(fresh, "runs/topics/adapters.npz")
        >>> tltf.info(fresh).freeze
        'lora:8'

    The model gets the file's ``lora:`` policy, adapters and head weights. A model of
    another backbone, task or class list is refused with `SpecError`.
    """
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except (OSError, ValueError) as exc:
        raise SpecError(f"{path}: not a tltf adapters file ({exc}).") from None
    header = json.loads(str(arrays.pop("__header__", np.array("{}"))))
    if header.get("format") != _FORMAT:
        raise SpecError(f"{path} is not a tltf adapters file (tltf.save_adapters writes them).")
    meta = info(model)
    for key in ("fingerprint", "task", "class_names"):
        ours = list(meta[key]) if key == "class_names" else meta[key]
        if ours != header[key]:
            raise SpecError(
                f"{path} was trained on {header['backbone']} (fingerprint "
                f"{header['fingerprint']}, task {header['task']}, classes "
                f"{header['class_names']}); this model's {key} is {ours!r}. Build the model "
                "with the same backbone, weights and class names."
            )
    set_freeze(model, header["freeze"], meta.bn)
    variables = {f"adapter:{v.path}": v for v in adapters_of(model)}
    variables.update({f"head:{v.path}": v for v in _head_variables(model)})
    missing = sorted(set(arrays) ^ set(variables))
    if missing:
        raise SpecError(f"{path} does not match this model's adapters: {missing[:4]}.")
    for key, variable in variables.items():
        variable.assign(arrays[key])
    return model


def _head_variables(model: Any) -> list:
    return list(head_model(model).weights)


def _check_base(model: Any, meta: Any) -> None:
    """Adapters apply to the backbone they were trained on: its weights must be unchanged."""
    adapters = {id(v) for v in adapters_of(model)}
    base = [w for w in backbone_model(model).weights if id(w) not in adapters]
    if weights_fingerprint(meta.backbone, base) != meta.fingerprint:
        raise SpecError(
            f"{model.name!r}: its backbone weights differ from those it was built from "
            "(a model loaded from .keras holds the adapters merged into its kernels, or "
            "other groups were trained), so its adapters would not apply to that backbone. "
            "Save adapters from the model that trained them, before saving it to .keras."
        )
