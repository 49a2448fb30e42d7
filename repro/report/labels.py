"""Human names of the study's ids (datasets, methods, solvers, losses, BatchNorm modes).

Kept apart from the figures so that the text of the report (claims, sections, tables) can name
things the way the figures do without importing matplotlib.
"""

from __future__ import annotations

# smallnorb has no loader here; claims name it, so the report still spells it properly.
DATASET_LABELS = {
    "mnist": "MNIST",
    "fashion_mnist": "Fashion-MNIST",
    "cifar10": "CIFAR-10",
    "smallnorb": "SmallNORB",
}
METHOD_LABELS = {
    "gon": "GON",
    "ae": "AE",
    "ae_linear": "AE (linear encoder)",
    "gfe_adaptive": "GFE (adaptive step)",
    "gfe": "GFE (1st-order flow)",
    "gfe2": "GFE (2nd-order flow)",
}
FLOW_LABELS = {
    "first_order": "1st-order flow",
    "second_order": "2nd-order flow",
    "adaptive_step": "adaptive step",
}
FLOWS = tuple(FLOW_LABELS)
# The study loss of the GFE experiments (params.efficiency.loss), as a unit.
LOSS_LABELS = {"bce": "BCE, mean over pixels", "sse": "SSE per image"}
BN_LABELS = {"batch": "BN batch statistics", "running": "BN running statistics"}
SPLIT_LABELS = {"train": "train", "val": "validation"}


def dataset_label(name: str) -> str:
    """Human name of a dataset id; unknown ids are shown as they are."""
    return DATASET_LABELS.get(name, name)


def method_label(name: str) -> str:
    """Human name of a method id (``gon`` → ``GON``); unknown ids are upper-cased."""
    return METHOD_LABELS.get(name, name.upper())


def flow_label(name: str) -> str:
    """Human name of a latent solver of the convergence study."""
    return FLOW_LABELS.get(name, name)


def loss_label(name: str) -> str:
    """Unit of a GFE study loss (``bce`` → ``BCE, mean over pixels``)."""
    return LOSS_LABELS.get(name, name)


def bn_label(mode: str) -> str:
    """Human name of a BatchNorm evaluation mode."""
    return BN_LABELS.get(mode, f"BN {mode}")
