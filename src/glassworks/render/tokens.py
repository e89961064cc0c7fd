"""Token attributions as coloured cells: one scale for every page that shows them."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

# Diverging scale: red pushes towards the explained class, blue away from it.
_POS_RGB = (214, 39, 40)
_NEG_RGB = (31, 119, 180)
_MAX_ALPHA = 0.85
EMPTY_TOKEN = "\u2205"  # shown for a token that is the empty string


def token_colour(value: float, scale: float) -> tuple[str, str]:
    """(background, text colour) CSS for a score normalised by the method's max |score|."""
    v = max(-1.0, min(1.0, value / scale)) if scale > 0 else 0.0
    r, g, b = _POS_RGB if v >= 0 else _NEG_RGB
    alpha = abs(v) * _MAX_ALPHA
    text = "#ffffff" if alpha > 0.55 else "#1f2328"
    return f"rgba({r},{g},{b},{alpha:.3f})", text


@dataclass
class TokenCell:
    """One token of one method's row: what to show, its CSS classes and colours, its score."""

    position: int
    token: str
    shown: str  # the token, or EMPTY_TOKEN
    classes: str  # "tok", plus "special" ([CLS]), "rationale", "nan" (no finite score)
    background: str | None  # None when the score is not finite
    colour: str | None
    score: float
    rationale: bool


def token_cells(tokens: Sequence[str], scores: Sequence[float], rationale: Sequence[int] | None) -> list[TokenCell]:
    """Cells for `tokens` (T,) coloured by `scores` (T,), scaled to the largest finite |score|
    without position 0: attention methods often put most of their mass on [CLS]."""
    values = np.asarray(scores, dtype=np.float64).reshape(-1)  # (T,)
    body = values[1:][np.isfinite(values[1:])]
    scale = float(np.max(np.abs(body))) if body.size else 0.0
    rationale = list(rationale or [])
    cells = []
    for pos, token in enumerate(tokens):
        token = str(token)
        score = float(values[pos]) if pos < len(values) else math.nan
        in_rationale = bool(pos < len(rationale) and rationale[pos])
        classes = ["tok"] + (["special"] if pos == 0 else []) + (["rationale"] if in_rationale else [])
        background = colour = None
        if math.isfinite(score):
            background, colour = token_colour(score, scale)
        else:
            classes.append("nan")
        cells.append(TokenCell(pos, token, token if token != "" else EMPTY_TOKEN, " ".join(classes), background,
                               colour, score, in_rationale))  # fmt: skip
    return cells
