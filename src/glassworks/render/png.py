"""The one PNG saver: a ``matplotlib.figure.Figure`` on an explicit Agg canvas, no pyplot state."""

from __future__ import annotations

import io
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure


def png_bytes(fig: Figure, dpi: float = 100) -> bytes:
    """The figure as PNG bytes (the report embeds them as data URIs)."""
    FigureCanvasAgg(fig)
    buffer = io.BytesIO()
    fig.savefig(buffer, dpi=dpi, format="png")
    return buffer.getvalue()


def save_png(fig: Figure, path: str | Path, dpi: float = 100) -> Path:
    """Write the figure to `path` (parents created) and return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(png_bytes(fig, dpi))
    return path
