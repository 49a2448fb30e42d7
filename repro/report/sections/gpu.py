"""The GPU session in the reports: its own report's section, and the main report's summary of it.

``repro gpu-import`` unpacks a session's archive (:mod:`repro.gpu_session`) into ``runs/gpu/``,
laid out as ``runs/`` is, and builds ``reports/gpu/`` from it with the same code, claims and
verdict rules as the main report. This module adds what only a GPU session has: the device, the
phases and what they skipped, the measured step times (eager, CUDA graph, N stacked models), and
the ``paper`` profile's projected wall time from those step times
(:func:`repro.costs.project`), multiplied by the ratio of measured to predicted time of the
session's own runs. The main report (``runs/gpu/`` then seen from ``runs/``) quotes the session's
verdicts beside its own, each labelled with its scale, and links to ``gpu/report.html``.

``session.json`` is parsed where it is read into the records below (:class:`ImportedSession`);
one laid out otherwise than :mod:`repro.session` writes it is refused with its path named.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from repro.config import Params, load_params, params_from_dict
from repro.costs import Projection, StepTime, project
from repro.io import read_json
from repro.report.bench_records import optional
from repro.report.claims.evaluate import ClaimResult, evaluate_claims
from repro.report.claims.evidence import collect_evidence
from repro.report.figures import common as figures
from repro.report.labels import method_label
from repro.session import PARAMS_FILE, SESSION_FILE, check_schema

PAPER_PROFILE = Path(__file__).resolve().parents[3] / "profiles" / "paper.yaml"
REPORT_LINK = "gpu/report.html"
STACKING_FIGURE = "gpu_stacking.png"


def session_dir_of(runs_dir: Path) -> tuple[Path, bool]:
    """(the session's directory, whether ``runs_dir`` *is* a session's): ``runs/gpu`` seen from
    the main report's ``runs/``, or the GPU report's own ``runs/gpu``."""
    own = (runs_dir / SESSION_FILE).is_file()
    return (runs_dir if own else runs_dir / "gpu"), own


def read_session(session_dir: Path) -> tuple[dict[str, Any], Params] | None:
    """(session.json, the params the session ran) or None when no session was imported."""
    path = session_dir / SESSION_FILE
    if not path.is_file():
        return None
    session = check_schema(read_json(path), path)
    with open(session_dir / PARAMS_FILE, encoding="utf-8") as fh:
        return session, params_from_dict(yaml.safe_load(fh), "the session's params")


@dataclass(frozen=True)
class Environment:
    """Where a session ran: session.json's ``environment`` (:func:`repro.gpu_session.environment`);
    all None when the environment phase failed (the main report's summary renders without it)."""

    torch: str | None
    cuda: str | None
    date: str | None
    code_fingerprint: str | None
    gpu: str | None  # the CUDA device's name; None on a CPU (a dry run)
    cpu: str | None  # recorded on a CPU only
    gpu_memory_free_gib: float | None  # recorded on a GPU only
    gpu_memory_total_gib: float | None

    @property
    def hardware(self) -> str | None:
        return self.gpu or self.cpu

    @classmethod
    def parse(cls, raw: Mapping[str, Any]) -> Environment:
        return cls(
            torch=optional(raw.get("torch"), str),
            cuda=optional(raw.get("cuda"), str),
            date=optional(raw.get("date"), str),
            code_fingerprint=optional(raw.get("code_fingerprint"), str),
            gpu=optional(raw.get("gpu"), str),
            cpu=optional(raw.get("cpu"), str),
            gpu_memory_free_gib=optional(raw.get("gpu_memory_free_gib"), float),
            gpu_memory_total_gib=optional(raw.get("gpu_memory_total_gib"), float),
        )


@dataclass(frozen=True)
class SessionPhase:
    """One phase as the session recorded it (:class:`repro.session.PhaseRecord`)."""

    name: str
    status: str  # ok | failed | skipped | not run
    seconds: float
    detail: str


@dataclass(frozen=True)
class SessionTrain:
    """The session's main runs: the epochs it fitted to its budget, measured ÷ predicted wall
    time of the runs (the cost model of :mod:`repro.costs` against the clock), what it skipped."""

    epochs: int
    calibration: float | None  # None until a run finished
    skipped: tuple[str, ...]  # runs left out when the budget ran out


@dataclass(frozen=True)
class StudyOutcome:
    """One ablation study of the session: ran, skipped and why, or not finished."""

    name: str
    status: str  # ok | skipped | not finished (the studies phase failed while it ran)
    reason: str | None
    wall_seconds: float | None


@dataclass(frozen=True)
class StepRow:
    """One method × nz: eager and CUDA-graph milliseconds per step (NaN: not measured)."""

    method: str  # its label
    nz: int
    eager_ms: float
    graph_ms: float
    error: str | None  # why a mode could not run (the graph's first)

    @property
    def speedup(self) -> float:
        g = self.graph_ms
        return self.eager_ms / g if g == g and g > 0 else float("nan")


@dataclass(frozen=True)
class StackedRow:
    """N models of one shape stepped together (:mod:`repro.batched`): ms for all N per step."""

    method_label: str
    time: StepTime


@dataclass(frozen=True)
class ImportedSession:
    """A GPU session as imported into ``runs/gpu/``: its session.json and the params it ran."""

    dry_run: bool  # bench/gpu_session.sh --dry-run: a CPU and synthetic data
    environment: Environment
    phases: tuple[SessionPhase, ...]
    budget_seconds: float | None
    wall_seconds: float | None
    train: SessionTrain | None  # None: the train phase did not start
    studies: tuple[StudyOutcome, ...]
    step_times: tuple[StepTime, ...]
    params: Params

    @property
    def scale(self) -> str:
        """The session's scale in words: epochs, images, seeds, nz and the device."""
        t = self.params.train
        return (
            f"{t.epochs} epochs over {t.train_images:,} images, {len(t.seeds)} seeds, "
            f"nz {', '.join(map(str, self.params.model.nz))}, on {self.environment.hardware}"
        )

    @property
    def seeds(self) -> int:
        return len(self.params.train.seeds)

    @property
    def calibration(self) -> float:
        """Measured ÷ predicted wall time of the session's runs; 1 when none finished."""
        return (self.train.calibration if self.train else None) or 1.0

    @property
    def steps(self) -> tuple[StepRow, ...]:
        return step_rows(self.step_times)

    @property
    def stacked(self) -> tuple[StackedRow, ...]:
        """The measured stacked steps, in the order they were timed."""
        return tuple(
            StackedRow(method_label(t.method), t)
            for t in self.step_times
            if t.mode == "stacked" and t.error is None
        )

    @classmethod
    def parse(cls, session: Mapping[str, Any], params: Params) -> ImportedSession:
        train = session.get("train")
        return cls(
            dry_run=bool(session.get("dry_run")),
            environment=Environment.parse(session.get("environment") or {}),
            phases=tuple(
                SessionPhase(
                    str(p["name"]), str(p["status"]), float(p["seconds"]), str(p["detail"])
                )
                for p in session.get("phases", [])
            ),
            budget_seconds=optional(session.get("budget_seconds"), float),
            wall_seconds=optional(session.get("wall_seconds"), float),
            train=SessionTrain(
                epochs=int(train["epochs"]),
                calibration=optional(train.get("calibration"), float),
                skipped=tuple(map(str, train.get("skipped") or ())),
            )
            if train
            else None,
            studies=tuple(
                StudyOutcome(
                    name=str(name),
                    status=str(s.get("status", "not finished")),
                    reason=optional(s.get("reason"), str),
                    wall_seconds=optional(s.get("wall_seconds"), float),
                )
                for name, s in (session.get("studies") or {}).items()
            ),
            step_times=tuple(StepTime.from_dict(d) for d in session.get("step_times", [])),
            params=params,
        )


def load_session(session_dir: Path) -> ImportedSession | None:
    """The session imported into ``session_dir``, or None when there is none; a session.json
    laid out otherwise than :mod:`repro.session` writes it is a ValueError naming it."""
    found = read_session(session_dir)
    if found is None:
        return None
    try:
        return ImportedSession.parse(*found)
    except (KeyError, TypeError, ValueError, AttributeError) as err:
        path = session_dir / SESSION_FILE
        raise ValueError(f"{path}: malformed session ({type(err).__name__}: {err})") from err


def step_rows(times: Sequence[StepTime]) -> tuple[StepRow, ...]:
    """One row per method × nz of the single-model measurements, in the order timed."""
    single = {(t.method, t.nz, t.mode): t for t in times if t.n_models == 1 and t.mode != "stacked"}
    rows = []
    for method, nz in dict.fromkeys((m, nz) for m, nz, _ in single):
        eager, graph = single.get((method, nz, "eager")), single.get((method, nz, "graph"))
        rows.append(
            StepRow(
                method=method_label(method),
                nz=nz,
                eager_ms=eager.ms_per_step if eager else float("nan"),
                graph_ms=graph.ms_per_step if graph else float("nan"),
                error=(graph.error if graph and graph.error else None)
                or (eager.error if eager and eager.error else None),
            )
        )
    return tuple(rows)


def stack_frame(rows: Sequence[StackedRow]) -> pd.DataFrame:
    """The stacked measurements as the figure draws them, with display labels."""
    return pd.DataFrame([r.time.to_dict() | {"method_label": r.method_label} for r in rows])


def plot_stacking(frame: pd.DataFrame, singles: Sequence[StepTime], path: Path) -> Path:
    """Model-steps per second against N models stepped together (the settings timed at several
    N), with one model's eager and CUDA-graph rates as dashed and dotted lines."""
    figures.set_theme()
    sweep = frame.groupby(["method", "nz"])["n_models"].transform("nunique") > 1
    frame = frame[sweep].assign(setting=lambda f: f["method_label"] + ", nz " + f["nz"].astype(str))
    fig, ax = figures.plt.subplots(figsize=(7.2, 4.0))
    palette = figures._palette(list(dict.fromkeys(frame["setting"])))
    figures.sns.lineplot(
        data=frame,
        x="n_models",
        y="model_steps_per_second",
        hue="setting",
        marker="o",
        palette=palette,
        ax=ax,
    )
    for (method, nz), rows in frame.groupby(["method", "nz"]):
        color = palette[rows["setting"].iloc[0]]
        for t in singles:
            if (t.method, t.nz, t.n_models) == (method, nz, 1) and t.error is None:
                style = {"eager": "--", "graph": ":"}.get(t.mode)
                if style:
                    ax.axhline(t.model_steps_per_second, color=color, ls=style, lw=1)
    ax.set_xscale("log")
    ax.set_yscale("log")
    figures._plain_log_x(ax, sorted(frame["n_models"].unique()))
    ax.yaxis.set_major_formatter(figures.FuncFormatter(lambda v, _: f"{v:g}"))
    ax.yaxis.set_minor_formatter(figures.FuncFormatter(lambda v, _: ""))
    ax.set(
        xlabel="models stepped together (stacked, torch.func.vmap)",
        ylabel="model training steps per second",
        title=f"One device step shared by N models (batch {int(frame['batch_size'].iloc[0])}); "
        "lines: one model, eager (--) and CUDA graph (··)",
    )
    ax.title.set_fontsize(9)
    ax.get_legend().set_title(None)
    fig.tight_layout()
    return figures._save(fig, path)


@dataclass(frozen=True)
class VerdictRow:
    """One claim's verdict in this report beside the GPU session's."""

    id: str
    quantity: str
    ours: str
    gpu: str


def _verdict_rows(
    ours: Sequence[ClaimResult], gpu: Sequence[ClaimResult]
) -> tuple[VerdictRow, ...]:
    """The claims either report tested, in this report's order."""
    by_id = {r.id: r for r in gpu}
    return tuple(
        VerdictRow(r.id, str(r.claim.get("quantity", r.id)), r.verdict, g.verdict)
        for r in ours
        if (g := by_id.get(r.id)) is not None and (r.tested or g.tested)
    )


@dataclass(frozen=True)
class GPUSection:
    """The template's ``gpu``: the GPU report's own section (``own``), or the main report's
    summary of the imported session; the defaults: no session imported."""

    own: bool = False
    session: ImportedSession | None = None
    paper: Projection | None = None  # the paper profile's projected cost on the session's device
    figure: str | None = None  # the stacking figure (own report, stacked steps measured)
    verdicts: tuple[VerdictRow, ...] = ()  # the main report's: this report's beside the session's
    link: str = REPORT_LINK

    @property
    def present(self) -> bool:
        return self.session is not None


def gpu_section(
    runs_dir: Path,
    *,
    registry: Mapping[str, Any],
    verdicts: Sequence[ClaimResult],
    fig_dir: Path,
) -> GPUSection:
    """The section from the session under ``runs_dir`` (its own report's, or the main report's
    summary with the session's verdicts); the stacking figure goes into ``fig_dir``."""
    session_dir, own = session_dir_of(runs_dir)
    session = load_session(session_dir)
    if session is None:
        return GPUSection()
    times = session.step_times
    paper = (
        project(load_params(PAPER_PROFILE), times, calibration=session.calibration)
        if times
        else None
    )
    if not own:
        gpu_verdicts = evaluate_claims(
            registry, collect_evidence(session_dir, session_dir, session.params)
        )
        rows = _verdict_rows(verdicts, gpu_verdicts)
        return GPUSection(own=False, session=session, paper=paper, verdicts=rows)
    figure = None
    if session.stacked:
        plot_stacking(stack_frame(session.stacked), times, fig_dir / STACKING_FIGURE)
        figure = f"figures/{STACKING_FIGURE}"
    return GPUSection(own=True, session=session, paper=paper, figure=figure)
