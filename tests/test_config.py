"""Bad params are refused before any work, naming the dotted key and the allowed values."""

import subprocess
import sys

import pytest
import yaml

from repro.config import ConfigError, load_params, params_from_dict, split_sizes
from tests.conftest import ROOT


def base() -> dict:
    return yaml.safe_load((ROOT / "params.yaml").read_text())


def with_(path: str, value, **more):
    """The committed params with ``path`` set to ``value`` (``more``: further ``a__b=value``)."""
    d = base()
    for dotted, v in [(path, value), *((k.replace("__", "."), v) for k, v in more.items())]:
        *parents, leaf = dotted.split(".")
        node = d
        for key in parents:
            node = node[key]
        node[leaf] = v
    return d


WITH_CIFAR = ["mnist", "fashion_mnist", "cifar10"]


def test_committed_params_is_the_quick_profile_and_both_profiles_are_valid():
    assert (ROOT / "params.yaml").read_text() == (ROOT / "profiles" / "quick.yaml").read_text()
    assert load_params(ROOT / "params.yaml").profile == "quick"
    paper = load_params(ROOT / "profiles" / "paper.yaml")
    assert (
        paper.profile == "paper" and paper.train.epochs == 500 and paper.model.nz == [64, 128, 256]
    )


BAD = [
    (with_("train.epochs", 0), "train.epochs", "must be > 0"),
    (with_("train.lr", -1e-4), "train.lr", "must be > 0"),
    (with_("train.batch_size", "64"), "train.batch_size", "expected an integer"),
    (with_("model.activation", "swish"), "model.activation", "allowed: \\['elu'"),
    (with_("model.nz", [0]), "model.nz\\[0\\]", "must be > 0"),
    (with_("train.seeds", []), "train.seeds", "must not be empty"),
    (
        with_("train.methods", ["gon", "vae"]),
        "train.methods",
        "allowed: \\['gon', 'ae', 'ae_linear'\\]",  # the main comparison: GON and the AEs
    ),
    (
        with_("data.datasets", ["cifar100"]),
        "data.datasets",
        "'cifar100' is not allowed; allowed: \\['mnist', 'fashion_mnist', 'cifar10', 'synthetic'\\]",
    ),
    (with_("data.synthetic_channels", 2), "data.synthetic_channels", "2; allowed: \\[1, 3\\]"),
    (
        with_("data.datasets", WITH_CIFAR, train__train_images=46_000),
        "train.train_images",
        "46000 must be in 1..45000 \\(the cifar10 train split\\)",
    ),
    (
        with_("data.datasets", WITH_CIFAR, train__train_images=45_000, train__val_images=6_000),
        "train.val_images",
        "6000 must be in 1..5000 \\(the cifar10 val split\\)",
    ),
    (
        with_("data.datasets", WITH_CIFAR, data__image_size=28),
        "data.image_size",
        "28 is not allowed with cifar10",
    ),
    (with_("train.train_images", 60000), "train.train_images", "1..50000"),
    (
        with_("studies.activation.reference", "swish"),
        "studies.activation.reference",
        "'swish' is not one of studies.activation.activations",
    ),
    (
        with_("studies.latent.seeds", [7]),
        "studies.latent.seeds",
        "must be a subset of studies.seeds",
    ),
    (with_("studies.lr", -1.0), "studies.lr", "must be > 0"),
    (with_("evaluate.val_images", 0), "evaluate.val_images", "must be in 1..10000"),
    (with_("studies.multistep.steps", [1, 0]), "studies.multistep.steps\\[1\\]", "must be >= 1"),
    (
        with_("studies.activation.methods", ["gfe"]),
        "studies.activation.methods",
        "'gfe' is not allowed",
    ),
    (with_("studies.test_images", 20000), "studies.test_images", "must be in 1..10000"),
    (with_("profile", "fast"), "profile", "allowed: \\['quick', 'paper'"),
    (
        with_("evaluate.headline_bn", "eval"),
        "evaluate.headline_bn",
        "allowed: \\['running', 'batch'\\]",
    ),
    (with_("train.device", "tpu"), "train.device", "allowed"),
]


@pytest.mark.parametrize(("params", "key", "why"), BAD, ids=[b[1] for b in BAD])
def test_bad_value_is_refused_with_its_key(params, key, why):
    with pytest.raises(ConfigError, match=f"{key}: .*{why}"):
        params_from_dict(params)


def test_cifar10_is_an_allowed_dataset_with_its_own_split_sizes():
    p = params_from_dict(
        with_("data.datasets", WITH_CIFAR, data__synthetic_channels=3, train__train_images=45_000)
    )
    assert p.data.datasets == WITH_CIFAR and p.data.synthetic_channels == 3
    assert split_sizes("cifar10", p.data) == {"train": 45_000, "val": 5_000, "test": 10_000}
    assert split_sizes("mnist", p.data) == {"train": 50_000, "val": 10_000, "test": 10_000}
    assert split_sizes("synthetic", p.data) == p.data.synthetic_sizes
    assert load_params(ROOT / "params.yaml").data.synthetic_channels == 1


def test_misspelt_key_is_refused_with_a_suggestion():
    d = base()
    d["train"]["epocs"] = d["train"].pop("epochs")
    with pytest.raises(ConfigError, match="train.epocs: unknown key. Did you mean 'epochs'"):
        params_from_dict(d)


def test_yaml_syntax_error_names_the_file(tmp_path):
    bad = tmp_path / "params.yaml"
    bad.write_text("train: {epochs: 3\n")
    with pytest.raises(ConfigError, match="params.yaml: YAML syntax error"):
        load_params(bad)


@pytest.mark.stage
def test_repro_validate_exits_non_zero_on_a_bad_file(tmp_path):
    bad = tmp_path / "params.yaml"
    bad.write_text(yaml.safe_dump(with_("train.lr", 0)))
    proc = subprocess.run(
        [sys.executable, "-m", "repro.cli", "validate", str(bad)], capture_output=True, text=True
    )
    assert proc.returncode == 2 and "train.lr" in proc.stderr
    ok = subprocess.run(
        [sys.executable, "-m", "repro.cli", "validate", str(ROOT / "params.yaml")],
        capture_output=True,
        text=True,
    )
    assert ok.returncode == 0, ok.stderr
