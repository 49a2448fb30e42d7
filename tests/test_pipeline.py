"""End to end: the real `dvc repro` on a tiny profile, in a temporary copy of the repository.

The pipeline runs once per module (the ``study`` fixture, about three minutes); the tests then
inspect what it left: its outputs, the MLflow store read directly and read over the REST API of
an ``mlflow server`` (what ``repro ui`` / ``mlflow ui`` shows a user), and a second ``dvc repro``
that must be a no-op (last, so the MLflow tests see the store as the first repro left it).
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from repro.config import load_params
from repro.io import load_torch
from repro.result_files import read_results_json
from tests.conftest import ROOT, shrink

pytestmark = pytest.mark.e2e  # every test reads the module-scoped `dvc repro` run

# The DVC stages (their `stage` tag in MLflow) the tiny profile must track, at least.
EXPECTED_STAGES = frozenset(
    {
        "data@synthetic",
        "reference@synthetic",
        "train@synthetic-8",
        "efficiency",
        "convergence",
        "study@activation",
        "study@multistep",
        "study@latent",
        "report",
    }
)
# The models a group stage trains: one nested MLflow run each, under the stage's own run.
GROUP_CHILDREN = {
    "train@synthetic-8": {
        "synthetic/gon-nz8-s0",
        "synthetic/ae-nz8-s0",
        "synthetic/ae_linear-nz8-s0",
    },
    "efficiency": {
        f"efficiency/synthetic/{m}-n{n}-s0" for m in ("gfe_adaptive", "gon", "ae") for n in (32, 64)
    },
    "study@multistep": {
        "multistep/synthetic-k1/gon-elu-nz32-k1-s0",
        "multistep/synthetic-k2/gon-elu-nz32-k2-s0",
        "multistep/synthetic-k1/gon-elu-nz32-k1-s1",
        "multistep/synthetic-k2/gon-elu-nz32-k2-s1",
    },
    "transfer": {f"transfer/synthetic/{m}-s0" for m in ("gfe_adaptive", "gon", "ae")},
    "variational": {f"variational/synthetic/{m}-s{s}" for m in ("vgon", "vae") for s in (0, 1)},
    "implicit": {
        *(f"implicit/synthetic/{m}-s{s}" for m in ("gon", "ae") for s in (0, 1)),
        *(f"implicit/synthetic/gon_sr16-s{s}" for s in (0, 1)),
    },
}
# Metrics a run of each stage kind (the stage name before `@`) must carry: a stage's own run
# (key: kind) and each model's nested run (key: (kind, "child")). `data` logs no metrics, only
# artifacts; every other kind must log some (checked separately).
REQUIRED_METRICS = {
    "report": {
        "claims_reproduced",
        "claims_not_reproduced",
        "claims_inconclusive",
        "claims_not_tested",
    },
    "train": {"stage_seconds"},
    ("train", "child"): {
        "train_mse_per_pixel",
        "val_mse_per_pixel",
        "n_params",
        "train_seconds",
        "losses.batch.test.mse_per_pixel",
        "losses.batch.test.sse_per_image",
        "losses.running.test.mse_per_pixel",
        "affinity_error.batch",
        "curve_test_mse_per_pixel",
    },
    ("efficiency", "child"): {"curve_test_sse_per_image"},
    ("study", "child"): {"train_mse_per_pixel", "curve_test_mse_per_pixel"},
}
METRIC_FREE_KINDS = {"data"}
# Artifacts a run of each stage kind logs (file: URIs into the copy's mlartifacts/).
REQUIRED_ARTIFACTS = {
    "data": {"synthetic.manifest.json"},
    ("train", "child"): {"metrics.json", "history.csv", "curve.csv", "recon.png"},
    "report": {"report.md", "report.html", "claims.csv"},
}
LOOPBACK = "127.0.0.1"


def _kind(stage: str) -> str:
    return stage.split("@", 1)[0]


def _role(run: dict) -> str | tuple[str, str]:
    """A served run's key into REQUIRED_*: its stage kind, or (kind, "child") for a model's run."""
    tags = {t["key"]: t["value"] for t in run.get("data", {}).get("tags", [])}
    kind = _kind(tags.get("stage", ""))
    return (kind, "child") if "mlflow.parentRunId" in tags else kind


def _committed_inputs() -> set[str]:
    """Files under runs/, reports/, data/ that a stage reads and no stage writes (the bench/
    scripts' results the report quotes): a fresh clone has them, the copy needs them too."""
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text(encoding="utf-8"))["stages"]
    bodies = [st.get("do", st) for st in stages.values()]
    deps = {str(d) for b in bodies for d in b.get("deps", [])}
    outs = {
        str(next(iter(o))) if isinstance(o, dict) else str(o)
        for b in bodies
        for key in ("outs", "metrics", "plots")
        for o in b.get(key, [])
    }
    return {d for d in deps - outs if d.startswith(("runs/", "reports/", "data/")) and "$" not in d}


def _copy_checkout(dest: Path) -> None:
    """Tracked files plus new, not-ignored ones: what a fresh clone of this working tree holds."""
    inputs = _committed_inputs()
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split("\0")
    for rel in filter(None, listed):
        src = ROOT / rel
        if (
            src.is_file()
            and (rel in inputs or not rel.startswith(("runs/", "reports/", "data/")))
            and rel != "dvc.lock"
        ):
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)


def _tail(text: str, n: int = 3000) -> str:
    return text[-n:]


@dataclasses.dataclass
class TinyStudy:
    """The temporary copy after its first `dvc repro`."""

    repo: Path
    env: dict[str, str]
    epochs: int
    first: subprocess.CompletedProcess
    seconds: float

    @property
    def trace(self) -> Path:
        """Where tests/params_trace/sitecustomize.py notes each stage process's params reads."""
        return self.repo.parent / "params_trace"

    def dvc(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "dvc", *args],
            cwd=self.repo,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=900,
        )

    @property
    def store_uri(self) -> str:
        return f"sqlite:///{self.repo / 'mlflow.db'}"


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> TinyStudy:
    repo = tmp_path_factory.mktemp("pipeline") / "study"
    repo.mkdir()
    _copy_checkout(repo)
    params = shrink(load_params(ROOT / "params.yaml")).to_dict()
    params["tracking"]["enabled"] = True
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    env = {
        k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "REPRO_TRACKING")
    }
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    # the stages run the copied checkout's code, not an installed one; the second entry notes
    # which params each stage process reads (tests/params_trace/sitecustomize.py)
    env["PYTHONPATH"] = os.pathsep.join([str(repo), str(ROOT / "tests" / "params_trace")])
    env["REPRO_PARAMS_TRACE"] = str(repo.parent / "params_trace")
    (repo.parent / "params_trace").mkdir()
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    tiny = TinyStudy(
        repo=repo,
        env=env,
        epochs=params["train"]["epochs"],
        first=subprocess.CompletedProcess([], -1),
        seconds=0.0,
    )
    t0 = time.perf_counter()
    tiny.first = tiny.dvc("repro")
    tiny.seconds = time.perf_counter() - t0
    if tiny.first.returncode != 0:
        pytest.fail(
            f"`dvc repro` in {repo} failed (exit {tiny.first.returncode}):\n"
            f"--- stdout ---\n{_tail(tiny.first.stdout)}\n--- stderr ---\n{_tail(tiny.first.stderr)}",
            pytrace=False,
        )
    return tiny


# --------------------------------------------------------------------------------------------
# The MLflow tracking server, and its REST API through the standard library only


@dataclasses.dataclass
class MlflowServer:
    url: str
    host: str
    port: int
    cmd: list[str]
    proc: subprocess.Popen
    log: Path
    startup_seconds: float

    def log_tail(self, n: int = 3000) -> str:
        return _tail(self.log.read_text(errors="replace"), n) if self.log.exists() else ""

    def api(self, method: str, path: str, body: dict | None = None, **query: Any) -> dict:
        """One REST call (``path`` below /api/2.0/mlflow/); the decoded JSON answer."""
        url = f"{self.url}/api/2.0/mlflow/{path}"
        if query:
            url += "?" + urllib.parse.urlencode(query)
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(
            url, data=data, method=method, headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                return json.loads(resp.read() or b"{}")
        except urllib.error.HTTPError as err:
            raise AssertionError(
                f"{method} {url} -> HTTP {err.code}: {err.read()[:2000]!r}\n"
                f"--- server log ---\n{self.log_tail()}"
            ) from err

    def search_experiments(self) -> list[dict]:
        experiments, token = [], None
        while True:
            body = {"max_results": 100} | ({"page_token": token} if token else {})
            page = self.api("POST", "experiments/search", body)
            experiments += page.get("experiments", [])
            token = page.get("next_page_token")
            if not token:
                return experiments

    def search_runs(self, experiment_ids: list[str], page_size: int = 10) -> list[dict]:
        """Every run, a small page at a time (the pagination is part of what is tested)."""
        runs, token = [], None
        while True:
            body = {"experiment_ids": experiment_ids, "max_results": page_size}
            if token:
                body["page_token"] = token
            page = self.api("POST", "runs/search", body)
            runs += page.get("runs", [])
            token = page.get("next_page_token")
            if not token:
                return runs


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=2) as resp:
            return resp.status == 200
    except (urllib.error.URLError, OSError):
        return False


def _stop(proc: subprocess.Popen) -> None:
    """SIGTERM (mlflow forwards it to its uvicorn child), then SIGKILL; the whole group."""

    def signal_group(sig: int) -> None:
        try:
            os.killpg(proc.pid, sig)  # the server runs in its own session: pgid == its pid
        except ProcessLookupError:
            pass

    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=15)
    signal_group(signal.SIGTERM)  # a child left behind (uvicorn) gets the same treatment
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.2)
    signal_group(signal.SIGKILL)


def _start_server(study: TinyStudy, log: Path, timeout: float = 60.0) -> MlflowServer:
    """`mlflow server` (what `mlflow ui` runs) on the study's store, on a free loopback port."""
    artifacts = (study.repo / "mlartifacts").as_uri()  # where repro.tracking puts artifacts
    env = dict(study.env)
    # No huey job runner (it serves LLM-evaluation jobs, not the runs browsed here, and leaves
    # a storage directory in /dev/shm behind) and no usage telemetry from a test.
    env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] = "false"
    env["MLFLOW_DISABLE_TELEMETRY"] = "true"
    for _attempt in range(3):  # the free port may be taken between finding and binding it
        port = _free_port(LOOPBACK)
        cmd = [
            sys.executable,
            "-m",
            "mlflow",
            "server",
            "--backend-store-uri",
            study.store_uri,
            "--default-artifact-root",
            artifacts,
            "--artifacts-destination",
            artifacts,
            "--host",
            LOOPBACK,
            "--port",
            str(port),
            "--workers",
            "1",
        ]
        url = f"http://{LOOPBACK}:{port}"
        t0 = time.perf_counter()
        with log.open("w") as out:
            proc = subprocess.Popen(
                cmd,
                cwd=study.repo,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        server = MlflowServer(url, LOOPBACK, port, cmd, proc, log, 0.0)
        try:
            while proc.poll() is None and time.perf_counter() - t0 < timeout:
                if _healthy(url):
                    server.startup_seconds = time.perf_counter() - t0
                    return server
                time.sleep(0.25)
        except BaseException:
            _stop(proc)
            raise
        exit_code = proc.poll()
        _stop(proc)
        text = server.log_tail()
        if exit_code is not None and "address already in use" in text.lower():
            continue  # lost the race for the port: try another one
        what = (
            f"exited with {exit_code} before answering GET {url}/health"
            if exit_code is not None
            else f"did not answer GET {url}/health with 200 within {timeout:.0f} s"
        )
        pytest.fail(f"`{' '.join(cmd)}` {what}\n--- server log ---\n{text}", pytrace=False)
    pytest.fail(f"no free port for the MLflow server after 3 tries:\n{log.read_text()[-3000:]}")


@pytest.fixture(scope="module")
def mlflow_server(
    study: TinyStudy, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[MlflowServer]:
    server = _start_server(study, tmp_path_factory.mktemp("mlflow-server") / "server.log")
    try:
        yield server
    finally:
        _stop(server.proc)


@pytest.fixture(scope="module")
def served_runs(mlflow_server: MlflowServer) -> dict[str, list[dict]]:
    """The runs the server lists, by their `stage` tag (runs/search over every experiment)."""
    experiments = mlflow_server.search_experiments()
    assert experiments, f"the server lists no experiments\n{mlflow_server.log_tail()}"
    runs = mlflow_server.search_runs([e["experiment_id"] for e in experiments])
    by_stage: dict[str, list[dict]] = {}
    for run in runs:
        tags = {t["key"]: t["value"] for t in run.get("data", {}).get("tags", [])}
        by_stage.setdefault(tags.get("stage", "<no stage tag>"), []).append(run)
    return by_stage


def _missing_stages(found: set[str]) -> str:
    missing = sorted(EXPECTED_STAGES - found)
    return f"stages without a run: {missing}; stages found: {sorted(found, key=str)}"


def _listening_addresses(port: int) -> list[str] | None:
    """The local addresses of LISTEN sockets on ``port`` (Linux /proc), None if unreadable."""
    found, readable = [], False
    for table, family in (("/proc/net/tcp", socket.AF_INET), ("/proc/net/tcp6", socket.AF_INET6)):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        readable = True
        for line in lines:
            fields = line.split()
            address, hex_port = fields[1].rsplit(":", 1)
            if fields[3] != "0A" or int(hex_port, 16) != port:  # 0A: TCP_LISTEN
                continue
            raw = b"".join(  # /proc prints each 32-bit word in host (little-endian) order
                bytes.fromhex(address[i : i + 8])[::-1] for i in range(0, len(address), 8)
            )
            found.append(socket.inet_ntop(family, raw))
    return found if readable else None


# --------------------------------------------------------------------------------------------
# The tests, in the order they run


def test_first_repro_builds_the_report_and_every_run_output(study: TinyStudy):
    repo = study.repo
    report = (repo / "reports" / "report.md").read_text()
    assert "tiny" in report
    for method in ("gon", "ae", "ae_linear"):
        for name in ("metrics.json", "history.csv", "curve.csv", "recon.png"):
            path = repo / "runs" / "main" / "synthetic-nz8" / f"{method}-s0" / name
            assert path.is_file(), f"{path} missing after `dvc repro`"
        assert (repo / "models" / "main" / "synthetic-nz8" / f"{method}-s0" / "model.pt").is_file()
    # The group's DVC metrics: per BN mode × method the mean over seeds (one seed here: its loss)
    headline = json.loads((repo / "runs" / "main" / "synthetic-nz8.json").read_text())
    for method in ("gon", "ae", "ae_linear"):
        run = repo / "runs" / "main" / "synthetic-nz8" / f"{method}-s0" / "metrics.json"
        losses = json.loads(run.read_text())["losses"]
        for mode in losses:
            assert headline[mode][method] == losses[mode]["test"]["sse_per_image"]
    # The report's DVC metrics: the headline BN mode's numbers of each dataset, and the verdicts
    metrics = json.loads((repo / "reports" / "metrics.json").read_text())
    headline_bn = load_params(repo / "params.yaml").evaluate.headline_bn
    assert metrics["synthetic"] == headline[headline_bn]
    assert set(metrics) - {"synthetic"} == {
        "reproduced",
        "not_reproduced",
        "inconclusive",
        "not_tested",
    }
    # Results apart from provenance: the seconds and run ids are in the gitignored siblings, the
    # model file holds only what training determines
    run = repo / "runs" / "main" / "synthetic-nz8" / "gon-s0"
    assert "seconds" not in (run / "metrics.json").read_text()
    assert "train_seconds" in json.loads((run / "metrics.provenance.json").read_text())
    assert "seconds" not in (run / "history.csv").read_text()
    assert "seconds" in (run / "history.provenance.csv").read_text()
    model = repo / "models" / "main" / "synthetic-nz8" / "gon-s0" / "model.pt"
    assert not [k for k in load_torch(model)["summary"] if "seconds" in k]
    assert (repo / "dvc.lock").is_file()
    for cell in ("activation/synthetic-elu", "multistep/synthetic-k2", "latent/synthetic-nz4"):
        assert (repo / "runs" / "studies" / cell / "metrics.json").is_file(), cell
        assert (repo / "runs" / "studies" / cell / "curves.csv").is_file(), cell


# Params that label a run rather than decide it: where it is logged (tracking) and the name of
# the settings it ran under (profile: a tag and a field of each record, the settings themselves
# being the other keys). Changing them must not re-run a stage, so stages do not declare them.
NOT_RESULT_PARAMS = ("tracking.", "profile")


def _declared_params() -> dict[str, set[str]]:
    """The params each stage script depends on in DVC's eyes, by script (the trace's key): the
    keys under ``params`` (``""`` for a whole file, ``- params.yaml:``) and those the stage is
    templated with (``${data.datasets}`` in ``foreach``/``matrix``, ``${efficiency.dataset}`` in
    its command or paths): DVC re-runs or re-generates a stage when those change."""
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text(encoding="utf-8"))["stages"]
    declared: dict[str, set[str]] = {}
    for stage in stages.values():
        body = stage.get("do", stage)
        script = next(w for w in str(body["cmd"]).split() if w.endswith(".py"))
        keys = declared.setdefault(Path(script).name, set())
        for item in body.get("params", []):
            keys.update([""] if isinstance(item, dict) else [str(item)])
        templated = re.findall(r"\$\{([\w.]+)\}", json.dumps(stage))
        keys.update(k for k in templated if not k.startswith("item"))
    return declared


def _undeclared(reads: dict[str, set[str]], declared: dict[str, set[str]]) -> dict[str, list[str]]:
    """Per stage script, the keys it read that DVC does not see it depend on."""
    out = {}
    for script, keys in sorted(reads.items()):
        if script not in declared:  # dvc itself
            continue
        missing = sorted(
            k
            for k in keys
            if not k.startswith(NOT_RESULT_PARAMS)
            and not any(d in ("", k) or k.startswith(f"{d}.") for d in declared[script])
        )
        if missing:
            out[script] = missing
    return out


def test_each_stage_declares_every_param_it_reads(study: TinyStudy):
    """A param a stage reads but does not declare would leave the stage up to date in DVC's
    eyes after the param changed: its results would be stale and `dvc repro` silent."""
    reads: dict[str, set[str]] = {}
    for trace in study.trace.glob("*.jsonl"):
        for line in trace.read_text(encoding="utf-8").splitlines():
            note = json.loads(line)
            script = next((a for a in note["argv"] if a.endswith(".py")), "")
            reads.setdefault(Path(script).name, set()).add(note["key"])
    ran = {f"{_kind(s)}.py" for s in EXPECTED_STAGES}
    assert ran <= set(reads), f"the trace saw no params read by {sorted(ran - set(reads))}"
    assert _undeclared(reads, _declared_params()) == {}


def test_an_undeclared_param_is_caught():
    """The check above can fail: what a stage reads outside its declared keys and templates."""
    reads = {
        "train.py": {"train.epochs", "convergence.method", "tracking.enabled", "profile"},
        "convergence.py": {"efficiency.batch_size", "efficiency.steps"},
        "report.py": {"convergence.method"},
        "data.py": {"data.datasets"},
    }
    assert _undeclared(reads, _declared_params()) == {
        "train.py": ["convergence.method"],
        "convergence.py": ["efficiency.steps"],
    }


def test_report_judges_every_claim_and_has_an_offline_html_twin(study: TinyStudy):
    import csv

    from repro.report.claims.registry import load_registry
    from repro.report.html import external_references

    reports = study.repo / "reports"
    with open(reports / "claims.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    ids = {c["id"] for c in load_registry()["claims"]}
    assert {r["claim_id"] for r in rows} == ids
    by_id = {r["claim_id"]: r for r in rows}
    # The tiny profile trains GON and the AE on its synthetic dataset: that claim is judged.
    assert by_id["gon-lower-loss-than-ae"]["verdict"] != "not tested", by_id[
        "gon-lower-loss-than-ae"
    ]
    assert by_id["gon-lower-loss-than-ae"]["mlflow_run_ids"]
    html = (reports / "report.html").read_text()
    assert external_references(html) == []
    assert html.count("data:image/png;base64,") == (reports / "report.md").read_text().count("![")


def test_mlflow_store_holds_every_stage_finished(study: TinyStudy):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=study.store_uri)
    runs = [r for e in client.search_experiments() for r in client.search_runs([e.experiment_id])]
    stages = {r.data.tags.get("stage") for r in runs}
    assert EXPECTED_STAGES <= stages, _missing_stages(stages)
    unfinished = [(r.data.tags.get("stage"), r.info.status) for r in runs]
    unfinished = [(s, status) for s, status in unfinished if status != "FINISHED"]
    assert not unfinished, f"runs not FINISHED: {unfinished}"
    train_run = next(r for r in runs if r.info.run_name == "synthetic/gon-nz8-s0")
    history = client.get_metric_history(train_run.info.run_id, "train_mse_per_pixel")
    assert len(history) == 3, history


def test_each_group_stage_is_one_parent_run_with_one_nested_run_per_model(study: TinyStudy):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=study.store_uri)
    runs = [r for e in client.search_experiments() for r in client.search_runs([e.experiment_id])]
    for stage, children in GROUP_CHILDREN.items():
        mine = [r for r in runs if r.data.tags.get("stage") == stage]
        parents = [r for r in mine if "mlflow.parentRunId" not in r.data.tags]
        assert len(parents) == 1, f"{stage}: {len(parents)} parent runs"
        nested = {r.info.run_name: r for r in mine if r.data.tags.get("mlflow.parentRunId")}
        assert children <= set(nested), f"{stage}: children {sorted(nested)}"
        assert {r.data.tags["mlflow.parentRunId"] for r in nested.values()} == {
            parents[0].info.run_id
        }
    gon = next(r for r in runs if r.info.run_name == "synthetic/gon-nz8-s0")
    assert gon.data.params["run.method"] == "gon" and gon.data.params["run.seed"] == "0"
    assert gon.data.params["train.epochs"] == str(study.epochs)
    # the held-out learning curve is the child's `curve_test_mse_per_pixel`, step = optimiser step
    curve = client.get_metric_history(gon.info.run_id, "curve_test_mse_per_pixel")
    assert [m.step for m in curve][0] == 0 and len(curve) >= 4
    metrics = read_results_json(study.repo / "runs/main/synthetic-nz8/gon-s0/metrics.json")
    assert metrics["mlflow_run_id"] == gon.info.run_id  # from the provenance sibling


def test_mlflow_server_binds_to_loopback_only(mlflow_server: MlflowServer):
    assert mlflow_server.cmd[mlflow_server.cmd.index("--host") + 1] == LOOPBACK
    assert mlflow_server.url.startswith(f"http://{LOOPBACK}:")
    addresses = _listening_addresses(mlflow_server.port)
    if addresses is None:
        pytest.skip("no /proc/net/tcp here to see what the server listens on")
    assert addresses and set(addresses) == {LOOPBACK}, (
        f"port {mlflow_server.port} listens on {addresses}, expected only {LOOPBACK}"
    )


def test_mlflow_server_lists_every_stage_finished_with_params(
    study: TinyStudy, mlflow_server: MlflowServer, served_runs: dict[str, list[dict]]
):
    assert EXPECTED_STAGES <= served_runs.keys(), _missing_stages(set(served_runs))
    problems = []
    for stage, runs in sorted(served_runs.items()):
        for run in runs:
            info, data = run["info"], run.get("data", {})
            if info.get("status") != "FINISHED":
                problems.append(f"{stage} run {info['run_id']}: status {info.get('status')}")
            if not data.get("params"):
                problems.append(f"{stage} run {info['run_id']}: no params")
    assert not problems, "\n".join(problems)

    # The server shows exactly the runs in the store (nothing lost between SQLite and the UI).
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=study.store_uri)
    stored = {
        r.info.run_id
        for e in client.search_experiments()
        for r in client.search_runs([e.experiment_id])
    }
    served = {run["info"]["run_id"] for runs in served_runs.values() for run in runs}
    assert served == stored, (
        f"served but not stored: {sorted(served - stored)}; stored but not served: {sorted(stored - served)}"
    )


def test_mlflow_server_serves_train_and_evaluate_metrics(
    study: TinyStudy, mlflow_server: MlflowServer, served_runs: dict[str, list[dict]]
):
    problems = []
    for stage in sorted(EXPECTED_STAGES):
        kind = _kind(stage)
        for run in served_runs.get(stage, []):
            run_id = run["info"]["run_id"]
            role = _role(run)
            logged = {m["key"] for m in run.get("data", {}).get("metrics", [])}
            if missing := REQUIRED_METRICS.get(role, set()) - logged:
                problems.append(f"{stage} run {run_id}: metrics {sorted(missing)} missing")
            if kind not in METRIC_FREE_KINDS and not logged:
                problems.append(f"{stage} run {run_id}: no metrics at all")
            if role == ("train", "child"):  # one value per epoch, the epoch as the step
                history = mlflow_server.api(
                    "GET", "metrics/get-history", run_id=run_id, metric_key="train_mse_per_pixel"
                ).get("metrics", [])
                steps = sorted(int(m["step"]) for m in history)
                if steps != list(range(1, study.epochs + 1)):
                    problems.append(
                        f"{stage} run {run_id}: train_mse_per_pixel history has steps {steps}, "
                        f"expected 1..{study.epochs}"
                    )
    assert not problems, "\n".join(problems)


def test_mlflow_server_lists_each_stage_artifacts(
    mlflow_server: MlflowServer, served_runs: dict[str, list[dict]]
):
    problems = []
    for stage in sorted(EXPECTED_STAGES):
        for run in served_runs.get(stage, []):
            wanted = REQUIRED_ARTIFACTS.get(_role(run))
            if not wanted:
                continue
            run_id = run["info"]["run_id"]
            listed = mlflow_server.api("GET", "artifacts/list", run_id=run_id).get("files", [])
            if missing := wanted - {f["path"] for f in listed}:
                problems.append(
                    f"{stage} run {run_id}: artifacts {sorted(missing)} not listed "
                    f"(listed: {sorted(f['path'] for f in listed)})"
                )
    assert not problems, "\n".join(problems)


def test_second_repro_is_a_no_op(study: TinyStudy):
    """Last: it must change nothing, and the MLflow tests above saw the first repro's store."""
    second = study.dvc("repro")
    assert second.returncode == 0 and "up to date" in second.stdout, (
        f"exit {second.returncode}\n--- stdout ---\n{_tail(second.stdout)}\n"
        f"--- stderr ---\n{_tail(second.stderr)}"
    )


def test_an_altered_metrics_file_is_caught_by_dvc_and_rebuilt(study: TinyStudy):
    """After the no-op check (it re-runs a stage): DVC's checksums in dvc.lock catch an edit.

    A metrics file with a better number typed in is still valid JSON of the right shape, so no
    reader can tell; `dvc status` names it as modified and `dvc repro` re-runs the stage that
    owns it, which measures the number again.
    """
    out = "runs/main/synthetic-nz8"  # the group stage's results directory (DVC: cache false)
    rel = f"{out}/gon-s0/metrics.json"
    path = study.repo / rel
    original = json.loads(path.read_text())
    forged = json.loads(path.read_text())
    forged["losses"]["batch"]["test"]["sse_per_image"] = 0.0
    path.write_text(json.dumps(forged, indent=2, sort_keys=True))

    status = study.dvc("status")
    assert "train@synthetic-8" in status.stdout, status.stdout
    assert "modified" in status.stdout and out in status.stdout, status.stdout
    rerun = study.dvc("repro")
    assert rerun.returncode == 0, _tail(rerun.stdout) + _tail(rerun.stderr)
    assert "Running stage 'train@synthetic-8'" in rerun.stdout, rerun.stdout
    # the group re-evaluates from its complete checkpoints: no run trains again
    assert rerun.stderr.count(f"resuming after epoch {study.epochs}") == 3, _tail(rerun.stderr)
    assert json.loads(path.read_text())["losses"] == original["losses"]
    assert study.dvc("status").stdout.strip().endswith("up to date."), "not rebuilt"
