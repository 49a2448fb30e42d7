"""Reading a params file into the typed sections, refusing what is not the schema.

:func:`read_yaml` turns a file into plain data (refusing a key given twice, which PyYAML would
silently resolve); :func:`build_dataclass` turns that data into the frozen dataclasses of
:mod:`repro.config_schema`, naming an unknown key by its dotted path with a "did you mean" hint
and the allowed keys, and a value of the wrong type with what was expected.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import types
import typing
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

import yaml

from repro.config_schema import ConfigError


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Check ``value`` against the annotation ``tp``; ints are accepted where floats are."""
    origin = get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = get_args(tp)
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(value, inner[0], key)
    if origin is Literal:
        if value not in get_args(tp):
            raise ConfigError(f"{key}: {value!r} is not allowed; allowed: {list(get_args(tp))}")
        return value
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{key}: expected a list, got {type(value).__name__} {value!r}")
        (item_tp,) = get_args(tp)
        return [_coerce(v, item_tp, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {type(value).__name__} {value!r}")
        _, val_tp = get_args(tp)
        return {str(k): _coerce(v, val_tp, f"{key}.{k}") for k, v in value.items()}
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true/false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected an integer, got {type(value).__name__} {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key}: expected a number, got {type(value).__name__} {value!r}")
        if not math.isfinite(value):
            # YAML's .inf/.nan would pass every `> 0` check below and poison a run later.
            raise ConfigError(f"{key}: must be a finite number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a string, got {type(value).__name__} {value!r}")
        return value
    raise TypeError(f"unsupported annotation {_type_name(tp)} for {key}")  # a bug in this file


def build_dataclass(cls: type, data: Any, prefix: str, complete: bool = False) -> Any:
    """Build the dataclass ``cls`` from ``data``, checking every key and value.

    ``complete``: every key must be present. A params *file* is complete (profiles are complete
    files), so a key left out is an error rather than a silent dataclass default that may differ
    from the profile's value (the default of ``train.epochs`` is not the ``quick`` profile's).
    """
    if not isinstance(data, dict):
        raise ConfigError(f"{prefix or 'params'}: expected a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    for key in data:
        if key not in names:
            dotted = f"{prefix}.{key}" if prefix else str(key)
            close = difflib.get_close_matches(str(key), names, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise ConfigError(f"{dotted}: unknown key.{hint} Allowed keys here: {names}")
    kwargs = {}
    for name in names:
        dotted = f"{prefix}.{name}" if prefix else name
        if name not in data:
            if complete:
                raise ConfigError(
                    f"{dotted}: missing; a params file must set every key "
                    f"(copy it from profiles/<name>.yaml). Keys here: {names}"
                )
            continue
        tp = hints[name]
        if dataclasses.is_dataclass(tp):
            kwargs[name] = build_dataclass(tp, data[name], dotted, complete)
        else:
            kwargs[name] = _coerce(data[name], tp, dotted)
    return cls(**kwargs)


def _refuse_duplicate_keys(node: yaml.Node | None, prefix: str, path: Path) -> None:
    """Raise on a key given twice in one mapping, naming its dotted key and both lines.

    PyYAML keeps the last of two equal keys without a word, so an edit that adds
    ``epochs: 0`` above an existing ``epochs: 2`` would otherwise be silently ignored.
    """
    if isinstance(node, yaml.MappingNode):
        seen: dict[str, int] = {}
        for key_node, value_node in node.value:
            key = str(key_node.value)
            dotted = f"{prefix}.{key}" if prefix else key
            line = key_node.start_mark.line + 1
            if key in seen:
                raise ConfigError(
                    f"{path}: {dotted}: duplicate key (lines {seen[key]} and {line}); "
                    "YAML would silently keep the last one: delete one of them"
                )
            seen[key] = line
            _refuse_duplicate_keys(value_node, dotted, path)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _refuse_duplicate_keys(item, f"{prefix}[{i}]", path)


def read_yaml(path: str | Path) -> Any:
    """The YAML document in ``path``, or a :class:`ConfigError` saying why it cannot be read.

    Every failure (missing file, unreadable, not UTF-8, a YAML syntax error, a key given twice)
    is one line naming the file and the place, so ``repro validate`` can print it as is.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(
            f"{path}: file not found (run from the repository root, or pass the path)"
        )
    try:
        data = path.read_bytes()
        text = data.decode("utf-8")
    except OSError as err:
        raise ConfigError(f"{path}: cannot be read ({err.strerror})") from None
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        column = err.start - (data.rfind(b"\n", 0, err.start) + 1) + 1
        raise ConfigError(
            f"{path}: not UTF-8 text (byte 0x{data[err.start]:02x} at line {line}, column "
            f"{column}); save the file as UTF-8"
        ) from None
    loader = yaml.SafeLoader(text)
    loader.name = str(path)  # PyYAML's locations then name the file, not "<unicode string>"
    try:
        node = loader.get_single_node()
        _refuse_duplicate_keys(node, "", path)
        return loader.construct_document(node) if node is not None else None
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: YAML syntax error: {err}") from None
    finally:
        loader.dispose()
