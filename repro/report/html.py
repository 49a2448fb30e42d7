"""A self-contained HTML twin of ``reports/report.md``.

Why: the Markdown report needs the repository beside it (its figures are separate files) and a
Markdown viewer. ``report.html`` is ONE offline file that a reader can open in any browser
without the repo or a network: figures are embedded as ``data:`` URIs, the CSS is inline, there
is no script, and no link points anywhere outside the file (a link to the web is printed as its
URL in plain text, so nothing is fetched or followed by accident).
:func:`external_references` checks that claim on the rendered file.
"""

from __future__ import annotations

import base64
import mimetypes
import re
import unicodedata
from collections.abc import Sequence
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import jinja2
from markdown_it import MarkdownIt
from markdown_it.token import Token

from repro.io import atomic_write

TEMPLATES_DIR = Path(__file__).resolve().parent / "templates"
TEMPLATE_NAME = "report.html.j2"

# Attributes through which an HTML document can load or point at another resource.
URL_ATTRIBUTES = frozenset(
    {
        "href",
        "src",
        "srcset",
        "action",
        "poster",
        "data",
        "formaction",
        "background",
        "xlink:href",
        "cite",
        "longdesc",
        "manifest",
        "ping",
        "codebase",
        "archive",
    }
)
_CSS_URL = re.compile(r"""url\(\s*(["']?)(.*?)\1\s*\)""", re.IGNORECASE | re.DOTALL)
_CSS_IMPORT = re.compile(r"""@import\s+(?:url\(\s*)?["']?([^"')\s;]+)""", re.IGNORECASE)
_CSS_COMMENT = re.compile(r"/\*.*?\*/", re.DOTALL)


def _markdown() -> MarkdownIt:
    """CommonMark + pipe tables + strikethrough; raw HTML in the Markdown is escaped, not passed.

    Tables are wrapped in ``<div class="table-wrap">`` so that a wide one scrolls sideways.
    """
    md = MarkdownIt("commonmark", {"html": False, "typographer": False}).enable(
        ["table", "strikethrough"]
    )

    def table_open(self: Any, tokens: list[Token], idx: int, options: Any, env: Any) -> str:
        return '<div class="table-wrap">\n' + self.renderToken(tokens, idx, options, env)

    def table_close(self: Any, tokens: list[Token], idx: int, options: Any, env: Any) -> str:
        return self.renderToken(tokens, idx, options, env) + "</div>\n"

    md.add_render_rule("table_open", table_open)
    md.add_render_rule("table_close", table_close)
    return md


def _plain_text(tokens: Sequence[Token]) -> str:
    """The visible text of inline tokens (text and code spans), as a reader sees it."""
    return "".join(t.content for t in tokens if t.type in {"text", "code_inline"})


def slugify(text: str) -> str:
    """GitHub-style anchor: lower case, punctuation dropped, spaces to hyphens."""
    text = unicodedata.normalize("NFKC", text).strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return re.sub(r"\s+", "-", text) or "section"


def _data_uri(src: str, base_dir: Path) -> str:
    """The figure at ``base_dir / src`` as a base64 ``data:`` URI."""
    if src.startswith("data:"):
        return src
    if re.match(r"^[a-z][a-z0-9+.-]*:", src, re.IGNORECASE):
        raise ValueError(f"image {src!r} is not a local file; report.html embeds every figure")
    path = base_dir / unquote(src)  # markdown-it percent-encodes, e.g. a space as %20
    if not path.is_file():
        raise FileNotFoundError(
            f"figure {path} (referenced as {src!r}) not found: "
            "re-run the report stage, which writes the figures beside report.md"
        )
    mime = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    return f"data:{mime};base64,{base64.b64encode(path.read_bytes()).decode('ascii')}"


def _unlink(children: list[Token]) -> list[Token]:
    """Keep ``#fragment`` links; turn every other link into ``text (url)`` in plain text."""
    out: list[Token] = []
    i = 0
    while i < len(children):
        tok = children[i]
        href = str(tok.attrGet("href") or "") if tok.type == "link_open" else ""
        if tok.type != "link_open" or href.startswith("#"):
            out.append(tok)
            i += 1
            continue
        depth, j = 1, i + 1
        while j < len(children):
            depth += {"link_open": 1, "link_close": -1}.get(children[j].type, 0)
            if depth == 0:
                break
            j += 1
        inner = children[i + 1 : j]
        out.extend(_unlink(inner))
        text = _plain_text(inner).strip()
        if href and text not in {href, href.removeprefix("mailto:")}:
            suffix = Token("text", "", 0)
            suffix.content = f" ({href})"
            out.append(suffix)
        i = j + 1
    return out


def _prepare(tokens: list[Token], base_dir: Path) -> list[tuple[str, str]]:
    """Give headings ``id`` anchors, embed images, unlink external links (in place).

    Returns the top-level h2 headings as ``(text, id)`` for the table of contents.
    """
    used: set[str] = set()
    toc: list[tuple[str, str]] = []
    for k, tok in enumerate(tokens):
        if tok.type == "inline" and tok.children is not None:
            tok.children = _unlink(tok.children)
            for child in tok.children:
                if child.type == "image":
                    child.attrSet("src", _data_uri(str(child.attrGet("src") or ""), base_dir))
        if tok.type == "heading_open":
            inline = tokens[k + 1]
            text = _plain_text(inline.children or [])
            anchor = slug = slugify(text)
            n = 0
            while anchor in used:  # GitHub's rule for repeated headings: -1, -2, ...
                n += 1
                anchor = f"{slug}-{n}"
            used.add(anchor)
            tok.attrSet("id", anchor)
            if tok.tag == "h2" and tok.level == 0:
                toc.append((text, anchor))
    return toc


def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES_DIR),
        undefined=jinja2.StrictUndefined,
        autoescape=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def render_html(markdown_text: str, *, base_dir: Path, title: str) -> str:
    """Render the report's Markdown as one self-contained HTML page.

    Images are read from ``base_dir`` and embedded; the table of contents lists the h2 headings
    and sits just before the first of them (after the title and the preamble).
    """
    md = _markdown()
    env: dict[str, Any] = {}
    tokens = md.parse(markdown_text, env)
    toc = _prepare(tokens, Path(base_dir))
    split = next(
        (
            k
            for k, t in enumerate(tokens)
            if t.type == "heading_open" and t.tag == "h2" and t.level == 0
        ),
        len(tokens),
    )
    intro = md.renderer.render(tokens[:split], md.options, env)
    body = _mark_verdicts(md.renderer.render(tokens[split:], md.options, env))
    template = _environment().get_template(TEMPLATE_NAME)
    return template.render(title=title, intro=intro, body=body, toc=toc)


_VERDICT_CELL = re.compile(
    r"<td><strong>(reproduced|not reproduced|inconclusive|not tested)</strong></td>"
)


def _mark_verdicts(html: str) -> str:
    """Give a verdict cell a class, so a reader sees the verdicts at a glance (colour + text)."""
    return _VERDICT_CELL.sub(
        lambda m: f'<td class="verdict v-{m[1].replace(" ", "-")}"><strong>{m[1]}</strong></td>',
        html,
    )


def _first_heading(markdown_text: str) -> str | None:
    tokens = _markdown().parse(markdown_text)
    for k, tok in enumerate(tokens):
        if tok.type == "heading_open" and tok.tag == "h1":
            return _plain_text(tokens[k + 1].children or []).strip() or None
    return None


def write_html(md_path: Path, html_path: Path, *, title: str | None = None) -> Path:
    """Render ``md_path`` (figures relative to its folder) to ``html_path`` atomically.

    ``title`` defaults to the report's first ``#`` heading, else the file name.
    """
    md_path, html_path = Path(md_path), Path(html_path)
    if not md_path.is_file():
        raise FileNotFoundError(f"{md_path}: report not found (run the report stage first)")
    text = md_path.read_text(encoding="utf-8")
    title = title or _first_heading(text) or md_path.stem
    html = render_html(text, base_dir=md_path.parent, title=title)
    with atomic_write(html_path, "w") as fh:
        fh.write(html)
    return html_path


def _srcset_urls(value: str) -> list[str]:
    """The URLs of a ``srcset`` (a URL may itself contain commas, e.g. a data URI)."""
    urls: list[str] = []
    pos, n = 0, len(value)
    while pos < n:
        while pos < n and (value[pos].isspace() or value[pos] == ","):
            pos += 1
        start = pos
        while pos < n and not value[pos].isspace():
            pos += 1
        url = value[start:pos]
        if url.endswith(","):
            url = url.rstrip(",")
        else:
            while pos < n and value[pos] != ",":  # skip the descriptors
                pos += 1
        if url:
            urls.append(url)
    return urls


def _css_urls(css: str) -> list[str]:
    css = _CSS_COMMENT.sub("", css)
    found = [m.group(2).strip() for m in _CSS_URL.finditer(css)]
    found += [m.group(1).strip() for m in _CSS_IMPORT.finditer(css)]
    return list(dict.fromkeys(found))


class _ReferenceCollector(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.found: list[str] = []
        self._in_style = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if value is None:
                continue
            if name == "srcset":
                self.found.extend(_srcset_urls(value))
            elif name == "ping":
                self.found.extend(value.split())
            elif name in URL_ATTRIBUTES:
                self.found.append(value.strip())
            elif name == "style":
                self.found.extend(_css_urls(value))
            elif name == "content" and re.search(r"url\s*=", value, re.IGNORECASE):
                self.found.append(re.split(r"url\s*=", value, flags=re.IGNORECASE)[1].strip())
        if tag == "style":
            self._in_style = True

    def handle_endtag(self, tag: str) -> None:
        if tag == "style":
            self._in_style = False

    def handle_data(self, data: str) -> None:
        if self._in_style:
            self.found.extend(_css_urls(data))


def external_references(html: str) -> list[str]:
    """Every URL the page could load or point at outside itself.

    Checks URL attributes (href, src, srcset, action, poster, data, formaction, background,
    xlink:href, ...) and CSS ``url(...)``/``@import`` in ``<style>`` and ``style=""``;
    ``#fragment`` links and ``data:`` URIs are internal and not listed. Empty for an offline page.
    """
    parser = _ReferenceCollector()
    parser.feed(html)
    parser.close()
    return [
        url
        for url in parser.found
        if url and not url.startswith("#") and not url.lower().startswith("data:")
    ]
