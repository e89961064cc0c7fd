"""The textbook attention-flow construction (one networkx max-flow per input token): the reference
that the tests and ``bench/bench_flow.py`` check ``glassworks.explain.attention.attention_flow`` against."""

from __future__ import annotations

import numpy as np


def networkx_flow(layers: list[np.ndarray]) -> np.ndarray:
    """Flow from every input token to the top layer's [CLS]; ``layers``: L x (H, T, T) -> (T,)."""
    import networkx as nx

    a = np.stack([m.mean(axis=0) for m in layers])  # (L, T, T)
    a = 0.5 * a + 0.5 * np.eye(a.shape[-1])
    a = a / a.sum(axis=-1, keepdims=True)
    n_layers, n_tokens, _ = a.shape
    graph = nx.DiGraph()
    for layer in range(1, n_layers + 1):
        for i in range(n_tokens):
            for j in range(n_tokens):
                graph.add_edge((layer - 1, j), (layer, i), capacity=float(a[layer - 1, i, j]))
    return np.array([nx.maximum_flow_value(graph, (0, j), (n_layers, 0)) for j in range(n_tokens)])
