"""The Hugging Face Hub from a machine that may not reach it.

A hub id (``data=sst2``, ``model.pretrained=google-bert/bert-base-uncased``) on a machine without a
network used to cost ~27 s: huggingface_hub retries every request five times with back-off, and
prints each retry twice, before the load fails. :func:`offline_when_unreachable` asks once, with
one TCP connect to the hub's host (a refused port or an unknown name answers in milliseconds,
:data:`PROBE_SECONDS` at most), and when the hub cannot be reached turns on the libraries' offline
mode for the load: a copy in the local cache loads at once, anything else fails at once, and the
caller's error says why (:func:`unreachable_advice`).

It decides nothing when the user has: ``HF_HUB_OFFLINE=1`` already set, or a proxy in the
environment (``HTTPS_PROXY``, ``ALL_PROXY``), through which a direct connect says nothing.
"""

from __future__ import annotations

import functools
import logging
import os
import socket
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlparse

log = logging.getLogger("glassworks.hub")

PROBE_SECONDS = 3.0
PROXY_VARIABLES = ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")
_told: set[str] = set()  # unreachable reasons already logged


def hub_endpoint() -> str:
    """The hub's URL as huggingface_hub uses it (``HF_ENDPOINT``, else https://huggingface.co)."""
    from huggingface_hub import constants

    return constants.ENDPOINT


def unreachable_hub() -> str | None:
    """Why the hub cannot be reached from here ("huggingface.co does not resolve: ..."), or None
    when it can, when offline mode is already on, or when a proxy stands between. Asked once per
    process and endpoint (a command loads a model's config, weights and tokenizer)."""
    return _unreachable(hub_endpoint())


@functools.lru_cache(maxsize=None)
def _unreachable(endpoint: str, timeout: float = PROBE_SECONDS) -> str | None:
    from huggingface_hub import constants

    if constants.is_offline_mode() or any(os.environ.get(v) for v in PROXY_VARIABLES):
        return None
    url = urlparse(endpoint)
    host, port = url.hostname or "", url.port or (443 if url.scheme == "https" else 80)
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except socket.gaierror as error:
        return f"{host} does not resolve: {error.strerror}"
    except OSError as error:
        return f"no connection to {host}:{port}: {error.strerror or type(error).__name__}"
    return None


@contextmanager
def offline_when_unreachable(what: str, where: str | None = None) -> Iterator[str | None]:
    """Around a load of `what` from `where` (a hub id; an existing folder is never probed):
    yields None when the hub answers; else why it does not, with huggingface_hub's and datasets'
    offline mode on until the block ends (a cached copy loads, nothing is retried)."""
    reason = None if where is not None and Path(where).expanduser().is_dir() else _unreachable(hub_endpoint())
    if reason is None:
        yield None
        return
    from huggingface_hub import constants

    modules = [constants, sys.modules.get("datasets.config")]  # datasets keeps its own copy
    saved = [(m, m.HF_HUB_OFFLINE) for m in modules if m is not None and hasattr(m, "HF_HUB_OFFLINE")]
    if reason not in _told:  # once a command: its model's config, weights and tokenizer follow
        _told.add(reason)
        log.info("the Hugging Face Hub cannot be reached (%s): %s and every later hub load are read from "
                 "the local cache only", reason, what)
    for module, _ in saved:
        module.HF_HUB_OFFLINE = True
    try:
        yield reason
    finally:
        for module, value in saved:
            module.HF_HUB_OFFLINE = value


def unreachable_advice(reason: str, local: str) -> str:
    """One sentence for an error: the hub is unreachable (`reason`) and what to give instead."""
    return (f"the Hugging Face Hub ({hub_endpoint()}) cannot be reached from this machine ({reason}) and "
            f"no copy is in the local cache; {local}")
