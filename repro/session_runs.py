"""The GPU session's training phases: how many epochs fit, the main runs, then the studies.

The main runs are the profile's every dataset × method × nz × seed, trained through the group
engine (:mod:`repro.engine`, one after another: one process owns the GPU) by
:func:`repro.groups.main_run`, at the most epochs (at most the profile's ``train.epochs``) that
the measured step times (:mod:`repro.steptime`, :mod:`repro.costs`) fit in what is left of the budget. They run seed
by seed, so that a session cut short keeps complete, paired seeds; before each run the time it is
predicted to take, corrected by the measured ÷ predicted ratio of the runs so far, is compared
with what is left, and the rest is skipped (and named) when it does not fit. The activation and
multistep studies then run at the same epochs, each only if it fits.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import yaml

from repro.config import Params, RunSpec, params_from_dict, run_spec
from repro.costs import StepTime, main_run_cost
from repro.engine import Job, run_group
from repro.groups import main_run
from repro.runtime import select_device
from repro.session import PARAMS_FILE, Session, Skipped

log = logging.getLogger("gpu_session")

SESSION_STUDIES = ("activation", "multistep")


def _times(session: Session) -> list[StepTime]:
    if "step_times" not in session.info:
        raise Skipped("no step times were measured, so no training length can be planned")
    return [StepTime.from_dict(d) for d in session.info["step_times"]]


def with_epochs(params: Params, *, epochs: int, studies_epochs: int | None = None) -> Params:
    """``params`` with ``train.epochs`` (and ``studies.epochs``) replaced, validated again."""
    d = params.to_dict()
    d["train"]["epochs"] = epochs
    if studies_epochs is not None:
        d["studies"]["epochs"] = studies_epochs
    return params_from_dict(d, "the session's params")


def session_specs(params: Params) -> list[RunSpec]:
    """Every main run, seed by seed: a session cut short keeps complete, paired seeds."""
    t = params.train
    return [
        run_spec(params, dataset, method, nz, seed)
        for seed in t.seeds
        for nz in params.model.nz
        for dataset in params.data.datasets
        for method in t.methods
    ]


def decide_epochs(params: Params, times: list[StepTime], seconds: float) -> tuple[int, float]:
    """The most epochs (at most ``train.epochs``) whose predicted time fits ``seconds``."""
    runs = [main_run_cost(params, times, s.method, s.nz) for s in session_specs(params)]
    per_epoch, fixed = sum(c.per_epoch for c in runs), sum(c.fixed for c in runs)
    if not (per_epoch > 0 and fixed >= 0):  # NaN: a method's step time is missing
        raise RuntimeError("a main run's step time was not measured (see step_times.json)")
    epochs = min(params.train.epochs, int((seconds - fixed) // per_epoch))
    if epochs < 1:
        raise Skipped(
            f"one epoch of the {len(runs)} main runs needs about {per_epoch + fixed:.0f} s; "
            f"{seconds:.0f} s are left"
        )
    return epochs, per_epoch * epochs + fixed


def train_main(session: Session, params: Params) -> str:
    """The main runs at the epochs that fit; stops before a run the budget cannot finish."""
    times = _times(session)
    epochs, predicted = decide_epochs(params, times, session.left())
    params = with_epochs(params, epochs=epochs, studies_epochs=epochs)
    session.params = params
    (session.work / PARAMS_FILE).write_text(yaml.safe_dump(params.to_dict(), sort_keys=False))
    specs = session_specs(params)
    jobs = [
        Job(s.name, main_run, {"spec": s, "params": params, "root": session.work}) for s in specs
    ]
    predicted_s = {
        s.name: main_run_cost(params, times, s.method, s.nz).seconds(epochs) for s in specs
    }
    log.info(
        "%d main runs at %d epochs: predicted %.0f s, %.0f s left",
        len(jobs),
        epochs,
        predicted,
        session.left(),
    )
    info: dict[str, Any] = {"epochs": epochs, "predicted_seconds": predicted, "runs": []}
    session.info["train"] = info
    actual = expected = 0.0
    failed, groups = [], run_group(jobs, workers=1)  # equal costs: the seed-major order is kept
    t = time.perf_counter()
    for i, outcome in enumerate(groups):
        wall = time.perf_counter() - t
        actual, expected = actual + wall, expected + predicted_s[outcome.job.name]
        ok = outcome.error is None
        info["runs"].append(
            {
                "run": outcome.job.name,
                "status": "ok" if ok else "failed",
                "wall_seconds": wall,
                "predicted_seconds": predicted_s[outcome.job.name],
                "error": None if ok else f"{type(outcome.error).__name__}: {outcome.error}",
            }
        )
        if not ok:
            failed.append(outcome.job.name)
        info["calibration"] = actual / expected
        session.write_archive()
        rest = jobs[i + 1 :]
        if rest and predicted_s[rest[0].name] * info["calibration"] > session.left():
            groups.close()
            info["skipped"] = [j.name for j in rest]
            break
        t = time.perf_counter()
    done = sum(r["status"] == "ok" for r in info["runs"])
    detail = f"{done} of {len(jobs)} runs at {epochs} epochs (measured/predicted time {info['calibration']:.2f})"
    if info.get("skipped"):
        detail += f"; {len(info['skipped'])} skipped: the budget ran out"
    if failed:
        raise RuntimeError(f"{len(failed)} main runs failed ({', '.join(failed)}); {detail}")
    return detail


def run_studies(session: Session) -> str:
    """The activation, then the multistep study at the main runs' epochs, each if it fits."""
    from repro.studies import study_jobs, study_result, write_study_results

    params, times = session.params, _times(session)
    calibration = session.info.get("train", {}).get("calibration", 1.0)
    info: dict[str, Any] = {}
    session.info["studies"] = info
    for study in SESSION_STUDIES:
        plan = study_jobs(params, study, session.work)
        predicted = calibration * sum(
            main_run_cost(
                j.kwargs["vparams"], times, j.kwargs["variant"].method, j.kwargs["variant"].nz
            ).seconds(params.studies.epochs)
            * j.kwargs["variant"].steps
            for j in plan.jobs
        )
        entry = info[study] = {"runs": len(plan.jobs), "predicted_seconds": predicted}
        if not predicted <= session.left():
            entry |= {
                "status": "skipped",
                "reason": f"needs about {predicted:.0f} s at {params.studies.epochs} epochs; "
                f"{session.left():.0f} s were left",
            }
            log.info("%s study skipped: %s", study, entry["reason"])
            continue
        t = time.perf_counter()
        results = [study_result(o) for o in run_group(plan.jobs, workers=1)]
        write_study_results(
            session.work, params, plan, results, device=select_device(params.train.device)
        )
        entry |= {"status": "ok", "wall_seconds": time.perf_counter() - t}
        session.write_archive()
    ran = [s for s, e in info.items() if e["status"] == "ok"]
    skipped = "; ".join(f"{s} skipped ({e['reason']})" for s, e in info.items() if s not in ran)
    if not ran:
        raise Skipped(skipped)
    return f"ran {', '.join(ran)} at {params.studies.epochs} epochs" + (
        f"; {skipped}" if skipped else ""
    )
