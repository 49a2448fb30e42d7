"""What a training run costs, from measured step times: the session's plan and the projection.

A run's wall time is its optimiser steps times the measured time of one step (:mod:`repro.steptime`
measures it on the device at hand), plus held-out scoring (a batch costs a fraction of an eager
step) and a fixed cost per run. :func:`main_run_cost` is that model for one run of
:func:`repro.groups.main_run`; the GPU session sizes its epochs with it, and :func:`project`
turns it into a profile's wall time (one model at a time, the seeds of a cell stacked, several
devices with ``dvc queue``). Plain arithmetic: no torch, so the report can use it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from repro.config import Params


@dataclass(frozen=True)
class StepTime:
    """One measurement: ``n_models`` models stepping together, ``ms_per_step`` for all of them."""

    method: str
    nz: int
    mode: str
    n_models: int
    batch_size: int
    ms_per_step: float
    steps_timed: int
    device: str
    error: str | None = None  # why the mode could not run (the measurement is then NaN)

    @property
    def model_steps_per_second(self) -> float:
        return self.n_models * 1000.0 / self.ms_per_step

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"model_steps_per_second": self.model_steps_per_second}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> StepTime:
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})


def measured_ms(
    times: Sequence[StepTime], method: str, nz: int, mode: str, n_models: int = 1
) -> float:
    """The measured ms per step of that setting; NaN if it was not measured or failed."""
    for t in times:
        if (t.method, t.nz, t.mode, t.n_models) == (method, nz, mode, n_models) and t.error is None:
            return t.ms_per_step
    return float("nan")


def best_ms_per_model_step(
    times: Sequence[StepTime], method: str, nz: int, *, graphs: bool
) -> float:
    """The single-model step time a training run of ``fit`` will see: graph if enabled and
    measured, else eager. NaN when neither was measured."""
    if graphs and (ms := measured_ms(times, method, nz, "graph")) == ms:
        return ms
    return measured_ms(times, method, nz, "eager")


#: Held-out scoring of one batch (a forward pass; GON's also the inner gradient, no outer backward
#: and no update) relative to an eager training step. An estimate; the GPU session measures how
#: far its predictions were off and reports that ratio beside every projection.
EVAL_BATCH_COST = 0.5
#: Per run: building the model, the CUDA graph capture, checkpoints, the reconstruction grid.
FIXED_RUN_SECONDS = 2.0


def _batches(n: int, batch_size: int) -> int:
    return -(-n // batch_size)


@dataclass(frozen=True)
class RunCost:
    """Predicted wall seconds of one main run (training, per-epoch validation, evaluation):
    ``per_epoch * epochs + fixed``."""

    per_epoch: float
    fixed: float

    def seconds(self, epochs: int) -> float:
        return self.per_epoch * epochs + self.fixed


def main_run_cost(
    params: Params,
    times: Sequence[StepTime],
    method: str,
    nz: int,
    *,
    graphs: bool | None = None,
    n_models: int = 1,
    test_images: int = 10_000,
) -> RunCost:
    """The cost of one :func:`repro.groups.main_run` under ``params`` (``n_models`` > 1: the
    runs of one cell trained together, :mod:`repro.batched`; the cost is then the cell's)."""
    t, e = params.train, params.evaluate
    graphs = t.cuda_graphs if graphs is None else graphs
    eager = best_ms_per_model_step(times, method, nz, graphs=False)
    step = (
        measured_ms(times, method, nz, "stacked", n_models)
        if n_models > 1
        else best_ms_per_model_step(times, method, nz, graphs=graphs)
    )
    bs = e.batch_size
    val_n = e.val_images or 10_000
    per_epoch_batches = _batches(t.val_images, bs) * n_models
    curve = (t.curve_points + 2) * _batches(t.curve_images, bs)  # + step 0 and both BN modes
    final = 2 * (_batches(val_n, bs) + _batches(test_images, bs) * (1 + e.order_shuffles))
    final += e.affinity_combinations * 3
    eval_ms = eager * EVAL_BATCH_COST
    return RunCost(
        per_epoch=((t.train_images // t.batch_size) * step + per_epoch_batches * eval_ms) / 1000,
        fixed=(n_models * ((curve + final) * eval_ms / 1000 + FIXED_RUN_SECONDS)),
    )


def lpt_makespan(durations: Sequence[float], machines: int) -> float:
    """Wall time of independent jobs on ``machines`` (longest job first to the least loaded)."""
    loads = [0.0] * max(1, machines)
    for d in sorted(durations, reverse=True):
        loads[loads.index(min(loads))] += d
    return max(loads)


@dataclass(frozen=True)
class Projection:
    """Projected wall seconds of a profile's main runs on the measured device."""

    profile: str
    runs: int
    epochs: int
    one_model_eager: float  # one model at a time, every kernel launched from Python
    one_model_engine: float  # the group engine on a GPU: one at a time, CUDA graphs if enabled
    stacked_seeds: float  # the seeds of a cell trained together (repro.batched)
    queue: dict[int, float]  # dvc queue over k GPUs: the train@ stages spread over k devices
    calibration: float  # measured / predicted wall time in the session (reported beside these)


def project(params: Params, times: Sequence[StepTime], *, calibration: float = 1.0) -> Projection:
    """The main runs of ``params`` (every dataset × method × nz × seed) at its epochs."""
    t = params.train
    epochs, seeds = t.epochs, len(t.seeds)
    eager = graphs = stacked = 0.0
    stages: dict[tuple[str, int], float] = {}
    for dataset in params.data.datasets:
        for nz in params.model.nz:
            for method in t.methods:
                one = main_run_cost(params, times, method, nz, graphs=True).seconds(epochs)
                eager += seeds * main_run_cost(params, times, method, nz, graphs=False).seconds(
                    epochs
                )
                graphs += seeds * one
                stacked += main_run_cost(params, times, method, nz, n_models=seeds).seconds(epochs)
                stages[(dataset, nz)] = stages.get((dataset, nz), 0.0) + seeds * one
    queue = {k: lpt_makespan(list(stages.values()), k) for k in (1, 2, 3, 6)}
    return Projection(
        profile=params.profile,
        runs=len(params.data.datasets) * len(params.model.nz) * len(t.methods) * seeds,
        epochs=epochs,
        one_model_eager=eager,
        one_model_engine=graphs,
        stacked_seeds=stacked,
        queue=queue,
        calibration=calibration,
    )
