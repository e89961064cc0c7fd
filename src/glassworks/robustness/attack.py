"""The attribution-guided greedy word-substitution attack, its per-example record, its summary
metrics and the ``attacks.parquet`` table."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from torch import nn

from glassworks.explain.batcher import BatchStats, RowBatcher
from glassworks.explain.predict import predict_proba
from glassworks.explain.types import ExampleInput
from glassworks.robustness.neighbours import NeighbourIndex, TokenToId, word_list_ids
from glassworks.robustness.orders import RANDOM_ORDER, Order, method_orders, text_of

ATTACK_COLUMNS = (
    "method", "example_id", "success", "n_edits", "prob_before", "prob_after", "original_text",
    "perturbed_text", "edited_positions", "target", "prediction_after", "prob_drop", "n_model_calls",
    "n_rows", "original_ids", "perturbed_ids", "seconds",
)  # fmt: skip

# The least drop of p(target) that counts as an edit (far above float32 rounding, ~1e-7).
MIN_DROP = 1e-6


@dataclass
class AttackRecord:
    """One greedy substitution attack on one example."""

    method: str
    example_id: int
    target: int  # the originally predicted class, whose probability the attack drives down
    success: bool  # the prediction flipped
    n_edits: int
    prob_before: float  # p(target) on the original input
    prob_after: float  # p(target) on the final perturbed input
    prediction_after: int
    n_model_calls: int  # model calls for this example: one per visited word with candidates, scoring them all
    n_rows: int  # rows evaluated in those calls
    original_ids: list[int]
    perturbed_ids: list[int]
    edited_positions: list[int]  # in edit order
    seconds: float = 0.0

    @property
    def prob_drop(self) -> float:
        return self.prob_before - self.prob_after


class SubstitutionAttack:
    """Attribution-guided greedy word substitution (in the spirit of TextFooler / greedy-WIR).

    Words are visited in the order an attribution method ranks them (:func:`method_orders`). Only
    whole words are replaced, by whole words: a word of one token is swapped for candidates, a
    word a wordpiece tokenizer split into several pieces is passed over (no one-token substitute
    keeps the input's length, and swapping one piece would make a non-word like "un##good"); a
    pretrained encoder's candidates are whole-word vocabulary entries (``model.substitute_ids``).
    At each word, all candidate replacements — the `n_candidates` nearest neighbours of the current token in the
    model's input-embedding space, or only ids from `word_list` — are scored in ONE batched forward
    pass, and the one that lowers p(predicted class) most is kept, if it lowers it at all. The
    attack stops when the prediction flips, after `max_edits` edits, after `max_steps` visited
    words (None: all), or when words run out. `seed` seeds the random visiting order used
    when :meth:`run` gets no orders (the runner passes its own, shared with the curves).

    `concurrent_examples` examples are attacked at once, their candidate rows gathered into shared
    forward passes (``glassworks.explain.batcher``, as SHAP's masked rows): a step's 20 rows alone
    paid a forward's fixed cost, ~1.7 ms on the default model, for ~1.2 ms of rows. The records
    equal those of one example at a time up to float rounding of differently shaped batches
    (tests/unit/test_robustness.py); 1 attacks one example at a time.
    """

    def __init__(
        self,
        max_edits: int = 5,
        n_candidates: int = 20,
        word_list: Sequence[str] | None = None,
        seed: int = 0,
        batch_size: int = 512,
        max_steps: int | None = None,
        concurrent_examples: int = 16,
    ) -> None:
        for key, value in (("max_edits", max_edits), ("n_candidates", n_candidates), ("batch_size", batch_size),
                           ("concurrent_examples", concurrent_examples)):
            if int(value) < 1:
                raise ValueError(f"SubstitutionAttack: {key} must be >= 1, got {value}")
        if seed < 0:
            raise ValueError(f"SubstitutionAttack: seed must be >= 0, got {seed}")
        if max_steps is not None and max_steps < 1:
            raise ValueError(f"SubstitutionAttack: max_steps must be >= 1 or None, got {max_steps}")
        if word_list is not None:
            word_list = [str(w) for w in word_list]  # OmegaConf ListConfig -> list
            if not word_list:
                raise ValueError("SubstitutionAttack: word_list is empty (use None for embedding neighbours)")
        self.max_edits = int(max_edits)
        self.n_candidates = int(n_candidates)
        self.word_list = word_list
        self.seed = int(seed)
        self.batch_size = int(batch_size)
        self.max_steps = max_steps
        self.concurrent_examples = int(concurrent_examples)
        self.last_batch_stats: BatchStats | None = None  # forwards of the most recent cross-example run

    def neighbour_index(self, model: nn.Module, special_ids: Sequence[int],
                        token_to_id: TokenToId | None = None) -> NeighbourIndex:
        """Candidate generator over `model.tok_emb.weight` (V, C), restricted to the word list if any;
        `special_ids` (the tokenizer's) are never offered."""
        emb = getattr(model, "tok_emb", None)
        if not isinstance(emb, nn.Embedding):
            raise ValueError(f"SubstitutionAttack: model {type(model).__name__} has no `tok_emb` embedding to find neighbours in")
        # A pretrained encoder's wordpiece vocabulary: only whole words (model.substitute_ids).
        allowed = (word_list_ids(self.word_list, token_to_id, special_ids) if self.word_list is not None
                   else getattr(model, "substitute_ids", None))
        return NeighbourIndex(emb.weight, self.n_candidates, special_ids, allowed)

    def _evaluate(self, model: nn.Module, rows: np.ndarray, pad_id: int) -> np.ndarray:
        """Probabilities (R, C) of id rows (R, T): every forward of the attack comes here, one
        example's step at a time or many examples' steps at once (the benchmark swaps in a per-row one)."""
        return predict_proba(model, rows, pad_id=pad_id, batch_size=self.batch_size)  # (R, C)

    def attack(
        self,
        model: nn.Module,
        example: ExampleInput,
        order: Order,
        target: int,
        prob: float,
        neighbours: Callable[[int], list[int]],
        method: str = "",
        *,
        pad_id: int,
        evaluate: Callable[[np.ndarray], np.ndarray] | None = None,
    ) -> AttackRecord:
        """Attack one example whose prediction is `target` with probability `prob`; `evaluate`
        (rows (R, T) -> probabilities (R, C)) scores the candidates, by default one forward a step."""
        if evaluate is None:
            evaluate = lambda rows: self._evaluate(model, rows, pad_id)  # noqa: E731
        start = time.perf_counter()
        ids = list(example.ids)
        current = prob
        prediction = target
        edited: list[int] = []
        n_calls = n_rows = 0
        for step, unit in enumerate(order):
            if len(edited) >= self.max_edits or prediction != target:
                break
            if self.max_steps is not None and step >= self.max_steps:
                break
            if len(unit) != 1:  # a word of several wordpieces: no whole-word swap keeps the length
                continue
            pos = int(unit[0])
            if pos == 0:  # [CLS] is what the head reads, never an input word
                continue
            candidates = neighbours(ids[pos])
            if not candidates:
                continue
            rows = np.repeat(np.asarray(ids, dtype=np.int64)[None, :], len(candidates), axis=0)  # (R, T)
            rows[:, pos] = candidates
            probs = evaluate(rows)  # (R, C)
            n_calls += 1
            n_rows += len(rows)
            best = int(np.argmin(probs[:, target]))
            # Only an edit that helps counts against the budget; otherwise move to the next position.
            # "Helps" means by more than float rounding: a synonym-like swap that changes p by
            # ~1e-9 is no edit, and would make the path depend on how the forward was batched.
            if probs[best, target] < current - MIN_DROP:
                ids[pos] = candidates[best]
                edited.append(pos)
                current = float(probs[best, target])
                prediction = int(np.argmax(probs[best]))
        assert len(edited) <= self.max_edits
        return AttackRecord(
            method=method, example_id=example.example_id, target=int(target), success=prediction != target,
            n_edits=len(edited), prob_before=float(prob), prob_after=float(current), prediction_after=prediction,
            n_model_calls=n_calls, n_rows=n_rows, original_ids=list(example.ids), perturbed_ids=ids,
            edited_positions=edited, seconds=time.perf_counter() - start,
        )  # fmt: skip

    def run(
        self,
        model: nn.Module,
        examples: Sequence[ExampleInput],
        orders: Mapping[int, Order] | None,
        method: str = "",
        *,
        pad_id: int,
        base_probs: np.ndarray | None = None,
        neighbours: NeighbourIndex | None = None,
        special_ids: Sequence[int] | None = None,
        token_to_id: TokenToId | None = None,
    ) -> list[AttackRecord]:
        """Attack every example that has an order (`orders`: example_id -> words, most important
        first; None: the random order seeded with `seed`). `base_probs` (N, C) saves the clean forward.
        Without `neighbours`, an index is built, which needs the tokenizer's `special_ids` (and
        `token_to_id` when there is a word list)."""
        model.eval()
        self.last_batch_stats = None
        if orders is None:
            orders = method_orders(examples, None, method or RANDOM_ORDER, self.seed)
        if base_probs is None:
            base_probs = predict_proba(model, [e.ids for e in examples], pad_id=pad_id, batch_size=self.batch_size)  # (N, C)
        if neighbours is None:
            if special_ids is None:
                raise ValueError("SubstitutionAttack.run: give `neighbours` or the tokenizer's `special_ids`")
            neighbours = self.neighbour_index(model, special_ids, token_to_id)
        neighbours.prepare([t for e in examples for t in e.ids[1:]])
        todo = [(i, ex, orders[ex.example_id]) for i, ex in enumerate(examples) if orders.get(ex.example_id) is not None]

        def one(item: tuple[int, ExampleInput, Order], evaluate: Callable[[np.ndarray], np.ndarray] | None) -> AttackRecord:
            i, ex, order = item
            target = int(np.argmax(base_probs[i]))
            return self.attack(model, ex, order, target, float(base_probs[i, target]), neighbours, method,
                               pad_id=pad_id, evaluate=evaluate)

        if self.concurrent_examples == 1 or len(todo) <= 1:
            return [one(item, None) for item in todo]
        # The search draws no random numbers: no global RNG to keep apart per example.
        batcher = RowBatcher(lambda rows: self._evaluate(model, rows, pad_id), pad_id=pad_id,
                             batch_size=self.batch_size, isolate_rng=False)
        records = batcher.map(one, todo, self.concurrent_examples)
        for record in records:  # an attack's own wall time includes waiting for the others: the shared time
            record.seconds = batcher.stats.seconds / len(records)
        self.last_batch_stats = batcher.stats
        return records


def attack_summary(records: Sequence[AttackRecord]) -> dict[str, float]:
    """attack_success (rate), mean_edits (successful attacks only; NaN if none), mean_prob_drop,
    model_calls_per_attack."""
    if not records:
        return {"attack_success": math.nan, "mean_edits": math.nan, "mean_prob_drop": math.nan,
                "model_calls_per_attack": math.nan}  # fmt: skip
    wins = [r for r in records if r.success]
    return {
        "attack_success": len(wins) / len(records),
        "mean_edits": float(np.mean([r.n_edits for r in wins])) if wins else math.nan,
        "mean_prob_drop": float(np.mean([r.prob_drop for r in records])),
        "model_calls_per_attack": float(np.mean([r.n_model_calls for r in records])),
    }



def attack_table(records: Sequence[AttackRecord], id_to_token: Callable[[int], str]) -> pd.DataFrame:
    """One row per attack, columns ATTACK_COLUMNS (texts rebuilt from ids, without [CLS])."""
    rows = {c: [] for c in ATTACK_COLUMNS}
    for r in records:
        rows["method"].append(r.method)
        rows["example_id"].append(r.example_id)
        rows["success"].append(r.success)
        rows["n_edits"].append(r.n_edits)
        rows["prob_before"].append(r.prob_before)
        rows["prob_after"].append(r.prob_after)
        rows["original_text"].append(text_of(r.original_ids, id_to_token))
        rows["perturbed_text"].append(text_of(r.perturbed_ids, id_to_token))
        rows["edited_positions"].append(list(r.edited_positions))
        rows["target"].append(r.target)
        rows["prediction_after"].append(r.prediction_after)
        rows["prob_drop"].append(r.prob_drop)
        rows["n_model_calls"].append(r.n_model_calls)
        rows["n_rows"].append(r.n_rows)
        rows["original_ids"].append(list(r.original_ids))
        rows["perturbed_ids"].append(list(r.perturbed_ids))
        rows["seconds"].append(r.seconds)
    return pd.DataFrame(
        {
            "method": pd.Series(rows["method"], dtype=str),
            "example_id": np.asarray(rows["example_id"], dtype=np.int64),
            "success": np.asarray(rows["success"], dtype=bool),
            "n_edits": np.asarray(rows["n_edits"], dtype=np.int64),
            "prob_before": np.asarray(rows["prob_before"], dtype=np.float64),
            "prob_after": np.asarray(rows["prob_after"], dtype=np.float64),
            "original_text": pd.Series(rows["original_text"], dtype=str),
            "perturbed_text": pd.Series(rows["perturbed_text"], dtype=str),
            "edited_positions": pd.Series(rows["edited_positions"], dtype=object),
            "target": np.asarray(rows["target"], dtype=np.int64),
            "prediction_after": np.asarray(rows["prediction_after"], dtype=np.int64),
            "prob_drop": np.asarray(rows["prob_drop"], dtype=np.float64),
            "n_model_calls": np.asarray(rows["n_model_calls"], dtype=np.int64),
            "n_rows": np.asarray(rows["n_rows"], dtype=np.int64),
            "original_ids": pd.Series(rows["original_ids"], dtype=object),
            "perturbed_ids": pd.Series(rows["perturbed_ids"], dtype=object),
            "seconds": np.asarray(rows["seconds"], dtype=np.float64),
        }
    )

