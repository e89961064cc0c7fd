"""Adversarial testing guided by token attributions: perturbation curves, a greedy word-substitution
attack, and the stability of explanations under prediction-preserving edits.

Every attribution method (plus a seeded random-order baseline, ``random_order``) gets:

* **deletion / insertion curves** — p(originally predicted class) as the top-k attributed tokens
  are masked with [MASK] (deletion; a faithful method makes it fall fast) or as only the top-k are
  kept and the rest masked (insertion; it should rise fast), k = 0..K, and the **flip rate** at k
  (fraction of examples whose argmax changed under deletion);
* a **substitution attack** (:class:`SubstitutionAttack`) that visits positions in the method's
  order and greedily swaps in embedding-space neighbours until the prediction flips or the edit
  budget is spent — a good attribution finds the decisive words first, so it needs fewer edits;
* **stability** — mean Spearman correlation between the method's attributions of an input and of
  lightly perturbed copies whose prediction is unchanged.

Token conventions (the tokenizer contract): [PAD]=0, [UNK]=1, [CLS]=2, [MASK]=3; position 0 is
[CLS], never perturbed and never ranked. All model evaluations go through
:func:`~glassworks.explain.predict.predict_proba`, built as whole batches first.

Layout of ``out_dir`` written by :class:`RobustnessRunner` (the entry point logs it as
``robustness/``)::

    metrics.json                 {"<method>/<metric>": value, "seconds_per_example": value}; NaN -> null
    attacks.parquet              one row per (method, example) attack, columns ATTACK_COLUMNS
    adversarial_examples.html    successful attacks, original | perturbed, edits highlighted
    curves_deletion.png          mean deletion curve per method
    curves_insertion.png         mean insertion curve per method
    flip_rate.png                flip rate at k per method

The library never talks to MLflow: the caller logs ``RobustnessResult.metrics`` (prefixing
``robustness/``) and the folder.
"""

from __future__ import annotations

import json
import logging
import math
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from scipy.stats import ConstantInputWarning, spearmanr
from torch import nn

from glassworks.explain.baseline import RandomExplainer
from glassworks.explain.metrics import ranking
from glassworks.explain.predict import predict_proba
from glassworks.explain.types import ExampleInput, Explainer, Explanation

log = logging.getLogger(__name__)

PAD_ID, UNK_ID, CLS_ID, MASK_ID = 0, 1, 2, 3
SPECIAL_IDS: tuple[int, ...] = (PAD_ID, UNK_ID, CLS_ID, MASK_ID)  # never offered as substitutes
RANDOM_ORDER = "random_order"  # name of the always-present baseline order
FLIP_KS: tuple[int, ...] = (1, 2, 3, 5, 10)  # flip_rate@k keys, capped at curve_k

ATTACK_COLUMNS = (
    "method", "example_id", "success", "n_edits", "prob_before", "prob_after", "original_text",
    "perturbed_text", "edited_positions", "target", "prediction_after", "prob_drop", "n_model_calls",
    "n_rows", "original_ids", "perturbed_ids", "seconds",
)  # fmt: skip

TokenToId = Callable[[str], int | None] | Mapping[str, int]  # a tokenizer's token_to_id, or a vocab dict


# --------------------------------------------------------------------------- orders
def random_order(example_id: int, n_tokens: int, seed: int) -> np.ndarray:
    """Positions 1..n_tokens in a random order seeded per (seed, example_id).

    Per-example seeding makes an example's order independent of which other examples run with it,
    so the curves and the attack of the baseline see the same order.
    """
    rng = np.random.default_rng([int(seed), int(example_id)])
    return rng.permutation(int(n_tokens)) + 1  # (n_tokens,)


def text_of(ids: Sequence[int], id_to_token: Callable[[int], str]) -> str:
    """Word-level text of a row: its tokens after [CLS], joined by spaces."""
    return " ".join(str(id_to_token(int(i))) for i in list(ids)[1:])


def _by_id(
    examples: Sequence[ExampleInput], explanations: Sequence[Explanation], method: str
) -> dict[int, Explanation]:
    """Explanations keyed by example id, checked against the examples (every one present, same length)."""
    got = {e.example_id: e for e in explanations}
    for ex in examples:
        expl = got.get(ex.example_id)
        if expl is None:
            raise ValueError(f"robustness: method {method!r} has no explanation for example_id {ex.example_id}")
        if len(expl.scores) != len(ex.ids):
            raise ValueError(
                f"robustness: method {method!r}, example_id {ex.example_id}: {len(expl.scores)} scores "
                f"for {len(ex.ids)} tokens"
            )
    return got


def method_orders(
    examples: Sequence[ExampleInput],
    explanations: Sequence[Explanation] | None,
    method: str,
    seed: int,
) -> dict[int, np.ndarray]:
    """example_id -> positions 1..T-1 most important first; the random order when `explanations` is None.

    Examples whose scores are non-finite, or that have no token besides [CLS], get no order (they
    are skipped by every consumer and counted in a warning here).
    """
    by_id = _by_id(examples, explanations, method) if explanations is not None else {}
    orders: dict[int, np.ndarray] = {}
    n_bad = 0
    for ex in examples:
        n_tokens = len(ex.ids) - 1
        if n_tokens < 1:
            continue
        if explanations is None:
            orders[ex.example_id] = random_order(ex.example_id, n_tokens, seed)
            continue
        scores = np.asarray(by_id[ex.example_id].scores, dtype=np.float64)  # (T,)
        if not np.all(np.isfinite(scores[1:])):
            n_bad += 1
            continue
        orders[ex.example_id] = ranking(scores)  # (T-1,), descending signed score
    if n_bad:
        log.warning("robustness: method %r has non-finite scores on %d of %d examples; skipped", method, n_bad, len(examples))
    return orders


# --------------------------------------------------------------------------- curves
@dataclass
class Curves:
    """Deletion / insertion curves of one method over the examples it could rank.

    Columns are k = 0..K. Examples shorter than K hold their last value: masking "the top-k" of an
    n-token input with k > n masks all n, keeping the top-k keeps all n.
    """

    method: str
    example_ids: list[int]
    deletion: np.ndarray  # (N, K+1) p(original class) with the top-k tokens masked
    insertion: np.ndarray  # (N, K+1) p(original class) with only the top-k tokens kept
    flipped: np.ndarray  # (N, K+1) bool: argmax under deletion differs from the original prediction

    @property
    def k_max(self) -> int:
        return self.deletion.shape[1] - 1

    def mean_deletion(self) -> np.ndarray:
        return self.deletion.mean(axis=0) if len(self.example_ids) else np.full(self.k_max + 1, math.nan)  # (K+1,)

    def mean_insertion(self) -> np.ndarray:
        return self.insertion.mean(axis=0) if len(self.example_ids) else np.full(self.k_max + 1, math.nan)  # (K+1,)

    def flip_rates(self) -> np.ndarray:
        return self.flipped.mean(axis=0) if len(self.example_ids) else np.full(self.k_max + 1, math.nan)  # (K+1,)

    def flip_rate(self, k: int) -> float:
        return float(self.flip_rates()[k])

    @staticmethod
    def _auc(curve: np.ndarray) -> float:
        # Trapezoid over k = 0..K with unit steps, divided by K: a mean probability in [0, 1], so
        # AUCs are comparable across curve lengths.
        k = len(curve) - 1
        return float((curve[0] / 2 + curve[1:-1].sum() + curve[-1] / 2) / k)

    def deletion_auc(self) -> float:
        """Lower is better: the attributed tokens matter."""
        return self._auc(self.mean_deletion())

    def insertion_auc(self) -> float:
        """Higher is better: the attributed tokens alone carry the prediction."""
        return self._auc(self.mean_insertion())


def perturbation_curves(
    model: nn.Module,
    examples: Sequence[ExampleInput],
    orders: Mapping[int, np.ndarray],
    base_probs: np.ndarray,
    k_max: int = 10,
    method: str = "",
    mask_id: int = MASK_ID,
    pad_id: int = PAD_ID,
    batch_size: int = 512,
) -> Curves:
    """Deletion and insertion curves for one method, with ONE batched forward over all rows.

    `orders`: example_id -> positions most important first (see :func:`method_orders`); examples
    without an order are left out. `base_probs` (N, C): the model's probabilities on the unperturbed
    `examples` (same order); the original prediction is their argmax.
    """
    if k_max < 1:
        raise ValueError(f"perturbation_curves: k_max must be >= 1, got {k_max}")
    # Rows are deduplicated (e.g. insertion k=0 == deletion k=n): short inputs repeat a lot.
    row_index: dict[tuple[int, ...], int] = {}

    def add(row: list[int]) -> int:
        return row_index.setdefault(tuple(row), len(row_index))

    plans = []  # (example index, [deletion row idx per k=1..K], [insertion row idx per k=0..K])
    for i, ex in enumerate(examples):
        order = orders.get(ex.example_id)
        if order is None:
            continue
        n_tokens = len(order)
        deleted, kept = [], []
        for k in range(0, k_max + 1):
            kk = min(k, n_tokens)  # capped at the example's own length
            row = list(ex.ids)
            for p in order[:kk]:
                row[int(p)] = mask_id
            deleted.append(add(row))
            row = list(ex.ids)
            for p in order[kk:]:
                row[int(p)] = mask_id
            kept.append(add(row))
        plans.append((i, deleted, kept))

    n = len(plans)
    deletion = np.zeros((n, k_max + 1))
    insertion = np.zeros((n, k_max + 1))
    flipped = np.zeros((n, k_max + 1), dtype=bool)
    if plans:
        probs = predict_proba(model, [list(r) for r in row_index], pad_id=pad_id, batch_size=batch_size)  # (R, C)
        for j, (i, deleted, kept) in enumerate(plans):
            target = int(np.argmax(base_probs[i]))
            deletion[j] = probs[deleted, target]
            insertion[j] = probs[kept, target]
            flipped[j] = probs[deleted].argmax(axis=1) != target
        log.debug("curves %s: %d examples, %d unique rows", method, n, len(row_index))
    return Curves(method=method, example_ids=[examples[i].example_id for i, _, _ in plans],
                  deletion=deletion, insertion=insertion, flipped=flipped)  # fmt: skip


# --------------------------------------------------------------------------- neighbours
class NeighbourIndex:
    """Nearest neighbours of token ids by cosine similarity of the model's input embeddings.

    Cosine rather than Euclidean distance because embedding norms track token frequency more than
    meaning. Special ids and the query token itself are never returned; with `allowed_ids` only
    those ids are candidates (a word list). Results are cached per id.
    """

    def __init__(self, weight: torch.Tensor, n_candidates: int, allowed_ids: Sequence[int] | None = None,
                 special_ids: Sequence[int] = SPECIAL_IDS) -> None:  # fmt: skip
        if weight.dim() != 2:
            raise ValueError(f"NeighbourIndex: embedding weight must be (V, C), got shape {tuple(weight.shape)}")
        self.n_candidates = int(n_candidates)
        # Kept on the weight's device: one (U, C) x (C, V) matmul per batch of queries.
        self.unit = F.normalize(weight.detach().float(), dim=1)  # (V, C)
        vocab = self.unit.shape[0]
        allowed = torch.ones(vocab, dtype=torch.bool, device=self.unit.device)  # (V,)
        if allowed_ids is not None:
            allowed.zero_()
            ids = [i for i in allowed_ids if 0 <= int(i) < vocab]
            if ids:
                allowed[torch.as_tensor(ids, dtype=torch.long, device=allowed.device)] = True
        for s in special_ids:
            if 0 <= s < vocab:
                allowed[s] = False
        self.allowed = allowed
        self.n_allowed = int(allowed.sum())
        self._cache: dict[int, list[int]] = {}

    def prepare(self, token_ids: Sequence[int]) -> None:
        """Compute the neighbours of many ids at once (one matmul) so later look-ups are free."""
        todo = sorted({int(t) for t in token_ids} - self._cache.keys())
        if not todo or self.n_allowed == 0:
            for t in todo:
                self._cache[t] = []
            return
        for lo in range(0, len(todo), 1024):
            chunk = todo[lo : lo + 1024]
            q = torch.as_tensor(chunk, dtype=torch.long, device=self.unit.device)  # (U,)
            sims = self.unit[q] @ self.unit.T  # (U, V)
            sims = sims.masked_fill(~self.allowed[None, :], float("-inf"))
            sims[torch.arange(len(chunk), device=sims.device), q] = float("-inf")  # never the token itself
            k = min(self.n_candidates, self.n_allowed)
            values, top = sims.topk(k, dim=1)  # (U, k) most similar first
            values, top = values.cpu().numpy(), top.cpu().numpy()
            for t, vals, ids in zip(chunk, values, top, strict=True):
                self._cache[t] = [int(i) for i, v in zip(ids, vals, strict=True) if np.isfinite(v)]

    def __call__(self, token_id: int) -> list[int]:
        """Up to `n_candidates` ids, most similar first."""
        token_id = int(token_id)
        if token_id not in self._cache:
            self.prepare([token_id])
        return self._cache[token_id]


def _word_list_ids(word_list: Sequence[str], token_to_id: TokenToId | None) -> list[int]:
    if token_to_id is None:
        raise ValueError("SubstitutionAttack: word_list is set but no token_to_id was given to map it to ids")
    lookup = token_to_id.get if isinstance(token_to_id, Mapping) else token_to_id
    ids, missing = [], []
    for word in word_list:
        i = lookup(word)
        if i is None or int(i) in SPECIAL_IDS:  # out of vocabulary maps to None or [UNK]
            missing.append(word)
        else:
            ids.append(int(i))
    if missing:
        log.warning("SubstitutionAttack: %d of %d word_list entries are not in the vocabulary (e.g. %r)",
                    len(missing), len(word_list), missing[:5])  # fmt: skip
    if not ids:
        raise ValueError(f"SubstitutionAttack: none of the {len(word_list)} word_list entries is in the vocabulary")
    return sorted(set(ids))


# --------------------------------------------------------------------------- attack
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
    n_model_calls: int  # forward passes spent on this example (one per visited position with candidates)
    n_rows: int  # rows evaluated in those passes
    original_ids: list[int]
    perturbed_ids: list[int]
    edited_positions: list[int]  # in edit order
    seconds: float = 0.0

    @property
    def prob_drop(self) -> float:
        return self.prob_before - self.prob_after


class SubstitutionAttack:
    """Attribution-guided greedy word substitution (in the spirit of TextFooler / greedy-WIR).

    Positions are visited in the order an attribution method ranks them. At each one, all
    candidate replacements — the `n_candidates` nearest neighbours of the current token in the
    model's input-embedding space, or only ids from `word_list` — are scored in ONE batched forward
    pass, and the one that lowers p(predicted class) most is kept, if it lowers it at all. The
    attack stops when the prediction flips, after `max_edits` edits, after `max_steps` visited
    positions (None: all), or when positions run out. `seed` seeds the random visiting order used
    when :meth:`run` gets no orders (the runner passes its own, shared with the curves).
    """

    def __init__(
        self,
        max_edits: int = 5,
        n_candidates: int = 20,
        word_list: Sequence[str] | None = None,
        seed: int = 0,
        batch_size: int = 512,
        max_steps: int | None = None,
    ) -> None:
        for key, value in (("max_edits", max_edits), ("n_candidates", n_candidates), ("batch_size", batch_size)):
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

    def neighbour_index(self, model: nn.Module, token_to_id: TokenToId | None = None) -> NeighbourIndex:
        """Candidate generator over `model.tok_emb.weight` (V, C), restricted to the word list if any."""
        emb = getattr(model, "tok_emb", None)
        if not isinstance(emb, nn.Embedding):
            raise ValueError(f"SubstitutionAttack: model {type(model).__name__} has no `tok_emb` embedding to find neighbours in")
        allowed = _word_list_ids(self.word_list, token_to_id) if self.word_list is not None else None
        return NeighbourIndex(emb.weight, self.n_candidates, allowed)

    def _evaluate(self, model: nn.Module, rows: list[list[int]], pad_id: int) -> tuple[np.ndarray, int]:
        """Probabilities (R, C) of all candidate rows of one step, and the forward passes spent.

        The single point where the attack touches the model (the benchmark swaps in a per-row one).
        """
        probs = predict_proba(model, rows, pad_id=pad_id, batch_size=self.batch_size)  # (R, C)
        return probs, math.ceil(len(rows) / self.batch_size)

    def attack(
        self,
        model: nn.Module,
        example: ExampleInput,
        order: Sequence[int],
        target: int,
        prob: float,
        neighbours: Callable[[int], list[int]],
        method: str = "",
        pad_id: int = PAD_ID,
    ) -> AttackRecord:
        """Attack one example whose prediction is `target` with probability `prob`."""
        start = time.perf_counter()
        ids = list(example.ids)
        current = prob
        prediction = target
        edited: list[int] = []
        n_calls = n_rows = 0
        for step, pos in enumerate(order):
            if len(edited) >= self.max_edits or prediction != target:
                break
            if self.max_steps is not None and step >= self.max_steps:
                break
            pos = int(pos)
            if pos == 0:  # [CLS] is what the head reads, never an input word
                continue
            candidates = neighbours(ids[pos])
            if not candidates:
                continue
            rows = []
            for c in candidates:
                row = list(ids)
                row[pos] = c
                rows.append(row)
            probs, calls = self._evaluate(model, rows, pad_id)  # (n_candidates, C)
            n_calls += calls
            n_rows += len(rows)
            best = int(np.argmin(probs[:, target]))
            # Only an edit that helps counts against the budget; otherwise move to the next position.
            if probs[best, target] < current:
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
        orders: Mapping[int, Sequence[int]] | None,
        method: str = "",
        pad_id: int = PAD_ID,
        base_probs: np.ndarray | None = None,
        token_to_id: TokenToId | None = None,
        neighbours: NeighbourIndex | None = None,
    ) -> list[AttackRecord]:
        """Attack every example that has an order (`orders`: example_id -> positions, most important
        first; None: the random order seeded with `seed`). `base_probs` (N, C) saves the clean forward."""
        model.eval()
        if orders is None:
            orders = method_orders(examples, None, method or RANDOM_ORDER, self.seed)
        if base_probs is None:
            base_probs = predict_proba(model, [e.ids for e in examples], pad_id=pad_id, batch_size=self.batch_size)  # (N, C)
        if neighbours is None:
            neighbours = self.neighbour_index(model, token_to_id)
        neighbours.prepare([t for e in examples for t in e.ids[1:]])
        records = []
        for i, ex in enumerate(examples):
            order = orders.get(ex.example_id)
            if order is None:
                continue
            target = int(np.argmax(base_probs[i]))
            records.append(self.attack(model, ex, order, target, float(base_probs[i, target]), neighbours, method, pad_id))
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


# --------------------------------------------------------------------------- stability
@dataclass
class StabilityResult:
    method: str
    mean: float  # mean over examples of the per-example mean Spearman rho; NaN if none measured
    per_example: dict[int, float]  # example_id -> mean rho over its kept perturbations
    n_perturbations: int  # perturbed inputs explained (prediction unchanged)
    n_rejected: int  # candidate perturbations dropped because they changed the prediction


def explanation_stability(
    model: nn.Module,
    examples: Sequence[ExampleInput],
    explanations: Sequence[Explanation],
    explainer: Explainer,
    neighbours: Callable[[int], list[int]],
    id_to_token: Callable[[int], str],
    base_probs: np.ndarray,
    n_perturbations: int = 3,
    seed: int = 0,
    pad_id: int = PAD_ID,
    batch_size: int = 512,
) -> StabilityResult:
    """Spearman rank correlation between attributions of an input and of near-copies that keep its prediction.

    Each near-copy replaces ONE token with its nearest embedding neighbour, at a random position
    among the bottom half by the method's own |score| (and outside the rationale when there is
    one): an edit the method itself calls unimportant should not reshuffle its explanation. Twice
    as many candidates as needed are scored in one batched forward; the first `n_perturbations`
    whose argmax is unchanged are explained with ONE ``explainer.explain`` call over all examples.
    The correlation uses the positions left unchanged (the edited one and [CLS] excluded).
    """
    method = getattr(explainer, "name", "?")
    if n_perturbations < 1:
        raise ValueError(f"explanation_stability: n_perturbations must be >= 1, got {n_perturbations}")
    by_id = _by_id(examples, explanations, method)
    candidates: list[tuple[int, int, list[int]]] = []  # (example index, edited position, ids)
    for i, ex in enumerate(examples):
        scores = np.asarray(by_id[ex.example_id].scores, dtype=np.float64)  # (T,)
        n_tokens = len(ex.ids) - 1
        if n_tokens < 3 or not np.all(np.isfinite(scores[1:])):  # Spearman needs >= 2 unchanged positions
            continue
        low = np.argsort(np.abs(scores[1:]), kind="stable")[: math.ceil(n_tokens / 2)] + 1  # least |score| first
        if ex.rationale is not None and len(ex.rationale) == len(ex.ids):
            outside = [p for p in low if not ex.rationale[p]]
            low = np.asarray(outside) if outside else low
        rng = np.random.default_rng([int(seed), int(ex.example_id), 1])
        for pos in rng.permutation(low)[: 2 * n_perturbations]:
            near = neighbours(ex.ids[int(pos)])
            if near:
                row = list(ex.ids)
                row[int(pos)] = near[0]
                candidates.append((i, int(pos), row))
    if not candidates:
        return StabilityResult(method, math.nan, {}, 0, 0)

    probs = predict_proba(model, [c[2] for c in candidates], pad_id=pad_id, batch_size=batch_size)  # (R, C)
    kept: list[tuple[int, int, list[int]]] = []
    taken: dict[int, int] = {}
    rejected = 0
    for (i, pos, row), p in zip(candidates, probs, strict=True):
        if int(np.argmax(p)) != int(np.argmax(base_probs[i])):
            rejected += 1
            continue
        if taken.get(i, 0) < n_perturbations:
            taken[i] = taken.get(i, 0) + 1
            kept.append((i, pos, row))
    if not kept:
        return StabilityResult(method, math.nan, {}, 0, rejected)

    perturbed = []
    for i, pos, row in kept:
        ex = examples[i]
        tokens = list(ex.tokens)
        tokens[pos] = str(id_to_token(row[pos]))
        # Same example_id: explainers seed per example, so only the input changes, not the sampling.
        perturbed.append(ExampleInput(example_id=ex.example_id, text=text_of(row, id_to_token), label=ex.label,
                                      ids=row, tokens=tokens, rationale=ex.rationale))  # fmt: skip
    new = explainer.explain(model, perturbed)
    if len(new) != len(perturbed):
        raise ValueError(f"explanation_stability: explainer {method!r} returned {len(new)} explanations for {len(perturbed)} inputs")

    rhos: dict[int, list[float]] = {}
    for (i, pos, _), expl in zip(kept, new, strict=True):
        ex = examples[i]
        keep = np.ones(len(ex.ids), dtype=bool)
        keep[[0, pos]] = False
        a = np.asarray(by_id[ex.example_id].scores, dtype=np.float64)[keep]
        b = np.asarray(expl.scores, dtype=np.float64).reshape(-1)
        if len(b) != len(ex.ids):
            raise ValueError(f"explanation_stability: explainer {method!r}, example_id {ex.example_id}: {len(b)} scores for {len(ex.ids)} tokens")
        b = b[keep]
        if not (np.all(np.isfinite(b)) and np.ptp(a) > 0 and np.ptp(b) > 0):
            continue  # a constant ranking has no correlation
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConstantInputWarning)
            rho = spearmanr(a, b).statistic
        if np.isfinite(rho):
            rhos.setdefault(ex.example_id, []).append(float(rho))
    per_example = {k: float(np.mean(v)) for k, v in rhos.items()}
    mean = float(np.mean(list(per_example.values()))) if per_example else math.nan
    return StabilityResult(method, mean, per_example, len(kept), rejected)


# --------------------------------------------------------------------------- the stage
@dataclass
class RobustnessResult:
    metrics: dict[str, float]  # "<method>/<metric>" and "seconds_per_example"; may hold NaN
    attacks: pd.DataFrame  # the attacks.parquet table, columns ATTACK_COLUMNS
    out_dir: Path
    curves: dict[str, Curves] = field(default_factory=dict)
    records: dict[str, list[AttackRecord]] = field(default_factory=dict)
    stability: dict[str, StabilityResult] = field(default_factory=dict)


class RobustnessRunner:
    """Curves, attacks and stability for every attribution method, plus the random-order baseline.

    Methods are the keys of the `explanations` passed to :meth:`run`, plus ``random_order`` (a
    seeded permutation per example), which is always added so every number has a chance-level
    reference. Stability needs the explainer itself; methods without one (and ``random_order``)
    get NaN.
    """

    def __init__(
        self,
        curve_k: int = 10,
        attack: SubstitutionAttack | None = None,
        n_stability: int = 3,
        seed: int = 0,
        mask_id: int = MASK_ID,
        pad_id: int = PAD_ID,
        batch_size: int = 512,
        stability_examples: int | None = None,
        max_html_examples: int = 200,
    ) -> None:
        if curve_k < 1:
            raise ValueError(f"RobustnessRunner: curve_k must be >= 1, got {curve_k}")
        if n_stability < 0:
            raise ValueError(f"RobustnessRunner: n_stability must be >= 0 (0 disables stability), got {n_stability}")
        if seed < 0:
            raise ValueError(f"RobustnessRunner: seed must be >= 0, got {seed}")
        if stability_examples is not None and stability_examples < 1:
            raise ValueError(f"RobustnessRunner: stability_examples must be >= 1 or None, got {stability_examples}")
        self.curve_k = int(curve_k)
        self.attack = attack if attack is not None else SubstitutionAttack(seed=seed)
        self.n_stability = int(n_stability)
        self.seed = int(seed)
        self.mask_id = int(mask_id)
        self.pad_id = int(pad_id)
        self.batch_size = int(batch_size)
        self.stability_examples = stability_examples
        self.max_html_examples = int(max_html_examples)

    def metric_keys(self, methods: Sequence[str]) -> list[str]:
        """Every key :meth:`run` reports for these methods (``random_order`` included)."""
        names = [*methods, RANDOM_ORDER] if RANDOM_ORDER not in methods else list(methods)
        per = [f"flip_rate@{k}" for k in FLIP_KS if k <= self.curve_k]
        per += ["deletion_auc", "insertion_auc", "attack_success", "mean_edits", "mean_prob_drop",
                "model_calls_per_attack", "stability", "n_skipped"]  # fmt: skip
        return [f"{m}/{p}" for m in names for p in per] + ["seconds_per_example"]

    def run(
        self,
        model: nn.Module,
        examples: Sequence[ExampleInput],
        explanations: Mapping[str, Sequence[Explanation]],
        explainers: Mapping[str, Explainer],
        id_to_token: Callable[[int], str],
        label_names: Sequence[str],
        out_dir: Path,
        token_to_id: TokenToId | None = None,
    ) -> RobustnessResult:
        """Run every test on `examples` for every method and write the artifacts into `out_dir`.

        `token_to_id` is only needed when the attack has a word list.
        """
        from glassworks.explain.robustness_plots import curves_png, flip_rate_png
        from glassworks.explain.robustness_render import render_adversarial_html

        start = time.perf_counter()
        examples = list(examples)
        if not examples:
            raise ValueError("RobustnessRunner.run: no examples")
        ids = [e.example_id for e in examples]
        if len(set(ids)) != len(ids):
            raise ValueError(f"RobustnessRunner.run: duplicate example ids in {ids}")
        if RANDOM_ORDER in explanations:
            raise ValueError(f"RobustnessRunner.run: method name {RANDOM_ORDER!r} is reserved for the baseline")
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        model.eval()

        base_probs = predict_proba(model, [e.ids for e in examples], pad_id=self.pad_id, batch_size=self.batch_size)  # (N, C)
        predicted = dict(zip(ids, base_probs.argmax(axis=1).tolist(), strict=True))  # example_id -> class
        for method, expls in explanations.items():
            _by_id(examples, expls, method)  # fail fast, naming the method and example
            mismatched = [e.example_id for e in expls if e.example_id in predicted and e.target != predicted[e.example_id]
                          and np.all(np.isfinite(e.scores))]  # skipped examples explain no class
            if mismatched:
                log.warning("robustness: method %r explained another class than the prediction on examples %s", method, mismatched[:10])
        neighbours = self.attack.neighbour_index(model, token_to_id)
        neighbours.prepare([t for e in examples for t in e.ids[1:]])

        methods: dict[str, Sequence[Explanation] | None] = {**explanations, RANDOM_ORDER: None}
        metrics: dict[str, float] = {}
        curves: dict[str, Curves] = {}
        records: dict[str, list[AttackRecord]] = {}
        stability: dict[str, StabilityResult] = {}
        stab_examples = examples[: self.stability_examples] if self.stability_examples else examples
        for method, expls in methods.items():
            t0 = time.perf_counter()
            orders = method_orders(examples, expls, method, self.seed)
            # Examples the method could not explain (a limit skipped them, or non-finite scores) get no order.
            metrics[f"{method}/n_skipped"] = float(sum(len(e.ids) > 1 for e in examples) - len(orders))
            curves[method] = c = perturbation_curves(
                model, examples, orders, base_probs, self.curve_k, method, self.mask_id, self.pad_id, self.batch_size
            )
            records[method] = self.attack.run(model, examples, orders, method, self.pad_id, base_probs, neighbours=neighbours)
            summary = attack_summary(records[method])
            for k in FLIP_KS:
                if k <= self.curve_k:
                    metrics[f"{method}/flip_rate@{k}"] = c.flip_rate(k)
            metrics[f"{method}/deletion_auc"] = c.deletion_auc()
            metrics[f"{method}/insertion_auc"] = c.insertion_auc()
            metrics.update({f"{method}/{k}": float(v) for k, v in summary.items()})

            explainer = explainers.get(method)
            stab = math.nan
            if expls is not None and explainer is not None and self.n_stability > 0:
                n_stab = len(stab_examples)
                stability[method] = s = explanation_stability(
                    model, stab_examples, [e for e in expls if e.example_id in {x.example_id for x in stab_examples}],
                    explainer, neighbours, id_to_token, base_probs[:n_stab], self.n_stability, self.seed,
                    self.pad_id, self.batch_size,
                )  # fmt: skip
                stab = s.mean
                if s.n_rejected:
                    log.debug("stability %s: %d perturbations changed the prediction and were dropped", method, s.n_rejected)
            elif expls is not None and self.n_stability > 0 and method != RandomExplainer.name:  # no stability by design
                log.warning("robustness: no explainer named %r was given; its stability is NaN", method)
            metrics[f"{method}/stability"] = float(stab)
            log.info(
                "robustness %-16s deletion_auc %.3f  flip@1 %.2f  attack_success %.2f  edits %.2f  stability %.3f  %.1f s",
                method, metrics[f"{method}/deletion_auc"], metrics[f"{method}/flip_rate@1"],
                summary["attack_success"], summary["mean_edits"], stab, time.perf_counter() - t0,
            )  # fmt: skip
        metrics["seconds_per_example"] = (time.perf_counter() - start) / len(examples)

        all_records = [r for rs in records.values() for r in rs]
        attacks = attack_table(all_records, id_to_token)
        attacks.to_parquet(out_dir / "attacks.parquet", index=False)
        (out_dir / "metrics.json").write_text(
            json.dumps({k: (v if math.isfinite(v) else None) for k, v in metrics.items()}, indent=2, sort_keys=True)
        )
        curves_png({m: c.mean_deletion() for m, c in curves.items()}, out_dir / "curves_deletion.png",
                   "Deletion: top-k attributed tokens masked", baseline=RANDOM_ORDER)  # fmt: skip
        curves_png({m: c.mean_insertion() for m, c in curves.items()}, out_dir / "curves_insertion.png",
                   "Insertion: only the top-k attributed tokens kept", baseline=RANDOM_ORDER)  # fmt: skip
        flip_rate_png({m: c.flip_rates() for m, c in curves.items()}, out_dir / "flip_rate.png", baseline=RANDOM_ORDER)
        page = render_adversarial_html(all_records, id_to_token, label_names, metrics, max_examples=self.max_html_examples)
        (out_dir / "adversarial_examples.html").write_text(page, encoding="utf-8")
        log.info("robustness: %d examples x %d methods, %.3f s/example",
                 len(examples), len(methods), metrics["seconds_per_example"])  # fmt: skip
        return RobustnessResult(metrics=metrics, attacks=attacks, out_dir=out_dir, curves=curves,
                                records=records, stability=stability)  # fmt: skip


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
