"""What identifies a configuration and a run: the params hash, flat params, the run matrix cell.

:func:`params_sha256` and :func:`flatten` are how a configuration is recorded (MLflow tags and
params, the report's provenance); :class:`RunSpec` is one trained model of the
dataset × method × nz × seed matrix of ``dvc.yaml`` and where its files live, and
:func:`run_spec` refuses a cell that ``params.yaml`` does not list.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from repro.config_schema import ConfigError, Params


def params_sha256(p: Params) -> str:
    """A stable hash of the effective configuration (tags MLflow runs, printed in the report)."""
    blob = json.dumps(p.to_dict(), sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()


def flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"train": {"lr": 1e-4}}`` → ``{"train.lr": 1e-4}`` (MLflow params are flat)."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}.{k}" if prefix else str(k)
        if isinstance(v, dict):
            out.update(flatten(v, key))
        else:
            out[key] = v
    return out


@dataclass(frozen=True)
class RunSpec:
    """One trained model: a cell of the dataset × method × nz × seed matrix in ``dvc.yaml``."""

    dataset: str
    method: str
    nz: int
    seed: int

    @property
    def name(self) -> str:
        return f"{self.dataset}/{self.method}-nz{self.nz}-s{self.seed}"

    @property
    def group(self) -> str:
        """The group directory ``<dataset>-nz<nz>``; its stage ``train@<dataset>-<nz>`` trains all
        methods × seeds."""
        return f"{self.dataset}-nz{self.nz}"

    @property
    def relative_dir(self) -> Path:
        """``main/<dataset>-nz<nz>/<method>-s<seed>``: the run's place under runs/ and models/."""
        return Path("main") / self.group / f"{self.method}-s{self.seed}"

    def run_dir(self, root: str | Path = "runs") -> Path:
        """Committed results: ``runs/main/<dataset>-nz<nz>/<method>-s<seed>/``."""
        return Path(root) / self.relative_dir

    def model_dir(self, root: str | Path = "models") -> Path:
        """DVC-cached ``model.pt`` and the resume ``checkpoint.pt``: same layout under models/."""
        return Path(root) / self.relative_dir


def run_spec(p: Params, dataset: str, method: str, nz: int, seed: int) -> RunSpec:
    """Check that a stage's matrix cell is one that ``params.yaml`` lists."""
    for key, value, allowed in (
        ("data.datasets", dataset, p.data.datasets),
        ("train.methods", method, p.train.methods),
        ("model.nz", nz, p.model.nz),
        ("train.seeds", seed, p.train.seeds),
    ):
        if value not in allowed:
            raise ConfigError(
                f"{key}: run asks for {value!r}, which params.yaml does not list ({allowed})"
            )
    return RunSpec(dataset, method, nz, seed)
