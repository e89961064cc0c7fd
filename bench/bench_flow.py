"""Attention-flow benchmark: python bench/bench_flow.py [--heads 4]

Prints, measured side by side in this one process on the same random attention stacks (peaked
rows, Dirichlet 0.3, as trained attention is):

1. ``attention_flow`` (scipy's Dinic in C on the layered graph, integer capacities) against the
   textbook construction with networkx (one float max-flow per input token): speed-up and the
   largest difference of the flows, at sizes networkx finishes in seconds;
2. seconds per example of ``attention_flow`` alone at the sizes real models and data reach
   (our tiny model: 2 layers; all-MiniLM-L6-v2: 6; BERT-base: 12; up to 256 tokens).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from bench.results import emit  # noqa: E402
from glassworks.explain.attention import attention_flow  # noqa: E402
from glassworks.testing.flow import networkx_flow  # noqa: E402


def stack(n_layers: int, n_tokens: int, n_heads: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.dirichlet(np.full(n_tokens, 0.3), size=(n_heads, n_tokens)) for _ in range(n_layers)]  # L x (H, T, T)


def timed(fn) -> tuple[float, object]:
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--heads", type=int, default=4)
    args = parser.parse_args()

    ratios, absolute = {}, {}
    print("attention_flow (scipy Dinic) vs networkx, same inputs")
    print(f"{'layers x tokens':<18}{'networkx s':>12}{'ours s':>10}{'speed-up':>10}{'max |diff|':>12}")
    for n_layers, n_tokens in ((2, 16), (2, 32), (6, 32)):
        layers = stack(n_layers, n_tokens, args.heads, seed=n_tokens)
        t_nx, ref = timed(lambda: networkx_flow(layers))
        t_ours, ours = timed(lambda: attention_flow(layers))
        diff = float(np.max(np.abs(np.asarray(ours) - np.asarray(ref))))
        print(f"{f'{n_layers} x {n_tokens}':<18}{t_nx:>12.2f}{t_ours:>10.3f}{t_nx / t_ours:>9.0f}x{diff:>12.1e}")
        ratios[f"networkx_over_ours_{n_layers}x{n_tokens}"] = t_nx / t_ours
        absolute[f"max_abs_diff_{n_layers}x{n_tokens}"] = diff

    print("\nattention_flow seconds per example")
    lengths = (32, 64, 128, 256)
    print(f"{'layers':<8}" + "".join(f"{t:>9} tok" for t in lengths))
    for n_layers in (2, 6, 12):
        inputs = {t: stack(n_layers, t, args.heads, seed=t) for t in lengths}
        cells = [timed(lambda x=inputs[t]: attention_flow(x))[0] for t in lengths]
        print(f"{n_layers:<8}" + "".join(f"{c:>13.2f}" for c in cells))
        absolute.update({f"flow_s_per_example_{n_layers}layers_{t}tok": c for t, c in zip(lengths, cells, strict=True)})
    emit("flow", ratios, absolute)


if __name__ == "__main__":
    main()
