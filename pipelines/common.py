"""Shared start-up for the stage scripts: logging, params validation, clean error exits."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from repro.config import ConfigError, Params, load_params
from repro.errors import DataSourceError, DivergenceError, FlowError
from repro.tracking import repo_root, tracked_run

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


def record_child(
    params: Params,
    *,
    stage: str,
    parent_run_id: str | None,
    name: str,
    run_params: dict[str, Any],
    tags: dict[str, str],
    experiment: str,
    epochs: list[dict[str, float]] = (),
    curve: list[dict[str, float]] = (),
    curve_x: str = "step",
    metrics: dict[str, float] | None = None,
    artifacts: list[Path] = (),
    error: BaseException | None = None,
) -> str | None:
    """One model of a group stage as an MLflow run nested under the stage's run.

    Its params, per-epoch curves (step = epoch), held-out learning curve (``curve_*`` metrics,
    step = ``curve_x``), final metrics and files; FAILED with the reason when ``error``.
    Returns the run id (None with tracking off).
    """
    try:
        with tracked_run(
            params.tracking,
            stage=stage,
            run_name=name,
            params=run_params,
            tags=tags,
            experiment=experiment,
            parent_run_id=parent_run_id,
        ) as tracker:
            for row in epochs:
                tracker.log_metrics(
                    {k: v for k, v in row.items() if k != "epoch"}, step=int(row["epoch"])
                )
            for row in curve:
                tracker.log_metrics(
                    {f"curve_{k}": v for k, v in row.items() if k != curve_x and v == v},
                    step=int(row[curve_x]),
                )
            if metrics:
                tracker.log_metrics(metrics)
            for path in artifacts:
                tracker.log_artifact(path)
            if error is not None:
                raise error
            return tracker.run_id
    except BaseException as err:
        if err is not error:
            raise
        return None
