"""Milliseconds per training step on the device at hand: eager, CUDA graph, N stacked models.

What a training run costs is its number of optimiser steps times the time of one step, so the
step time is the number to measure on a new device before planning a run there (the GPU
session, :mod:`repro.gpu_session`, sizes its epochs from it; the report projects the ``paper``
profile's wall time from it). Three ways to execute the same step of
:func:`repro.step.training_step`:

* ``eager``: one model, the step as :func:`repro.train.fit` runs it (Python launches every
  kernel);
* ``graph``: one model, the step captured once and replayed as a CUDA graph
  (:mod:`repro.gpu`; CUDA only);
* ``stacked``: N models of the same shape in one vmapped step (:class:`repro.batched.StackedTrainer`),
  the GON and AE methods only. ``ms_per_step`` is then the time of one step of *all* N models.

Timing follows the usual method for asynchronous devices: warm-up steps first (cuDNN autotuning,
the graph capture and lazy initialisation stay out of the numbers), then the device is
synchronised, ``steps`` steps run back to back on a few rotating random batches (never zeros),
and the device is synchronised again before the host clock is read; the median of ``repeats``
such blocks is reported. Nothing synchronises inside the timed region.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch

from repro.config import Params, RunSpec
from repro.encoders import gon_training_loss
from repro.step import training_step
from repro.train import build_run_model

MODES = ("eager", "graph", "stacked")
STACKABLE = ("gon", "ae", "ae_linear")  # repro.batched supports these methods


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


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_step(
    step: Callable[[torch.Tensor], Any],
    batches: Sequence[torch.Tensor],
    *,
    device: torch.device,
    warmup: int,
    steps: int,
    repeats: int,
) -> float:
    """Median milliseconds per ``step(x)`` over ``repeats`` blocks of ``steps`` calls."""
    for i in range(warmup):
        step(batches[i % len(batches)])
    times = []
    for _ in range(repeats):
        _synchronize(device)
        t0 = time.perf_counter()
        for i in range(steps):
            step(batches[i % len(batches)])
        _synchronize(device)
        times.append((time.perf_counter() - t0) * 1000.0 / steps)
    return statistics.median(times)


def _random_batches(shape: tuple[int, ...], device: torch.device, n: int = 4) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(1234)
    return [torch.rand(shape, generator=g).to(device) for _ in range(n)]


def _single_step(
    method: str, nz: int, params: Params, device: torch.device, mode: str, channels: int
) -> Callable[[torch.Tensor], Any]:
    from repro.gpu import graphed_training_step  # CUDA graphs; imported with the mode that needs it

    spec = RunSpec("timing", method, nz, 0)  # any nz: the paper profile's are timed too
    torch.manual_seed(0)
    model = build_run_model(spec, params, channels).to(device).train()
    cfg = params.train
    optimizer = torch.optim.Adam(
        model.parameters(), lr=cfg.lr, betas=tuple(cfg.betas), capturable=mode == "graph"
    )
    if mode == "graph":
        size = params.data.image_size
        return graphed_training_step(
            model, optimizer, torch.Size((cfg.batch_size, channels, size, size))
        )
    return lambda x: training_step(model, optimizer, x, gon_training_loss)


def _stacked_step(
    method: str, nz: int, params: Params, device: torch.device, n_models: int, channels: int
) -> Callable[[torch.Tensor], Any]:
    from repro.batched import StackedTrainer, seeded_models

    spec = RunSpec("timing", method, nz, 0)  # any nz: the paper profile's are timed too
    models = seeded_models(
        range(n_models), lambda: build_run_model(spec, params, channels).to(device)
    )
    cfg = params.train
    trainer = StackedTrainer(models, lr=cfg.lr, betas=tuple(cfg.betas))
    return trainer.step


def measure(
    params: Params,
    device: torch.device,
    *,
    methods: Sequence[str],
    nzs: Sequence[int],
    stacked: Sequence[tuple[str, int, int]] = (),
    channels: int = 1,
    warmup: int = 10,
    steps: int = 30,
    repeats: int = 3,
    on_result: Callable[[StepTime], None] | None = None,
) -> list[StepTime]:
    """Step times of every method × nz (eager; CUDA graph on a GPU) and of ``stacked``
    (method, nz, N models) steps.

    A mode that fails (no CUDA, an unsupported operation) is recorded with its error, not raised:
    a benchmark on a new device is where such failures are found.
    """
    size, batch = params.data.image_size, params.train.batch_size
    modes = ("eager", "graph") if device.type == "cuda" else ("eager",)
    plan: list[tuple[str, int, str, int]] = [
        (m, nz, mode, 1) for nz in nzs for m in methods for mode in modes
    ]
    plan += [(m, nz, "stacked", n) for m, nz, n in stacked]
    results = []
    for method, nz, mode, n in plan:
        shape = (
            (n, batch, channels, size, size) if mode == "stacked" else (batch, channels, size, size)
        )
        try:
            step = (
                _stacked_step(method, nz, params, device, n, channels)
                if mode == "stacked"
                else _single_step(method, nz, params, device, mode, channels)
            )
            ms = time_step(
                step,
                _random_batches(shape, device),
                device=device,
                warmup=warmup,
                steps=steps,
                repeats=repeats,
            )
            error = None
        except Exception as err:  # recorded: the device or mode cannot run this step
            ms, error = float("nan"), f"{type(err).__name__}: {err}"
        result = StepTime(method, nz, mode, n, batch, ms, steps, str(device), error)
        results.append(result)
        if on_result is not None:
            on_result(result)
    return results


def best_ms_per_model_step(
    times: Sequence[StepTime], method: str, nz: int, *, graphs: bool
) -> float:
    """The single-model step time a training run of ``fit`` will see: graph if enabled and
    measured, else eager. NaN when neither was measured."""
    want = ("graph", "eager") if graphs else ("eager",)
    for mode in want:
        for t in times:
            if (t.method, t.nz, t.mode, t.n_models) == (method, nz, mode, 1) and t.error is None:
                return t.ms_per_step
    return float("nan")


# --- what a run costs, from the step times ------------------------------------------------------

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
    if n_models > 1:
        step = next(
            (
                x.ms_per_step
                for x in times
                if (x.method, x.nz, x.mode, x.n_models) == (method, nz, "stacked", n_models)
                and x.error is None
            ),
            float("nan"),
        )
    else:
        step = best_ms_per_model_step(times, method, nz, graphs=graphs)
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
