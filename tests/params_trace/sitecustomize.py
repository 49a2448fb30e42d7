"""Records which params each stage process reads, for ``tests/test_pipeline.py``.

Put on ``PYTHONPATH`` with ``REPRO_PARAMS_TRACE`` naming a directory, Python imports this module
at start-up in every process (the stage scripts and their ``spawn`` workers alike). It makes each
config dataclass of :class:`repro.config.Params` note the dotted key of every field value read
(``train.epochs``), appending new keys to ``<dir>/<pid>.jsonl`` with the process's ``sys.argv``
(a ``spawn`` worker gets its parent's). Reads while :func:`repro.config.load_params` validates
the file are not counted (validation reads every key by design), nor fields that
:func:`dataclasses.replace` overrode (a study's own epochs are not ``train.epochs``).
"""

from __future__ import annotations

import os

if os.environ.get("REPRO_PARAMS_TRACE"):
    import dataclasses
    import json
    import sys
    from pathlib import Path

    import repro.config
    from repro.config_schema import Params

    _out = Path(os.environ["REPRO_PARAMS_TRACE"])
    _seen: set[str] = set()
    _state = {"on": True}
    _prefix: dict[type, str] = {}

    def _walk(obj: object, prefix: str) -> None:
        for f in dataclasses.fields(obj):
            value = getattr(obj, f.name)
            if dataclasses.is_dataclass(value):
                key = f"{prefix}{f.name}"
                if _prefix.setdefault(type(value), key) != key:
                    raise RuntimeError(
                        f"{type(value).__name__} is both {_prefix[type(value)]} and {key}"
                    )
                _walk(value, f"{key}.")

    _walk(Params(), "")
    _prefix[Params] = ""

    def _note(key: str) -> None:
        if key in _seen:
            return
        _seen.add(key)
        with open(_out / f"{os.getpid()}.jsonl", "a", encoding="utf-8") as fh:
            fh.write(json.dumps({"argv": sys.argv, "key": key}) + "\n")

    def _traced(self: object, name: str) -> object:
        value = object.__getattribute__(self, name)
        cls = type(self)
        if (
            _state["on"]
            and name in cls.__dataclass_fields__
            and not dataclasses.is_dataclass(value)
            and name not in getattr(self, "__dict__", {}).get("_trace_overrides", ())
        ):
            prefix = _prefix[cls]
            _note(f"{prefix}.{name}" if prefix else name)
        return value

    for _cls in _prefix:
        _cls.__getattribute__ = _traced

    _replace = dataclasses.replace

    def _traced_replace(obj, /, **changes):
        _state["on"], was = False, _state["on"]
        try:
            new = _replace(obj, **changes)
        finally:
            _state["on"] = was
        if type(obj) in _prefix:
            inherited = obj.__dict__.get("_trace_overrides", frozenset())
            object.__setattr__(new, "_trace_overrides", frozenset(changes) | inherited)
        return new

    dataclasses.replace = _traced_replace

    _load = repro.config.load_params

    def _traced_load(*args, **kwargs):
        _state["on"] = False
        try:
            return _load(*args, **kwargs)
        finally:
            _state["on"] = True

    repro.config.load_params = _traced_load
