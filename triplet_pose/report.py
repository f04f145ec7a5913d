"""A self-contained HTML report: headings, paragraphs, tables and images inline.

Images are embedded as base64 PNG, so the single file can be mailed or
opened anywhere without the workdir beside it.
"""

from __future__ import annotations

import base64
import html
import io
import pathlib
from typing import Sequence

import numpy as np
from PIL import Image

from triplet_pose import storage

_STYLE = """
body { font-family: -apple-system, Segoe UI, Helvetica, Arial, sans-serif;
       max-width: 1200px; margin: 2em auto; color: #222; }
table { border-collapse: collapse; margin: 1em 0; }
th, td { border: 1px solid #ccc; padding: 4px 8px; text-align: right; }
th:first-child, td:first-child { text-align: left; }
th { background: #f3f3f3; }
img { max-width: 100%; border: 1px solid #ddd; margin: 0.5em 0; }
figcaption { color: #555; font-size: 90%; }
pre { background: #f7f7f7; padding: 0.8em; overflow-x: auto; }
footer { margin-top: 3em; border-top: 1px solid #ccc; color: #555; font-size: 85%; }
"""


class Report:
  """Builds the HTML page section by section."""

  def __init__(self, title: str):
    self._title = title
    self._parts: list[str] = [f"<h1>{html.escape(title)}</h1>"]
    self._footer = ""

  def footer(self, lines: Sequence[str]) -> None:
    """Lines at the foot of the page (what produced it: `provenance.format_lines`)."""
    self._footer = ("<footer><h2>Provenance</h2><pre>"
                    + html.escape("\n".join(lines)) + "</pre></footer>")

  def heading(self, text: str, level: int = 2) -> None:
    self._parts.append(f"<h{level}>{html.escape(text)}</h{level}>")

  def paragraph(self, text: str) -> None:
    self._parts.append(f"<p>{html.escape(text)}</p>")

  def preformatted(self, text: str) -> None:
    self._parts.append(f"<pre>{html.escape(text)}</pre>")

  def table(self, header: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    def cell(v):
      return f"{v:.1f}" if isinstance(v, float) else html.escape(str(v))
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{cell(v)}</td>" for v in row) + "</tr>"
                   for row in rows)
    self._parts.append(f"<table><tr>{head}</tr>{body}</table>")

  def image(self, picture: np.ndarray | str | pathlib.Path, caption: str = "") -> None:
    """Embeds an (H, W, 3) uint8 array or a PNG file."""
    if isinstance(picture, (str, pathlib.Path)):
      data = pathlib.Path(picture).read_bytes()
    else:
      buffer = io.BytesIO()
      Image.fromarray(np.asarray(picture)).save(buffer, format="PNG")
      data = buffer.getvalue()
    encoded = base64.b64encode(data).decode("ascii")
    self._parts.append(f'<figure><img src="data:image/png;base64,{encoded}">'
                       f"<figcaption>{html.escape(caption)}</figcaption></figure>")

  def write(self, path: str | pathlib.Path) -> pathlib.Path:
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    page = (f"<!DOCTYPE html><html><head><meta charset='utf-8'>"
            f"<title>{html.escape(self._title)}</title><style>{_STYLE}</style></head>"
            f"<body>{''.join(self._parts)}{self._footer}</body></html>")
    return storage.write_text(path, page)
