"""The test tiers stay honest: every test that starts a process is marked ``stage`` or ``e2e``.

Tiers (declared in pyproject.toml; ``--strict-markers`` refuses any other):

* unit (no marker): in-process only. ``pytest -m "not stage and not e2e and not gpu"``.
* ``stage``: starts a subprocess: a stage script, a CLI, ``python -c``, worker processes of
  ``run_group``, a SIGKILL target, a headless browser, the GPU dry-run session.
* ``e2e``: runs the real ``dvc repro`` (or ``dvc exp`` / ``dvc queue``) end to end.
* ``gpu``: needs a CUDA device.

The rule, checked statically with ``ast`` (no test module is imported or run):

A test *starts a process* when it reaches a call ``subprocess.run/Popen/call/check_call/
check_output/getoutput/getstatusoutput(...)`` or ``Popen(...)``; any use of ``sys.executable``;
``os.system/popen/fork/spawn*/exec*/posix_spawn*(...)``; ``multiprocessing`` or a
``ProcessPoolExecutor``; ``run_group(..., workers=W)`` unless W is a literal 0 or 1 (a variable
counts: parametrized over 1 and 2, it spawns); ``webdriver.Chrome/Firefox(...)`` (a browser).
Exempt: a subprocess call whose argv is a list literal starting with ``"git"`` (git plumbing
takes milliseconds, and the library runs git from unit tests anyway via ``repro.provenance``).

A test *runs DVC end to end* when it reaches a call ``<anything>.dvc("repro"|"exp"|"queue", ...)``
or a subprocess argv literal holding ``"dvc"`` followed by ``"repro"``, ``"exp"`` or ``"queue"``.
``dvc <cmd> --help`` and the read-only ``dvc exp show`` / ``dvc exp list`` are plain CLI calls:
``stage``.

*Reaches*: the test's own body; the module-level functions and classes (every method) of its
module that it names; names it imports from ``tests.*`` modules; the fixtures it requests by
argument or ``usefixtures`` (its module's first, then ``tests/conftest.py``'s) and the autouse
fixtures; and so on transitively. Module-scoped fixtures count like any other: a test that uses
a fixture that starts a process is itself ``stage``.

Then: a test that starts a process must carry ``stage`` or ``e2e`` (its decorator, its class's or
the module's ``pytestmark``); one that runs DVC end to end must carry ``e2e``.

Not seen (keep them out, or mark by hand): processes started inside ``repro`` itself other than
through ``run_group``'s ``workers``; callables passed around as data; code run at import time (a
module-level spawn runs at collection, in every tier). Marking more than this finds is allowed.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field
from pathlib import Path

TESTS = Path(__file__).resolve().parent

SPAWN_SUBPROCESS = {"run", "Popen", "call", "check_call", "check_output", "getoutput"}
SPAWN_SUBPROCESS |= {"getstatusoutput"}
SPAWN_OS = {"system", "popen", "fork", "forkpty", "posix_spawn", "posix_spawnp"}
DVC_END_TO_END = {"repro", "exp", "queue"}
DVC_READ_ONLY = {"show", "list"}  # dvc exp subcommands that run nothing
PROCESS_MARKS = {"stage", "e2e"}


def _literal(node: ast.AST) -> object:
    return node.value if isinstance(node, ast.Constant) else None


def _dotted(node: ast.AST) -> str:
    """``a.b.c`` for a Name/Attribute chain, "" for anything else."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
        return ".".join(reversed(parts))
    return ""


def _argv_words(call: ast.Call) -> list[object]:
    """The literal words of a subprocess call's argv list (None where not a literal)."""
    if call.args and isinstance(call.args[0], ast.List | ast.Tuple):
        return [_literal(e) for e in call.args[0].elts]
    return []


def _runs_dvc(words: list[object]) -> bool:
    """``dvc repro`` / ``dvc exp ...`` / ``dvc queue ...``, not their ``--help`` nor the
    read-only ``dvc exp show`` / ``dvc exp list`` (they only read git refs and files)."""
    padded = [*words, None, None]
    triples = [(padded[i], padded[i + 1], padded[i + 2]) for i in range(len(words))]
    return "--help" not in words and any(
        a == "dvc" and b in DVC_END_TO_END and not (b == "exp" and c in DVC_READ_ONLY)
        for a, b, c in triples
    )


def scan(node: ast.AST) -> tuple[str | None, str | None]:
    """(why it starts a process, why it runs DVC end to end) for one def's own code."""
    spawn = e2e = None
    for sub in ast.walk(node):
        line = getattr(sub, "lineno", "?")
        if isinstance(sub, ast.Attribute) and _dotted(sub) == "sys.executable":
            spawn = spawn or f"sys.executable (line {line})"
        if isinstance(sub, ast.Name | ast.Attribute) and _dotted(sub).split(".")[-1] in {
            "ProcessPoolExecutor",
            "multiprocessing",
        }:
            spawn = spawn or f"{_dotted(sub)} (line {line})"
        if not isinstance(sub, ast.Call):
            continue
        name = _dotted(sub.func)
        head, _, last = name.rpartition(".")
        if (head == "subprocess" and last in SPAWN_SUBPROCESS) or name == "Popen":
            words = _argv_words(sub)
            if words[:1] != ["git"]:
                spawn = spawn or f"{name}(...) (line {line})"
            if _runs_dvc(words):
                e2e = e2e or f"{name}([... 'dvc', {words[words.index('dvc') + 1]!r} ...])"
        elif head == "os" and (last in SPAWN_OS or last.startswith(("spawn", "exec"))):
            spawn = spawn or f"{name}(...) (line {line})"
        elif name == "webdriver.Chrome" or name == "webdriver.Firefox":
            spawn = spawn or f"{name}(...) (line {line})"
        elif last == "run_group":
            workers = next((k.value for k in sub.keywords if k.arg == "workers"), None)
            if _literal(workers) not in (0, 1):
                spawn = spawn or f"run_group(..., workers=...) (line {line})"
        if last == "dvc" and sub.args and _literal(sub.args[0]) in DVC_END_TO_END:
            e2e = e2e or f"{name}({_literal(sub.args[0])!r}) (line {line})"
    return spawn, e2e


def _is_fixture(decorator: ast.AST) -> bool:
    target = decorator.func if isinstance(decorator, ast.Call) else decorator
    return _dotted(target) in {"pytest.fixture", "fixture"}


def _fixture_call(decorator: ast.AST) -> dict[str, object]:
    if isinstance(decorator, ast.Call):
        return {k.arg: _literal(k.value) for k in decorator.keywords}
    return {}


def marks_of(decorators: list[ast.expr]) -> set[str]:
    """``stage`` for ``@pytest.mark.stage`` / ``@pytest.mark.stage(...)``."""
    found = set()
    for d in decorators:
        name = _dotted(d.func if isinstance(d, ast.Call) else d)
        if name.startswith(("pytest.mark.", "mark.")):
            found.add(name.rsplit(".", 1)[-1])
    return found


def _usefixtures(decorators: list[ast.expr]) -> list[str]:
    return [
        _literal(a)
        for d in decorators
        if isinstance(d, ast.Call) and _dotted(d.func).endswith("mark.usefixtures")
        for a in d.args
    ]


@dataclass
class Module:
    name: str
    defs: dict[str, ast.FunctionDef | ast.ClassDef] = field(default_factory=dict)
    fixtures: dict[str, ast.FunctionDef] = field(default_factory=dict)
    autouse: list[str] = field(default_factory=list)
    imported: dict[str, tuple[str, str]] = field(default_factory=dict)  # name -> (module, name)
    marks: set[str] = field(default_factory=set)
    tests: list[tuple[str, ast.FunctionDef, set[str]]] = field(default_factory=list)

    @classmethod
    def parse(cls, name: str, source: str) -> Module:
        m = cls(name)
        for node in ast.parse(source).body:
            if isinstance(node, ast.FunctionDef | ast.ClassDef):
                m.defs[node.name] = node
            if isinstance(node, ast.FunctionDef):
                fixture = [d for d in node.decorator_list if _is_fixture(d)]
                if fixture:
                    options = _fixture_call(fixture[0])
                    m.fixtures[str(options.get("name") or node.name)] = node
                    if options.get("autouse"):
                        m.autouse.append(node.name)
                elif node.name.startswith("test"):
                    m.tests.append((node.name, node, marks_of(node.decorator_list)))
            elif isinstance(node, ast.ClassDef) and node.name.startswith("Test"):
                outer = marks_of(node.decorator_list)
                for item in node.body:
                    if isinstance(item, ast.FunctionDef) and item.name.startswith("test"):
                        marks = outer | marks_of(item.decorator_list)
                        m.tests.append((f"{node.name}::{item.name}", item, marks))
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("tests."):
                for alias in node.names:
                    key = alias.asname or alias.name
                    m.imported[key] = (node.module.removeprefix("tests."), alias.name)
            elif isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == "pytestmark" for t in node.targets
            ):
                value = node.value
                items = value.elts if isinstance(value, ast.List | ast.Tuple) else [value]
                m.marks |= marks_of(items)
        return m


class Suite:
    """Test modules plus conftest; answers "does this test start a process / run DVC?"."""

    def __init__(self, sources: dict[str, str]) -> None:
        self.modules = {name: Module.parse(name, src) for name, src in sources.items()}

    @classmethod
    def from_directory(cls, directory: Path = TESTS) -> Suite:
        paths = [directory / "conftest.py", *sorted(directory.glob("test_*.py"))]
        return cls({p.stem: p.read_text() for p in paths if p.is_file()})

    def _fixture(self, module: Module, name: str) -> tuple[str, ast.FunctionDef] | None:
        for m in (module, self.modules.get("conftest")):
            if m is not None and name in m.fixtures:
                return m.name, m.fixtures[name]
        return None

    def _edges(self, module: Module, node: ast.AST) -> list[tuple[str, str, ast.AST]]:
        out = []
        for sub in ast.walk(node):
            if isinstance(sub, ast.Name) and isinstance(sub.ctx, ast.Load):
                if sub.id in module.defs:
                    out.append((module.name, sub.id, module.defs[sub.id]))
                elif sub.id in module.imported:
                    where, what = module.imported[sub.id]
                    target = self.modules.get(where)
                    if target is not None and what in target.defs:
                        out.append((where, what, target.defs[what]))
        if isinstance(node, ast.FunctionDef):
            requested = [a.arg for a in node.args.args + node.args.kwonlyargs]
            requested += _usefixtures(node.decorator_list)
            is_fixture = any(_is_fixture(d) for d in node.decorator_list)
            if is_fixture or node.name.startswith("test"):
                for name in requested:
                    found = self._fixture(module, name)
                    if found:
                        out.append((found[0], found[1].name, found[1]))
        return out

    def reach(self, module_name: str, node: ast.AST) -> tuple[str | None, str | None]:
        """(why it starts a process, why it runs DVC) over everything ``node`` reaches."""
        module = self.modules[module_name]
        seen: set[tuple[str, str]] = set()
        spawn = e2e = None
        stack: list[tuple[str, str, ast.AST]] = [(module_name, "<test>", node)]
        conftest = self.modules.get("conftest")
        for m in (module, conftest):
            for name in m.autouse if m is not None else []:
                stack.append((m.name, name, m.defs[name]))
        while stack:
            where, name, current = stack.pop()
            if (where, name) in seen and name != "<test>":
                continue
            seen.add((where, name))
            s, e = scan(current)
            label = f"{name} in {where}.py" if name != "<test>" else "the test body"
            spawn = spawn or (s and f"{s} in {label}")
            e2e = e2e or (e and f"{e} in {label}")
            stack.extend(self._edges(self.modules[where], current))
        return spawn, e2e

    def problems(self) -> list[str]:
        found = []
        for module in self.modules.values():
            for test, node, marks in module.tests:
                marks = marks | module.marks
                spawn, e2e = self.reach(module.name, node)
                where = f"tests/{module.name}.py::{test}"
                if e2e and "e2e" not in marks:
                    found.append(f"{where} runs DVC end to end ({e2e}): mark it e2e")
                elif spawn and not marks & PROCESS_MARKS:
                    found.append(
                        f"{where} starts a process ({spawn}): mark it stage "
                        "(@pytest.mark.stage, or pytestmark = pytest.mark.stage for the module)"
                    )
        return found

    def tier(self, module_name: str, test: str) -> str:
        """What the check asks of one test: "e2e", "stage" or "unit"."""
        node = next(n for name, n, _ in self.modules[module_name].tests if name == test)
        spawn, e2e = self.reach(module_name, node)
        return "e2e" if e2e else "stage" if spawn else "unit"


# --------------------------------------------------------------------------- the suite itself


def test_every_test_that_starts_a_process_is_marked_stage_or_e2e():
    problems = Suite.from_directory().problems()
    assert not problems, "\n".join(problems)


def test_the_check_sees_the_known_process_tests_of_this_suite():
    """Not vacuous: the real suite's known cases come out in their tier."""
    suite = Suite.from_directory()
    assert suite.tier("test_pipeline", "test_second_repro_is_a_no_op") == "e2e"
    assert suite.tier("test_pipeline", "test_mlflow_server_binds_to_loopback_only") == "e2e"
    concurrent = "test_parallel_tracked_runs_share_one_fresh_store_intact"
    assert suite.tier("test_concurrency", concurrent) == "stage"
    crash = "test_sigkill_then_rerun_ends_bitwise_like_an_uninterrupted_run"  # module fixtures
    assert suite.tier("test_crash_resume", crash) == "stage"
    dry_run = "test_dry_run_archive_holds_every_phase_and_every_run"  # a module fixture's run
    assert suite.tier("test_gpu_session", dry_run) == "stage"
    pool = "test_a_failing_job_comes_back_as_its_error_and_the_others_finish"
    assert suite.tier("test_engine", pool) == "stage"
    assert suite.tier("test_report_html", "test_report_html_opens_in_headless_chromium") == "stage"
    assert suite.tier("test_engine", "test_sequential_groups_run_the_longest_job_first") == "unit"
    resumed = "test_a_resumed_run_reports_every_epoch_to_its_tracker"
    assert suite.tier("test_crash_resume", resumed) == "unit"
    git_only = "test_dirty_means_code_or_params_changed_not_that_a_stage_rewrote_its_outputs"
    assert suite.tier("test_provenance", git_only) == "unit"


# --------------------------------------------------------------------------- the check, on toys

CONFTEST = """
import subprocess, pytest

@pytest.fixture(scope="session")
def server():
    return subprocess.Popen(["mlflow", "server"])

@pytest.fixture
def plain(tmp_path):
    return tmp_path
"""

TOY = """
import subprocess, sys, pytest
from repro.engine import run_group

def helper(d):
    return subprocess.run([sys.executable, "x.py"], cwd=d)

def git(d):
    subprocess.run(["git", "init"], cwd=d, check=True)

class Study:
    def dvc(self, *args):
        return subprocess.run([sys.executable, "-m", "dvc", *args])

@pytest.fixture(scope="module")
def study():
    s = Study()
    s.dvc("repro")
    return s

def test_direct():
    subprocess.run(["ls"])

def test_via_helper(tmp_path):
    helper(tmp_path)

def test_via_conftest_fixture(server):
    pass

def test_via_module_fixture(study):
    pass

def test_git_only(tmp_path, plain):
    git(tmp_path)

@pytest.mark.parametrize("w", [1, 2])
def test_pool(w):
    run_group([], workers=w)

def test_sequential():
    run_group([], workers=1)

def test_dvc_help():
    subprocess.run([sys.executable, "-m", "dvc", "exp", "--help"])

def test_dvc_queue():
    subprocess.run(["dvc", "queue", "start"])

def test_dvc_exp_show():
    subprocess.run([sys.executable, "-m", "dvc", "exp", "show", "--no-pager"])

@pytest.mark.stage
def test_marked_but_e2e(study):
    pass

@pytest.mark.e2e
def test_marked_e2e(study):
    pass
"""


def test_the_check_finds_processes_through_helpers_fixtures_and_classes():
    suite = Suite({"conftest": CONFTEST, "test_toy": TOY})
    tiers = {name: suite.tier("test_toy", name) for name, *_ in suite.modules["test_toy"].tests}
    assert tiers == {
        "test_direct": "stage",
        "test_via_helper": "stage",
        "test_via_conftest_fixture": "stage",
        "test_via_module_fixture": "e2e",
        "test_git_only": "unit",
        "test_pool": "stage",
        "test_sequential": "unit",
        "test_dvc_help": "stage",
        "test_dvc_queue": "e2e",
        "test_dvc_exp_show": "stage",
        "test_marked_but_e2e": "e2e",
        "test_marked_e2e": "e2e",
    }
    flagged = {p.split("::")[1].split()[0] for p in suite.problems()}
    assert flagged == {name for name, tier in tiers.items() if tier != "unit"} - {"test_marked_e2e"}


def test_a_module_pytestmark_covers_its_tests():
    marked = "import pytest\npytestmark = [pytest.mark.stage]\n" + TOY.replace(
        "@pytest.mark.stage\ndef test_marked_but_e2e", "def test_marked_but_e2e"
    )
    suite = Suite({"conftest": CONFTEST, "test_toy": marked})
    flagged = {p.split("::")[1].split()[0] for p in suite.problems()}
    assert flagged == {"test_via_module_fixture", "test_dvc_queue", "test_marked_but_e2e"}
