"""The names params may use, each family written once; config and the registries both use them.

Why a module of its own. The names are needed in two kinds of place:

* :mod:`repro.config` validates ``params.yaml`` against them (and uses some as dataclass
  defaults). It must stay importable and usable without torch: ``repro profile`` and the
  tracking code load params without it, and so does every test that only checks a params file.
* the modules that implement them (:mod:`repro.models`, :mod:`repro.encoders`,
  :mod:`repro.flows`, :mod:`repro.evaluate`, :mod:`repro.data`, :mod:`repro.studies`) import
  torch, and import :mod:`repro.config` themselves.

Config importing those modules would need torch at every validation (and the studies module
pulls in all of training), so the names live here, in a module that imports nothing from
``repro`` and no third-party package. The import graph stays one-way::

    repro.names  <-  repro.config  <-  models, encoders, flows, evaluate, data, studies
    repro.names  <-----------------------'

Each tuple below is the only place its names, and their order, are written (validation errors
list the allowed values in this order). An implementing module builds its registry with
:func:`registry`, which keys the dict from the tuple and refuses, at import time, a name
without an implementation or an implementation without a name: a new activation added to one
place only fails at ``import repro.models`` (and in ``tests/test_registries.py``), not halfway
through a run. The registries, keyed from these names:

================  =============================================================================
``ACTIVATIONS``   :data:`repro.models.ACTIVATION_REGISTRY` (name → ``nn.Module`` factory)
``METHODS``       :data:`repro.encoders.ENCODERS` (name → latent finder)
``VARIATIONAL_METHODS`` :data:`repro.variational.VARIATIONAL_MODELS` (name → model builder)
``ARCHITECTURES`` :data:`repro.encoders.ARCHITECTURE_REGISTRY` (name → decoder/encoder builders)
``ODE_SOLVERS``   torchdiffeq's solvers of these names, called by :func:`repro.flows.ode_flow`
                  (those in ``FIXED_STEP_SOLVERS`` are given ``gfe.step_size``)
``FLOW_LOSSES``   :data:`repro.flows.FLOW_LOSS_REGISTRY` (name → per-sample loss)
``GRAD_MODES``    the three branches of :func:`repro.flows.ode_flow`
``BN_MODES``      :data:`repro.evaluate.BN_TRAIN_FLAG` (name → ``module.train()`` flag)
``STUDIES``       :data:`repro.studies.STUDY_CELLS` (name → the study's cells)
``DATASETS``      :func:`repro.data.prepare_dataset` (its pinned hashes are keyed by name)
``SOURCES``       ``repro.data_sources.SOURCE_FUNCS`` (name → loader)
================  =============================================================================

:mod:`repro.config` re-exports every tuple, so ``from repro.config import STUDIES`` keeps
working; the profile and device names are config's own (``PROFILES``, ``DEVICES``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypeVar

T = TypeVar("T")

ACTIVATIONS = ("elu", "relu", "leaky_relu", "tanh", "softplus", "silu", "gelu")
# ``ae_linear``: the autoencoder whose encoder is one linear layer (docs/protocol.md §5's control).
# The main comparison and the ablations train these (repro.train.fit; stackable by repro.batched);
# the Gradient Flow Encoders run in the GFE studies (repro.efficiency).
MAIN_METHODS = ("gon", "ae", "ae_linear")
GFE_METHODS = ("gfe", "gfe2", "gfe_adaptive")
METHODS = MAIN_METHODS + GFE_METHODS
# The variational models (repro.variational): the variational GON of Variational-GON.py and a VAE
# with the same decoder and a mirrored conv encoder.
VARIATIONAL_METHODS = ("vgon", "vae")
# The implicit study (repro.implicit): GON and the autoencoder, both with the SIREN decoder.
IMPLICIT_METHODS = ("gon", "ae")
# "siren": Implicit-GON.py's SIREN decoder (repro.models.SirenDecoder) of the implicit study.
ARCHITECTURES = ("conv", "mlp", "siren")
# torchdiffeq solvers admitted by repro.flows: those choosing their own steps (rtol/atol), then
# those taking a fixed step (gfe.step_size). Its Adams–Bashforth solvers are not among them:
# "explicit_adams" diverged (|z| ~ 1e76) on the linear test flow at a step size where Euler is
# stable.
ADAPTIVE_SOLVERS = ("dopri5", "dopri8", "bosh3", "fehlberg2", "adaptive_heun")
FIXED_STEP_SOLVERS = ("euler", "midpoint", "rk4", "heun3")
ODE_SOLVERS = ADAPTIVE_SOLVERS + FIXED_STEP_SOLVERS
FLOW_LOSSES = ("sse", "bce")
GRAD_MODES = ("backprop", "adjoint", "approximate")
BN_MODES = ("running", "batch")
# The ablation studies (after those of the reproducibility report, docs/protocol.md §2), each a
# group of DVC stages (see repro.config.StudiesConfig).
STUDIES = ("activation", "multistep", "latent")
DATASETS = ("mnist", "fashion_mnist", "cifar10", "synthetic")
SOURCES = ("torchvision", "mirror", "registry")


class RegistryError(RuntimeError):
    """A registry whose keys are not its family's names: a name added in one place only."""


def registry(family: str, names: tuple[str, ...], entries: Mapping[str, T]) -> dict[str, T]:
    """``entries`` keyed and ordered by ``names``; raise if a name has no entry or vice versa.

    Called where a registry is defined, so a mismatch stops the import that defines it.
    """
    missing = [n for n in names if n not in entries]
    extra = [n for n in entries if n not in names]
    if missing or extra:
        raise RegistryError(
            f"the {family} registry does not match repro.names ({list(names)}): "
            f"no entry for {missing}, no name for {extra}; add or remove a name in "
            "repro/names.py and its registry entry together"
        )
    return {n: entries[n] for n in names}
