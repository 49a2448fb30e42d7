"""Each name family is written once: config validates against exactly the registry's keys.

For every family params may name (activations, methods, architectures, ODE solvers, flow losses,
gradient modes, BatchNorm modes, datasets, data sources, studies) the values config accepts are
the keys of the registry that implements them, in the same order (validation errors list them
in that order). A name added to only one place fails here: the registries are keyed from
:mod:`repro.names` by :func:`repro.names.registry`, which refuses the import of a registry whose
entries and names differ, and the checks below catch a registry built any other way.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import pytest

import repro.config as config
import repro.names as names
from repro.config import ConfigError, params_from_dict
from tests.conftest import ROOT


def _activations() -> tuple[str, ...]:
    from repro.models import ACTIVATION_REGISTRY

    return tuple(ACTIVATION_REGISTRY)


def _methods() -> tuple[str, ...]:
    from repro.encoders import ENCODERS

    return tuple(ENCODERS)


def _architectures() -> tuple[str, ...]:
    from repro.encoders import ARCHITECTURE_REGISTRY

    return tuple(ARCHITECTURE_REGISTRY)


def _solvers() -> tuple[str, ...]:
    from repro import flows

    return tuple(flows.ODE_SOLVERS)


def _flow_losses() -> tuple[str, ...]:
    from repro.flows import FLOW_LOSS_REGISTRY

    return tuple(FLOW_LOSS_REGISTRY)


def _grad_modes() -> tuple[str, ...]:
    from repro import flows

    return tuple(flows.GRAD_MODES)


def _bn_modes() -> tuple[str, ...]:
    from repro.evaluate import BN_MODES, BN_TRAIN_FLAG

    assert tuple(BN_MODES) == tuple(BN_TRAIN_FLAG)
    return tuple(BN_TRAIN_FLAG)


def _datasets() -> tuple[str, ...]:
    from repro import data

    return tuple(data.DATASETS)


def _sources() -> tuple[str, ...]:
    from repro.data_sources import SOURCE_FUNCS

    return tuple(SOURCE_FUNCS)


def _studies() -> tuple[str, ...]:
    from repro.studies import STUDY_CELLS

    return tuple(STUDY_CELLS)


# family: (config's tuple, the implementing registry's keys, a params mapping naming `value`)
FAMILIES: dict[str, tuple[str, Callable[[], tuple[str, ...]], Callable[[str], dict]]] = {
    "activation": ("ACTIVATIONS", _activations, lambda v: {"model": {"activation": v}}),
    "method": (
        "METHODS",
        _methods,
        lambda v: {"efficiency": {"methods": [v]}, "convergence": {"method": v}},
    ),
    "architecture": (
        "ARCHITECTURES",
        _architectures,
        lambda v: {"efficiency": {"architecture": v}},
    ),
    "ODE solver": ("ODE_SOLVERS", _solvers, lambda v: {"gfe": {"solver": v}}),
    "flow loss": ("FLOW_LOSSES", _flow_losses, lambda v: {"gfe": {"loss": v}}),
    "gradient mode": ("GRAD_MODES", _grad_modes, lambda v: {"gfe": {"grad_mode": v}}),
    "BatchNorm mode": ("BN_MODES", _bn_modes, lambda v: {"evaluate": {"headline_bn": v}}),
    "dataset": ("DATASETS", _datasets, lambda v: {"data": {"datasets": [v]}}),
    "data source": ("SOURCES", _sources, lambda v: {"data": {"sources": [v]}}),
}


def _refused(data: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as err:
        params_from_dict(data)
    return str(err.value)


@pytest.mark.parametrize("family", FAMILIES)
def test_config_validates_against_exactly_the_registry_keys_in_order(family):
    attr, registry_keys, naming = FAMILIES[family]
    keys = registry_keys()
    assert getattr(config, attr) == keys, f"config.{attr} and the {family} registry differ"
    # What validation really checks: the allowed list of its error is the registry's keys.
    assert f"is not allowed; allowed: {list(keys)}" in _refused(naming("no-such-name"))


@pytest.mark.parametrize("family", [f for f in FAMILIES if f != "dataset"])
def test_config_accepts_every_registry_name(family):
    """(A dataset also needs its split sizes to fit: test_config.py covers CIFAR-10's.)"""
    _, registry_keys, naming = FAMILIES[family]
    for name in registry_keys():
        params_from_dict(naming(name))


def test_studies_are_the_study_registry_keys_everywhere():
    from repro.session_runs import SESSION_STUDIES

    assert config.STUDIES == _studies()  # pipelines/study.py's --study choices
    assert set(SESSION_STUDIES) <= set(config.STUDIES)
    from repro.studies import study_cells

    with pytest.raises(ConfigError, match=r"allowed: \['activation', 'multistep', 'latent'\]"):
        study_cells(params_from_dict({}), "no-such-study")


def test_every_name_has_an_implementation():
    from torchdiffeq._impl.odeint import SOLVERS
    from torchdiffeq._impl.solvers import FixedGridODESolver

    from repro import data, flows
    from repro.efficiency import EFFICIENCY_STEP_COST
    from repro.groups import STEP_COST

    # Solvers: torchdiffeq's, and step_size goes to exactly the fixed-grid ones.
    assert set(names.ODE_SOLVERS) <= set(SOLVERS)
    fixed = tuple(s for s in names.ODE_SOLVERS if issubclass(SOLVERS[s], FixedGridODESolver))
    assert fixed == names.FIXED_STEP_SOLVERS == flows.FIXED_STEP_SOLVERS
    # Datasets: pinned raw hashes for every downloaded one; the synthetic one is made here.
    assert set(data.RAW_SHA256) | {"synthetic"} == set(names.DATASETS)
    # Gradient modes: each is accepted by the GFE encoder.
    for mode in names.GRAD_MODES:
        flows.GradientFlowEncoder(2, grad_mode=mode)
    # Per-method cost tables name only methods.
    assert set(STEP_COST) | set(EFFICIENCY_STEP_COST) <= set(names.METHODS)


def test_registry_is_keyed_and_ordered_by_the_names():
    assert names.registry("thing", ("b", "a"), {"a": 1, "b": 2}) == {"b": 2, "a": 1}
    assert list(names.registry("thing", ("b", "a"), {"a": 1, "b": 2})) == ["b", "a"]
    with pytest.raises(names.RegistryError, match=r"no entry for \['c'\], no name for \[\]"):
        names.registry("thing", ("a", "b", "c"), {"a": 1, "b": 2})
    with pytest.raises(names.RegistryError, match=r"no entry for \[\], no name for \['c'\]"):
        names.registry("thing", ("a", "b"), {"a": 1, "b": 2, "c": 3})


@pytest.mark.stage
def test_config_and_names_load_without_torch():
    """The reason the names are not in the torch modules: validating params needs no torch."""
    code = (
        "import sys, repro.config as c; c.load_params('params.yaml'); "
        "assert 'torch' not in sys.modules, 'torch imported'; "
        "import repro.names; print('ok')"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


def test_the_readme_layout_names_every_module():
    """README's Layout section is the newcomer's map: a module missing from it is a drift."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    layout = readme[readme.index("## Layout") :]
    modules = [p.name for p in (ROOT / "repro").glob("*.py") if p.name != "__init__.py"]
    missing = [m for m in sorted(modules) if m not in layout]
    # repro/report/: each module named in the block of its own folder (a sub-package's block runs
    # from its "    name/" line to the next folder's).
    report = layout[layout.index("  report/") : layout.index("pipelines/")]
    blocks = dict(re.findall(r"^ {2,4}(\w+)/ (.*?)(?=^ {4}\w+/ |\Z)", report, re.M | re.S))
    for folder in [ROOT / "repro" / "report", *(ROOT / "repro" / "report").glob("*/")]:
        if not (folder / "__init__.py").is_file():
            continue
        block = blocks.get(folder.name, "")
        names = sorted(p.name for p in folder.glob("*.py") if p.name != "__init__.py")
        missing += [f"{folder.name}/{m}" for m in names if m not in block]
    assert not missing, f"README.md's Layout section does not name {missing}"


def test_the_report_reads_only_curve_columns_training_writes():
    from repro.report.study_runs import CURVE_COLUMNS
    from repro.train_files import CURVE_FIELDS

    assert set(CURVE_COLUMNS) <= set(CURVE_FIELDS)


@pytest.mark.stage
def test_the_claims_and_the_text_labels_load_no_plotting_library():
    """Judging claims (the CLI, the GPU session) and naming things need no matplotlib: labels
    live in repro.report.labels, the figures' modules import them from there."""
    modules = ["repro.report.claims.evaluate", "repro.report.labels", "repro.report.verdicts"]
    code = f"import sys; import {', '.join(modules)}; print('matplotlib' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
