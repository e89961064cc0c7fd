"""The last block computes only the row that is read: python bench/bench_cls_block.py [--repeats 7]

TransformerClassifier's head reads position 0 only, so its last block computes the query,
attention output and MLP for that row alone (keys and values for every token). This measures
that path against `every_position=True` (every block over every row, the reference it matches),
interleaved in one process, on the default run's sizes (conf/model/tiny.yaml) and
conf/model/small.yaml: the forward of an explain batch at several lengths (eval, no gradients) and
a training step (forward, backward, AdamW) at the default batch of 32 rows. Prints milliseconds
of each, the speed-up (every position / [CLS] alone) and the largest logit difference.

Then the decoder (conf/model/decoder_tiny.yaml): ``last_only=True``, the logits of the last
position alone, as generation and the generation explainer read them, against the full forward's
last column, at the shapes of one generated token's masked prefixes.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402

from bench.results import emit  # noqa: E402
from glassworks.models.decoder import DecoderConfig  # noqa: E402
from glassworks.models.transformer import TransformerConfig  # noqa: E402

VOCAB, PAD = 4000, 0
SIZES = ["tiny", "small"]  # conf/model/<name>.yaml
FORWARDS = [(512, 16), (512, 32), (128, 64), (64, 128)]  # (rows, tokens): a few thousand tokens each
STEPS = [(32, 32), (32, 64)]
PREFIXES = [(110, 12), (110, 24), (512, 24)]  # (masked prefixes, tokens) of one generated token


def batch(rows: int, tokens: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Random ids (rows, tokens), half of the rows right-padded by a quarter."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, VOCAB, (rows, tokens), generator=g)  # (B, T)
    mask = torch.ones_like(ids)
    mask[: rows // 2, tokens - tokens // 4:] = 0
    return ids.masked_fill(mask == 0, PAD), mask


def median_ms(times: list[float]) -> float:
    return 1e3 * statistics.median(times)


def timed_pair(reference, fast, repeats: int) -> tuple[float, float, float]:
    """(reference ms, fast ms, max |output difference|) of two no-grad calls, interleaved, medians."""
    with torch.no_grad():
        diff = (fast() - reference()).abs().max().item()
        times: tuple[list[float], list[float]] = ([], [])
        for _ in range(repeats):
            for call, spent in zip((reference, fast), times):
                start = time.perf_counter()
                call()
                spent.append(time.perf_counter() - start)
    return median_ms(times[0]), median_ms(times[1]), diff


def record(key: str, label: str, ref: float, fast: float, diff: float, ratios: dict, absolute: dict) -> None:
    print(f"{label}: every position {ref:7.2f} ms   alone {fast:7.2f} ms   speed-up {ref / fast:.2f}x   "
          f"max |logit difference| {diff:.1e}")
    ratios[key.format("forward")] = ref / fast
    absolute[key.format("forward_ms")] = fast
    absolute[key.format("max_abs_logit_difference")] = diff


def forwards(model, repeats: int, name: str, ratios: dict, absolute: dict) -> None:
    model.eval()
    for rows, tokens in FORWARDS:
        ids, mask = batch(rows, tokens, seed=tokens)
        ref, fast, diff = timed_pair(lambda: model(ids, mask, every_position=True).logits,
                                     lambda: model(ids, mask).logits, repeats)
        record(f"{name}_{{}}_{rows}x{tokens}", f"{name:>12} forward {rows:>3} x {tokens:>3}, [CLS]", ref, fast, diff,
               ratios, absolute)


def train_steps(model, repeats: int, name: str, ratios: dict, absolute: dict) -> None:
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    for rows, tokens in STEPS:
        ids, mask = batch(rows, tokens, seed=tokens)
        labels = torch.randint(0, 2, (rows,), generator=torch.Generator().manual_seed(0))
        times = {False: [], True: []}
        for _ in range(3 + 5 * repeats):  # 3 warm-up rounds, then steps interleaved
            for every in (True, False):
                start = time.perf_counter()
                loss = F.cross_entropy(model(ids, mask, every_position=every).logits, labels)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                times[every].append(time.perf_counter() - start)
        fast, ref = median_ms(times[False][3:]), median_ms(times[True][3:])
        print(f"{name:>7} train step {rows} x {tokens}: every position {ref:6.2f} ms   [CLS] alone {fast:6.2f} ms   "
              f"speed-up {ref / fast:.2f}x")
        ratios[f"{name}_train_step_{rows}x{tokens}"] = ref / fast
        absolute[f"{name}_train_step_ms_{rows}x{tokens}"] = fast


def decoder_forwards(repeats: int, ratios: dict, absolute: dict) -> None:
    settings = OmegaConf.to_container(OmegaConf.load(ROOT / "conf" / "model" / "decoder_tiny.yaml"))
    torch.manual_seed(0)
    model = DecoderConfig(**{k: v for k, v in settings.items() if k != "_target_"}).build(vocab_size=64, pad_id=PAD)
    model.eval()
    for rows, tokens in PREFIXES:
        ids = torch.randint(5, 64, (rows, tokens), generator=torch.Generator().manual_seed(tokens))  # (B, T)
        ref, fast, diff = timed_pair(lambda: model(ids).logits[:, -1], lambda: model(ids, last_only=True).logits[:, -1],
                                     repeats)
        record(f"decoder_tiny_{{}}_{rows}x{tokens}", f"decoder_tiny forward {rows:>3} x {tokens:>3}, last", ref, fast,
               diff, ratios, absolute)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    ratios: dict = {}
    absolute: dict = {"repeats": args.repeats, "threads": args.threads}
    for name in SIZES:
        settings = OmegaConf.to_container(OmegaConf.load(ROOT / "conf" / "model" / f"{name}.yaml"))
        config = TransformerConfig(**{k: v for k, v in settings.items() if k != "_target_"})
        torch.manual_seed(0)
        model = config.build(vocab_size=VOCAB, n_classes=2, pad_id=PAD)
        forwards(model, args.repeats, name, ratios, absolute)
        train_steps(model, args.repeats, name, ratios, absolute)
    decoder_forwards(args.repeats, ratios, absolute)
    emit("cls_block", ratios, absolute)


if __name__ == "__main__":
    main()
