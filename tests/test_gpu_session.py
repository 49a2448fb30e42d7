"""The GPU session (bench/gpu_session.sh, repro/gpu_session.py) and `repro gpu-import`.

No GPU is needed: the session's ``--dry-run`` runs the same code path on the CPU with a tiny
synthetic dataset, with ``mlflow`` and ``dvc`` made unimportable (the lent GPU machine has
neither), and the archive it writes is imported into a scratch repository. The cost model that
sizes a session's epochs and projects the ``paper`` profile is checked against answers worked
out by hand.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from repro.config import load_params
from repro.costs import StepTime, lpt_makespan, main_run_cost
from repro.gpu_import import ArchiveError, unpack
from repro.session import PHASES, Skipped
from repro.session_runs import decide_epochs, session_specs
from tests.conftest import ROOT

GPU_PROFILE = ROOT / "profiles" / "gpu.yaml"
#: The raw files the session carries (data/raw, as the data stage leaves them here), in bytes;
#: checked against the files themselves wherever they are present.
RAW_BYTES = {
    "mnist/mnist.pkl.gz": 17_051_982,
    "fashion_mnist/train-images-idx3-ubyte.gz": 26_421_856,
    "fashion_mnist/train-labels-idx1-ubyte.gz": 29_491,
    "fashion_mnist/t10k-images-idx3-ubyte.gz": 4_422_079,
    "fashion_mnist/t10k-labels-idx1-ubyte.gz": 5_125,
}
CARRY_LIMIT = 64 * 2**20  # the device tool's limit on the tree plus carried paths


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory) -> Path:
    """One dry-run session, mlflow and dvc unimportable; returns its archive."""
    out = tmp_path_factory.mktemp("gpu-out")
    code = (
        "import sys; sys.modules['mlflow'] = None; sys.modules['dvc'] = None\n"
        "from repro.gpu_session import main\n"
        f"sys.exit(main(['--dry-run', '--out', {str(out)!r}]))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        cwd=out,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return out / "gpu_session.tar.gz"


def _members(archive: Path) -> dict[str, bytes]:
    with tarfile.open(archive) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}


@pytest.mark.stage
def test_dry_run_archive_holds_every_phase_and_every_run(dry_run):
    files = _members(dry_run)
    session = json.loads(files["session.json"])
    assert [p["name"] for p in session["phases"]] == list(PHASES)
    assert {p["name"]: p["status"] for p in session["phases"]} == dict.fromkeys(PHASES, "ok")
    assert session["dry_run"] is True and session["environment"]["device"] == "cpu"
    for name in ("params.yaml", "step_times.json", "gpu_tests.log", "gpu_tests.xml", "session.log"):
        assert name in files, name
    assert "data/synthetic.manifest.json" in files
    # Every main run of the dry run's params (2 seeds x 3 methods), with its results.
    for method in ("gon", "ae", "ae_linear"):
        for seed in (0, 1):
            run = f"main/synthetic-nz8/{method}-s{seed}"
            for f in ("metrics.json", "history.csv", "curve.csv", "recon.png"):
                assert f"{run}/{f}" in files, f"{run}/{f}"
    assert session["train"]["epochs"] == 2 and len(session["train"]["runs"]) == 6
    for study, cells in (("activation", ("elu", "relu")), ("multistep", ("k1", "k2"))):
        for cell in cells:
            assert f"studies/{study}/synthetic-{cell}/metrics.json" in files
    # Step times: eager for every method x nz (the profile's and the paper's), stacked GON.
    times = [StepTime.from_dict(d) for d in session["step_times"]]
    eager = {(t.method, t.nz) for t in times if t.mode == "eager" and t.error is None}
    assert eager == {(m, nz) for m in ("gon", "ae", "ae_linear") for nz in (8, 64, 128, 256)}
    assert {t.n_models for t in times if t.mode == "stacked" and t.method == "gon"} >= {1, 2}
    assert not any(name.endswith(".pt") for name in files)  # models stay on the device


@pytest.mark.stage
def test_gpu_import_builds_the_gpu_report_and_the_main_report_quotes_it(dry_run, tmp_path):
    from repro.cli import main as cli
    from repro.report import build_report

    (tmp_path / "dvc.yaml").write_text("stages: {}\n")
    import os

    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        assert cli(["gpu-import", str(dry_run)]) == 0
    finally:
        os.chdir(cwd)
    gpu = tmp_path / "reports" / "gpu"
    md = (gpu / "report.md").read_text()
    assert "(GPU session)" in md.splitlines()[0]
    for text in (
        "## This GPU session",
        "DRY RUN",
        "### Step times",
        "| train | ok |",
        "What the `paper` profile would cost on this device",
        "| GON | 256 |",
    ):
        assert text in md, text
    assert (gpu / "report.html").is_file() and (gpu / "claims.csv").is_file()
    assert (gpu / "figures" / "gpu_stacking.png").is_file()
    assert "Runs found: 6." in md  # the session's main runs, read as the main report reads runs/
    assert (tmp_path / "runs" / "gpu" / "session.json").is_file()
    # The main report, with runs/gpu beside its (here absent) main runs, quotes the session.
    params = load_params(ROOT / "params.yaml")
    path = build_report(
        tmp_path / "runs", tmp_path / "data", tmp_path / "reports", params=params, provenance={}
    )
    main = path.read_text()
    assert "## At GPU scale" in main and "(gpu/report.html)" in main
    assert "| GPU session" in main and "a dry run" in main


def test_main_report_without_a_session_says_how_to_make_one(tmp_path):
    from repro.report import build_report

    params = load_params(ROOT / "params.yaml")
    md = build_report(
        tmp_path / "runs", tmp_path / "data", tmp_path / "out", params=params, provenance={}
    ).read_text()
    assert "No GPU session has been imported yet" in md and "bench/gpu_session.sh" in md


def _times(ms_graph: float, ms_eager: float) -> list[StepTime]:
    return [
        StepTime(m, nz, mode, 1, 64, ms, 30, "cuda")
        for m in ("gon", "ae", "ae_linear")
        for nz in (32, 256)
        for mode, ms in (("graph", ms_graph), ("eager", ms_eager))
    ]


def test_run_cost_counts_steps_validation_curve_and_evaluation_batches():
    # gpu profile: 50,000 images / 64 = 781 steps; 1,000 val images = 16 batches per epoch, scored
    # at half an eager step; curve: (12 points + 2) x 16 batches; final: 2 BN modes x (16 val +
    # 157 test x 2 orders); affinity 8 x 3 batches; plus 2 s fixed.
    params = load_params(GPU_PROFILE)
    cost = main_run_cost(params, _times(1.0, 2.0), "gon", 32)
    assert cost.per_epoch == pytest.approx((781 * 1.0 + 16 * 2.0 * 0.5) / 1000, rel=1e-12)
    assert cost.fixed == pytest.approx((224 + 660 + 24) * 1.0 / 1000 + 2.0, rel=1e-12)


def test_session_epochs_are_the_most_that_fit_and_never_more_than_the_profile():
    params = load_params(GPU_PROFILE)  # 36 runs of per epoch 0.797 s, fixed 2.908 s
    epochs, predicted = decide_epochs(params, _times(1.0, 2.0), 1000.0)
    assert epochs == 31  # floor((1000 - 36 x 2.908) / (36 x 0.797)) = floor(31.2)
    assert predicted == pytest.approx(36 * (0.797 * 31 + 2.908))
    assert decide_epochs(params, _times(1.0, 2.0), 1e6)[0] == params.train.epochs
    with pytest.raises(Skipped, match="one epoch of the 36 main runs needs about 133 s"):
        decide_epochs(params, _times(1.0, 2.0), 100.0)


def test_a_session_cut_short_keeps_complete_seeds():
    specs = session_specs(load_params(GPU_PROFILE))
    assert len(specs) == 36
    first = [(s.seed, s.method) for s in specs[:3]]
    assert first == [(0, "gon"), (0, "ae"), (0, "ae_linear")]
    assert [s.seed for s in specs] == sorted(s.seed for s in specs)


def test_lpt_makespan_is_longest_first_to_the_least_loaded():
    assert lpt_makespan([3, 3, 4, 5, 3], 2) == 10  # A 5+3, B 4+3+3 (the optimum, 9, is not LPT's)
    assert lpt_makespan([1.0, 2.0], 6) == 2.0
    assert lpt_makespan([1.0, 2.0, 3.0], 1) == 6.0


def _archive(path: Path, members: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


@pytest.mark.parametrize(
    ("members", "match"),
    [
        ({"../evil.json": b"{}"}, "not a plain relative file"),
        ({"session.json": b"{}", "params.yaml": b"{}", "models/x.pt": b""}, "unexpected member"),
        ({"params.yaml": b"{}"}, "no session.json"),
    ],
)
def test_gpu_import_refuses_what_a_session_does_not_write(tmp_path, members, match):
    dest = tmp_path / "runs" / "gpu"
    dest.mkdir(parents=True)
    (dest / "keep.txt").write_text("the previous import")
    with pytest.raises(ArchiveError, match=match):
        unpack(_archive(tmp_path / "a.tar.gz", members), dest)
    assert (dest / "keep.txt").read_text() == "the previous import"  # untouched on refusal
    assert sorted(p.name for p in dest.parent.iterdir()) == ["gpu"]  # no staging left behind


def test_the_gpu_session_carries_under_64_mib():
    """What the device tool sends: the tracked tree plus the carried data/raw (<= 64 MiB)."""
    tracked = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True
    ).stdout.split(b"\0")
    tree = sum(
        (ROOT / f.decode()).stat().st_size for f in tracked if f and (ROOT / f.decode()).is_file()
    )
    raw = ROOT / "data" / "raw"
    for name, size in RAW_BYTES.items():
        if (raw / name).is_file():
            assert (raw / name).stat().st_size == size, name
    total = tree + sum(RAW_BYTES.values())
    assert total <= CARRY_LIMIT, f"{total / 2**20:.1f} MiB to carry, over 64 MiB"


def test_step_timing_stops_at_its_time_and_says_what_it_did_not_measure():
    import torch

    from repro.gpu_session import dry_run_params
    from repro.steptime import measure

    params = dry_run_params(load_params(GPU_PROFILE))
    times = measure(
        params,
        torch.device("cpu"),
        methods=["gon", "ae"],
        nzs=[8],
        warmup=0,
        steps=1,
        repeats=1,
        seconds=0.0,
    )
    assert [t.method for t in times] == ["gon", "ae"]
    # The first setting is always measured; the rest are not, the time being up.
    assert times[0].error is None and times[0].ms_per_step > 0
    assert times[1].error == "not measured: the 0 s given to step timing were up"
    assert times[1].ms_per_step != times[1].ms_per_step  # NaN


def test_gpu_import_refuses_another_schema_before_replacing_the_previous_import(tmp_path):
    dest = tmp_path / "runs" / "gpu"
    dest.mkdir(parents=True)
    (dest / "keep.txt").write_text("the previous import")
    archive = _archive(
        tmp_path / "a.tar.gz", {"session.json": b'{"schema": 99}', "params.yaml": b"{}"}
    )
    with pytest.raises(ValueError, match="session schema 99, this code reads 1"):
        unpack(archive, dest)
    assert (dest / "keep.txt").read_text() == "the previous import"
    assert sorted(p.name for p in dest.parent.iterdir()) == ["gpu"]
