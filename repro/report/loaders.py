"""Read what the pipeline wrote: run metrics, curves, study summaries, benchmark, claims.

One module owns the on-disk layout (see :mod:`repro.report.render` for the list of files), so
the report and the claim verdicts (:mod:`repro.report.claims.evaluate`) read the same evidence the same
way. Every loader tolerates a missing or incomplete input and says so in a warning: a partial
pipeline still yields a report in which the missing part is "not run" or "not tested".
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from repro.io import atomic_write, read_json
from repro.records import (
    DiagnosisMetrics,
    EfficiencyMetrics,
    EncodingMetrics,
    ImplicitMetrics,
    MainMetrics,
    R,
    VariationalMetrics,
    read_record,
)
from repro.report.study_runs import finite_or_none
from repro.result_files import read_frame, read_results_json

PACKAGE_DIR = Path(__file__).resolve().parent
CLAIMS_PATH = PACKAGE_DIR / "claims.yaml"
# Subdirectories of runs/ that hold studies, not main GON/AE runs.
STUDY_DIRS = (
    "efficiency",
    "convergence",
    "studies",
    "diagnosis",
    "encoding",
    "transfer",
    "variational",
    "implicit",
)
BENCH_FILE = "bench_gfe_gradients.json"


@dataclass(frozen=True)
class Run:
    """One trained model: its held-out metrics and (when present) its training history."""

    dataset: str
    method: str
    nz: int
    seed: int
    path: Path
    metrics: dict[str, Any]
    history: pd.DataFrame | None

    @property
    def name(self) -> str:
        return str(self.metrics.get("run", f"{self.dataset}/{self.path.name}"))

    @property
    def recon(self) -> Path | None:
        png = self.path / "recon.png"
        return png if png.is_file() else None


def load_claims(path: Path = CLAIMS_PATH) -> dict[str, Any]:
    """Published claims, sources and protocol constants (see claims.yaml)."""
    with open(path, encoding="utf-8") as fh:
        return yaml.safe_load(fh)


def _read_history(path: Path) -> pd.DataFrame | None:
    return read_frame(path) if path.is_file() else None


def _scan_runs(
    run_dirs: Iterable[Path],
    kind: type[R],
    label: Callable[[Path], str],
    curve_name: str,
    what: str,
) -> tuple[list[tuple[Path, R, pd.DataFrame | None]], list[str]]:
    """(run dir, metrics, curve) for every run directory with a ``metrics.json`` of ``kind``.

    A run killed before evaluation has a curve but no metrics; the report says so instead of
    averaging it in or crashing, so a partial pipeline still yields a readable report. A
    metrics file of another kind is refused with its path (:func:`repro.records.read_record`).
    """
    found, warnings = [], []
    for run_dir in sorted(run_dirs):
        metrics_path = run_dir / "metrics.json"
        if not metrics_path.is_file():
            warnings.append(f"`{label(run_dir)}` has no metrics.json (incomplete run): left out")
            continue
        m = read_record(kind, metrics_path)
        curve = _read_history(run_dir / curve_name)
        if curve is None:
            warnings.append(f"`{m.run}` has no {curve_name}: no {what}")
        found.append((run_dir, m, curve))
    return found, warnings


def load_runs(runs_dir: Path) -> tuple[list[Run], list[str]]:
    """All GON/AE runs with a ``metrics.json``; directories without one are reported, not fatal."""
    if not runs_dir.is_dir():
        return [], [f"runs directory {runs_dir} does not exist"]
    # runs/main/<dataset>-nz<nz>/<method>-s<seed>/ (repro.config.RunSpec.run_dir)
    run_dirs = (p for p in (runs_dir / "main").glob("*/*") if p.is_dir())
    found, warnings = _scan_runs(
        run_dirs,
        MainMetrics,
        lambda d: str(d.relative_to(runs_dir)),
        "history.csv",
        "training curve",
    )
    runs = [
        Run(m.dataset, m.method, m.nz, m.seed, path=d, metrics=m.to_dict(), history=curve)
        for d, m, curve in found
    ]
    return runs, warnings


def load_reference(runs_dir: Path, dataset: str) -> dict[str, Any] | None:
    """The dataset's reference losses (zero image, mean image, PCA), or None if not computed."""
    path = runs_dir / dataset / "reference.json"
    return read_json(path) if path.is_file() else None


def _keys_containing(obj: Any, word: str, prefix: str = "") -> list[tuple[str, str]]:
    """All (dotted key, value) leaves whose key mentions ``word``, at any depth.

    The manifests are written by another module (:func:`repro.data.prepare_dataset`); walking them
    generically keeps the report working when their nesting changes.
    """
    out: list[tuple[str, str]] = []
    if isinstance(obj, Mapping):
        for k, v in obj.items():
            key = f"{prefix}.{k}" if prefix else str(k)
            if word in str(k).lower() and not isinstance(v, (Mapping, list)):
                out.append((key, str(v)))
            else:
                out.extend(_keys_containing(v, word, key))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            out.extend(_keys_containing(v, word, f"{prefix}[{i}]"))
    return out


@dataclass(frozen=True)
class DataManifest:
    """data/<dataset>.manifest.json: where the data came from and what was hashed and resized.

    ``hashes`` are the (dotted key, digest) leaves whose key mentions sha256, without their
    ``expected`` twins (a manifest is only written when every actual hash equals its expected
    one; ``verified`` says whether pinned hashes existed); ``resize`` the leaves describing the
    resize (not the hashes of resized images).
    """

    source: str | None
    verified: bool
    hashes: tuple[tuple[str, str], ...]
    resize: tuple[tuple[str, str], ...]

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> DataManifest:
        source = obj.get("source")
        return cls(
            source=None if source is None else str(source),
            verified=bool(obj.get("verified")),
            hashes=tuple(
                (k, v) for k, v in _keys_containing(obj, "sha256") if "expected" not in k.lower()
            ),
            resize=tuple(
                (k, v) for k, v in _keys_containing(obj, "resize") if "sha256" not in k.lower()
            ),
        )


def load_manifest(data_dir: Path, dataset: str) -> DataManifest | None:
    """The dataset's manifest, or None if the data were not prepared; a file that is not a JSON
    object is refused with its path."""
    path = data_dir / f"{dataset}.manifest.json"
    if not path.is_file():
        return None
    obj = read_json(path)
    if not isinstance(obj, Mapping):
        raise ValueError(
            f"{path}: not a data manifest (a JSON object); delete it and re-run stage data"
        )
    return DataManifest.from_json(obj)


@dataclass(frozen=True)
class EfficiencyRun:
    """One run of the data-efficiency study: its final scores and (when present) its curve."""

    dataset: str
    method: str
    train_size: int
    seed: int
    path: Path
    metrics: dict[str, Any]
    curve: pd.DataFrame | None

    @property
    def name(self) -> str:
        return str(self.metrics.get("run", f"efficiency/{self.dataset}/{self.path.name}"))

    def final(self, key: str) -> float | None:
        """A value of the last evaluation point: metrics.json's ``final``, else curve.csv's last row."""
        final = self.metrics.get("final") or {}
        if final.get(key) is not None:
            return float(final[key])
        if self.curve is not None and not self.curve.empty and key in self.curve:
            return float(self.curve[key].iloc[-1])
        return None


def load_efficiency_runs(eff_dir: Path) -> tuple[list[EfficiencyRun], list[str]]:
    """All runs under runs/efficiency/<dataset>/ with a metrics.json; none when not run."""
    if not eff_dir.is_dir():
        return [], []
    found, warnings = _scan_runs(
        (p for p in eff_dir.glob("*/*") if p.is_dir()),
        EfficiencyMetrics,
        lambda d: f"efficiency/{d.relative_to(eff_dir)}",
        "curve.csv",
        "learning curve",
    )
    runs = [
        EfficiencyRun(m.dataset, m.method, m.train_size, m.seed, d, m.to_dict(), curve)
        for d, m, curve in found
    ]
    return runs, warnings


@dataclass(frozen=True)
class ConvergenceStudy:
    """runs/convergence/<dataset>/: summary.json and, when present (DVC cache), curves.csv."""

    dataset: str
    summary: dict[str, Any]
    curves: pd.DataFrame | None


def load_convergence(conv_dir: Path) -> list[ConvergenceStudy]:
    """Every dataset's convergence study under ``conv_dir`` (none when it is absent)."""
    if not conv_dir.is_dir():
        return []
    return [
        ConvergenceStudy(
            dataset=path.parent.name,
            summary=read_results_json(path),
            curves=read_frame(path.parent / "curves.csv")
            if (path.parent / "curves.csv").is_file()
            else None,
        )
        for path in sorted(conv_dir.glob("*/summary.json"))
    ]


@dataclass(frozen=True)
class BenchResult:
    """One gradient mode of the benchmark: its time, peak and growth of resident memory, forward
    gradient evaluations, and its gradient's cosine and relative difference against backprop."""

    mode: str | None
    seconds: float | None
    peak_rss_mib: float | None
    rss_growth_mib: float | None
    forward_nfe: float | None
    cosine_vs_backprop: float | None
    relative_difference_vs_backprop: float | None

    @classmethod
    def from_json(cls, row: Any) -> BenchResult:
        """A row of ``results``; a ValueError says what is wrong with a malformed one."""
        if not isinstance(row, Mapping):
            raise ValueError(f"has a result that is not an object ({row!r})")
        mode = row.get("mode")
        if mode is not None and not isinstance(mode, str):
            raise ValueError(f"has a result whose `mode` is not a string ({mode!r})")
        values = {f.name: row.get(f.name) for f in fields(cls) if f.name != "mode"}
        for key, v in values.items():
            if v is not None and (isinstance(v, bool) or not isinstance(v, int | float)):
                raise ValueError(f"has `{key}` = {v!r} for mode {mode!r}, not a number")
        return cls(mode, **{k: None if v is None else float(v) for k, v in values.items()})


@dataclass(frozen=True)
class GradientBenchmark:
    """reports/bench_gfe_gradients.json (bench/gfe_gradients.py): the machine it ran on, its
    settings (as the command line gave them) and one result per gradient mode."""

    benchmark: str | None
    device: str | None
    machine: str | None
    torch: str | None
    settings: tuple[tuple[str, Any], ...]
    results: tuple[BenchResult, ...]

    @classmethod
    def from_json(cls, obj: Any) -> GradientBenchmark:
        """The parsed file; a ValueError says what is wrong with a malformed one."""
        if not isinstance(obj, Mapping) or not isinstance(obj.get("results"), list):
            raise ValueError("has no `results` list")
        settings = obj.get("settings") or {}
        if not isinstance(settings, Mapping):
            raise ValueError("has `settings` that are not an object")
        header = ("benchmark", "device", "machine", "torch")
        text = {k: None if obj.get(k) is None else str(obj[k]) for k in header}
        return cls(
            **text,
            settings=tuple((str(k), v) for k, v in settings.items()),
            results=tuple(BenchResult.from_json(r) for r in obj["results"]),
        )


def load_benchmark(out_dir: Path) -> tuple[GradientBenchmark | None, list[str]]:
    """reports/bench_gfe_gradients.json when the benchmark was run; a bad file is a warning."""
    path = out_dir / BENCH_FILE
    if not path.is_file():
        return None, []
    try:
        bench = read_json(path)
    except ValueError as err:
        return None, [f"{BENCH_FILE} could not be read ({err}): benchmark left out"]
    try:
        return GradientBenchmark.from_json(bench), []
    except ValueError as err:
        return None, [f"{BENCH_FILE} {err}: benchmark left out"]


def load_diagnosis(runs_dir: Path, dataset: str) -> DiagnosisMetrics | None:
    """runs/diagnosis/<dataset>/gon_mlp.json (stage diagnose), or None when not run."""
    path = runs_dir / "diagnosis" / dataset / "gon_mlp.json"
    return read_record(DiagnosisMetrics, path) if path.is_file() else None


def load_encoding(runs_dir: Path, dataset: str) -> EncodingMetrics | None:
    """runs/encoding/<dataset>/summary.json (stage encoding), or None when not run."""
    path = runs_dir / "encoding" / dataset / "summary.json"
    return read_record(EncodingMetrics, path) if path.is_file() else None


@dataclass(frozen=True)
class ModelRun:
    """One model of the variational or implicit study: its record and its directory."""

    record: VariationalMetrics | ImplicitMetrics
    path: Path

    def png(self, name: str) -> Path | None:
        path = self.path / name
        return path if path.is_file() else None

    def field(self, path: str) -> float | None:
        """A dotted field of the record (``test.neg_elbo``, ``samples.score.direct``); None when
        absent or not finite."""
        value: Any = self.record
        for part in path.split("."):
            value = value.get(part) if isinstance(value, Mapping) else getattr(value, part, None)
        return finite_or_none(value)

    def copy_png(self, name: str, dest: Path) -> bool:
        """This run's figure ``name`` written to ``dest``; False when the run has none."""
        if (src := self.png(name)) is None:
            return False
        with atomic_write(dest, "wb") as fh:
            fh.write(src.read_bytes())
        return True


def by_seed(runs: Iterable[ModelRun], path: str) -> dict[int, float]:
    """:meth:`ModelRun.field` ``path`` of each run by seed; runs without it are left out."""
    return {r.record.seed: v for r in runs if (v := r.field(path)) is not None}


def load_model_runs(study_dir: Path, kind: type[R]) -> list[ModelRun]:
    """Every ``<dataset>/<run>/metrics.json`` under ``study_dir`` (runs/variational/ or
    runs/implicit/), sorted by path; none when the stage was not run."""
    return [
        ModelRun(read_record(kind, path), path.parent)
        for path in sorted(study_dir.glob("*/*/metrics.json"))
    ]


def load_variational(runs_dir: Path) -> list[ModelRun]:
    """runs/variational/<dataset>/<method>-s<seed>/ (stage variational)."""
    return load_model_runs(runs_dir / "variational", VariationalMetrics)


def load_implicit(runs_dir: Path) -> list[ModelRun]:
    """runs/implicit/<dataset>/<run>/ (stage implicit)."""
    return load_model_runs(runs_dir / "implicit", ImplicitMetrics)
