"""Every public function, class, method and property has a docstring with an example.

The public API is what `tltf.__all__` names plus the public names of the
submodules users import. Keras hooks (`call`, `get_config`, ...) are left out:
users never call them directly.
"""

from __future__ import annotations

import importlib
import inspect
import re

import tltf

# module -> names to check (None: every public function and class it defines, or its __all__)
PUBLIC_MODULES: dict[str, tuple[str, ...] | None] = {
    "tltf.data": None,
    "tltf.distribute": None,
    "tltf.runs": None,
    "tltf.layers": None,
    "tltf.heads": None,
    "tltf.serving": None,
    "tltf.training": None,
    "tltf.evaluation": None,
    "tltf.feature_cache": None,
    "tltf.rates": None,
    "tltf.lr_finder": None,
    "tltf.advisor": None,
    "tltf.metadata": None,
    "tltf.freezing": None,
    "tltf.backbone": None,
    "tltf.backbones": None,
    "tltf.backbones.fetch": None,
    "tltf.errors": None,
    "tltf.commands.predict": ("predict",),
    "tltf.io": ("latest_version",),
    "tltf.detection": None,
    "tltf.card": None,
    "tltf.cli": ("main",),
}

# framework hooks that Keras calls, not users
HOOKS = frozenset(
    {
        "call",
        "build",
        "get_config",
        "from_config",
        "compute_output_shape",
        "compute_output_spec",
        "compute_mask",
        "update_state",
        "result",
        "reset_state",
    }
)

EXAMPLE = re.compile(r"^\s*Examples?:\s*$(.*)", re.MULTILINE | re.DOTALL)


def _has_example(doc: str | None) -> bool:
    match = EXAMPLE.search(doc or "")
    return bool(match and ">>>" in match.group(1))


def _module_names(module, names):
    if names is not None:
        return names
    if hasattr(module, "__all__"):
        return module.__all__
    return [
        name
        for name, obj in vars(module).items()
        if not name.startswith("_")
        and (inspect.isfunction(obj) or inspect.isclass(obj))
        and obj.__module__ == module.__name__
    ]


def _doc(attr) -> str | None:
    if isinstance(attr, (staticmethod, classmethod)):
        attr = attr.__func__
    return attr.__doc__


def _inherited_doc(cls, name: str) -> str | None:
    """The docstring of the tltf method that `cls.name` overrides, as `help()` shows it."""
    for base in cls.__mro__[1:]:
        if base.__module__.startswith("tltf.") and name in vars(base):
            return _doc(vars(base)[name])
    return None


def _members(cls):
    """(name, docstring) of the public methods and properties `cls` defines itself.

    Dataclass-generated methods (``__init__``, ``__eq__`` ...) are dunders, and fields
    are not functions, so neither is checked. An override without a docstring of its
    own (`Classification.loss`) is documented by the tltf method it overrides
    (`Task.loss`), as `help()` shows it.
    """
    for name, attr in vars(cls).items():
        if name.startswith("_") or name in HOOKS:
            continue
        function = attr.__func__ if isinstance(attr, (staticmethod, classmethod)) else attr
        if isinstance(function, property) or inspect.isfunction(function):
            yield name, _doc(attr) or _inherited_doc(cls, name)


def public_api() -> dict[str, str | None]:
    """Qualified name -> docstring, for everything users are meant to call."""
    objects = {}
    for name in tltf.__all__:
        obj = getattr(tltf, name)
        if inspect.isfunction(obj) or inspect.isclass(obj):
            objects[f"{obj.__module__}.{obj.__qualname__}"] = obj
    for module_name, names in PUBLIC_MODULES.items():
        module = importlib.import_module(module_name)
        for name in _module_names(module, names):
            obj = getattr(module, name)
            if inspect.isfunction(obj) or inspect.isclass(obj):
                objects[f"{obj.__module__}.{obj.__qualname__}"] = obj

    api = {}
    for qualname, obj in objects.items():
        api[qualname] = obj.__doc__
        if inspect.isclass(obj):
            for name, doc in _members(obj):
                api[f"{qualname}.{name}"] = doc
    return api


def test_public_api_is_found():
    api = public_api()
    # a few anchors, so a broken enumeration cannot pass by finding nothing
    for name in ("tltf.builder.build", "tltf.serving.export", "tltf.errors.TltfError"):
        assert name in api
    assert len(api) > 50


def test_every_public_name_has_an_example():
    missing = sorted(name for name, doc in public_api().items() if not _has_example(doc))
    assert not missing, (
        f"{len(missing)} public names have no docstring example "
        "(an 'Example:' section with '>>>' lines):\n  " + "\n  ".join(missing)
    )
