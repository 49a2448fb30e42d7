"""Shared start-up for the stage scripts: logging, params validation, clean error exits."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable
from pathlib import Path

from repro.config import ConfigError, Params, load_params
from repro.errors import DataSourceError, DivergenceError, FlowError
from repro.tracking import repo_root

#: The library's errors that tell the user what went wrong and what to do (bad params, a missing
#: or corrupt file, a diverged run, a flow over its evaluation cap, no data source): one line,
#: no traceback. Anything else is a bug and keeps its traceback.
USER_ERRORS = (
    ConfigError,
    FileNotFoundError,
    ValueError,
    DivergenceError,
    FlowError,
    DataSourceError,
)


def stage(description: str, add_args: Callable[[argparse.ArgumentParser], None] | None = None):
    """Parse the stage's arguments and validate ``params.yaml`` before any work starts."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument(
        "--params", default="params.yaml", help="params file (default: params.yaml)"
    )
    if add_args:
        add_args(parser)
    args = parser.parse_args()
    try:
        params: Params = load_params(args.params)
    except ConfigError as err:
        sys.exit(f"error: {err}")
    return args, params, repo_root(Path(args.params).resolve().parent)


def run_main(main: Callable[[], None]) -> None:
    """Turn the library's user-facing errors into one clear line and a non-zero exit."""
    try:
        main()
    except USER_ERRORS as err:
        sys.exit(f"error: {err}")
