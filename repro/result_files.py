"""Results apart from provenance: how a results file is written and read.

A file holds only what a reproduction should reproduce. The facts about how a run went
(wall-clock seconds, MLflow run ids, the device: :func:`is_provenance`) are split off on writing
into a sibling ``<name>.provenance<suffix>`` (``metrics.json`` → ``metrics.provenance.json``,
``curve.csv`` → ``curve.provenance.csv``, with the same nesting or rows) and merged back on
reading. The siblings are neither committed (``.gitignore``) nor part of any DVC output's hash
(``.dvcignore``), so a reproduction with equal results leaves ``git status`` and ``dvc.lock``
untouched; a results file read without its sibling has ``None`` for those facts. The schema of
each file kind is :mod:`repro.records`.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from repro.io import atomic_write, read_json, write_json

if TYPE_CHECKING:
    import pandas as pd


# Facts about a run, not results of it: they differ between two runs of the same code on the same
# data (wall-clock time, the MLflow store's ids, where it ran), so a reproduction is not judged on
# them (repro.verify).
PROVENANCE_KEYS = frozenset({"mlflow_run_id", "mlflow_run_ids", "device"})


def is_provenance(key: str) -> bool:
    """True for a key or column that records how a run went, not what it found."""
    return key in PROVENANCE_KEYS or "seconds" in key


def provenance_path(path: str | Path) -> Path:
    """The sibling holding ``path``'s provenance: ``metrics.json`` → ``metrics.provenance.json``."""
    path = Path(path)
    return path.with_name(f"{path.stem}.provenance{path.suffix}")


def is_provenance_file(path: str | Path) -> bool:
    return Path(path).stem.endswith(".provenance")


def split_provenance(obj: Any) -> tuple[Any, Any]:
    """``(results, provenance)`` of a JSON value: every provenance key, at any depth, moves to the
    second, which keeps the nesting (lists keep their length, ``None`` where nothing moved)."""
    if isinstance(obj, dict):
        results, provenance = {}, {}
        for key, value in obj.items():
            if is_provenance(key):
                provenance[key] = value
                continue
            results[key], inner = split_provenance(value)
            if inner is not None:
                provenance[key] = inner
        return results, provenance or None
    if isinstance(obj, list):
        pairs = [split_provenance(item) for item in obj]
        inner = [p for _, p in pairs]
        return [r for r, _ in pairs], inner if any(p is not None for p in inner) else None
    return obj, None


def merge_provenance(results: Any, provenance: Any) -> Any:
    """The inverse of :func:`split_provenance`."""
    if provenance is None:
        return results
    if isinstance(results, dict) and isinstance(provenance, dict):
        merged = dict(results)
        for key, value in provenance.items():
            nested = isinstance(value, (dict, list)) and key in results
            # a scalar also in the results (a file written before the split): the sibling's wins
            merged[key] = merge_provenance(results[key], value) if nested else value
        return merged
    if isinstance(results, list) and isinstance(provenance, list):
        if len(results) != len(provenance):
            raise ValueError(f"{len(results)} results but {len(provenance)} provenance items")
        return [merge_provenance(r, p) for r, p in zip(results, provenance, strict=True)]
    raise ValueError(f"provenance {type(provenance).__name__} does not fit the results")


def write_results_json(path: str | Path, obj: Any) -> None:
    """``obj``'s results to ``path`` and its provenance (if any) to the sibling file."""
    results, provenance = split_provenance(obj)
    write_json(path, results)
    side = provenance_path(path)
    if provenance is not None:
        write_json(side, provenance)
    else:
        side.unlink(missing_ok=True)


def read_results_json(path: str | Path) -> Any:
    """A results file with its provenance merged back in (when the sibling exists)."""
    side = provenance_path(path)
    results = read_json(path)
    if not side.is_file():
        return results
    try:
        return merge_provenance(results, read_json(side))
    except ValueError as err:
        raise ValueError(f"{side}: does not belong to {path} ({err}); delete it") from err


def write_rows(path: str | Path, rows: list[dict[str, Any]], fields: Iterable[str]) -> None:
    """``rows`` as a CSV with the header ``fields``; the provenance columns go to the sibling."""
    fields = list(fields)
    kept = [f for f in fields if not is_provenance(f)]
    moved = [f for f in fields if is_provenance(f)]
    side = provenance_path(path)
    for target, columns in ((Path(path), kept), (side, moved)):
        if target is side and not columns:
            side.unlink(missing_ok=True)
            continue
        with atomic_write(target, "w") as fh:
            writer = csv.DictWriter(fh, fieldnames=columns, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(rows)


def read_frame(path: str | Path) -> pd.DataFrame:
    """:func:`read_rows` as a DataFrame (types inferred as ``pandas.read_csv`` does)."""
    import pandas as pd  # the report's reader; the training processes need no pandas

    frame = pd.read_csv(path)
    if (side := _provenance_rows(path, len(frame))) is not None:
        frame = frame.join(pd.read_csv(side))
    return frame


def read_rows(path: str | Path) -> list[dict[str, str]]:
    """A CSV written by :func:`write_rows`, provenance columns merged back (values as text)."""
    path = Path(path)
    rows = _dict_rows(path)
    if (side := _provenance_rows(path, len(rows))) is not None:
        rows = [r | e for r, e in zip(rows, _dict_rows(side), strict=True)]
    return rows


def _dict_rows(path: Path) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(path.read_text())))


def _provenance_rows(path: str | Path, rows: int) -> Path | None:
    """``path``'s provenance sibling if it exists; refused unless it has ``rows`` rows too."""
    side = provenance_path(path)
    if not side.is_file():
        return None
    extra = len(_dict_rows(side))
    if extra != rows:
        raise ValueError(f"{side}: {extra} rows, {path} has {rows}; delete it")
    return side
