"""The ``transfer`` stage's group: every method × seed of the unseen-class study.

Each run is a :func:`repro.transfer.transfer_run` job (it writes its own files), in worker
processes or one after another as ``train.workers`` says, recorded as a nested MLflow run
(:mod:`repro.train_group`) holding its unseen- and seen-class test losses.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

from repro.config import Params, flatten
from repro.efficiency import EFFICIENCY_STEP_COST
from repro.records import EfficiencyMetrics
from repro.train_recorded import grid_jobs, run_recorded_group
from repro.transfer import transfer_name, transfer_run

#: The numbers of a run's ``final`` row its MLflow run shows as held-out metrics.
HELD_OUT = ("test_sse_per_image", "seen_test_sse_per_image")


def train_transfer_group(params: Params, root: Path) -> None:
    """Train and score every run; each run's ``metrics.json`` gets its MLflow run id."""
    eff = params.efficiency
    jobs = grid_jobs(
        transfer_run,
        lambda **kw: transfer_name(eff.dataset, **kw),
        EFFICIENCY_STEP_COST,
        params=params,
        root=root,
        method=eff.methods,
        seed=eff.seeds,
    )
    run_recorded_group(
        params,
        jobs,
        root,
        stage="transfer",
        experiment=f"{params.tracking.experiment}/efficiency",
        kind=EfficiencyMetrics,
        group_params=flatten({"efficiency": asdict(eff)}),
        job_params=("method", "seed"),
        curve="curve",
        curve_x="images_seen",
        held_out=lambda record: {
            k: float(v) for k in HELD_OUT if (v := record["final"].get(k)) is not None
        },
    )
