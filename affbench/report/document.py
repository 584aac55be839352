"""A tiny document model rendered twice: Markdown (report.md) and self-contained HTML (report.html).

Blocks: Heading, Para, Warning, Bullets, Table, Image. Text may hold three inline marks,
rendered in both outputs: ``**bold**``, ``*italic*`` and ```code```. HTML embeds every
image as a base64 PNG, so report.html is one file that can be mailed or archived.
"""

from __future__ import annotations

import base64
import html
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence, Union


@dataclass
class Heading:
    text: str
    level: int = 2


@dataclass
class Para:
    text: str


@dataclass
class Warning:  # noqa: A001 - a document block, not the builtin
    text: str


@dataclass
class Bullets:
    items: list[str]


@dataclass
class Table:
    header: list[str]
    rows: list[list[str]]
    caption: str = ""
    #: rows (by index) drawn as predictions: italic/grey in HTML, already marked in their text
    marked_rows: set[int] = field(default_factory=set)


#: Where a figure's number goes in its caption: filled in document order by number_figures.
FIGURE = "Figure {n}"


@dataclass
class Image:
    path: Path
    caption: str  # may begin with FIGURE


Block = Union[Heading, Para, Warning, Bullets, Table, Image]


def number_figures(blocks: Sequence[Block]) -> list[Block]:
    """The blocks with each image caption's FIGURE replaced by its number in document order
    (Figure 1, 2, 3 ... as a reader meets them, however many passes or heatmaps a run has)."""
    out: list[Block] = []
    n = 0
    for b in blocks:
        if isinstance(b, Image) and b.caption.startswith(FIGURE):
            n += 1
            b = Image(b.path, f"Figure {n}" + b.caption[len(FIGURE):])
        out.append(b)
    return out


# --------------------------------------------------------------------------- markdown

def _md_cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def to_markdown(blocks: Sequence[Block], base_dir: Path) -> str:
    out: list[str] = []
    for b in blocks:
        if isinstance(b, Heading):
            out.append(f"{'#' * b.level} {b.text}\n")
        elif isinstance(b, Para):
            out.append(b.text + "\n")
        elif isinstance(b, Warning):
            out.append(f"> ⚠️ **Warning:** {b.text}\n")
        elif isinstance(b, Bullets):
            out.append("\n".join(f"- {i}" for i in b.items) + "\n")
        elif isinstance(b, Table):
            if b.caption:
                out.append(b.caption + "\n")
            lines = ["| " + " | ".join(_md_cell(h) for h in b.header) + " |",
                     "|" + "|".join("---" for _ in b.header) + "|"]
            lines += ["| " + " | ".join(_md_cell(c) for c in r) + " |" for r in b.rows]
            out.append("\n".join(lines) + "\n")
        elif isinstance(b, Image):
            rel = Path(os.path.relpath(b.path, base_dir)).as_posix()
            out.append(f"![{b.caption}]({rel})\n\n*{b.caption}*\n")
    return "\n".join(out)


# --------------------------------------------------------------------------- html

_INLINE = [
    (re.compile(r"`([^`]+)`"), r"<code>\1</code>"),
    (re.compile(r"\*\*([^*]+)\*\*"), r"<strong>\1</strong>"),
    (re.compile(r"(?<![\w*])\*([^*\n]+)\*(?![\w*])"), r"<em>\1</em>"),
]


_ESCAPED = {"\\\\": "\x00b", "\\*": "\x00s", "\\`": "\x00t"}


def inline_html(text: str) -> str:
    s = str(text)
    for esc, token in _ESCAPED.items():  # literal characters (fmt.lit) are not marks
        s = s.replace(esc, token)
    s = html.escape(s, quote=False)
    for pat, rep in _INLINE:
        s = pat.sub(rep, s)
    for esc, token in _ESCAPED.items():
        s = s.replace(token, esc[1])
    return s


_CSS = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; max-width: 1200px; margin: 2em auto;
       padding: 0 1em; color: #222; line-height: 1.45; }
h1 { border-bottom: 2px solid #444; padding-bottom: .2em; }
h2 { border-bottom: 1px solid #ccc; padding-bottom: .15em; margin-top: 2em; }
table { border-collapse: collapse; margin: .6em 0 1.4em; font-size: 13px; }
th, td { border: 1px solid #ccc; padding: 3px 8px; text-align: right; }
th { background: #f0f0f0; position: sticky; top: 0; }
td:first-child, th:first-child { text-align: left; }
tr.pred td { color: #666; font-style: italic; background: #fafafa; }
.warning { background: #fff3cd; border: 2px solid #d39e00; border-radius: 6px; padding: .6em 1em;
           margin: .6em 0; font-weight: 500; }
figure { margin: 1em 0 2em; }
figure img { max-width: 100%; border: 1px solid #ddd; }
figcaption { font-style: italic; color: #555; font-size: 13px; }
code { background: #f4f4f4; padding: 0 3px; border-radius: 3px; }
.caption { color: #444; }
.tablewrap { max-height: 560px; overflow: auto; display: inline-block; max-width: 100%; }
"""


def to_html(blocks: Sequence[Block], title: str) -> str:
    out = [f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
           f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>"]
    for b in blocks:
        if isinstance(b, Heading):
            anchor = re.sub(r"[^a-z0-9]+", "-", b.text.lower()).strip("-")
            out.append(f"<h{b.level} id=\"{anchor}\">{inline_html(b.text)}</h{b.level}>")
        elif isinstance(b, Para):
            out.append(f"<p>{inline_html(b.text)}</p>")
        elif isinstance(b, Warning):
            out.append(f"<div class=\"warning\">⚠️ <strong>Warning:</strong> {inline_html(b.text)}</div>")
        elif isinstance(b, Bullets):
            out.append("<ul>" + "".join(f"<li>{inline_html(i)}</li>" for i in b.items) + "</ul>")
        elif isinstance(b, Table):
            if b.caption:
                out.append(f"<p class=\"caption\">{inline_html(b.caption)}</p>")
            head = "".join(f"<th>{inline_html(h)}</th>" for h in b.header)
            pred = ' class="pred"'
            body = "".join(
                f"<tr{pred if i in b.marked_rows else ''}>"
                + "".join(f"<td>{inline_html(c)}</td>" for c in r) + "</tr>"
                for i, r in enumerate(b.rows))
            out.append(f"<div class=\"tablewrap\"><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>")
        elif isinstance(b, Image):
            data = base64.b64encode(Path(b.path).read_bytes()).decode("ascii")
            out.append(f"<figure><img alt=\"{html.escape(b.caption)}\" src=\"data:image/png;base64,{data}\">"
                       f"<figcaption>{inline_html(b.caption)}</figcaption></figure>")
    out.append("</body></html>\n")
    return "\n".join(out)


def column_table_markdown() -> str:
    """The results.csv column table for reports/README.md, generated from results.COLUMNS."""
    from affbench.store.results import COLUMNS

    lines = ["| column | meaning |", "|---|---|"]
    lines += [f"| `{name}` | {_md_cell(meaning)} |" for name, meaning in COLUMNS.items()]
    return "\n".join(lines)
