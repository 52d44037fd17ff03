"""Strict configuration: frozen dataclasses filled from YAML and ``key=value`` overrides.

Each stage owns its config dataclass (next to the code that uses it); this module only knows
how to fill any such dataclass. An unknown key, a wrong type or a failed ``validate()`` is a
``ConfigError`` that names the key.
"""

from __future__ import annotations

import copy
import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

from gensar.errors import ConfigError

T = TypeVar("T")


def from_dict(cls: type[T], data: dict[str, Any] | None, where: str = "") -> T:
    """Build dataclass ``cls`` from a plain dict, recursing into nested dataclasses."""
    data = {} if data is None else data
    if not isinstance(data, dict):
        raise ConfigError(f"{where or cls.__name__}: expected a mapping, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    hints = typing.get_type_hints(cls)
    unknown = sorted(set(data) - set(fields))
    if unknown:
        known = ", ".join(sorted(fields))
        raise ConfigError(f"unknown config key '{_join(where, unknown[0])}' (known: {known})")
    kwargs = {}
    for name, value in data.items():
        kwargs[name] = _coerce(hints[name], value, _join(where, name))
    try:
        obj = cls(**kwargs)
    except TypeError as err:  # missing required fields
        raise ConfigError(f"{where or cls.__name__}: {err}") from None
    validate = getattr(obj, "validate", None)
    if callable(validate):
        validate()
    return obj


OMIT_AT_DEFAULT = "gensar_omit_at_default"  # field metadata key, see ``omitted_at_default``


def omitted_at_default(default: Any) -> Any:
    """A config field that ``to_dict`` leaves out while it holds ``default``.

    For a key added after runs were written: their ``pipeline.yaml``, stage fingerprints and
    manifests stay byte-identical until the key is set, and ``from_dict`` fills it back in.
    """
    return dataclasses.field(default=default, metadata={OMIT_AT_DEFAULT: True})


def to_dict(obj: Any) -> dict[str, Any]:
    """Plain-dict form of a config dataclass (round-trips through ``from_dict``); as
    ``dataclasses.asdict``, without the ``omitted_at_default`` keys that hold their default."""
    return _plain_value(obj)


def _plain_value(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        out = {}
        for f in dataclasses.fields(value):
            v = getattr(value, f.name)
            if f.metadata.get(OMIT_AT_DEFAULT) and v == f.default:
                continue
            out[f.name] = _plain_value(v)
        return out
    if isinstance(value, (list, tuple)):
        return type(value)(_plain_value(v) for v in value)
    if isinstance(value, dict):
        return {_plain_value(k): _plain_value(v) for k, v in value.items()}
    return copy.deepcopy(value)


def to_yaml(obj: Any) -> str:
    """YAML of a config dataclass (tuples written as plain lists, so it loads back with ``load_config``)."""
    return yaml.safe_dump(_plain(to_dict(obj)), sort_keys=False)


def _plain(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return obj


def load_config(cls: type[T], path: str | Path | list[str | Path] | tuple[str | Path, ...] | None = None,
                overrides: list[str] | None = None) -> T:
    """Read YAML at ``path`` (optional; a list = layers, later files override earlier ones key by
    key), apply ``a.b=value`` overrides, build ``cls``."""
    paths = [] if path is None else list(path) if isinstance(path, (list, tuple)) else [path]
    data: dict[str, Any] = {}
    for layer in paths:
        merge_into(data, read_yaml(layer))
    for item in overrides or []:
        apply_override(data, item)
    return from_dict(cls, data)


class _StrictLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses a key given twice in one mapping (PyYAML keeps the last
    silently, so a typo'd second ``lr:`` would win unnoticed)."""


def _mapping_without_duplicates(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key '{key}' (first on line {seen[key]})", key_node.start_mark)
        seen[key] = key_node.start_mark.line + 1
    return loader.construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping_without_duplicates)


def read_yaml(path: str | Path) -> dict[str, Any]:
    """One config file as a mapping; an empty file (or only comments) and a duplicate key are errors."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        loaded = yaml.load(path.read_text(encoding="utf-8"), Loader=_StrictLoader)  # noqa: S506 - a SafeLoader
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a YAML config (not UTF-8 text)") from None
    except RecursionError:
        raise ConfigError(f"{path}: invalid YAML: nested too deeply") from None
    except yaml.MarkedYAMLError as err:
        line = f":{err.problem_mark.line + 1}" if err.problem_mark is not None else ""
        raise ConfigError(f"{path}{line}: invalid YAML: {err.problem or err.context}") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: invalid YAML: {str(err).splitlines()[0]}") from None
    if loaded is None:  # nothing but whitespace and comments: most likely the wrong file
        raise ConfigError(f"{path}: config file is empty")
    if not isinstance(loaded, dict):
        raise ConfigError(f"{path}: top level must be a mapping")
    return loaded


def merge_into(base: dict[str, Any], layer: dict[str, Any]) -> None:
    """Deep-merge ``layer`` into ``base``: mappings merge, anything else (lists too) replaces."""
    for key, value in layer.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            merge_into(base[key], value)
        else:
            base[key] = value


def apply_override(data: dict[str, Any], item: str) -> None:
    """Apply one ``dotted.key=yaml_value`` override in place."""
    if "=" not in item:
        raise ConfigError(f"override '{item}' must look like key=value")
    key, raw = item.split("=", 1)
    parts = key.strip().split(".")
    node = data
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override '{item}': '{part}' is not a section")
    node[parts[-1]] = yaml.safe_load(raw) if raw.strip() else ""


def require(cond: bool, key: str, message: str) -> None:
    """Helper for ``validate()`` methods: raise a ConfigError naming ``key``."""
    if not cond:
        raise ConfigError(f"config key '{key}': {message}")


def require_seed(seed: int, key: str = "seed") -> None:
    """numpy's generators take seeds in 0..2**32-1 (a negative one is a ValueError deep inside)."""
    require(0 <= seed < 2**32, key, f"must be in 0..{2**32 - 1}, got {seed}")


def _join(where: str, name: str) -> str:
    return f"{where}.{name}" if where else name


def _coerce(tp: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(arg, value, where)
            except ConfigError as err:
                errors.append(str(err))
        raise ConfigError(errors[0] if errors else f"config key '{where}': bad value {value!r}")
    if origin is typing.Literal:
        if value not in args:
            raise ConfigError(f"config key '{where}': {value!r} is not one of {list(args)}")
        return value
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"config key '{where}': expected a list, got {value!r}")
        inner = args[0] if args else Any
        items = [_coerce(inner, v, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"config key '{where}': expected a mapping, got {value!r}")
        return dict(value)
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, where)
    if tp is Any:
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"config key '{where}': expected true/false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"config key '{where}': expected an integer, got {value!r}")
        if not -(2**63) <= value < 2**63:  # numpy, torch and Parquet all hold 64-bit integers
            raise ConfigError(f"config key '{where}': {value} does not fit in 64 bits")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"config key '{where}': expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"config key '{where}': expected a string, got {value!r}")
        return value
    return value
