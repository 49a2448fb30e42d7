"""MLflow tracking: the only module that imports mlflow (lazily, so training runs without it).

Conventions:

* Backend: a SQLite file ``mlflow.db`` at the repository root, addressed by an **absolute** URI
  built from ``DVC_ROOT`` when DVC runs the stage (``dvc exp run --temp/--queue`` run stages in
  a temporary copy under ``.dvc/tmp/exps/``; neither a relative URI nor the copy's own root would
  reach the user's store); ``MLFLOW_TRACKING_URI`` overrides it (e.g. a shared tracking server).
  Artifacts go to ``mlartifacts/`` beside it. Both are git- and DVC-ignored.
* One MLflow run per executed DVC stage, and nested under it one run per model the stage
  trained (``parent_run_id``), in one experiment per study group; params are the
  flattened configuration, logged once; per-epoch metrics carry their epoch as ``step``;
  tags name the stage, git commit, profile, device and params hash.
* ``REPRO_TRACKING=off`` (or ``tracking.enabled: false``) switches tracking off, e.g. on a GPU
  box without mlflow; the stage then records ``mlflow_run_id: null``.
* A stage that fails marks its run FAILED with the error as a tag, so a crash is visible in
  ``mlflow ui``; nothing of the run already logged is lost. A stage killed outright (SIGKILL)
  cannot; its run is marked KILLED when the stage next runs (:func:`close_abandoned_runs`,
  by the ``pid`` and ``host_id`` tags every run carries).
* Nothing machine-specific is recorded: params, tags, the run name and the error tag pass
  through :func:`portable` (the repository's and the store's directories become relative, the
  home directory ``~``), so a store shared over ``MLFLOW_TRACKING_URI`` or exported holds no
  user paths. ``MlflowClient.create_run`` (unlike ``mlflow.start_run``) adds no tags of its own:
  no user name, source path or environment variables.

Concurrent stages (``dvc queue start -j 2``, parallel ``dvc repro`` of independent stages):
several processes open the one SQLite store at once. **Why a lock:** MLflow (3.x) builds a
fresh store's schema in each process that finds it missing (``SqlAlchemyStore.__init__`` runs
``create_all`` plus every alembic migration, unguarded), so two stages that start together
against a store that does not exist yet both migrate it. Measured before this lock (two to four
processes, fresh store): 10 of 10 trials lost at least one stage, with ``duplicate column name:
step``, ``table _alembic_tmp_tags already exists`` or alembic's ``Online migration expected to
match one row ... 0 found``; when every process failed, the store was left half-migrated and
refused all later runs. So :func:`_store_lock` takes an exclusive ``fcntl.flock`` on
``<store>.lock`` (next to the database file, so on the same filesystem, not in a per-user
``/tmp``) around opening the store and getting or creating the experiment: the first process
migrates, the others then find the schema complete, and the experiment is created once. The lock
file is removed on release (no litter in the repository); an acquirer re-checks that the file it
locked is still the one on disk. Once the store exists, concurrent writes are safe without us:
MLflow sets ``PRAGMA busy_timeout = 20000`` on every session, and four processes logging 300
steps each at once (tests/test_concurrency.py does a smaller version) never saw ``database is
locked``. WAL is not switched on: it needs shared memory, which fails on network filesystems,
and the rollback journal with a busy timeout suffices here.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import socket
import subprocess
import time
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from repro.config import TrackingConfig

ENV_SWITCH = "REPRO_TRACKING"


def repo_root(start: Path | None = None) -> Path:
    """The directory holding ``dvc.yaml`` (the study's root), searched upwards from ``start``."""
    here = (start or Path.cwd()).resolve()
    for candidate in (here, *here.parents):
        if (candidate / "dvc.yaml").exists():
            return candidate
    return here


def store_root(root: Path | None = None) -> Path:
    """The directory of ``mlflow.db`` and ``mlartifacts/``: the user's repository.

    DVC sets ``DVC_ROOT`` for every stage it runs, to the repository's root also when the
    stage runs in an experiment's temporary copy (``dvc exp run --temp/--queue`` work in
    ``.dvc/tmp/exps/...``, deleted afterwards): found upwards from the working directory, the
    store would be the copy's own and lost with it. Outside DVC, the root found from ``root``.
    """
    dvc_root = os.environ.get("DVC_ROOT")
    if dvc_root and Path(dvc_root).is_dir():
        return Path(dvc_root).resolve()
    return root or repo_root()


def tracking_uri(root: Path | None = None) -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{store_root(root) / 'mlflow.db'}"


def tracking_enabled(cfg: TrackingConfig) -> bool:
    switch = os.environ.get(ENV_SWITCH, "").strip().lower()
    if switch in ("0", "off", "false", "no"):
        return False
    return cfg.enabled


def git_commit(root: Path | None = None) -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=root or repo_root(),
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        )
        return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"


LOCK_TIMEOUT_S = 300.0


def portable(text: str, *roots: Path) -> str:
    """``text`` without this machine's directories: paths under ``roots`` relative to them
    (the root itself ``.``), then the user's home directory as ``~``."""
    for root in sorted({str(r) for r in roots}, key=len, reverse=True):
        if len(root) > 1:
            text = re.sub(re.escape(root) + r"(/|(?![\w.-]))", lambda m: "" if m[1] else ".", text)
    home = str(Path.home())
    if len(home) > 1:
        text = re.sub(re.escape(home) + r"(?=/|(?![\w.-]))", "~", text)
    return text


def sqlite_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` URI; None for other backends or in-memory SQLite."""
    if not uri.startswith("sqlite:///"):
        return None
    path = uri.removeprefix("sqlite:///").split("?", 1)[0]
    return Path(path).absolute() if path and path != ":memory:" else None


@contextlib.contextmanager
def _store_lock(uri: str, timeout_s: float = LOCK_TIMEOUT_S) -> Iterator[None]:
    """Exclusive inter-process lock on a SQLite store (see the module docstring for why).

    A no-op for server or non-SQLite URIs and where ``fcntl`` does not exist (Windows).
    """
    db = sqlite_path(uri)
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        fcntl = None
    if db is None or fcntl is None:
        yield
        return
    db.parent.mkdir(parents=True, exist_ok=True)
    lock = db.with_name(db.name + ".lock")
    deadline = time.monotonic() + timeout_s
    while True:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise TimeoutError(
                            f"waited {timeout_s:.0f} s for the lock {lock}: another live "
                            "process holds it while opening the MLflow store"
                        ) from None
                    time.sleep(0.05)
            # The holder before us unlinks the file before unlocking it: if what we locked is no
            # longer the file at that path, a newcomer may lock a new file, so start again.
            try:
                same = os.stat(lock).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
        except BaseException:
            os.close(fd)
            raise
        if same:
            break
        os.close(fd)
    try:
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(lock)
        os.close(fd)  # releases the flock


class Tracker:
    """What a stage may record. The base class records nothing (tracking off)."""

    run_id: str | None = None

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None: ...

    def log_artifact(self, path: str | Path) -> None: ...

    def log_rows(self, rows: Iterable[Mapping[str, Any]], label: str) -> None:
        """A table, one metric per numeric cell: ``<row[label]>.s<row["seed"]>.<column>``."""
        self.log_metrics(
            {
                f"{r[label]}.s{r['seed']}.{k}": float(v)
                for r in rows
                for k, v in r.items()
                if k not in (label, "seed") and isinstance(v, (int, float))
            }
        )


class MlflowTracker(Tracker):
    def __init__(self, client: Any, run_id: str):
        self.client, self.run_id = client, run_id

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        """All values of one step in one ``log_batch`` call (not one request per value)."""
        import time

        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        batch = [Metric(k, float(v), now, step or 0) for k, v in metrics.items()]
        self.client.log_batch(self.run_id, metrics=batch)

    def log_artifact(self, path: str | Path) -> None:
        if Path(path).exists():
            self.client.log_artifact(self.run_id, str(path))


# MLflow 3's UI opens an experiment on the view its kind names; without the tag it guesses the
# GenAI overview (traces), empty here. Model training is "custom_model_development"
# (the value the MLflow UI's experiment-kind selector writes).
EXPERIMENT_TAGS = {"mlflow.experimentKind": "custom_model_development"}


def _experiment_id(client: Any, name: str, root: Path, uri: str) -> str:
    """The experiment ``name``, created if missing.

    With the local SQLite store, its artifacts go to ``<root>/mlartifacts``. With a tracking
    server the server decides (its ``--artifacts-destination``): a ``file://`` location of the
    machine that happened to create the experiment would leave every other machine's
    artifacts on that machine's disk, unreachable from the server.
    """
    exp = client.get_experiment_by_name(name)
    if exp is None:
        location = (root / "mlartifacts").as_uri() if sqlite_path(uri) is not None else None
        try:
            return client.create_experiment(name, artifact_location=location, tags=EXPERIMENT_TAGS)
        except Exception:  # created concurrently by another stage
            exp = client.get_experiment_by_name(name)
            if exp is None:
                raise
    for key, value in EXPERIMENT_TAGS.items():  # an experiment made by an older version
        if exp.tags.get(key) != value:
            client.set_experiment_tag(exp.experiment_id, key, value)
    return exp.experiment_id


PID_TAG, HOST_TAG = "pid", "host_id"


def host_id() -> str:
    """This machine, recognisably but not by name: the hostname's SHA-256, shortened."""
    return hashlib.sha256(socket.gethostname().encode()).hexdigest()[:12]


def _alive(pid: int) -> bool:
    """Whether ``pid`` is a running process; a zombie (killed, not yet reaped) is not."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    try:  # Linux: a killed process stays a zombie until its parent reaps it; kill(0) succeeds
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state not in ("Z", "X")


def close_abandoned_runs(client: Any, exp_id: str, stage: str, successor: str) -> list[str]:
    """Mark KILLED the RUNNING runs of ``stage`` whose process on this machine is gone.

    A stage killed with SIGKILL (the OOM killer, ``kill -9``, a power cut) runs no code, so
    its run stays RUNNING for ever. When the stage runs again (the next ``dvc repro``), the
    old run is closed as KILLED with an ``error`` tag naming the run that took over. Only runs
    started on this machine whose process no longer exists are touched: a run of the same
    stage that is alive (another queue worker) or on another machine is left alone.
    """
    closed = []
    stale = client.search_runs(  # this stage's open runs started on this machine
        [exp_id],
        filter_string=(
            f"tags.stage = '{stage}' and tags.{HOST_TAG} = '{host_id()}' "
            "and attributes.status = 'RUNNING'"
        ),
        max_results=1000,
    )
    for run in stale:
        tags = run.data.tags
        if run.info.run_id == successor:
            continue
        if not tags.get(PID_TAG, "").isdigit() or _alive(int(tags[PID_TAG])):
            continue
        client.set_tag(
            run.info.run_id,
            "error",
            f"process {tags[PID_TAG]} ended without closing this run (killed: SIGKILL, out of "
            f"memory or power loss); the stage ran again as run {successor}",
        )
        client.set_terminated(run.info.run_id, status="KILLED")
        closed.append(run.info.run_id)
    return closed


@contextlib.contextmanager
def tracked_run(
    cfg: TrackingConfig,
    *,
    stage: str,
    run_name: str,
    params: dict[str, Any],
    tags: dict[str, str] | None = None,
    experiment: str | None = None,
    parent_run_id: str | None = None,
) -> Iterator[Tracker]:
    """One MLflow run around a stage's work; FAILED (with the reason) if the work raises.

    ``parent_run_id``: this run is one model of a group stage, nested under the stage's run
    (MLflow's ``mlflow.parentRunId`` tag: ``mlflow ui`` shows it under its parent).
    """
    if not tracking_enabled(cfg):
        yield Tracker()
        return
    try:
        from mlflow.tracking import MlflowClient
    except ImportError as err:
        raise RuntimeError(
            "tracking.enabled is true but mlflow is not installed; install it (pip install -e .) "
            f"or set {ENV_SWITCH}=off to train without tracking"
        ) from err
    root = repo_root()
    uri = tracking_uri(root)
    with _store_lock(uri):  # creates/migrates a new store and the experiment in one process
        client = MlflowClient(tracking_uri=uri)
        exp_id = _experiment_id(client, experiment or cfg.experiment, store_root(root), uri)
    roots = (root, store_root(root))
    run_name = portable(run_name, *roots)
    all_tags = {"stage": stage, "git_commit": git_commit(root), "mlflow.runName": run_name} | (
        tags or {}
    )
    if os.environ.get("DVC_EXP_NAME"):
        all_tags["dvc_exp_name"] = os.environ["DVC_EXP_NAME"]
    if parent_run_id:
        all_tags["mlflow.parentRunId"] = parent_run_id
    all_tags = {k: portable(str(v), *roots) for k, v in all_tags.items()}
    all_tags |= {PID_TAG: str(os.getpid()), HOST_TAG: host_id()}
    run = client.create_run(exp_id, run_name=run_name, tags=all_tags)
    run_id = run.info.run_id
    close_abandoned_runs(client, exp_id, stage, run_id)
    from mlflow.entities import Param

    flat = [Param(k, portable(str(v), *roots)[:6000]) for k, v in params.items()]
    for i in range(0, len(flat), 100):  # log_batch accepts at most 100 params per call
        client.log_batch(run_id, params=flat[i : i + 100])
    try:
        yield MlflowTracker(client, run_id)
    except BaseException as err:
        client.set_tag(run_id, "error", portable(f"{type(err).__name__}: {err}", *roots)[:5000])
        client.set_terminated(run_id, status="FAILED")
        raise
    client.set_terminated(run_id, status="FINISHED")
