"""Safe unpickling of fairseq checkpoints, without fairseq.

Unpickling goes through :class:`_CheckpointUnpickler`, which resolves only an allow-list of
harmless globals (torch tensor rebuilding, containers, numpy arrays, ``argparse.Namespace``,
omegaconf containers). Every other global (all of ``fairseq.*``, meters, task objects, and
anything that could run code) becomes an inert :class:`Placeholder` that just records its
constructor arguments and state; :func:`to_plain` turns what was read into plain dicts.
"""

from __future__ import annotations

import argparse
import importlib
import io
import pickle
import types
from collections.abc import Mapping
from typing import Any

import torch

__all__ = ["Placeholder", "checkpoint_pickle", "to_plain"]


class Placeholder:
    """Inert stand-in for a class that is not unpickled for real (e.g. anything in fairseq).

    It accepts any constructor arguments and any pickled state and keeps them in
    ``_args``, ``_kwargs`` and ``_state``; it never runs code of the original class.
    """

    _qualified_name = "?"

    def __new__(cls, *args, **kwargs):
        return object.__new__(cls)

    def __init__(self, *args, **kwargs):
        self._args = args
        self._kwargs = kwargs
        self._state = None

    def __setstate__(self, state):
        self.__dict__.setdefault("_args", ())
        self.__dict__.setdefault("_kwargs", {})
        self._state = state

    def __repr__(self) -> str:
        return f"<Placeholder for {self._qualified_name}>"


_PLACEHOLDERS: dict[str, type] = {}


def _placeholder_class(module: str, name: str) -> type:
    qualified = f"{module}.{name}"
    if qualified not in _PLACEHOLDERS:
        _PLACEHOLDERS[qualified] = type(
            name, (Placeholder,), {"_qualified_name": qualified, "__module__": "placeholder." + module}
        )
    return _PLACEHOLDERS[qualified]


_SAFE_BUILTINS = {
    "set", "frozenset", "list", "dict", "tuple", "int", "float", "complex", "bool", "str",
    "bytes", "bytearray", "slice", "range", "object", "NoneType", "Ellipsis", "NotImplemented",
}
#: modules whose globals are resolved for real (classes and the tensor/array rebuild helpers).
_ALLOWED_MODULES = {
    "collections": None,  # None: any name
    "argparse": {"Namespace"},
    "_codecs": {"encode"},
    "copyreg": {"_reconstructor"},
    "torch._utils": None,
    "torch._tensor": None,
    "torch.storage": None,
    "torch.nn.parameter": None,
    "numpy": {"dtype", "ndarray"},
    "numpy.core.multiarray": {"_reconstruct", "scalar"},
    "numpy._core.multiarray": {"_reconstruct", "scalar"},
    "numpy.dtypes": None,
}
#: module prefixes whose *classes* (types only) are resolved for real.
_ALLOWED_CLASS_PREFIXES = ("omegaconf", "typing", "enum", "pathlib", "datetime")


class _CheckpointUnpickler(pickle.Unpickler):
    """Unpickler that resolves only allow-listed globals and turns the rest into placeholders."""

    def find_class(self, module: str, name: str):  # noqa: D102
        if module in ("builtins", "__builtin__"):
            if name in _SAFE_BUILTINS:
                return super().find_class("builtins", name)
            return _placeholder_class(module, name)
        allowed = _ALLOWED_MODULES.get(module, False)
        if allowed is None or (allowed and name in allowed):
            try:
                return super().find_class(module, name)
            except (ImportError, AttributeError):
                return _placeholder_class(module, name)
        if module == "torch":
            try:
                obj = getattr(importlib.import_module("torch"), name)
            except AttributeError:
                return _placeholder_class(module, name)
            if isinstance(obj, (type, torch.dtype, torch.layout, torch.memory_format)):
                return obj
            return _placeholder_class(module, name)
        if module.split(".")[0] in _ALLOWED_CLASS_PREFIXES:
            try:
                obj = super().find_class(module, name)
            except (ImportError, AttributeError):
                return _placeholder_class(module, name)
            if isinstance(obj, type) or module.split(".")[0] == "typing":
                return obj
        return _placeholder_class(module, name)


def _pickle_load(file, **kwargs):
    return _CheckpointUnpickler(file, **kwargs).load()


def _pickle_loads(data: bytes, **kwargs):
    return _CheckpointUnpickler(io.BytesIO(data), **kwargs).load()


#: Stand-in "pickle module" handed to ``torch.load``.
checkpoint_pickle = types.ModuleType("audio_compress_checkpoint_pickle")
checkpoint_pickle.Unpickler = _CheckpointUnpickler
checkpoint_pickle.load = _pickle_load
checkpoint_pickle.loads = _pickle_loads



def to_plain(obj: Any) -> Any:
    """Turn omegaconf containers, Namespaces and placeholders of them into dicts/lists."""
    if isinstance(obj, Placeholder):
        state = obj._state
        if isinstance(state, dict):
            if "_content" in state:  # omegaconf DictConfig / ListConfig when omegaconf is absent
                return to_plain(state["_content"])
            if "_val" in state:  # omegaconf value node
                return to_plain(state["_val"])
            return {k: to_plain(v) for k, v in state.items() if not k.startswith("_")}
        return obj
    try:
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
    except ImportError:  # pragma: no cover - omegaconf is a dependency
        pass
    if isinstance(obj, argparse.Namespace):
        return {k: to_plain(v) for k, v in vars(obj).items()}
    if isinstance(obj, Mapping):
        return {k: to_plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(to_plain(v) for v in obj)
    return obj
