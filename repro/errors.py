"""The library's user-facing errors: each message names what went wrong, where, and the fix.

One home, imported by the modules that raise them and by the stage scripts that turn them into
one clear line (``pipelines/common.py``), so that a stage need not import the data, flow and
training code just to name their errors. (``ConfigError`` lives with the config it validates.)
"""

from __future__ import annotations


class ChecksumError(ValueError):
    """A file (or decoded content) does not hash to its pinned value: never proceed."""


class CorruptFileError(ValueError):
    """A file cannot be decoded (truncated .gz, bad zip, wrong idx header): never proceed."""


class DataSourceError(RuntimeError):
    """No source could deliver the dataset; the message lists every source and why."""


class FlowError(RuntimeError):
    """A flow that blew up or ran past its evaluation budget; the message says which and where."""


class DivergenceError(RuntimeError):
    """Training produced a non-finite or exploding loss; the last good checkpoint is kept."""
