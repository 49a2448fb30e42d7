"""The bad-params table: malformed params.yaml files, each refused before any work.

One table (``CASES``) drives four tests: :func:`repro.config.load_params` raises
:class:`~repro.config.ConfigError` naming the dotted key and the allowed values; ``repro validate``
exits 2 with that message; a real stage script (``pipelines/data.py``) exits non-zero with it on
stderr and writes nothing; and ``docs/params.md`` has one row per case whose message is the one
the library really prints (so the docs and the test cannot drift). A second, smaller test runs
every stage script once on a bad file. Cases the library does not yet reject properly are
``xfail(strict=True)``: they document a gap, and the test fails once it is closed.
"""

from __future__ import annotations

import copy
import re
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from repro.config import ConfigError, load_params
from tests.conftest import ROOT, stage_env, study_copy

PARAMS_TEXT = (ROOT / "params.yaml").read_text()
DOCS = ROOT / "docs" / "params.md"

ACTIVATIONS = "['elu', 'relu', 'leaky_relu', 'tanh', 'softplus', 'silu', 'gelu']"
SOLVERS = (
    "['dopri5', 'dopri8', 'bosh3', 'fehlberg2', 'adaptive_heun', 'euler', 'midpoint', 'rk4', "
    "'heun3']"
)
DATASETS = "['mnist', 'fashion_mnist', 'cifar10', 'synthetic']"
# The main comparison's methods (GON and the autoencoders; the GFE flows have their own studies)
MAIN_METHODS = "['gon', 'ae', 'ae_linear']"
PROFILES = "['quick', 'paper', 'gpu', 'tiny']"
TOP_KEYS = "['profile', 'data', 'model', 'train', 'evaluate', 'gfe', 'efficiency', 'convergence'"
TRAIN_KEYS = "Allowed keys here: ['methods', 'seeds', 'device', 'epochs', 'batch_size', 'lr'"


# --------------------------------------------------------------------------- edits


def _edit_key(dotted: str, change: Callable[[dict, str], None]) -> Callable[[str], str]:
    """Load the committed params.yaml, ``change(parent mapping, leaf key)``, dump it again."""

    def edit(text: str) -> str:
        data = yaml.safe_load(text)
        *parents, leaf = dotted.split(".")
        node = data
        for key in parents:
            node = node[key]
        change(node, leaf)
        return yaml.safe_dump(data, sort_keys=False)

    return edit


def set_key(dotted: str, value: object) -> Callable[[str], str]:
    """Set ``dotted`` to ``value``."""
    return _edit_key(dotted, lambda node, leaf: node.__setitem__(leaf, copy.deepcopy(value)))


def rename_key(dotted: str, new: str) -> Callable[[str], str]:
    """Rename the key ``dotted`` to ``new`` in place (a misspelling of a real key)."""
    return _edit_key(dotted, lambda node, leaf: node.__setitem__(new, node.pop(leaf)))


def drop_key(dotted: str) -> Callable[[str], str]:
    """Delete the key ``dotted``."""
    return _edit_key(dotted, lambda node, leaf: node.pop(leaf))


def replace_text(old: str, new: str) -> Callable[[str], str]:
    """A raw text edit of params.yaml (for what a YAML dump cannot write: syntax errors, ...)."""

    def edit(text: str) -> str:
        assert text.count(old) == 1, f"{old!r} must occur once in params.yaml"
        return text.replace(old, new)

    return edit


# --------------------------------------------------------------------------- the table


@dataclass(frozen=True)
class Case:
    id: str
    edit: Callable[[str], str]
    expect: tuple[str, ...]  # substrings of the message: the dotted key, the allowed values
    gap: str | None = None  # set: the library does not reject this yet (strict xfail)


CASES = [
    Case(
        "unknown_top_level_key",
        set_key("optimizer", {"name": "adam"}),
        ("optimizer: unknown key", TOP_KEYS),
    ),
    Case(
        "misspelt_key_lerning_rate",
        rename_key("train.lr", "lerning_rate"),
        ("train.lerning_rate: unknown key", TRAIN_KEYS),
    ),
    Case(
        "misspelt_key_epoch",
        rename_key("train.epochs", "epoch"),
        ("train.epoch: unknown key", "Did you mean 'epochs'?", TRAIN_KEYS),
    ),
    Case(
        "misspelt_nested_key",
        rename_key("gfe.adaptive.h_max", "hmax"),
        ("gfe.adaptive.hmax: unknown key", "Did you mean 'h_max'?", "Allowed keys here: ['h0'"),
    ),
    Case(
        "wrong_type_epochs_string",
        set_key("train.epochs", "five"),
        ("train.epochs: expected an integer, got str 'five'",),
    ),
    Case(
        "wrong_type_lr_yaml11_exponent",
        replace_text("lr: 1.0e-4", "lr: 1e-4"),
        ("train.lr: expected a number, got str '1e-4'",),
    ),
    Case(
        "wrong_type_seeds_not_a_list",
        set_key("train.seeds", 0),
        ("train.seeds: expected a list, got int 0",),
    ),
    Case(
        "wrong_type_section_not_a_mapping",
        set_key("train", 5),
        ("train: expected a mapping, got 5",),
    ),
    Case("lr_zero", set_key("train.lr", 0), ("train.lr: must be > 0, got 0.0",)),
    Case(
        "lr_above_range",
        set_key("train.lr", 3.0),
        ("train.lr: 3.0 is outside the range this study admits [1e-06, 1.0]", "lr_unchecked"),
    ),
    Case(
        "studies_lr_below_range",
        set_key("studies.lr", 1.0e-9),
        ("studies.lr: 1e-09 is outside the range this study admits", "lr_unchecked: true"),
    ),
    Case(
        "mirror_dir_missing",
        set_key("data.mirror_dir", "no/such/mirror"),
        ("data.mirror_dir: 'no/such/mirror' is not a directory", "data.mirror_dir: null"),
    ),
    Case("lr_negative", set_key("train.lr", -1e-4), ("train.lr: must be > 0, got -0.0001",)),
    Case(
        "lr_infinite",
        set_key("train.lr", float("inf")),
        ("train.lr:", "must be"),
    ),
    Case("epochs_zero", set_key("train.epochs", 0), ("train.epochs: must be > 0, got 0",)),
    Case(
        "batch_size_negative",
        set_key("train.batch_size", -64),
        ("train.batch_size: must be > 0, got -64",),
    ),
    Case("nz_not_positive", set_key("model.nz", [0]), ("model.nz[0]: must be > 0, got 0",)),
    Case(
        "unknown_activation",
        set_key("model.activation", "swish"),
        ("model.activation: 'swish' is not allowed", f"allowed: {ACTIVATIONS}"),
    ),
    Case(
        "unknown_solver",
        set_key("gfe.solver", "rk99"),
        ("gfe.solver: 'rk99' is not allowed", f"allowed: {SOLVERS}"),
    ),
    Case(
        "unknown_dataset",
        set_key("data.datasets", ["imagenet"]),
        ("data.datasets: 'imagenet' is not allowed", f"allowed: {DATASETS}"),
    ),
    Case(
        "unknown_method",
        set_key("train.methods", ["vae"]),
        ("train.methods: 'vae' is not allowed", f"allowed: {MAIN_METHODS}"),
    ),
    Case("empty_seed_list", set_key("train.seeds", []), ("train.seeds: must not be empty",)),
    Case(
        "train_images_larger_than_split",
        set_key("train.train_images", 60_000),
        ("train.train_images: 60000 must be in 1..50000 (the mnist train split)",),
    ),
    Case(
        "unknown_profile",
        set_key("profile", "huge"),
        ("profile: 'huge' is not allowed", f"allowed: {PROFILES}"),
    ),
    Case(
        "yaml_syntax_error",
        replace_text("nz: [32]", "nz: [32"),
        ("params.yaml: YAML syntax error", "line 20, column 7", "nz: [32"),
    ),
    Case(
        "yaml_bad_indentation",
        replace_text("  epochs: 5\n", "  epochs: 5\n lr 3\n"),
        ("params.yaml: YAML syntax error", "line 27, column 2", "lr 3"),
    ),
    Case(
        "duplicate_key",
        replace_text("  epochs: 5\n", "  epochs: 0\n  epochs: 5\n"),
        ("train.epochs", "duplicate"),
    ),
    Case(
        "missing_key",
        drop_key("train.epochs"),
        ("train.epochs", "missing"),
    ),
    Case(  # a Latin-1 "é" in a comment: \udce9 is written as the single byte 0xe9
        "not_utf8_text",
        replace_text("profile: quick\n", "profile: quick  # caf\udce9\n"),
        ("params.yaml: not UTF-8 text (byte 0xe9 at line 4, column 22)", "save the file as UTF-8"),
    ),
]

IDS = [c.id for c in CASES]
assert len(set(IDS)) == len(IDS), "case ids must be unique"


def params_case(case: Case) -> pytest.param:
    marks = [pytest.mark.xfail(strict=True, reason=case.gap)] if case.gap else []
    return pytest.param(case, id=case.id, marks=marks)


TABLE = [params_case(c) for c in CASES]


def write_case(case: Case, directory: Path) -> Path:
    path = directory / "params.yaml"
    path.write_bytes(case.edit(PARAMS_TEXT).encode("utf-8", "surrogateescape"))
    return path


def one_line(text: str) -> str:
    return " ".join(text.split())


def assert_message(message: str, case: Case) -> None:
    flat = one_line(message)
    for part in case.expect:
        assert one_line(part) in flat, f"{part!r} missing from the message: {message}"


def snapshot(directory: Path) -> dict[str, int]:
    return {
        str(p.relative_to(directory)): p.stat().st_mtime_ns for p in sorted(directory.rglob("*"))
    }


# --------------------------------------------------------------------------- the tests


def test_the_committed_params_are_valid_and_every_edit_changes_them():
    load_params(ROOT / "params.yaml")
    for case in CASES:
        assert case.edit(PARAMS_TEXT) != PARAMS_TEXT, case.id


@pytest.mark.parametrize("case", TABLE)
def test_load_params_refuses(case: Case, tmp_path: Path):
    path = write_case(case, tmp_path)
    with pytest.raises(ConfigError) as err:
        load_params(path)
    assert str(err.value).startswith(f"{path}: ")
    assert_message(str(err.value), case)


@pytest.mark.stage
@pytest.mark.parametrize("case", TABLE)
def test_repro_validate_refuses(case: Case, tmp_path: Path):
    path = write_case(case, tmp_path)
    proc = subprocess.run(
        [sys.executable, "-m", "repro.cli", "validate", str(path)],
        capture_output=True,
        text=True,
        env=stage_env(),
        timeout=60,
    )
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert proc.stderr.startswith(f"error: {path}: ")
    assert_message(proc.stderr, case)


def run_stage(directory: Path, script: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, f"pipelines/{script}.py", "--params", "params.yaml", *args],
        cwd=directory,
        capture_output=True,
        text=True,
        env=stage_env(),
        timeout=120,
    )


@pytest.mark.stage
@pytest.mark.parametrize("case", TABLE)
def test_data_stage_refuses_before_any_work(case: Case, tmp_path: Path):
    study_copy(tmp_path, case.edit(PARAMS_TEXT))
    try:
        load_params(tmp_path / "params.yaml")
    except ConfigError:
        pass
    else:  # stage() would accept it too and start downloading: do not run that here
        pytest.fail(f"{case.id}: load_params accepts it, so the data stage would start work")
    before = snapshot(tmp_path)
    proc = run_stage(tmp_path, "data", "--dataset", "mnist")
    assert proc.returncode != 0, proc.stdout + proc.stderr
    assert proc.stderr.startswith("error: params.yaml: "), proc.stderr
    assert_message(proc.stderr, case)
    assert snapshot(tmp_path) == before, "the stage wrote files before refusing"
    assert not (tmp_path / "data").exists() and not (tmp_path / "runs").exists()


# The arguments dvc.yaml gives each stage (one matrix cell).
STAGES = {
    "data": ["--dataset", "mnist"],
    "reference": ["--dataset", "mnist"],
    "train": ["--dataset", "mnist", "--nz", "32"],
    "study": ["--study", "activation"],
    "efficiency": [],
    "convergence": [],
    "diagnose": [],
    "encoding": [],
    "transfer": [],
    "variational": [],
    "implicit": [],
    "report": [],
}


def test_every_stage_script_is_in_the_stage_list():
    scripts = {p.stem for p in (ROOT / "pipelines").glob("*.py")} - {"common"}
    assert scripts == set(STAGES)


@pytest.mark.stage
@pytest.mark.parametrize("script", sorted(STAGES))
def test_every_stage_refuses_before_any_work(script: str, tmp_path: Path):
    case = next(c for c in CASES if c.id == "lr_zero")
    study_copy(tmp_path, case.edit(PARAMS_TEXT))
    before = snapshot(tmp_path)
    proc = run_stage(tmp_path, script, *STAGES[script])
    assert proc.returncode != 0, proc.stdout + proc.stderr
    assert proc.stderr.startswith("error: params.yaml: "), proc.stderr
    assert_message(proc.stderr, case)
    assert snapshot(tmp_path) == before, "the stage wrote files before refusing"


# --------------------------------------------------------------------------- the docs


def docs_rows() -> dict[str, list[str]]:
    """``docs/params.md``'s bad-params table: case id -> its cells."""
    rows = {}
    for line in DOCS.read_text().splitlines():
        m = re.match(r"^\|\s*`([a-z0-9_]+)`\s*\|", line)
        if m:
            rows[m.group(1)] = [cell.strip() for cell in line.strip().strip("|").split("|")]
    return rows


def test_docs_table_has_one_row_per_case():
    assert sorted(docs_rows()) == sorted(IDS)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_docs_row_shows_the_real_message(case: Case, tmp_path: Path):
    """The message column is what load_params says (for a file called params.yaml)."""
    cell = docs_rows()[case.id][2]
    if case.gap:
        assert cell.startswith("**not rejected**"), cell
        return
    path = write_case(case, tmp_path)
    with pytest.raises(ConfigError) as err:
        load_params(path)
    real = one_line(str(err.value).replace(str(path), "params.yaml"))
    m = re.fullmatch(r"`(.*)`", cell)
    assert m, f"the message cell of {case.id} must be one code span: {cell}"
    shown = one_line(m.group(1))
    if shown.endswith("…"):
        assert real.startswith(shown[:-1].rstrip()), (shown, real)
    else:
        assert real == shown, (shown, real)
