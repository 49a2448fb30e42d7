"""What ``dvc metrics show`` and ``dvc exp show`` display: the study's headline numbers, in one file.

``reports/metrics.json`` (the report stage's DVC metrics) holds the mean held-out test SSE per
image of each method of the main comparison, per dataset, in the headline BatchNorm mode
(``evaluate.headline_bn``), and the number of claims per verdict. One file with short keys:
DVC prefixes a column with its file's path only when several metrics files are declared, so the
columns read ``mnist.gon`` or ``reproduced`` and the tables fit a terminal. The groups' own
summaries (``runs/main/<dataset>-nz<nz>.json``, every BatchNorm mode) stay plain outputs.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from repro.io import read_json

METRICS_FILE = "metrics.json"


def headline_metrics(
    runs_dir: Path,
    *,
    datasets: list[str],
    nz: list[int],
    headline_bn: str,
    verdicts: Mapping[str, int],
) -> dict[str, dict[str, float] | int]:
    """``{<dataset>: {<method>: mean test SSE}, <verdict>: count}``; a dataset key gains
    ``-nz<nz>`` when the profile trains several latent sizes. Groups not run are left out."""
    out: dict[str, dict[str, float] | int] = {}
    for dataset in datasets:
        for size in nz:
            path = runs_dir / "main" / f"{dataset}-nz{size}.json"
            if not path.is_file():
                continue
            key = dataset if len(nz) == 1 else f"{dataset}-nz{size}"
            out[key] = dict(read_json(path).get(headline_bn, {}))
    return out | {v.replace(" ", "_"): int(n) for v, n in verdicts.items()}
