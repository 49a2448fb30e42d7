"""report.html is one offline file: figures embedded, nothing loaded or linked from outside it."""

from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path

import pytest
from conftest import find_browser, install_browser
from PIL import Image

from repro.report.html import external_references, render_html, slugify, write_html


def write_png(path: Path, size: tuple[int, int], colour: tuple[int, int, int]) -> Path:
    """A tiny real PNG (a browser must be able to decode it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path)
    return path


SMALL_REPORT = """\
# Small report

Results from [the Julia reproduction](https://github.com/example/gon-julia) and
<https://example.org/bare>, see the [raw data](results.csv), see [the table](#numbers).
The `quick` profile.

## Numbers

| model | loss |
| --- | ---: |
| GON | 1.5 |
| AE | 2.5 |

![Loss curve](figures/loss.png)
"""


@pytest.fixture
def small_report(tmp_path: Path) -> Path:
    write_png(tmp_path / "figures" / "loss.png", (6, 4), (200, 30, 30))
    md = tmp_path / "report.md"
    md.write_text(SMALL_REPORT)
    return md


def test_report_renders_to_one_offline_page(small_report: Path) -> None:
    html = render_html(small_report.read_text(), base_dir=small_report.parent, title="Small")

    assert "<table>" in html and "<td>GON</td>" in html
    assert re.search(r'<img src="data:image/png;base64,[A-Za-z0-9+/=]+" alt="Loss curve"', html)
    assert "figures/loss.png" not in html
    assert external_references(html) == []
    assert "<script" not in html.lower()
    # External and file links are printed, not linked; the URL stays readable as text.
    assert "the Julia reproduction (https://github.com/example/gon-julia)" in html
    assert "raw data (results.csv)" in html
    assert "https://example.org/bare" in html and "(https://example.org/bare)" not in html
    assert '<a href="#numbers">the table</a>' in html
    assert "<code>quick</code>" in html
    assert "<title>Small</title>" in html and '<meta charset="utf-8">' in html


def test_headings_get_anchors_and_the_contents_link_to_them(small_report: Path) -> None:
    html = render_html(small_report.read_text(), base_dir=small_report.parent, title="Small")

    ids = set(re.findall(r'<h[1-6] id="([^"]+)"', html))
    targets = set(re.findall(r'href="#([^"]+)"', html))
    assert {"small-report", "numbers"} <= ids
    assert targets <= ids
    assert '<nav class="toc"' in html and '<a href="#numbers">Numbers</a>' in html


def test_repeated_headings_get_distinct_anchors(tmp_path: Path) -> None:
    html = render_html("## A b\n\n## A b\n\n## A b 1\n", base_dir=tmp_path, title="t")
    assert re.findall(r'<h2 id="([^"]+)"', html) == ["a-b", "a-b-1", "a-b-1-1"]
    assert (
        slugify("Gradient Flow Encoding: data efficiency")
        == "gradient-flow-encoding-data-efficiency"
    )


def test_title_is_escaped_and_raw_html_in_markdown_is_not_passed(tmp_path: Path) -> None:
    html = render_html("Hi <script>x()</script>\n", base_dir=tmp_path, title="<b>T</b> & co")
    assert "<title>&lt;b&gt;T&lt;/b&gt; &amp; co</title>" in html
    assert "<script" not in html


@pytest.mark.parametrize(
    ("snippet", "expected"),
    [
        ('<img src="https://cdn.example/x.png">', ["https://cdn.example/x.png"]),
        ('<a href="other.html">x</a>', ["other.html"]),
        (
            "<style>body { background: url(http://evil.example/bg.png) }</style>",
            ["http://evil.example/bg.png"],
        ),
        ('<style>@import "https://fonts.example/f.css";</style>', ["https://fonts.example/f.css"]),
        ('<link rel="stylesheet" href="style.css">', ["style.css"]),
        ("<p style=\"background-image: url('a.png')\">x</p>", ["a.png"]),
        ('<script src="//cdn.example/app.js"></script>', ["//cdn.example/app.js"]),
        ('<img srcset="data:image/png;base64,AA,BB 1x, big.png 2x">', ["big.png"]),
        ('<a href="#top">x</a><img src="data:image/png;base64,AAAA">', []),
    ],
)
def test_external_references_catches_what_a_page_would_load(
    snippet: str, expected: list[str]
) -> None:
    assert external_references(f"<html><head></head><body>{snippet}</body></html>") == expected


def test_missing_figure_names_the_figure_and_the_fix(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"figures/gone\.png.*re-run the report stage"):
        render_html("![gone](figures/gone.png)\n", base_dir=tmp_path, title="t")


def test_write_html_titles_from_the_first_heading_and_writes_atomically(small_report: Path) -> None:
    out = write_html(small_report, small_report.parent / "report.html")

    assert out == small_report.parent / "report.html"
    assert "<title>Small report</title>" in out.read_text(encoding="utf-8")
    assert not list(out.parent.glob(".report.html.*"))  # no temporary file left behind


def test_browser_finder_reports_nothing_found_and_install_can_be_disabled() -> None:
    def nowhere(name: str) -> str | None:
        return None

    def must_not_run(*args: object, **kwargs: object) -> subprocess.CompletedProcess:
        raise AssertionError("install attempted although REPRO_NO_BROWSER_INSTALL is set")

    assert find_browser({}, nowhere) is None
    env = {"REPRO_CHROMIUM": "/opt/c/chrome", "REPRO_CHROMEDRIVER": "/opt/c/driver"}
    assert find_browser(env, lambda p: p if p.startswith("/opt/c/") else None) == (
        "/opt/c/chrome",
        "/opt/c/driver",
    )
    note = install_browser({"REPRO_NO_BROWSER_INSTALL": "1"}, which=nowhere, run=must_not_run)
    assert "REPRO_NO_BROWSER_INSTALL" in note


CLAIMS_REPORT = """\
# Browser check

> **REDUCED-SCALE RUN.** Not comparable with the published numbers.

## Figures

![Training curves](figures/curves.png)

![Reconstructions](figures/recon.png)

## Claims and verdicts

| claim | published | ours | verdict |
| --- | --- | --- | --- |
| GON beats AE | lower loss | 25.5 [6.8, 44.2] | not supported |
| ELU is best | qualitative | see figure | not resolved |
"""


def open_in_chromium(
    page: Path, chromium: tuple[str, str], workdir: Path, *, until: str | None = None
) -> dict:
    """Load ``page`` in headless Chromium (Selenium) and read back what a reader would see;
    ``until``: a JavaScript expression to wait for (a page that draws after loading)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.support.ui import WebDriverWait

    browser_path, driver_path = chromium
    options = webdriver.ChromeOptions()
    options.binary_location = browser_path
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        f"--user-data-dir={workdir / 'profile'}",
        "--window-size=1200,1400",
    ):
        options.add_argument(arg)
    # An explicit driver path: Selenium Manager never runs, so nothing is downloaded.
    started = time.monotonic()
    driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    try:
        driver.get(page.as_uri())
        WebDriverWait(driver, 10).until(
            lambda d: d.execute_script("return document.readyState") == "complete"
        )
        if until is not None:
            WebDriverWait(driver, 20).until(lambda d: d.execute_script(f"return {until}"))
        seen = {
            "vega_views": driver.execute_script(
                "return document.querySelectorAll('.vega-embed canvas').length;"
            ),
            "images": driver.execute_script(
                "return Array.from(document.images, i => [i.complete, i.naturalWidth, i.alt]);"
            ),
            "claims_rows": driver.execute_script(
                """
                const h = Array.from(document.querySelectorAll('h2'))
                    .find(e => e.textContent.trim() === 'Claims and verdicts');
                if (!h) return -1;
                for (let e = h.nextElementSibling; e && e.tagName !== 'H2';
                     e = e.nextElementSibling) {
                    const t = e.matches('table') ? e : e.querySelector('table');
                    if (t) return t.tBodies[0].rows.length;
                }
                return 0;
                """
            ),
            "broken_anchors": driver.execute_script(
                "return Array.from(document.querySelectorAll('a[href^=\"#\"]'))"
                ".map(a => a.getAttribute('href').slice(1))"
                ".filter(id => !document.getElementById(id));"
            ),
            "fetched": driver.execute_script(
                "return performance.getEntriesByType('resource').map(e => e.name);"
            ),
            "screenshot": workdir / "report.png",
        }
        assert driver.save_screenshot(str(seen["screenshot"]))
    finally:
        driver.quit()
    print(f"headless Chromium check took {time.monotonic() - started:.1f} s")
    return seen


@pytest.mark.stage
def test_report_html_opens_in_headless_chromium(tmp_path: Path, chromium: tuple[str, str]) -> None:
    report = tmp_path / "report" / "report.md"
    write_png(report.parent / "figures" / "curves.png", (40, 30), (20, 120, 200))
    write_png(report.parent / "figures" / "recon.png", (30, 20), (30, 160, 60))
    report.write_text(CLAIMS_REPORT)
    page = write_html(report, tmp_path / "elsewhere" / "report.html")  # no figures beside it
    seen = open_in_chromium(page, chromium, tmp_path)
    images = seen["images"]
    assert len(images) == 2  # one per figure in the Markdown
    assert all(complete and width > 0 for complete, width, _ in images), images
    assert [width for _, width, _ in images] == [40, 30]
    assert seen["claims_rows"] == 2
    assert seen["broken_anchors"] == []
    assert seen["fetched"] == []  # the browser loaded nothing besides the file itself
    shot = seen["screenshot"]
    assert shot.stat().st_size > 0 and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.stage
def test_the_pipeline_report_opens_in_chromium_with_every_figure_and_claim(
    tmp_path: Path, chromium: tuple[str, str]
) -> None:
    """The report the report stage writes (synthetic metrics, real code), as a reader opens it."""
    from repro.report.claims.registry import load_registry
    from tests.test_report import build_gfe

    report, text = build_gfe(tmp_path, gon_runs=True)
    page = report.parent / "report.html"
    seen = open_in_chromium(page, chromium, tmp_path)
    assert len(seen["images"]) == text.count("![") > 5
    assert all(complete and width > 0 for complete, width, _ in seen["images"])
    n_claims = len(load_registry()["claims"])
    assert seen["claims_rows"] >= n_claims
    assert seen["broken_anchors"] == [] and seen["fetched"] == []
