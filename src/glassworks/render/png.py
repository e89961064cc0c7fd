"""The one PNG saver: a ``matplotlib.figure.Figure`` on an explicit Agg canvas, no pyplot state.

Every figure goes through :func:`glassworks.render.style.enforce` (fonts >= 9 pt, integer ticks
on integer data) and carries :func:`glassworks.render.style.describe`'s measurement in its
``glassworks:style`` PNG text chunk (read back with :func:`style_of`).
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from glassworks.render.style import DPI, METADATA_KEY, enforce, figure_style, metadata_json


def png_bytes(fig: Figure, dpi: float = DPI) -> bytes:
    """The figure as PNG bytes (the report embeds them as data URIs).

    The figure is drawn once, at `dpi`: what describe() measures is exactly the pixels that are
    encoded (``savefig`` would lay out and draw the whole figure a second time, which doubled the
    cost of the many-panel attention grids)."""
    from PIL import Image
    from PIL.PngImagePlugin import PngInfo

    canvas = FigureCanvasAgg(fig)
    with figure_style():
        enforce(fig)
        fig.set_dpi(dpi)
        canvas.draw()  # lays out ticks and labels (constrained layout) at the saved size
        info = PngInfo()
        info.add_text("Software", "glassworks")
        info.add_text(METADATA_KEY, metadata_json(fig, dpi))
        image = Image.frombuffer("RGBA", canvas.get_width_height(), canvas.buffer_rgba(), "raw", "RGBA", 0, 1)
        buffer = io.BytesIO()
        image.save(buffer, format="png", pnginfo=info, dpi=(dpi, dpi))
    return buffer.getvalue()


def save_png(fig: Figure, path: str | Path, dpi: float = DPI) -> Path:
    """Write the figure to `path` (parents created) and return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(png_bytes(fig, dpi))
    return path


def style_of(png: bytes) -> dict[str, Any] | None:
    """The ``glassworks:style`` measurement stored in a PNG written by :func:`png_bytes`; None
    for a PNG written any other way."""
    from PIL import Image

    with Image.open(io.BytesIO(png)) as image:
        text = image.text.get(METADATA_KEY) if hasattr(image, "text") else None
    return json.loads(text) if text else None
