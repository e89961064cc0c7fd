"""Flatten a nested config into MLflow params (``model.d_model`` = 64)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from glassworks.tracking.metadata import redact

# MLflow rejects param values above this length; longer values are cut and marked.
MAX_PARAM_VALUE = 6000


def flatten(config: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested mapping -> {"a.b.c": "value"}; lists become their string form; credentials in
    URLs are redacted (:func:`~glassworks.tracking.metadata.redact`)."""
    return dict(_walk(config, prefix))


def _walk(node: Mapping[str, Any], prefix: str) -> Iterator[tuple[str, str]]:
    for key, value in node.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            if value:
                yield from _walk(value, f"{name}.")
            else:
                yield name, "{}"
        else:
            text = "null" if value is None else redact(str(value))
            if len(text) > MAX_PARAM_VALUE:
                text = text[: MAX_PARAM_VALUE - 3] + "..."
            yield name, text
