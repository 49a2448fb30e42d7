"""Safe defaults: `repro ui` stays on the loopback interface; committed results and MLflow
params/tags carry no secrets and no absolute paths of the machine that produced them."""

from __future__ import annotations

import os
import re
import runpy
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from repro import cli
from repro.config import TrackingConfig, flatten, load_params
from tests.conftest import ROOT, shrink

# --- (a) `repro ui` -----------------------------------------------------------------------------


@pytest.fixture
def ui_calls(tmp_path, monkeypatch) -> list[list[str]]:
    (tmp_path / "dvc.yaml").write_text("stages: {}\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("DVC_ROOT", raising=False)
    calls: list[list[str]] = []
    monkeypatch.setattr(cli.subprocess, "call", lambda cmd, **kw: calls.append(cmd) or 0)
    return calls


def _host(cmd: list[str]) -> str:
    assert cmd.count("--host") == 1
    return cmd[cmd.index("--host") + 1]


def test_repro_ui_binds_loopback_by_default(ui_calls, capsys):
    assert cli.main(["ui"]) == 0
    (cmd,) = ui_calls
    assert cmd[1:4] == ["-m", "mlflow", "ui"] and _host(cmd) == "127.0.0.1"
    assert "warning" not in capsys.readouterr().err


def test_repro_ui_binds_another_host_only_when_asked_and_warns(ui_calls, capsys):
    assert cli.main(["ui", "--host", "0.0.0.0", "--port", "5001"]) == 0
    (cmd,) = ui_calls
    assert _host(cmd) == "0.0.0.0" and cmd[cmd.index("--port") + 1] == "5001"
    assert "warning: --host 0.0.0.0" in capsys.readouterr().err


# --- (b) committed reports and results --------------------------------------------------------

SCANNED = re.compile(
    r"^(reports/.+\.(md|csv|json|html)|data/[^/]+\.manifest\.json|runs/.+/metrics\.json)$"
)
SECRETS = {
    "AWS access key id": re.compile(r"\b(AKIA|ASIA)[0-9A-Z]{16}\b"),
    "private key": re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
    "password": re.compile(r"password", re.IGNORECASE),
    "token in a URL or assignment": re.compile(r"token=", re.IGNORECASE),
    "secret key assignment": re.compile(r"secret[_-]?(access[_-]?)?key\s*[=:]", re.IGNORECASE),
}


def _machine_paths() -> list[str]:
    """Prefixes that only make sense on this machine (and the usual user/temp roots)."""
    found = {"/work/", "/home/", "/tmp/", "/root/", "/Users/", str(ROOT)}
    home = str(Path.home())
    if len(home) > 1:
        found.add(home.rstrip("/") + "/")
    return sorted(found)


def _committed() -> list[str]:
    out = subprocess.run(
        ["git", "ls-files", "-z", "reports", "data", "runs"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return sorted(f for f in out.split("\0") if SCANNED.match(f))


def leaks(text: str) -> list[str]:
    """'line N: what' for every machine path or secret-looking string in ``text``."""
    found = []
    for n, line in enumerate(text.splitlines(), 1):
        found += [f"line {n}: path {p!r}" for p in _machine_paths() if p in line]
        found += [f"line {n}: {what}" for what, rx in SECRETS.items() if rx.search(line)]
    return found


def test_the_scan_sees_the_committed_results_and_catches_leaks():
    files = _committed()
    assert any(f.startswith("reports/") for f in files)
    assert any(f.startswith("runs/") and f.endswith("metrics.json") for f in files)
    assert leaks(f'{{"path": "{ROOT}/data/x.pt"}}') and leaks("aws: AKIAABCDEFGHIJKLMNOP")
    assert leaks("-----BEGIN RSA PRIVATE KEY-----") and not leaks('{"mse": 0.01, "dir": "runs/a"}')


@pytest.mark.parametrize(
    "rel",
    _committed(),
)
def test_committed_file_holds_no_machine_path_or_secret(rel):
    found = leaks((ROOT / rel).read_text(errors="replace"))
    assert not found, f"{rel}: " + "; ".join(found[:10])


# --- (c) what the stages log to MLflow --------------------------------------------------------

ABSOLUTE = re.compile(r"(^|[\s'\"=:(])(/[\w.-]+){2,}|[A-Za-z]:\\")


def _absolute_paths(values: dict[str, str]) -> dict[str, str]:
    return {
        k: v
        for k, v in values.items()
        if ABSOLUTE.search(str(v)) or any(p in str(v) for p in _machine_paths())
    }


def test_no_profile_holds_an_absolute_path():
    """Every stage's params are parts of the configuration plus its matrix arguments."""
    assert _absolute_paths({"a": "/opt/mirror/mnist", "b": "x=/srv/data"}) == {
        "a": "/opt/mirror/mnist",
        "b": "x=/srv/data",
    }
    assert _absolute_paths({"a": "data/raw", "b": "https://example.org/a/b.gz"}) == {}
    for path in [ROOT / "params.yaml", *sorted((ROOT / "profiles").glob("*.yaml"))]:
        flat = {k: str(v) for k, v in flatten(load_params(path).to_dict()).items()}
        assert _absolute_paths(flat) == {}, path


class _Captured(BaseException):
    """Raised by the stand-in tracked_run: the stage stops before its real work."""


STAGES = {
    "train": ["--dataset", "synthetic", "--nz", "8"],
    "data": ["--dataset", "synthetic"],
    "reference": ["--dataset", "synthetic"],
    "efficiency": [],
    "report": [],
}


@pytest.mark.parametrize("name", sorted(STAGES))
def test_a_stage_passes_tracked_run_no_absolute_path(name, tmp_path, tiny_data_dir, monkeypatch):
    """The real stage script up to its tracked_run call, in a study copy under tmp_path."""
    params = shrink(load_params(ROOT / "params.yaml")).to_dict()
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    (tmp_path / "dvc.yaml").write_text("stages: {}\n")
    seen: dict = {}

    def capture(cfg, *, stage, run_name, params, tags=None, experiment=None, parent_run_id=None):
        seen.update(stage=stage, run_name=run_name, params=params, tags=tags or {})
        raise _Captured

    import repro.tracking

    monkeypatch.setattr(repro.tracking, "tracked_run", capture)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(ROOT / "pipelines"))
    script = ROOT / "pipelines" / f"{name}.py"
    monkeypatch.setattr(sys, "argv", [str(script), *STAGES[name]])
    with pytest.raises(_Captured):
        runpy.run_path(str(script), run_name="__main__")
    assert seen["params"], name
    logged = {k: str(v) for k, v in seen["params"].items()}
    logged |= {f"tag:{k}": str(v) for k, v in seen["tags"].items()}
    logged["run_name"] = seen["run_name"]
    assert _absolute_paths(logged) == {}


def test_a_tracked_run_records_no_path_no_env_and_only_our_tags(tmp_path, monkeypatch):
    """Even a param or error holding a path under the repository or home is made portable;
    MLflow records no user, source path or environment variable of its own."""
    from mlflow.tracking import MlflowClient

    from repro.tracking import tracked_run, tracking_uri

    (tmp_path / "dvc.yaml").write_text("stages: {}\n")
    monkeypatch.chdir(tmp_path)
    for var in ("MLFLOW_TRACKING_URI", "REPRO_TRACKING", "DVC_ROOT", "DVC_EXP_NAME"):
        monkeypatch.delenv(var, raising=False)
    canary = "canary-Zq8xV3-not-a-real-secret"
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", canary)
    monkeypatch.setenv("REPRO_CANARY", canary)
    home = str(Path.home())
    params = {
        "data.file": str(tmp_path / "data" / "synthetic" / "train.pt"),
        "data.mirror_dir": f"{home}/mirror",
        "train.lr": 1e-4,
    }
    with (
        pytest.raises(FileNotFoundError),
        tracked_run(
            TrackingConfig(),
            stage="train@x",
            run_name="x/gon",
            params=params,
            tags={"profile": "tiny"},
        ) as tracker,
    ):
        raise FileNotFoundError(f"no file {tmp_path / 'data' / 'synthetic' / 'train.pt'}")
    run = MlflowClient(tracking_uri=tracking_uri()).get_run(tracker.run_id)
    assert run.data.params == {
        "data.file": "data/synthetic/train.pt",
        "data.mirror_dir": "~/mirror" if len(home) > 1 else f"{home}/mirror",
        "train.lr": "0.0001",
    }
    assert run.data.tags["error"] == "FileNotFoundError: no file data/synthetic/train.pt"
    assert set(run.data.tags) == {
        "stage",
        "git_commit",
        "mlflow.runName",
        "profile",
        "error",
        "pid",
        "host_id",
    }
    assert run.data.tags["host_id"] != socket.gethostname()  # a hash, not the name
    assert re.fullmatch(r"[0-9a-f]{40}|unknown", run.data.tags["git_commit"])
    assert run.info.user_id in ("", "unknown")
    recorded = {**run.data.params, **run.data.tags, "name": run.info.run_name}
    assert not [k for k, v in recorded.items() if canary in v or str(tmp_path) in v]
    env_values = {v for k, v in os.environ.items() if len(v) >= 12 and "/" in v}
    assert not [k for k, v in recorded.items() if v in env_values]
