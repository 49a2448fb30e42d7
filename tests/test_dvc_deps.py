"""`dvc.yaml`'s code dependencies are the stages' import closures, derived here, not hand-kept.

DVC re-runs a stage when one of its ``deps`` changes, so a module a stage imports but does not
list is a change that silently keeps a stale result, and a listed module it never imports is a
needless re-run. The rule checked: for every stage, the Python files it declares equal the closure
of what its script imports
within this repository — ``repro.*`` modules (module-level and function-level imports alike: a
lazy import still runs in the stage), the parent packages' ``__init__.py`` files except the
top-level ``repro/__init__.py`` (a docstring and a version; checked below), and the stage
scripts' shared ``pipelines/common.py``. Python code is declared file by file: a directory
dependency holding ``.py`` files would cover a module dropped from the list, so it is refused
(non-Python inputs such as templates may be declared as directories). Data, models, params and
non-Python files are not judged here.
"""

from __future__ import annotations

import ast
import copy
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT

CODE_ROOTS = ("repro", "pipelines", "bench")
PACKAGE_MARKER = ROOT / "repro" / "__init__.py"


def _module_file(name: str) -> Path | None:
    """The file of module ``name`` in this repository, or None (third-party, stdlib)."""
    base = ROOT.joinpath(*name.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def _imported_modules(path: Path) -> set[str]:
    """Every module ``path`` imports anywhere (``from a import b`` also tries ``a.b``)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
            names |= {f"{node.module}.{alias.name}" for alias in node.names}
    return names


def _packages(path: Path) -> set[Path]:
    """The ``__init__.py`` files a module's import runs (the top-level marker aside)."""
    out = set()
    for parent in path.relative_to(ROOT).parents:
        init = ROOT / parent / "__init__.py"
        if parent != Path(".") and init.is_file() and init != PACKAGE_MARKER:
            out.add(init)
    return out


def import_closure(script: Path) -> set[str]:
    """Repository-relative paths of the Python files running ``script`` imports."""
    seen: set[Path] = set()
    todo = [script]
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        for name in _imported_modules(path):
            found = _module_file(name)
            if found is None and name.split(".")[0] == "common":  # a stage script's sibling
                found = path.parent / "common.py" if path.parent.name == "pipelines" else None
            if found is not None and found.is_file():
                todo += [found, *_packages(found)]
    seen.discard(PACKAGE_MARKER)
    return {p.relative_to(ROOT).as_posix() for p in seen}


def _declared_code(deps: list) -> set[str]:
    """The Python files a stage's ``deps`` name (directories expanded)."""
    out = set()
    for dep in deps:
        dep = str(dep)
        if dep.split("/")[0] not in CODE_ROOTS or "$" in dep:
            continue
        path = ROOT / dep
        if path.is_dir():
            out |= {p.relative_to(ROOT).as_posix() for p in path.rglob("*.py")}
        elif dep.endswith(".py"):
            out.add(dep)
    return out


def _stage_body(stage: dict) -> dict:
    return stage.get("do", stage)  # foreach stages keep their body under `do`


def _script(cmd: str) -> Path:
    words = cmd.split()
    return ROOT / words[words.index("python") + 1]


def check_stage(stage: dict) -> tuple[set[str], set[str]]:
    """(imported but not declared, declared but not imported) for one stage."""
    body = _stage_body(stage)
    closure = import_closure(_script(body["cmd"]))
    declared = _declared_code(body.get("deps", []))
    return closure - declared, declared - closure


def _stages() -> dict[str, dict]:
    with open(ROOT / "dvc.yaml", encoding="utf-8") as fh:
        return yaml.safe_load(fh)["stages"]


@pytest.mark.parametrize("name", sorted(_stages()))
def test_stage_code_deps_are_its_import_closure(name):
    missing, extra = check_stage(_stages()[name])
    assert not missing, f"dvc.yaml stage {name!r} imports but does not declare: {sorted(missing)}"
    assert not extra, f"dvc.yaml stage {name!r} declares but never imports: {sorted(extra)}"


def test_a_removed_dep_is_found():
    stage = copy.deepcopy(_stages()["train"])
    stage["deps"].remove("repro/gpu.py")
    missing, extra = check_stage(stage)
    assert missing == {"repro/gpu.py"} and not extra


def _code_directories(deps: list) -> set[str]:
    """The directory deps under a code root that hold Python files."""
    return {
        str(dep)
        for dep in deps
        if str(dep).split("/")[0] in CODE_ROOTS
        and (ROOT / str(dep)).is_dir()
        and any((ROOT / str(dep)).rglob("*.py"))
    }


@pytest.mark.parametrize("name", sorted(_stages()))
def test_stage_declares_its_code_file_by_file(name):
    dirs = _code_directories(_stage_body(_stages()[name]).get("deps", []))
    assert not dirs, (
        f"dvc.yaml stage {name!r}: declare the Python files, not the directories {dirs}"
    )


def test_a_module_removed_from_the_report_stage_is_found():
    stage = copy.deepcopy(_stages()["report"])
    stage["deps"].remove("repro/report/verdicts.py")
    missing, extra = check_stage(stage)
    assert missing == {"repro/report/verdicts.py"} and not extra
    assert _code_directories(stage["deps"] + ["repro/report"]) == {"repro/report"}


def test_the_package_marker_holds_no_code():
    """repro/__init__.py is left out of every closure: it must stay a docstring and a version."""
    tree = ast.parse(PACKAGE_MARKER.read_text(encoding="utf-8"))
    kinds = {type(node).__name__ for node in tree.body}
    assert kinds <= {"Expr", "Assign"}, kinds
