"""docs/scale-out.md stays honest: its commands exist, its paths exist, its numbers add up.

Cheap by design (no `dvc repro`, no server): each `dvc` / `mlflow` / `repro` sub-command the page
names is asked for `--help`, each repository path it cites must exist (the page cites no line
numbers, which drift; it names functions, and each named function of `repro/tracking.py` must
still be defined there), and the paper-scale counts and CPU times it quotes are recomputed from
`profiles/paper.yaml`, `dvc.yaml` and `reports/benchmarks.json`.
"""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "scale-out.md"

TOOLS = {"dvc": "dvc", "mlflow": "mlflow", "repro": "repro.cli"}  # command -> python -m module
# Commands of these tools that take a sub-command of their own (`dvc exp run`, `mlflow runs list`).
GROUPS = {
    "dvc": {"exp", "queue", "remote", "stage", "metrics", "plots", "params", "cache"},
    "mlflow": {"experiments", "runs", "artifacts", "db", "models"},
    "repro": set(),
}
COMMAND = re.compile(
    r"^\s*(?:do\s+|then\s+)?(?:[A-Z_][A-Z0-9_]*=\S*\s+)*(?:time\s+)?"
    r"(dvc|mlflow|repro)\s+([a-z][\w-]*)(?:\s+([a-z][\w-]*))?"
)
REPO_PATH = re.compile(
    r"^(?:(?:repro|pipelines|profiles|tests|bench|reports|docs)/[\w./-]*"
    r"|dvc\.yaml|dvc\.lock|params\.yaml|README\.md|pyproject\.toml)(?::(\d+))?$"
)
# Functions of repro/tracking.py the page explains; each must be named there and defined here.
TRACKING_FUNCTIONS = ("store_root", "_experiment_id", "close_abandoned_runs", "_store_lock")


def _page() -> str:
    return PAGE.read_text(encoding="utf-8")


def _bash_blocks(text: str) -> list[str]:
    return re.findall(r"```bash\n(.*?)```", text, flags=re.S)


def _inline_code(text: str) -> list[str]:
    prose = re.sub(r"```.*?```", "", text, flags=re.S)
    return re.findall(r"`([^`\n]+)`", prose)


def named_subcommands(text: str) -> set[tuple[str, ...]]:
    """(tool, sub[, subsub]) for every tool command in bash blocks and inline code spans."""
    found: set[tuple[str, ...]] = set()
    snippets = [line for block in _bash_blocks(text) for line in block.splitlines()]
    snippets += _inline_code(text)
    for snippet in snippets:
        for part in re.split(r"&&|\|\||;|\|", snippet):
            m = COMMAND.match(part)
            if not m:
                continue
            tool, sub, subsub = m.groups()
            found.add((tool, sub, subsub) if sub in GROUPS[tool] and subsub else (tool, sub))
    return found


def test_parser_finds_the_commands_of_the_page():
    cmds = named_subcommands(_page())
    for expected in [
        ("dvc", "exp", "run"),
        ("dvc", "queue", "start"),
        ("dvc", "queue", "status"),
        ("dvc", "exp", "show"),
        ("dvc", "remote", "add"),
        ("dvc", "push"),
        ("dvc", "pull"),
        ("mlflow", "server"),
        ("repro", "validate"),
    ]:
        assert expected in cmds, f"{expected} not found among {sorted(cmds)}"


def _help(cmd: tuple[str, ...]) -> tuple[tuple[str, ...], int, str]:
    argv = [sys.executable, "-m", TOOLS[cmd[0]], *cmd[1:], "--help"]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60, cwd=ROOT)
    return cmd, done.returncode, (done.stdout + done.stderr)[-500:]


@pytest.mark.stage
def test_every_named_subcommand_exists():
    pytest.importorskip("dvc")
    pytest.importorskip("mlflow")
    cmds = sorted(named_subcommands(_page()))
    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(_help, cmds))
    bad = [f"{' '.join(c)} --help -> exit {rc}: {out}" for c, rc, out in results if rc != 0]
    assert not bad, "\n".join(bad)


def test_every_cited_repository_path_exists():
    text = _page()
    cited = {tok for tok in _inline_code(text) if REPO_PATH.match(tok)}
    assert "repro/tracking.py" in cited and "profiles/paper.yaml" in cited
    for tok in sorted(cited):
        path, _, line = tok.partition(":")
        assert not line, f"`{tok}`: cite the function, not a line number (line numbers drift)"
        assert (ROOT / path).exists(), f"docs/scale-out.md cites `{tok}`, which does not exist"


def test_named_tracking_functions_exist():
    text = _page()
    source = (ROOT / "repro" / "tracking.py").read_text(encoding="utf-8")
    for name in TRACKING_FUNCTIONS:
        assert f"`{name}()`" in text, f"docs/scale-out.md no longer explains `{name}()`"
        assert re.search(rf"^def {name}\(", source, flags=re.M), (
            f"docs/scale-out.md names `{name}()`, which repro/tracking.py no longer defines"
        )


def _resolve(expr: str, params: dict) -> list:
    """``${a.b}`` of dvc.yaml looked up in a params dict."""
    value = params
    for key in re.fullmatch(r"\$\{(.+)\}", expr).group(1).split("."):
        value = value[key]
    return value


def paper_counts() -> dict[str, int]:
    p = yaml.safe_load((ROOT / "profiles" / "paper.yaml").read_text())
    t, s, e = p["train"], p["studies"], p["efficiency"]
    seeds = len(s["seeds"])
    latent_seeds = len(s["latent"]["seeds"] or s["seeds"])
    counts = {
        "main": math.prod(
            len(x) for x in (p["data"]["datasets"], t["methods"], p["model"]["nz"], t["seeds"])
        ),
        "efficiency": len(e["methods"]) * len(e["train_sizes"]) * len(e["seeds"]),
        "activation": len(s["activation"]["activations"]) * len(s["activation"]["methods"]) * seeds,
        "multistep": len(s["multistep"]["steps"]) * seeds,
        "latent": math.prod(len(s["latent"][k]) for k in ("datasets", "nz", "methods"))
        * latent_seeds,
        "variational": len(p["variational"]["methods"]) * len(p["variational"]["seeds"]),
        # every dataset × method × seed, plus GON at low resolution on the first dataset
        "implicit": (len(p["implicit"]["datasets"]) * len(p["implicit"]["methods"]) + 1)
        * len(p["implicit"]["seeds"]),
    }
    counts["total"] = sum(counts.values())
    stages = 0  # dvc.yaml's foreach / matrix stages expanded with the paper profile
    for stage in yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"].values():
        if "foreach" in stage:
            items = stage["foreach"]
            stages += len(items if isinstance(items, list) else _resolve(items, p))
        elif "matrix" in stage:
            stages += math.prod(len(_resolve(v, p)) for v in stage["matrix"].values())
        else:
            stages += 1
    counts["stages"] = stages
    return counts


def test_paper_scale_numbers_match_the_profile():
    p = yaml.safe_load((ROOT / "profiles" / "paper.yaml").read_text())
    t, s, e = p["train"], p["studies"], p["efficiency"]
    c = paper_counts()
    text = _page()
    expected = [
        f"{len(p['data']['datasets'])} datasets × {len(t['methods'])} methods × "
        f"{len(p['model']['nz'])} nz × {len(t['seeds'])} seeds = **{c['main']}**",
        f"{len(e['methods'])} methods × {len(e['train_sizes'])} train sizes × "
        f"{len(e['seeds'])} seeds = **{c['efficiency']}**",
        f"activation {len(s['activation']['activations'])} × {len(s['activation']['methods'])}"
        f" methods × {len(s['seeds'])} seeds = **{c['activation']}**",
        f"multistep {len(s['multistep']['steps'])} × {len(s['seeds'])} seeds = **{c['multistep']}**",
        f"latent {len(s['latent']['datasets'])} datasets × {len(s['latent']['nz'])} nz × "
        f"{len(s['latent']['methods'])} methods × {len(s['latent']['seeds'] or s['seeds'])} seeds"
        f" = **{c['latent']}**",
        f"variational: {len(p['variational']['methods'])} methods × "
        f"{len(p['variational']['seeds'])} seeds = **{c['variational']}**",
        f"implicit: ({len(p['implicit']['datasets'])} datasets × "
        f"{len(p['implicit']['methods'])} methods + 1 super-resolution) × "
        f"{len(p['implicit']['seeds'])} seeds = **{c['implicit']}**",
        f"**{c['total']}** trained models in **{c['stages']}** DVC stages",
        f"main matrix ({c['main']} runs",
        f"ablations ({c['activation'] + c['multistep'] + c['latent']} runs",
        f"GFE data efficiency ({c['efficiency']} runs",
    ]
    missing = [phrase for phrase in expected if phrase not in text]
    assert not missing, "docs/scale-out.md does not match profiles/paper.yaml:\n" + "\n".join(
        missing
    )


def test_quoted_cpu_times_match_the_benchmarks():
    p = yaml.safe_load((ROOT / "profiles" / "paper.yaml").read_text())
    t, s = p["train"], p["studies"]
    bench = json.loads((ROOT / "reports" / "benchmarks.json").read_text())["benchmarks"]
    text = _page()
    for entry in bench:
        if entry["device"] != "cpu" or entry["name"] not in ("gon_epoch", "ae_epoch"):
            continue
        assert entry["images"] == 6400 and entry["batch"] == 64
        per_image = entry["ours"] / entry["images"]
        full = per_image * t["train_images"] * t["epochs"] / 3600
        study = per_image * s["train_images"] * s["epochs"] / 3600
        for phrase in (
            f"{entry['ours']:.3f} s per 6,400 images",
            f"{full:.2f} h",
            f"{study:.2f} h",
        ):
            assert phrase in text, f"{entry['name']}: {phrase!r} not in docs/scale-out.md"
    scaling = json.loads((ROOT / "reports" / "scaling.json").read_text())
    assert scaling["device"] == "cpu" and not any(b["device"] == "cuda" for b in bench), (
        "reports/ now has GPU timings: docs/scale-out.md says none were measured"
    )
