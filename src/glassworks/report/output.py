"""Write a report folder: ``report.html`` (self-contained), ``report.md`` + ``images/``, ``report.json``."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from glassworks.report.document import Document
from glassworks.report.render_html import render_html
from glassworks.report.render_markdown import render_markdown
from glassworks.tracking import contract as C
from glassworks.tracking.names import safe_name

IMAGE_DIR = "images"


def report_dir_name(run_name: str, run_id: str) -> str:
    """``<sanitized run name>-<first 8 characters of the id>``: names repeat across runs, ids do not."""
    return f"{safe_name(run_name, fallback='run')}-{safe_name(run_id)[:8]}"


@dataclass
class WrittenReport:
    folder: Path
    html: Path
    markdown: Path
    summary: Path


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def write_report(doc: Document, root: str | Path, folder_name: str) -> WrittenReport:
    """Write the report into ``root/folder_name`` (which must stay inside ``root``)."""
    root = Path(root).resolve()
    folder = (root / folder_name).resolve()
    if folder.parent != root:
        raise ValueError(f"report folder {folder_name!r} must be a plain name inside {root}")
    (folder / IMAGE_DIR).mkdir(parents=True, exist_ok=True)
    names = [image.name for image in doc.images()]
    if len(set(names)) != len(names) or any(safe_name(n, fallback="") != n for n in names):
        raise ValueError(f"report images need unique plain file names, got {names}")
    for image in doc.images():
        (folder / IMAGE_DIR / image.name).write_bytes(image.png)
    html_path, md_path, json_path = folder / C.file_name(C.REPORT_HTML), folder / "report.md", folder / "report.json"
    html_path.write_text(render_html(doc), encoding="utf-8")
    md_path.write_text(render_markdown(doc, IMAGE_DIR), encoding="utf-8")
    json_path.write_text(json.dumps(_json_safe(doc.summary), indent=2, sort_keys=True, default=str), encoding="utf-8")
    return WrittenReport(folder, html_path, md_path, json_path)
