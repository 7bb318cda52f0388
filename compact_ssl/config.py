"""Typed configuration: dataclasses built from YAML plus ``key.sub=value`` overrides.

A YAML file mirrors a config dataclass. Unknown keys are errors (a typo must not fall back to a
default silently) and every value is checked and coerced by the field's type annotation, so a
wrong type fails at load time naming the key:

* ``int``: integers, or floats / numeric strings with an integral value (``1e5``);
  ``bool`` is not an int.
* ``float``: any number, or a numeric string (YAML 1.1 reads ``1e-3`` as a string).
* ``bool``: only ``true`` / ``false``.
* ``str``: strings; numbers are written as text (``precision: 32``).
* ``X | None``, ``list[X]``, ``tuple[X, ...]``, ``tuple[X, Y]``, ``dict[str, X]``, ``Literal``,
  nested dataclasses (also inside lists and dicts), ``Any``.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

from compact_ssl.io import atomic_write_text

T = TypeVar("T")


class ConfigError(ValueError):
    """A config value that does not fit its field; the message names the key."""


def _type_hints(cls: type) -> dict[str, Any]:
    try:
        return typing.get_type_hints(cls)
    except (NameError, TypeError) as err:  # an annotation that cannot be resolved is a bug of cls
        raise TypeError(f"cannot resolve the field types of {cls.__name__}: {err}") from err


def coerce(value: Any, tp: Any, where: str) -> Any:
    """Check ``value`` against the annotation ``tp`` and convert it where that is lossless.

    Raises :class:`ConfigError` naming ``where`` when the value does not fit.
    """
    if tp is Any or tp is object:
        return value
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        options = [a for a in args if a is not type(None)]
        if len(options) == 1:  # X | None: the error of X names the exact place
            return coerce(value, options[0], where)
        errors = []
        for option in options:
            try:
                return coerce(value, option, where)
            except ConfigError as err:
                errors.append(str(err).split(": ", 1)[-1])
        raise ConfigError(f"{where}: {value!r} fits none of {_name(tp)} ({'; '.join(errors)})")
    if origin is typing.Literal:
        if value not in args:
            raise ConfigError(f"{where}: expected one of {list(args)}, got {value!r}")
        return value
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        return build_dataclass(tp, value if value is not None else {}, where)
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {value!r}")
        return value
    if tp is int:
        return _to_int(value, where)
    if tp is float:
        return _to_float(value, where)
    if tp is str:
        if isinstance(value, str):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
        raise ConfigError(f"{where}: expected a string, got {value!r}")
    if tp is Path:
        if isinstance(value, (str, Path)):
            return Path(value)
        raise ConfigError(f"{where}: expected a path, got {value!r}")
    if origin in (list, tuple, set, frozenset) or tp in (list, tuple, set):
        return _sequence(value, tp, origin or tp, args, where)
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        if not args:
            return dict(value)
        key_tp, value_tp = args
        return {coerce(k, key_tp, _key(where, "<key>")): coerce(v, value_tp, _key(where, k)) for k, v in value.items()}
    if isinstance(tp, type):
        if isinstance(value, tp):
            return value
        raise ConfigError(f"{where}: expected {tp.__name__}, got {value!r}")
    return value


def _name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _to_int(value: Any, where: str) -> int:
    if isinstance(value, bool):
        raise ConfigError(f"{where}: expected an integer, got {value!r}")
    if isinstance(value, int):
        return value
    number = value
    if isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            raise ConfigError(f"{where}: expected an integer, got {value!r}") from None
    if isinstance(number, float) and math.isfinite(number) and number.is_integer():
        return int(number)
    raise ConfigError(f"{where}: expected an integer, got {value!r}")


def _to_float(value: Any, where: str) -> float:
    if isinstance(value, bool):
        raise ConfigError(f"{where}: expected a number, got {value!r}")
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            pass
    raise ConfigError(f"{where}: expected a number, got {value!r}")


def _sequence(value: Any, tp: Any, origin: type, args: tuple, where: str) -> Any:
    if not isinstance(value, (list, tuple, set, frozenset)):
        raise ConfigError(f"{where}: expected a list, got {value!r}")
    items = list(value)
    if origin is tuple and args and not (len(args) == 2 and args[1] is Ellipsis):
        if len(items) != len(args):
            raise ConfigError(f"{where}: expected {len(args)} values, got {len(items)} ({value!r})")
        return tuple(coerce(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(items, args)))
    item_tp = args[0] if args else Any
    out = [coerce(v, item_tp, f"{where}[{i}]") for i, v in enumerate(items)]
    return origin(out) if origin is not list else out


def _key(where: str, name: str) -> str:
    """The key ``name`` below ``where``: ``parent.name``, or ``file.yaml: name`` at a file's top level."""
    return f"{where}: {name}" if where.endswith((".yaml", ".yml")) else f"{where}.{name}"


def build_dataclass(cls: type[T], values: dict, where: str = "config") -> T:
    """Build the config dataclass ``cls`` (nested dataclasses included) from a mapping.

    Unknown keys raise :class:`ConfigError` naming ``where`` and the valid keys; every value is
    checked against its field's annotation (see the module docstring). Errors raised by the
    dataclass's own ``__post_init__`` checks are re-raised with ``where`` in front.
    """
    if not isinstance(values, dict):
        raise ConfigError(f"{where}: expected a mapping, got {type(values).__name__} {values!r}")
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ConfigError(f"{where}: unknown keys {unknown}; valid keys: {sorted(fields)}")
    hints = _type_hints(cls)
    kwargs = {name: coerce(value, hints.get(name, Any), _key(where, name)) for name, value in values.items()}
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as err:
        if isinstance(err, ConfigError) or str(err).startswith(where):
            raise
        raise ConfigError(f"{where}: {err}") from err


def apply_overrides(raw: dict, overrides: list[str] | None) -> dict:
    """Apply ``a.b=value`` overrides (values parsed as YAML) to a raw config mapping, in place."""
    for item in overrides or []:
        if "=" not in item:
            raise ConfigError(f"override {item!r} must look like key.sub=value")
        key, text = item.split("=", 1)
        node = raw
        parts = key.strip().split(".")
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"override {item!r}: {part} is a value, not a section")
            node = child
        node[parts[-1]] = yaml.safe_load(text)
    return raw


def add_override_argument(parser: argparse.ArgumentParser, example: str = "trainer.max_epochs=2") -> None:
    """The ``--set KEY=VALUE`` option of every entry point (repeatable; values parsed as YAML),
    collected in ``args.overrides`` for :func:`apply_overrides`."""
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help=f"override a config entry, e.g. --set {example} (repeatable)")


def read_yaml(path: str | Path) -> dict:
    """Read a YAML mapping; errors name the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: config file not found")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML ({err})") from err
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(raw).__name__}")
    return raw


def load_yaml_config(cls: type[T], path: str | Path | None = None, overrides: list[str] | None = None,
                     where: str = "config") -> T:
    """Build ``cls`` from a YAML file (or the defaults) plus ``key=value`` overrides; errors name the file."""
    raw = read_yaml(path) if path is not None else {}
    if path is not None:
        where = str(path)
    return build_dataclass(cls, apply_overrides(raw, overrides), where)


def config_to_dict(config: Any) -> Any:
    """A config dataclass as plain YAML/JSON-able data (tuples become lists)."""
    if dataclasses.is_dataclass(config) and not isinstance(config, type):
        return {f.name: config_to_dict(getattr(config, f.name)) for f in dataclasses.fields(config)}
    if isinstance(config, dict):
        return {k: config_to_dict(v) for k, v in config.items()}
    if isinstance(config, (list, tuple, set, frozenset)):
        return [config_to_dict(v) for v in config]
    if isinstance(config, Path):
        return str(config)
    return config


def save_yaml_config(config: Any, path: str | Path) -> Path:
    """Write a resolved config dataclass as YAML, atomically."""
    return atomic_write_text(path, yaml.safe_dump(config_to_dict(config), sort_keys=False))


class YamlConfig:
    """Mixin of a top-level config dataclass: YAML in and out, plain dicts for checkpoints.

    ``class MyConfig(YamlConfig)`` decorated with ``@dataclass`` gets ``MyConfig.load(path,
    overrides)``, ``MyConfig.from_dict(values)``, ``config.save(path)`` and ``config.to_dict()``.
    """

    @classmethod
    def load(cls: type[T], path: str | Path | None = None, overrides: list[str] | None = None) -> T:
        """The config from YAML (or the defaults) plus ``key.sub=value`` overrides."""
        return load_yaml_config(cls, path, overrides)

    @classmethod
    def from_dict(cls: type[T], values: dict, where: str = "checkpoint config") -> T:
        """Rebuild a config saved with :meth:`to_dict` (e.g. from a checkpoint's hyperparameters)."""
        return build_dataclass(cls, values, where)

    def save(self, path: str | Path) -> Path:
        """Write the resolved config as YAML, atomically."""
        return save_yaml_config(self, path)

    def to_dict(self) -> dict:
        """Plain nested dict (saved in checkpoints)."""
        return dataclasses.asdict(self)


#: what :func:`config_diff` reports on the side where a key is missing
ABSENT = "<absent>"


def config_diff(old: dict, new: dict, prefix: str = "") -> dict[str, tuple[Any, Any]]:
    """Keys whose values differ between two plain config mappings: ``{"a.b": (old, new)}``.

    A key present on one side only is reported with :data:`ABSENT` on the other.
    """
    out: dict[str, tuple[Any, Any]] = {}
    for key in sorted(set(old) | set(new), key=str):
        name = f"{prefix}{key}"
        a, b = old.get(key, ABSENT), new.get(key, ABSENT)
        if isinstance(a, dict) and isinstance(b, dict):
            out.update(config_diff(a, b, f"{name}."))
        elif a != b:
            out[name] = (a, b)
    return out


def get_key(config: Any, key: str) -> Any:
    """The value at a dotted ``key`` of a config dataclass (``trainer.seed``)."""
    node = config
    for part in key.split("."):
        node = getattr(node, part)
    return node


def replace_key(config: T, key: str, value: Any) -> T:
    """A copy of ``config`` with the dotted ``key`` set to ``value`` (nested dataclasses copied)."""
    head, _, rest = key.partition(".")
    if not rest:
        return dataclasses.replace(config, **{head: value})
    return dataclasses.replace(config, **{head: replace_key(getattr(config, head), rest, value)})
