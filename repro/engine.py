"""Train a *group* of runs in one stage process: one after another, or in worker processes.

A DVC stage of this study trains several models that share data and settings (the seeds and
methods of a dataset, the cells of an ablation). Starting one Python process per model cost the
default pipeline about 590 s of start-up and DVC bookkeeping over 78 stages; a group stage pays
that once. How the group's runs share the machine is the **mode**:

* ``sequential`` (``train.workers: 1``): in this process, one after another. The choice on a GPU,
  where one process owns the device (several small models per step are
  :mod:`repro.batched`'s stacked trainer, measured by ``bench/stack_seeds.py``).
* ``workers`` (``train.workers: N > 1``): N worker processes (``spawn``), each training whole runs
  with ``train.num_threads`` threads, the longest runs first (a longest-processing-time schedule
  keeps both workers busy to the end). On a 2-core CPU two 1-thread workers beat one 2-thread
  process: measured here (2-core EPYC, batch 64, nz 32), a GON step takes 65 ms on 1 thread and
  40 ms on 2, and two 1-thread workers run side by side at 65 ms each, so a group trains in
  1 / (2 / 65) = 32.5 ms per step against 40 — and the 1-thread result of a run does not depend
  on which worker or neighbour it had (``bench/pipeline_speed.py`` measures the whole pipeline).

``train.workers: 0`` picks by device: one worker per CPU core on a CPU, sequential on a GPU.

A run gives **bitwise** the numbers it gives alone at the same thread count, in either mode: each
run builds its own model, optimiser and ``torch.Generator`` from its seed, in a process whose
thread count and determinism are set by :func:`repro.train.configure_torch`
(tests/test_engine.py). Every run writes its own checkpoint each epoch, so a killed group resumes
run by run. Workers die with the stage process (``PR_SET_PDEATHSIG``): a SIGKILLed stage leaves
no orphan still writing checkpoints while the re-run resumes from them.

Jobs are plain picklable callables (a module-level function and its keyword arguments); their
results come back to the stage process, which alone records them (MLflow, summary files).
"""

from __future__ import annotations

import concurrent.futures as cf
import ctypes
import logging
import multiprocessing
import os
import signal
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

MODES = ("sequential", "workers")


@dataclass(frozen=True)
class Job:
    """One run of a group: ``fn(**kwargs)`` returns its result (a picklable record)."""

    name: str
    fn: Callable[..., Any]
    kwargs: dict[str, Any] = field(default_factory=dict)
    cost: float = 1.0  # relative cost, for the schedule (longest first); not a measurement


@dataclass(frozen=True)
class Outcome:
    """What one job ended with: its result, or the exception it raised (never both)."""

    job: Job
    result: Any = None
    error: BaseException | None = None


def resolve_workers(requested: int, device_type: str, n_jobs: int) -> int:
    """``train.workers`` → the number of processes: 0 = one per CPU core (CPU), 1 on a GPU."""
    if requested == 0:
        requested = 1 if device_type == "cuda" else (len(os.sched_getaffinity(0)) or 1)
    return max(1, min(requested, n_jobs))


def mode_of(workers: int) -> str:
    return "sequential" if workers <= 1 else "workers"


def _init_worker(level: int, fmt: str | None) -> None:
    """A worker logs as its stage does (resume and progress lines), and dies with it."""
    logging.basicConfig(level=level, format=fmt)
    _die_with_parent()


def _die_with_parent() -> None:
    """Linux: SIGKILL this worker when the stage process dies (no orphans writing files)."""
    if sys.platform.startswith("linux"):
        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)
    # The stage process may have been killed between spawn and this call.
    if os.getppid() == 1:
        os._exit(1)


def _call(job: Job) -> Any:
    return job.fn(**job.kwargs)


def run_group(jobs: Sequence[Job], *, workers: int) -> Iterator[Outcome]:
    """Run every job; yield each :class:`Outcome` as it finishes (in the stage process).

    A job that raises does not stop the others: its exception comes back in its outcome and the
    caller decides (a diverged ablation run is a result; a failed main run fails the stage after
    the rest have finished and been recorded). ``KeyboardInterrupt`` stops the group.
    """
    ordered = sorted(jobs, key=lambda j: -j.cost)  # longest first: a balanced finish
    if workers <= 1:
        for job in ordered:
            try:
                yield Outcome(job, result=_call(job))
            except Exception as err:  # recorded, the group goes on
                yield Outcome(job, error=err)
        return
    ctx = multiprocessing.get_context("spawn")  # no fork of a process holding torch threads
    root = logging.getLogger()
    fmt = root.handlers[0].formatter._fmt if root.handlers and root.handlers[0].formatter else None
    with cf.ProcessPoolExecutor(
        max_workers=workers,
        mp_context=ctx,
        initializer=_init_worker,
        initargs=(root.level, fmt),
    ) as pool:
        futures = {pool.submit(_call, job): job for job in ordered}
        try:
            for future in cf.as_completed(futures):
                job = futures[future]
                err = future.exception()
                yield Outcome(job, error=err) if err else Outcome(job, result=future.result())
        except BaseException:
            for f in futures:
                f.cancel()
            raise
