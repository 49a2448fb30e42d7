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
such blocks is reported. Nothing synchronises inside the timed region. What a run costs from
these times is :mod:`repro.costs` (no torch there: the report reads it).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch

from repro.config import Params, RunSpec
from repro.costs import StepTime
from repro.encoders import gon_training_loss
from repro.names import MAIN_METHODS
from repro.step import training_step
from repro.train_run import build_run_model

MODES = ("eager", "graph", "stacked")
STACKABLE = MAIN_METHODS  # repro.batched stacks these methods


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
    seconds: float | None = None,
) -> list[StepTime]:
    """Step times of every method × nz (eager; CUDA graph on a GPU) and of ``stacked``
    (method, nz, N models) steps.

    A mode that fails (no CUDA, an unsupported operation) is recorded with its error, not raised:
    a benchmark on a new device is where such failures are found. With ``seconds``, the settings
    not begun within that many seconds are recorded as not measured (the first is always
    measured; the single-model ones, which size a training run, come first).
    """
    deadline = None if seconds is None else time.perf_counter() + seconds
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
        if deadline is not None and results and time.perf_counter() > deadline:
            result = StepTime(
                method,
                nz,
                mode,
                n,
                batch,
                float("nan"),
                0,
                str(device),
                f"not measured: the {seconds:.0f} s given to step timing were up",
            )
            results.append(result)
            if on_result is not None:
                on_result(result)
            continue
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
