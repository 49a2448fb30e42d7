"""The ``bench/`` scripts' result files as typed records: ``benchmarks.json``
(``bench/train_speed.py``, with ``bench/profile_step.py``'s phases and
``bench/compile_check.py``'s findings), ``scaling.json`` / ``scaling_cuda.json``
(``bench/scaling.py``) and ``pipeline_speed.json`` (``bench/pipeline_speed.py``).

Each file is parsed where it is read (:func:`load`); one that is not valid JSON or not laid out
as its script writes it is left out with a warning naming it. The report's speed section
(:mod:`repro.report.sections.speed`) lays these records out.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, TypeVar

from repro.io import read_json

T = TypeVar("T")


def _object(raw: Any, what: str) -> Mapping[str, Any]:
    """``raw`` if it is a JSON object, {} if it is empty or null; else the file is malformed."""
    if not raw:
        return {}
    if not isinstance(raw, Mapping):
        raise ValueError(f"{what} is not a JSON object")
    return raw


def optional(value: Any, kind: Callable[[Any], T]) -> T | None:
    """``kind(value)``, or None for a field the file leaves null or out."""
    return None if value is None else kind(value)


def _one(value: Any, key: str) -> Any:
    """``value[key]`` of an object that records one value per loop (or device), else ``value``."""
    return value.get(key) if isinstance(value, Mapping) else value


@dataclass(frozen=True)
class Benchmark:
    """One timing of ``bench/train_speed.py``: the same work by our loop and by the original's."""

    name: str
    device: str
    ours: float
    baseline: float
    unit: str
    ratio: float  # original ÷ ours (above 1: ours is faster), as recorded or from the two
    note: str

    @classmethod
    def parse(cls, raw: Mapping[str, Any]) -> Benchmark:
        ours, baseline = float(raw["ours"]), float(raw["baseline"])
        return cls(
            name=str(raw.get("name")),
            device=str(raw.get("device", "")),
            ours=ours,
            baseline=baseline,
            unit=str(raw.get("unit", "")),
            ratio=float(raw.get("ratio") or baseline / ours),
            note=str(raw.get("note", "")),
        )


@dataclass(frozen=True)
class PhaseTimes:
    """Milliseconds per GON step in each phase of one loop (``bench/profile_step.py``); None
    where the file records none."""

    data: float | None
    inner_forward: float | None
    inner_grad: float | None
    outer_forward: float | None
    outer_backward: float | None
    optimizer: float | None  # Adam's step
    total: float | None

    @classmethod
    def parse(cls, raw: Mapping[str, Any]) -> PhaseTimes:
        return cls(**{f.name: optional(raw.get(f.name), float) for f in fields(cls)})


@dataclass(frozen=True)
class PhaseRow:
    """Where the time of one GON step goes on one device, ours and the original loop."""

    device: str
    ours: PhaseTimes
    baseline: PhaseTimes

    @property
    def bound(self) -> float | None:
        """Amdahl's law: the original loop with its data cost replaced by ours is the fastest
        ours can be, so original ÷ that bounds the speed-up (None when data is all the time)."""
        total_b, data_b = self.baseline.total or 0.0, self.baseline.data or 0.0
        data_o = self.ours.data or 0.0
        return total_b / (total_b - data_b + data_o) if total_b > data_b else None


@dataclass(frozen=True)
class CompileResult:
    """What ``torch.compile`` did to one variant of the training step (``bench/compile_check.py``)."""

    device: str
    variant: str
    ms_per_step: float | None  # None: it failed
    error: str  # why it failed
    loss_drift: float  # relative difference of its first loss from eager's (0: the same)

    @property
    def result(self) -> str:
        """The speed or the error's first line, and any drift from eager's numbers."""
        if self.ms_per_step is not None:
            what = f"{self.ms_per_step:.1f} ms per step"
        else:
            what = f"fails: {next(iter(self.error.splitlines()), '')}"
        if self.loss_drift:  # a compiled variant that does not compute the same numbers
            what += f" (its first loss differs from eager by {self.loss_drift:.2%})"
        return what

    @classmethod
    def parse(cls, device: str, variant: str, raw: Mapping[str, Any]) -> CompileResult:
        return cls(
            device=device,
            variant=variant,
            ms_per_step=float(raw["ms_per_step"]) if raw.get("status") == "ok" else None,
            error=str(raw.get("error", "")),
            loss_drift=float(raw.get("first_loss_rel_diff_vs_eager") or 0.0),
        )


@dataclass(frozen=True)
class BenchmarkFile:
    """``reports/benchmarks.json`` as the report shows it; the defaults: not measured."""

    benchmarks: tuple[Benchmark, ...] = ()  # those with both loops timed
    machine: str | None = None
    torch: str | None = None
    threads: int | None = None  # CPU threads of our loop
    setting: str | None = None
    phases: tuple[PhaseRow, ...] = ()
    compile: tuple[CompileResult, ...] = ()

    @classmethod
    def parse(cls, raw: Mapping[str, Any]) -> BenchmarkFile:
        return cls(
            benchmarks=tuple(
                Benchmark.parse(b)
                for b in raw.get("benchmarks") or ()
                if isinstance(b, Mapping)
                and b.get("ours") is not None
                and b.get("baseline") is not None
            ),
            machine=optional(_one(raw.get("machine"), "device_name"), str),
            torch=optional(raw.get("torch"), str),
            threads=optional(_one(raw.get("threads"), "ours"), int),
            setting=optional(raw.get("setting"), str),
            phases=_phase_rows(_object(raw.get("profile"), "profile")),
            compile=_compile_results(_object(raw.get("compile"), "compile")),
        )


def _phase_rows(profile: Mapping[str, Any]) -> tuple[PhaseRow, ...]:
    """A row per device whose profile has both loops' phases."""
    rows = []
    for device, prof in profile.items():
        phases = _object(_object(prof, device).get("phases_ms_per_step"), "phases_ms_per_step")
        ours = _object(phases.get("ours"), "ours")
        base = _object(phases.get("baseline"), "baseline")
        if ours and base:
            rows.append(PhaseRow(str(device), PhaseTimes.parse(ours), PhaseTimes.parse(base)))
    return tuple(rows)


def _compile_results(found: Mapping[str, Any]) -> tuple[CompileResult, ...]:
    """Each variant's result per device; the file's other entries (load, numeric checks) have
    no status and are not results."""
    return tuple(
        CompileResult.parse(str(device), str(variant), r)
        for device, variants in found.items()
        for variant, r in _object(variants, device).items()
        if isinstance(r, Mapping) and "status" in r
    )


@dataclass(frozen=True)
class BatchPoint:
    """One GON's training throughput at one batch size."""

    batch_size: int
    images_per_s: float


@dataclass(frozen=True)
class ModelsPoint:
    """Seconds per epoch of N models of one shape, trained together (stacked parameters,
    ``repro.batched``) or one after another; None where not timed."""

    n_models: int
    batched_seconds: float | None
    sequential_seconds: float | None
    ratio: float | None  # batched ÷ sequential, as recorded (below 1: together is faster)


@dataclass(frozen=True)
class ScalingRun:
    """One ``scaling*.json`` of ``bench/scaling.py``: one device's throughput and stacking."""

    device: str
    machine: str | None
    threads: int | None
    timing: str | None  # how the times were taken, in words
    images: int  # per epoch (0 when not recorded)
    batch_size: tuple[BatchPoint, ...]
    models: tuple[ModelsPoint, ...]

    @classmethod
    def parse(cls, raw: Mapping[str, Any]) -> ScalingRun:
        return cls(
            device=str(raw.get("device", "cpu")),
            machine=optional(raw.get("machine"), str),
            threads=optional(raw.get("threads"), int),
            timing=optional(raw.get("timing"), str),
            images=int(raw.get("images_per_epoch") or 0),
            batch_size=tuple(
                BatchPoint(int(r["batch_size"]), float(r["images_per_s"]))
                for r in raw.get("batch_size") or ()
            ),
            models=tuple(
                ModelsPoint(
                    n_models=int(r["n_models"]),
                    batched_seconds=optional(r.get("batched_seconds"), float),
                    sequential_seconds=optional(r.get("sequential_seconds"), float),
                    ratio=optional(r.get("ratio"), float),
                )
                for r in raw.get("models") or ()
            ),
        )


@dataclass(frozen=True)
class PipelineRun:
    """One whole ``dvc repro`` of the main comparison timed by ``bench/pipeline_speed.py``."""

    name: str  # baseline (one process per model) or ours (group stages)
    commit: str
    stages: int
    wall_seconds: float
    model_steps: int
    rate: float  # model-steps per second
    threads: int | None  # per run
    workers: int | str | None  # group workers, or the baseline's "one process per model"

    @classmethod
    def parse(cls, name: str, raw: Mapping[str, Any]) -> PipelineRun:
        workers = raw.get("workers")
        return cls(
            name=name,
            commit=str(raw.get("commit", "")),
            stages=int(raw.get("stages", 0)),
            wall_seconds=float(raw["wall_seconds"]),
            model_steps=int(raw.get("model_steps", 0)),
            rate=float(raw["model_steps_per_second"]),
            threads=optional(raw.get("num_threads"), int),
            workers=workers if isinstance(workers, str) else optional(workers, int),
        )


@dataclass(frozen=True)
class PipelineProfile:
    """The reduced profile both pipelines ran."""

    dataset: str
    epochs: int
    train_images: int
    seeds: tuple[int, ...]


@dataclass(frozen=True)
class PipelineSpeed:
    """``reports/pipeline_speed.json``: per-model stages against group stages, side by side on
    one machine."""

    baseline: PipelineRun
    ours: PipelineRun
    machine: str  # "cpu, N cores"
    profile: PipelineProfile

    @property
    def rows(self) -> tuple[PipelineRun, PipelineRun]:
        return self.baseline, self.ours

    @property
    def speedup(self) -> float:
        return self.baseline.wall_seconds / self.ours.wall_seconds

    @classmethod
    def parse(cls, raw: Mapping[str, Any]) -> PipelineSpeed | None:
        """None when the file lacks either pipeline's result."""
        results = raw.get("results")
        if not isinstance(results, Mapping) or not {"baseline", "ours"} <= set(results):
            return None
        machine, profile = _object(raw.get("machine"), "machine"), raw["profile"]
        return cls(
            baseline=PipelineRun.parse("baseline", results["baseline"]),
            ours=PipelineRun.parse("ours", results["ours"]),
            machine=f"{machine.get('cpu', '?')}, {machine.get('cores', '?')} cores",
            profile=PipelineProfile(
                dataset=str(profile["dataset"]),
                epochs=int(profile["epochs"]),
                train_images=int(profile["train_images"]),
                seeds=tuple(int(s) for s in profile["seeds"]),
            ),
        )


def load(
    path: Path, parse: Callable[[Mapping[str, Any]], T | None], warnings: list[str]
) -> T | None:
    """``parse`` of the JSON object in ``path``: None when the file is absent or empty, and
    when it is not valid JSON or not laid out as its script writes it, with a warning naming it."""
    if not path.is_file():
        return None
    try:
        raw = read_json(path)
    except ValueError as err:  # read_json's message names the path
        warnings.append(f"`{path.name}` could not be read ({err}): left out")
        return None
    try:
        raw = _object(raw, "the file")
        return parse(raw) if raw else None  # an empty object is no measurement
    except (ValueError, TypeError, KeyError) as err:
        warnings.append(
            f"`{path.name}` could not be read ({path}: {type(err).__name__}: {err}): left out"
        )
        return None
