"""Report generation: published claims, summaries over seeds, figures and the Markdown report.

Entry point: :func:`repro.report.render.build_report`. The published numbers live in
``claims.yaml`` (data, with sources), the document layout in ``templates/report.md.j2``.
Imports are lazy so that ``import repro.report`` does not pull in matplotlib and seaborn for
callers that only need the claims.
"""

from __future__ import annotations

from typing import Any

__all__ = ["build_report"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from repro.report import render

        return getattr(render, name)
    raise AttributeError(f"module 'repro.report' has no attribute {name!r}")
