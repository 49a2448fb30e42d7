"""The GPU session in the reports: its own report's section, and the main report's summary of it.

``repro gpu-import`` unpacks a session's archive (:mod:`repro.gpu_session`) into ``runs/gpu/``,
laid out as ``runs/`` is, and builds ``reports/gpu/`` from it with the same code, claims and
verdict rules as the main report. This module adds what only a GPU session has: the device, the
phases and what they skipped, the measured step times (eager, CUDA graph, N stacked models), and
the ``paper`` profile's projected wall time from those step times
(:func:`repro.costs.project`), multiplied by the ratio of measured to predicted time of the
session's own runs. The main report (``runs/gpu/`` then seen from ``runs/``) quotes the session's
verdicts beside its own, each labelled with its scale, and links to ``gpu/report.html``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from repro.config import Params, load_params, params_from_dict
from repro.costs import StepTime, project
from repro.io import read_json
from repro.report.claims.evaluate import ClaimResult, collect_evidence, evaluate_claims
from repro.report.figures import common as figures
from repro.report.labels import method_label
from repro.session import PARAMS_FILE, SESSION_FILE, check_schema

PAPER_PROFILE = Path(__file__).resolve().parents[3] / "profiles" / "paper.yaml"
REPORT_LINK = "gpu/report.html"


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


def step_rows(times: Sequence[StepTime]) -> list[dict[str, Any]]:
    """One row per method × nz: eager and CUDA-graph milliseconds per step, and their ratio."""
    single = {(t.method, t.nz, t.mode): t for t in times if t.n_models == 1 and t.mode != "stacked"}
    rows = []
    for method, nz in dict.fromkeys((m, nz) for m, nz, _ in single):
        eager, graph = single.get((method, nz, "eager")), single.get((method, nz, "graph"))
        e = eager.ms_per_step if eager else float("nan")
        g = graph.ms_per_step if graph else float("nan")
        rows.append(
            {
                "method": method_label(method),
                "nz": nz,
                "eager_ms": e,
                "graph_ms": g,
                "speedup": e / g if g == g and g > 0 else float("nan"),
                "error": (graph.error if graph and graph.error else None)
                or (eager.error if eager and eager.error else None),
            }
        )
    return rows


def stack_frame(times: Sequence[StepTime]) -> pd.DataFrame:
    """The stacked measurements (ms for all N models per step), with display labels."""
    rows = [
        t.to_dict() | {"method_label": method_label(t.method)}
        for t in times
        if t.mode == "stacked" and t.error is None
    ]
    return pd.DataFrame(rows)


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


def _verdict_rows(ours: Sequence[ClaimResult], gpu: Sequence[ClaimResult]) -> list[dict[str, str]]:
    by_id = {r.id: r for r in gpu}
    rows = []
    for r in ours:
        g = by_id.get(r.id)
        if g is None or (not r.tested and not g.tested):
            continue
        rows.append(
            {
                "id": r.id,
                "quantity": str(r.claim.get("quantity", r.id)),
                "ours": r.verdict,
                "gpu": g.verdict,
            }
        )
    return rows


def _scale(params: Params, session: Mapping[str, Any]) -> str:
    t, env = params.train, session.get("environment") or {}
    return (
        f"{t.epochs} epochs over {t.train_images:,} images, {len(t.seeds)} seeds, "
        f"nz {', '.join(map(str, params.model.nz))}, on {env.get('gpu') or env.get('cpu')}"
    )


def gpu_section(
    runs_dir: Path,
    *,
    registry: Mapping[str, Any],
    verdicts: Sequence[ClaimResult],
    fig_dir: Path,
) -> dict[str, Any]:
    """The template's ``gpu`` context: ``present`` False when no session was imported."""
    session_dir, own = session_dir_of(runs_dir)
    found = read_session(session_dir)
    if found is None:
        return {"present": False, "own": False, "paper": None}
    session, params = found
    times = [StepTime.from_dict(d) for d in session.get("step_times", [])]
    train = session.get("train") or {}
    calibration = float(train.get("calibration") or 1.0)
    stacked = stack_frame(times)
    paper = project(load_params(PAPER_PROFILE), times, calibration=calibration) if times else None
    section: dict[str, Any] = {
        "present": True,
        "own": own,
        "link": REPORT_LINK,
        "dry_run": bool(session.get("dry_run")),
        "environment": session.get("environment") or {},
        "phases": session.get("phases", []),
        "budget_seconds": session.get("budget_seconds"),
        "wall_seconds": session.get("wall_seconds"),
        "train": train,
        "studies": session.get("studies") or {},
        "scale": _scale(params, session),
        "seeds": len(params.train.seeds),
        "steps": step_rows(times),
        "stacked": stacked.to_dict("records"),
        "paper": paper,
        "figure": None,
        "verdicts": [],
    }
    if own:
        if not stacked.empty:
            plot_stacking(stacked, times, fig_dir / "gpu_stacking.png")
            section["figure"] = "figures/gpu_stacking.png"
    else:
        gpu_verdicts = evaluate_claims(registry, collect_evidence(session_dir, session_dir, params))
        section["verdicts"] = _verdict_rows(verdicts, gpu_verdicts)
    return section
