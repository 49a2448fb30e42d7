"""Number formatting for the report and the Jinja environment that lays the context out.

Formatting only: every value arrives from a section module (``repro/report/sections/*.py``) as
a number, an interval or a list; this module decides how it is printed and renders
``templates/report.md.j2``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import jinja2

from repro.stats import MeanCI

TEMPLATES_DIR = Path(__file__).resolve().parent / "templates"
TEMPLATE_NAME = "report.md.j2"

# The summary of one loss over seeds, in results.csv and studies.csv alike.
STAT_COLUMNS = (
    "confidence",
    "unit",
    "mean",
    "ci_low",
    "ci_high",
    "std",
    "mse_per_pixel_mean",
    "mse_per_pixel_ci_low",
    "mse_per_pixel_ci_high",
)


def ordered(values: Iterable[Any], preferred: Sequence[Any]) -> list[Any]:
    """Unique values in display order: those in ``preferred`` first, in its order, the rest
    sorted by their text."""
    seen = set(values)
    first = [v for v in dict.fromkeys(preferred) if v in seen]
    return first + sorted(seen - set(first), key=str)


def fmt_list(values: Iterable[Any]) -> str:
    """Comma-separated, for values inside a sentence (nz = 16, 32)."""
    return ", ".join(str(v) for v in values)


def _fmt_num(value: Any, sig: int = 4) -> str:
    """Significant-figure formatting; NaN/None as 'n/a' so a gap is visible, not a fake 0."""
    if value is None:
        return "n/a"
    x = float(value)
    if math.isnan(x):
        return "n/a"
    if math.isinf(x):
        return "∞"
    return f"{x:.{sig}g}"


def fmt_qty(value: Any, sig: int = 4) -> str:
    """Like :func:`_fmt_num`, but whole numbers of 10,000 or more in full (74,321 parameters)."""
    if value is not None and math.isfinite(x := float(value)) and abs(x) >= 1e4 and x.is_integer():
        return f"{x:,.0f}"
    return _fmt_num(value, sig)


def _fmt_ci(ci: MeanCI | None, sig: int = 4) -> str:
    """'mean [low, high]'; with one seed, the mean and a note instead of a zero-width interval."""
    if ci is None:
        return "n/a"
    if math.isnan(ci.low) or math.isnan(ci.high):
        return f"{_fmt_num(ci.mean, sig)} [no CI: n = {ci.n}]"
    return f"{_fmt_num(ci.mean, sig)} [{_fmt_num(ci.low, sig)}, {_fmt_num(ci.high, sig)}]"


def _fmt_int(value: Any) -> str:
    return f"{int(value):,}"


def _fmt_count(value: Any) -> str:
    """A count or a mean of counts, with thousands separators ('n/a' when absent)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    x = float(value)
    return f"{x:,.0f}" if x == round(x) or abs(x) >= 100 else f"{x:,.1f}"


def _fmt_seconds(value: Any) -> str:
    if value is None:
        return "n/a"
    s = float(value)
    return f"{s:,.1f} s ({s / 3600:.2f} h)" if s >= 3600 else f"{s:,.1f} s"


def _fmt_duration(value: Any) -> str:
    """Seconds for the GFE tables: 3 significant figures below 10 s (an AE encode takes
    milliseconds, which one decimal would print as 0.0 s), else as :func:`_fmt_seconds`."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    s = float(value)
    return f"{s:.3g} s" if abs(s) < 10 else _fmt_seconds(s)


def _environment() -> jinja2.Environment:
    """Strict Jinja: an undefined name is an error, not a silently empty cell."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES_DIR),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,  # Markdown, not HTML  # noqa: S701
    )
    env.filters.update(
        num=_fmt_num,
        qty=fmt_qty,
        ci=_fmt_ci,
        int=_fmt_int,
        count=_fmt_count,
        seconds=_fmt_seconds,
        duration=_fmt_duration,
        pct=lambda x: f"{x:.0%}",
    )
    return env


def render_markdown(context: Mapping[str, Any]) -> str:
    """Render the report template with ``context`` (exposed for tests and other front ends)."""
    return _environment().get_template(TEMPLATE_NAME).render(**context)


def published_text(claim: Mapping[str, Any]) -> str:
    """Published value as printed in the source (2.40 stays "2.40")."""
    value = claim["value"]
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return f"{value:,.{int(claim.get('decimals', 2))}f}"
    return str(value)
