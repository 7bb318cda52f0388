"""Reading pickled checkpoints that the user did not make, without letting them run code.

A pickle can call any importable function while it loads (``os.system`` included), so every loader
of a downloaded or released file (fairseq/unilm teachers, released students, s3prl checkpoints, the
original AST ``.pth``, DiffBlender's official file) reads it through :func:`load_untrusted`:

* the restricted unpickler resolves only what checkpoints are made of: the tensor rebuild helpers of
  torch, plain containers, numpy arrays and dtypes, ``argparse.Namespace``, and the *classes* of
  omegaconf, pathlib, datetime and enum (plus typing's special forms);
* globals of the modules a format names as ``placeholders`` (e.g. ``fairseq``, ``pytorch_lightning``)
  become inert :class:`Placeholder` objects that keep their pickled state and never run code of the
  original class: those files carry such objects beside the weights, and nobody needs them;
* any other global is refused with :class:`UnsafePickleError`, naming the file and the global.

``trust=True`` unpickles fully (``torch.load(weights_only=False)``). That can run arbitrary code and
is meant only for files from a source the user trusts.
"""

from __future__ import annotations

import _compat_pickle
import argparse
import importlib
import io
import pickle
import types
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

__all__ = ["LIGHTNING", "Placeholder", "UnsafePickleError", "load_untrusted", "restricted_pickle_module", "to_plain"]

#: ``placeholders`` for Lightning checkpoints (their hyperparameters may be Lightning classes)
LIGHTNING = ("lightning", "pytorch_lightning", "lightning_fabric")


class UnsafePickleError(ValueError):
    """A pickle names a global that the restricted unpickler does not admit."""


class Placeholder:
    """Inert stand-in for a class that is not unpickled for real (e.g. anything in fairseq).

    It accepts any constructor arguments and pickled state and keeps them: ``_args``, ``_kwargs``,
    ``_state`` (what ``__setstate__`` got), ``_items`` (dict items of a dict subclass) and ``_list``
    (items of a list subclass). It never runs code of the original class.
    """

    _qualified_name = "?"

    def __new__(cls, *args, **kwargs):
        obj = object.__new__(cls)
        obj.__dict__.update(_args=args, _kwargs=kwargs, _state=None, _items={}, _list=[])
        return obj

    def __init__(self, *args, **kwargs):
        self._args = args
        self._kwargs = kwargs

    def __setstate__(self, state):
        self._state = state

    def __setitem__(self, key, value):
        self._items[key] = value

    def append(self, value) -> None:
        self._list.append(value)

    def extend(self, values) -> None:
        self._list.extend(values)

    def __repr__(self) -> str:
        return f"<Placeholder for {self._qualified_name}>"


_PLACEHOLDERS: dict[str, type] = {}


def _placeholder_class(module: str, name: str) -> type:
    qualified = f"{module}.{name}"
    if qualified not in _PLACEHOLDERS:
        _PLACEHOLDERS[qualified] = type(
            name.replace(".", "_"), (Placeholder,), {"_qualified_name": qualified, "__module__": "placeholder." + module}
        )
    return _PLACEHOLDERS[qualified]


_SAFE_BUILTINS = {
    "set", "frozenset", "list", "dict", "tuple", "int", "float", "complex", "bool", "str",
    "bytes", "bytearray", "slice", "range", "object", "NoneType", "Ellipsis", "NotImplemented",
}
#: exact globals resolved for real: containers and the rebuild helpers of tensors and arrays
#: (not whole modules: ``torch._utils._import_dotted_name`` or ``torch.storage._load_from_bytes``
#: would hand a pickle any function, or a second, unrestricted load).
_ALLOWED_NAMES: dict[str, frozenset[str]] = {
    "collections": frozenset({"OrderedDict", "defaultdict", "deque", "Counter"}),
    "argparse": frozenset({"Namespace"}),
    "_codecs": frozenset({"encode"}),
    "copyreg": frozenset({"_reconstructor"}),
    "torch._utils": frozenset({
        "_rebuild_tensor", "_rebuild_tensor_v2", "_rebuild_tensor_v3", "_rebuild_parameter",
        "_rebuild_parameter_with_state", "_rebuild_qtensor", "_rebuild_sparse_tensor", "_rebuild_nested_tensor",
        "_rebuild_device_tensor_from_numpy", "_rebuild_device_tensor_from_cpu_tensor",
        "_rebuild_meta_tensor_no_storage", "_rebuild_wrapper_subclass",
    }),
    "torch._tensor": frozenset({"_rebuild_from_type_v2"}),
    "torch.nn.parameter": frozenset({"Parameter"}),
    "torch.serialization": frozenset({"_get_layout"}),
    "numpy": frozenset({"dtype", "ndarray"}),
    "numpy.core.multiarray": frozenset({"_reconstruct", "scalar"}),
    "numpy._core.multiarray": frozenset({"_reconstruct", "scalar"}),
    "numpy.core.numeric": frozenset({"_frombuffer"}),
    "numpy._core.numeric": frozenset({"_frombuffer"}),
}
#: modules (by top-level name) whose classes, and only classes, are resolved for real
_CLASS_MODULES = ("omegaconf", "pathlib", "datetime", "enum", "numpy.dtypes", "typing")
_FUNCTION_TYPES = (types.FunctionType, types.BuiltinFunctionType, types.MethodType, types.BuiltinMethodType)


def _import_global(module: str, name: str) -> Any:
    obj = importlib.import_module(module)
    for part in name.split("."):
        obj = getattr(obj, part)
    return obj


def _refuse(module: str, name: str) -> UnsafePickleError:
    return UnsafePickleError(f"refuses to unpickle {module}.{name}: a checkpoint needs no such object, and a "
                             "pickle can use one to run code")


class _RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that resolves allow-listed globals, turns ``placeholders`` modules into inert
    placeholders and refuses everything else."""

    placeholders: tuple[str, ...] = ()

    def find_class(self, module: str, name: str):  # noqa: D102
        # protocol 0-2 pickles name Python 2 modules (``__builtin__.long``); map them as pickle does
        if (module, name) in _compat_pickle.NAME_MAPPING:
            module, name = _compat_pickle.NAME_MAPPING[module, name]
        module = _compat_pickle.IMPORT_MAPPING.get(module, module)
        if module == "builtins":
            if name in _SAFE_BUILTINS:
                return super().find_class(module, name)
            raise _refuse(module, name)
        if name in _ALLOWED_NAMES.get(module, ()):
            return super().find_class(module, name)
        if module == "torch" and "." not in name:
            obj = getattr(torch, name, None)
            if isinstance(obj, (type, torch.dtype, torch.layout, torch.memory_format)):
                return obj
            raise _refuse(module, name)
        if module.split(".")[0] in self.placeholders:
            return _placeholder_class(module, name)
        if module == "numpy.dtypes" or module.split(".")[0] in _CLASS_MODULES:
            try:
                obj = _import_global(module, name)
            except (ImportError, AttributeError):  # a data class of an older/newer library version
                return _placeholder_class(module, name)
            if isinstance(obj, type) or (module == "typing" and not isinstance(obj, _FUNCTION_TYPES)):
                return obj
        raise _refuse(module, name)


def restricted_pickle_module(placeholders: tuple[str, ...] = ()) -> types.ModuleType:
    """A stand-in "pickle module" for ``torch.load(pickle_module=...)`` that uses the restricted
    unpickler, with globals of the top-level modules ``placeholders`` made inert placeholders."""
    unpickler = type("RestrictedUnpickler", (_RestrictedUnpickler,), {"placeholders": tuple(placeholders)})
    module = types.ModuleType("compact_ssl_restricted_pickle")
    module.Unpickler = unpickler
    module.load = lambda file, **kwargs: unpickler(file, **kwargs).load()
    module.loads = lambda data, **kwargs: unpickler(io.BytesIO(data), **kwargs).load()
    return module


def load_untrusted(path: str | Path, *, what: str = "checkpoint", placeholders: tuple[str, ...] = (),
                   trust: bool = False, map_location: str | torch.device = "cpu", mmap: bool = False) -> Any:
    """Read the torch/pickle file ``path`` without running code from it (see the module docstring).

    Args:
        what: what the file should be, for messages ("fairseq checkpoint", ...).
        placeholders: top-level module names whose globals become :class:`Placeholder` objects.
        trust: unpickle fully (can run code); only for files from a trusted source.
        mmap: map the tensors' storage from the file instead of reading it (large checkpoints of
            which only a part is used, e.g. DiffBlender's 7.5 GB file with its optimiser state).

    Raises:
        FileNotFoundError: no such file.
        UnsafePickleError: the file names a global that is not admitted (message names the file).
        ValueError: the file is not a readable pickle/torch file (corrupt, truncated, other format).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such {what} file")
    try:
        if trust:
            return torch.load(path, map_location=map_location, weights_only=False, mmap=mmap)
        return torch.load(path, map_location=map_location, weights_only=False, mmap=mmap,
                          pickle_module=restricted_pickle_module(placeholders))
    except UnsafePickleError as err:
        raise UnsafePickleError(f"{path}: {err} (reading it as a {what}). Load it with trust=True (command "
                                "line: --trust true) only if the file comes from a source you trust") from None
    except Exception as err:  # torch raises several types for non-pickle / truncated files
        raise ValueError(f"{path}: cannot be read as a {what} ({type(err).__name__}: {err})") from err


def to_plain(obj: Any) -> Any:
    """Turn omegaconf containers, Namespaces and placeholders of them into dicts/lists."""
    if isinstance(obj, Placeholder):
        state = obj._state
        if obj._items:
            return {k: to_plain(v) for k, v in obj._items.items()}
        if obj._list:
            return [to_plain(v) for v in obj._list]
        if isinstance(state, dict):
            if "_content" in state:  # omegaconf DictConfig / ListConfig read as placeholders
                return to_plain(state["_content"])
            if "_val" in state:  # omegaconf value node
                return to_plain(state["_val"])
            return {k: to_plain(v) for k, v in state.items() if not k.startswith("_")}
        return obj
    from omegaconf import DictConfig, ListConfig, OmegaConf

    if isinstance(obj, (DictConfig, ListConfig)):
        try:
            return OmegaConf.to_container(obj, resolve=False)
        except Exception:  # odd metadata from placeholders: walk the raw content instead
            content = obj.__dict__.get("_content")
            if isinstance(content, Mapping):
                return {k: to_plain(getattr(v, "_val", v)) for k, v in content.items()}
            if isinstance(content, list):
                return [to_plain(getattr(v, "_val", v)) for v in content]
            return content
    if isinstance(obj, argparse.Namespace):
        return {k: to_plain(v) for k, v in vars(obj).items()}
    if isinstance(obj, Mapping):
        return {k: to_plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(to_plain(v) for v in obj)
    return obj
